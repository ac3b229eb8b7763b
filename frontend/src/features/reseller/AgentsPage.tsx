import { Badge, Button, Group, Modal, MultiSelect, PasswordInput, Table, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, fieldErrors, unwrap } from '../../api/client';
import { useAgents, useDepartments } from '../../api/queries';
import type { User } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { PasswordReset } from '../../layout/PasswordReset';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { ActiveBadge, confirmDeactivate, FormActions, FormFrame, ListTable, RowActions, useSetActive } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
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
      void client.invalidateQueries({ queryKey: keys.departments }); // their counts of active agents
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
    <FormFrame onSubmit={() => save.mutate()}>
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
      <FormActions
        mutation={save}
        fields={['name', 'email', 'password']}
        shownOnField={conflict}
        onCancel={onDone}
        disabled={!name.trim() || (!agent && (!email || password.length < 8))}
      />
    </FormFrame>
  );
}

export function AgentsPage() {
  const client = useQueryClient();
  const agents = useAgents();
  const departments = useDepartments();
  const [editing, setEditing] = useState<User | 'new' | null>(null);
  const names = new Map((departments.data ?? []).map((d) => [d.id, d.name]));
  const setActive = useSetActive(async (user: User, active: boolean) => {
    const saved = await unwrap(api.PATCH('/api/v1/users/{user_id}', { params: { path: { user_id: user.id } }, body: { active } }));
    void client.invalidateQueries({ queryKey: keys.departments }); // their counts of active agents
    return saved;
  }, keys.agents);
  const list = (agents.data ?? []).filter((u) => u.role === 'agent');

  return (
    <>
      <PageHeader title={t.agents.title}>
        <Button onClick={() => setEditing('new')}>{t.agents.new}</Button>
      </PageHeader>
      <ListTable
        query={agents}
        items={list}
        empty={t.agents.empty}
        minWidth={640}
        headers={[t.agents.name, t.agents.email, t.agents.departments, t.agents.status]}
        row={(u) => (
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
              <ActiveBadge active={u.active} />
            </Table.Td>
            <Table.Td>
              <RowActions onEdit={() => setEditing(u)}>
                <PasswordReset userId={u.id} name={u.name} />
                <ActiveToggle
                  active={u.active}
                  onDeactivate={() => confirmDeactivate(t.agents.deactivateConfirm(u.name), () => setActive.mutate({ item: u, active: false }))}
                  onReactivate={() => setActive.mutate({ item: u, active: true })}
                />
              </RowActions>
            </Table.Td>
          </Table.Tr>
        )}
      />
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === 'new' ? t.agents.new : t.app.edit}>
        {editing !== null && <AgentForm agent={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
      </Modal>
    </>
  );
}
