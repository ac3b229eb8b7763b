import { Badge, Button, Group, Modal, Stack, Table, Text, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, errorMessage, fieldErrors, unwrap } from '../../api/client';
import { useDepartments } from '../../api/queries';
import type { Department } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
import { keys } from '../../realtime/cache';

function DepartmentForm({ department, onDone }: { department: Department | null; onDone: () => void }) {
  const client = useQueryClient();
  const [name, setName] = useState(department?.name ?? '');
  const [description, setDescription] = useState(department?.description ?? '');
  const save = useMutation({
    mutationFn: () =>
      department
        ? unwrap(
            api.PATCH('/api/v1/departments/{department_id}', {
              params: { path: { department_id: department.id } },
              body: { name, description },
            }),
          )
        : unwrap(api.POST('/api/v1/departments', { body: { name, description } })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: keys.departments });
      notifications.show({ color: 'teal', message: department ? t.departments.updated : t.departments.created });
      onDone();
    },
  });
  const errors = fieldErrors(save.error);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <Stack>
        <TextInput label={t.departments.name} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
        <TextInput label={t.departments.description} value={description} onChange={(e) => setDescription(e.currentTarget.value)} error={errors.description} />
        {save.isError && !Object.keys(errors).length && <Text c="red" size="sm" role="alert">{errorMessage(save.error)}</Text>}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            {t.app.cancel}
          </Button>
          <Button type="submit" loading={save.isPending} disabled={!name.trim()}>
            {t.app.save}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

export function DepartmentsPage() {
  const query = useDepartments();
  const client = useQueryClient();
  const [editing, setEditing] = useState<Department | 'new' | null>(null);
  const toggle = useMutation({
    mutationFn: (d: Department) =>
      unwrap(api.PATCH('/api/v1/departments/{department_id}', { params: { path: { department_id: d.id } }, body: { active: !d.active } })),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.departments }),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });

  return (
    <>
      <PageHeader title={t.departments.title}>
        <Button onClick={() => setEditing('new')}>{t.departments.new}</Button>
      </PageHeader>
      <QueryState query={query} />
      {query.data && query.data.length === 0 && <Text c="dimmed">{t.departments.empty}</Text>}
      {query.data && query.data.length > 0 && (
        <Table.ScrollContainer minWidth={480}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.departments.name}</Table.Th>
                <Table.Th>{t.departments.description}</Table.Th>
                <Table.Th>{t.departments.status}</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {query.data.map((d) => (
                <Table.Tr key={d.id}>
                  <Table.Td>{d.name}</Table.Td>
                  <Table.Td>{d.description}</Table.Td>
                  <Table.Td>
                    <Badge color={d.active ? 'teal' : 'gray'}>{d.active ? t.app.active : t.app.inactive}</Badge>
                  </Table.Td>
                  <Table.Td>
                    <Group gap="xs" justify="flex-end" wrap="nowrap">
                      <Button size="compact-sm" variant="default" onClick={() => setEditing(d)}>
                        {t.app.edit}
                      </Button>
                      <ActiveToggle active={d.active} onDeactivate={() => toggle.mutate(d)} onReactivate={() => toggle.mutate(d)} />
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === 'new' ? t.departments.new : t.app.edit}>
        {editing !== null && <DepartmentForm department={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
      </Modal>
    </>
  );
}
