import { Badge, Button, Group, Modal, MultiSelect, PasswordInput, Stack, Table, Text, TextInput } from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, errorMessage, fieldErrors, unwrap } from '../../api/client';
import { useAgents, useDepartments } from '../../api/queries';
import type { User } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { PasswordReset } from '../../layout/PasswordReset';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
import { keys } from '../../realtime/cache';

function AgentForm({ agent, onDone }: { agent: User | null; onDone: () => void }) {
  const client = useQueryClient();
  const departments = useDepartments();
  const [name, setName] = useState(agent?.name ?? '');
  const [email, setEmail] = useState(agent?.email ?? '');
  const [password, setPassword] = useState('');
  const [departmentIds, setDepartmentIds] = useState<string[]>(agent?.department_ids ?? []);
  const save = useMutation({
    mutationFn: () =>
      agent
        ? unwrap(
            api.PATCH('/api/v1/users/{user_id}', {
              params: { path: { user_id: agent.id } },
              body: { name, department_ids: departmentIds, ...(password ? { password } : {}) },
            }),
          )
        : unwrap(api.POST('/api/v1/users', { body: { name, email, password, role: 'agent', department_ids: departmentIds } })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: keys.agents });
      notifications.show({ color: 'teal', message: agent ? t.agents.updated : t.agents.created });
      onDone();
    },
  });
  const errors = fieldErrors(save.error);
  const conflict = save.error instanceof ApiError && save.error.status === 409;
  const options = (departments.data ?? [])
    .filter((d) => d.active || departmentIds.includes(d.id))
    .map((d) => ({ value: d.id, label: d.name }));
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <Stack>
        <TextInput label={t.agents.name} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
        <TextInput
          label={t.agents.email}
          type="email"
          required
          disabled={!!agent}
          value={email}
          onChange={(e) => setEmail(e.currentTarget.value)}
          error={errors.email ?? (conflict ? t.agents.emailTaken : undefined)}
        />
        <PasswordInput
          label={agent ? t.agents.newPassword : t.agents.password}
          required={!agent}
          value={password}
          onChange={(e) => setPassword(e.currentTarget.value)}
          error={errors.password}
          autoComplete="new-password"
        />
        <MultiSelect label={t.agents.assign} data={options} value={departmentIds} onChange={setDepartmentIds} searchable clearable />
        {save.isError && !conflict && !Object.keys(errors).length && (
          <Text c="red" size="sm" role="alert">
            {errorMessage(save.error)}
          </Text>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            {t.app.cancel}
          </Button>
          <Button type="submit" loading={save.isPending} disabled={!name.trim() || (!agent && (!email || password.length < 8))}>
            {t.app.save}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

export function AgentsPage() {
  const agents = useAgents();
  const departments = useDepartments();
  const client = useQueryClient();
  const [editing, setEditing] = useState<User | 'new' | null>(null);
  const names = new Map((departments.data ?? []).map((d) => [d.id, d.name]));
  const setActive = useMutation({
    mutationFn: ({ user, active }: { user: User; active: boolean }) =>
      unwrap(api.PATCH('/api/v1/users/{user_id}', { params: { path: { user_id: user.id } }, body: { active } })),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.agents }),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const confirmDeactivate = (user: User) =>
    modals.openConfirmModal({
      title: t.app.deactivate,
      children: <Text size="sm">{t.agents.deactivateConfirm(user.name)}</Text>,
      labels: { confirm: t.app.deactivate, cancel: t.app.cancel },
      confirmProps: { color: 'red' },
      onConfirm: () => setActive.mutate({ user, active: false }),
    });
  const list = (agents.data ?? []).filter((u) => u.role === 'agent');

  return (
    <>
      <PageHeader title={t.agents.title}>
        <Button onClick={() => setEditing('new')}>{t.agents.new}</Button>
      </PageHeader>
      <QueryState query={agents} />
      {agents.data && list.length === 0 && <Text c="dimmed">{t.agents.empty}</Text>}
      {list.length > 0 && (
        <Table.ScrollContainer minWidth={640}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.agents.name}</Table.Th>
                <Table.Th>{t.agents.email}</Table.Th>
                <Table.Th>{t.agents.departments}</Table.Th>
                <Table.Th>{t.agents.status}</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {list.map((u) => (
                <Table.Tr key={u.id}>
                  <Table.Td>{u.name}</Table.Td>
                  <Table.Td>{u.email}</Table.Td>
                  <Table.Td>
                    <Group gap={4}>
                      {u.department_ids.map((id) => (
                        <Badge key={id} variant="light" size="sm">
                          {names.get(id) ?? '—'}
                        </Badge>
                      ))}
                    </Group>
                  </Table.Td>
                  <Table.Td>
                    <Badge color={u.active ? 'teal' : 'gray'}>{u.active ? t.app.active : t.app.inactive}</Badge>
                  </Table.Td>
                  <Table.Td>
                    <Group gap="xs" justify="flex-end" wrap="nowrap">
                      <Button size="compact-sm" variant="default" onClick={() => setEditing(u)}>
                        {t.app.edit}
                      </Button>
                      <PasswordReset userId={u.id} name={u.name} />
                      <ActiveToggle
                        active={u.active}
                        onDeactivate={() => confirmDeactivate(u)}
                        onReactivate={() => setActive.mutate({ user: u, active: true })}
                      />
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === 'new' ? t.agents.new : t.app.edit}>
        {editing !== null && <AgentForm agent={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
      </Modal>
    </>
  );
}
