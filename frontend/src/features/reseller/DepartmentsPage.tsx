import { Badge, Button, Modal, Table, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, fieldErrors, unwrap } from '../../api/client';
import { useDepartments } from '../../api/queries';
import type { Department } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { ActiveBadge, FormActions, FormFrame, ListTable, RowActions, useSetActive } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
import { keys } from '../../realtime/cache';
import { isUnstaffed } from './staffing';

/** "Sem atendentes" (orange) for an active department no active agent serves, else how many do. */
function StaffBadge({ department }: { department: Department }) {
  if (isUnstaffed(department)) {
    return (
      <Badge color="orange" title={t.staffing.noneHint} data-testid="staff-badge">
        {t.staffing.none}
      </Badge>
    );
  }
  return (
    <Badge color="gray" variant="light" data-testid="staff-badge">
      {t.staffing.agents(department.active_agents)}
    </Badge>
  );
}

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
    <FormFrame onSubmit={() => save.mutate()}>
      <TextInput label={t.departments.name} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
      <TextInput label={t.departments.description} value={description} onChange={(e) => setDescription(e.currentTarget.value)} error={errors.description} />
      <FormActions mutation={save} fields={['name', 'description']} onCancel={onDone} disabled={!name.trim()} />
    </FormFrame>
  );
}

export function DepartmentsPage() {
  const query = useDepartments();
  const [editing, setEditing] = useState<Department | 'new' | null>(null);
  const setActive = useSetActive(
    (d: Department, active: boolean) =>
      unwrap(api.PATCH('/api/v1/departments/{department_id}', { params: { path: { department_id: d.id } }, body: { active } })),
    keys.departments,
  );

  return (
    <>
      <PageHeader title={t.departments.title}>
        <Button onClick={() => setEditing('new')}>{t.departments.new}</Button>
      </PageHeader>
      <ListTable
        query={query}
        items={query.data ?? []}
        empty={t.departments.empty}
        minWidth={600}
        headers={[t.departments.name, t.departments.description, t.staffing.column, t.departments.status]}
        row={(d) => (
          <Table.Tr key={d.id}>
            <Table.Td>{d.name}</Table.Td>
            <Table.Td>{d.description}</Table.Td>
            <Table.Td>
              <StaffBadge department={d} />
            </Table.Td>
            <Table.Td>
              <ActiveBadge active={d.active} />
            </Table.Td>
            <Table.Td>
              <RowActions onEdit={() => setEditing(d)}>
                <ActiveToggle
                  active={d.active}
                  onDeactivate={() => setActive.mutate({ item: d, active: false })}
                  onReactivate={() => setActive.mutate({ item: d, active: true })}
                />
              </RowActions>
            </Table.Td>
          </Table.Tr>
        )}
      />
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === 'new' ? t.departments.new : t.app.edit}>
        {editing !== null && <DepartmentForm department={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
      </Modal>
    </>
  );
}
