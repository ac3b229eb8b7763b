import { Button, Modal, PasswordInput, Table, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, fieldErrors, unwrap } from '../../api/client';
import type { Reseller } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDate } from '../../lib/format';
import { PasswordReset } from '../../layout/PasswordReset';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { ActiveBadge, confirmDeactivate, FormActions, FormFrame, ListTable, RowActions, useSetActive } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
import { keys } from '../../realtime/cache';

function ResellerForm({ onDone }: { onDone: () => void }) {
  const client = useQueryClient();
  const [name, setName] = useState('');
  const [ownerName, setOwnerName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const create = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/api/v1/resellers', { body: { name, email, password, owner_name: ownerName || undefined } })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: keys.resellers });
      notifications.show({ color: 'teal', message: t.resellers.created });
      onDone();
    },
  });
  const errors = fieldErrors(create.error);
  const conflict = create.error instanceof ApiError && create.error.status === 409;
  return (
    <FormFrame onSubmit={() => create.mutate()}>
      <TextInput label={t.resellers.name} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
      <TextInput label={t.resellers.ownerName} value={ownerName} onChange={(e) => setOwnerName(e.currentTarget.value)} error={errors.owner_name} />
      <TextInput
        label={t.resellers.email}
        type="email"
        required
        value={email}
        onChange={(e) => setEmail(e.currentTarget.value)}
        error={errors.email ?? (conflict ? t.agents.emailTaken : undefined)}
      />
      <PasswordInput label={t.resellers.password} required value={password} onChange={(e) => setPassword(e.currentTarget.value)} error={errors.password} autoComplete="new-password" />
      <FormActions
        mutation={create}
        fields={['name', 'owner_name', 'email', 'password']}
        shownOnField={conflict}
        onCancel={onDone}
        disabled={!name.trim() || !email || password.length < 8}
        label={t.app.create}
      />
    </FormFrame>
  );
}

export function ResellersPage() {
  const [creating, setCreating] = useState(false);
  const query = useInfiniteQuery({
    queryKey: keys.resellers,
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(api.GET('/api/v1/resellers', { params: { query: { limit: 100, cursor: pageParam ?? undefined } } })),
    getNextPageParam: (last) => last.next_cursor ?? null,
  });
  const setActive = useSetActive(
    (reseller: Reseller, active: boolean) =>
      unwrap(api.PATCH('/api/v1/resellers/{reseller_id}', { params: { path: { reseller_id: reseller.id } }, body: { active } })),
    keys.resellers,
    t.resellers.updated,
  );
  const resellers = query.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <>
      <PageHeader title={t.resellers.title}>
        <Button onClick={() => setCreating(true)}>{t.resellers.new}</Button>
      </PageHeader>
      <ListTable
        query={query}
        items={resellers}
        empty={t.resellers.empty}
        minWidth={640}
        headers={[t.resellers.name, t.resellers.email, t.resellers.since, t.resellers.status]}
        pager={query}
        row={(r) => (
          <Table.Tr key={r.id} data-testid="reseller-row">
            <Table.Td>{r.name}</Table.Td>
            <Table.Td>{r.owner_email}</Table.Td>
            <Table.Td>{formatDate(r.created_at)}</Table.Td>
            <Table.Td>
              <ActiveBadge active={r.active} />
            </Table.Td>
            <Table.Td>
              <RowActions>
                <PasswordReset userId={r.owner_id} name={r.owner_email} />
                <ActiveToggle
                  active={r.active}
                  onDeactivate={() => confirmDeactivate(t.resellers.deactivateConfirm(r.name), () => setActive.mutate({ item: r, active: false }))}
                  onReactivate={() => setActive.mutate({ item: r, active: true })}
                />
              </RowActions>
            </Table.Td>
          </Table.Tr>
        )}
      />
      <Modal opened={creating} onClose={() => setCreating(false)} title={t.resellers.new}>
        {creating && <ResellerForm onDone={() => setCreating(false)} />}
      </Modal>
    </>
  );
}
