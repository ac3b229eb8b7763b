import { Badge, Button, Group, Modal, PasswordInput, Stack, Table, Text, TextInput } from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, errorMessage, fieldErrors, unwrap } from '../../api/client';
import type { Reseller } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDate } from '../../lib/format';
import { PasswordReset } from '../../layout/PasswordReset';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
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
    <form
      onSubmit={(e) => {
        e.preventDefault();
        create.mutate();
      }}
    >
      <Stack>
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
        {create.isError && !conflict && !Object.keys(errors).length && (
          <Text c="red" size="sm" role="alert">
            {errorMessage(create.error)}
          </Text>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            {t.app.cancel}
          </Button>
          <Button type="submit" loading={create.isPending} disabled={!name.trim() || !email || password.length < 8}>
            {t.app.create}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

export function ResellersPage() {
  const client = useQueryClient();
  const [creating, setCreating] = useState(false);
  const query = useInfiniteQuery({
    queryKey: keys.resellers,
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(api.GET('/api/v1/resellers', { params: { query: { limit: 100, cursor: pageParam ?? undefined } } })),
    getNextPageParam: (last) => last.next_cursor ?? null,
  });
  const setActive = useMutation({
    mutationFn: ({ reseller, active }: { reseller: Reseller; active: boolean }) =>
      unwrap(api.PATCH('/api/v1/resellers/{reseller_id}', { params: { path: { reseller_id: reseller.id } }, body: { active } })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: keys.resellers });
      notifications.show({ color: 'teal', message: t.resellers.updated });
    },
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const confirmDeactivate = (reseller: Reseller) =>
    modals.openConfirmModal({
      title: t.app.deactivate,
      children: <Text size="sm">{t.resellers.deactivateConfirm(reseller.name)}</Text>,
      labels: { confirm: t.app.deactivate, cancel: t.app.cancel },
      confirmProps: { color: 'red' },
      onConfirm: () => setActive.mutate({ reseller, active: false }),
    });
  const resellers = query.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <>
      <PageHeader title={t.resellers.title}>
        <Button onClick={() => setCreating(true)}>{t.resellers.new}</Button>
      </PageHeader>
      <QueryState query={query} />
      {query.data && resellers.length === 0 && <Text c="dimmed">{t.resellers.empty}</Text>}
      {resellers.length > 0 && (
        <Table.ScrollContainer minWidth={640}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.resellers.name}</Table.Th>
                <Table.Th>{t.resellers.email}</Table.Th>
                <Table.Th>{t.resellers.since}</Table.Th>
                <Table.Th>{t.resellers.status}</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {resellers.map((r) => (
                <Table.Tr key={r.id} data-testid="reseller-row">
                  <Table.Td>{r.name}</Table.Td>
                  <Table.Td>{r.owner_email}</Table.Td>
                  <Table.Td>{formatDate(r.created_at)}</Table.Td>
                  <Table.Td>
                    <Badge color={r.active ? 'teal' : 'gray'}>{r.active ? t.app.active : t.app.inactive}</Badge>
                  </Table.Td>
                  <Table.Td>
                    <Group justify="flex-end" wrap="nowrap">
                      <PasswordReset userId={r.owner_id} name={r.owner_email} />
                      <ActiveToggle
                        active={r.active}
                        onDeactivate={() => confirmDeactivate(r)}
                        onReactivate={() => setActive.mutate({ reseller: r, active: true })}
                      />
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {query.hasNextPage && (
        <Button variant="subtle" mt="sm" onClick={() => query.fetchNextPage()} loading={query.isFetchingNextPage}>
          {t.app.loadMore}
        </Button>
      )}
      <Modal opened={creating} onClose={() => setCreating(false)} title={t.resellers.new}>
        {creating && <ResellerForm onDone={() => setCreating(false)} />}
      </Modal>
    </>
  );
}
