import { Alert, Badge, Button, Center, Image, Loader, Modal, Select, Stack, Table, Text, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useState } from 'react';
import { errorMessage, fieldErrors } from '../../api/client';
import { useConnections, useCreateConnection, useDepartments, useQrCode, useUpdateConnection } from '../../api/queries';
import type { ConnectionState, Department, WhatsAppConnection } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { translateBackendMessage } from '../../i18n/backendMessages';
import { FormActions, FormFrame, ListTable, RowActions } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
import { MenuForm } from './MenuForm';

const STATE_COLOR: Record<ConnectionState, string> = { open: 'teal', connecting: 'yellow', close: 'gray' };

export function qrSource(code: string): string {
  return code.startsWith('data:') ? code : `data:image/png;base64,${code}`;
}

export function ConnectionStatus({ status }: { status: ConnectionState }) {
  return (
    <Badge color={STATE_COLOR[status] ?? 'gray'} variant="dot" data-testid="connection-status">
      {t.connections.state[status] ?? status}
    </Badge>
  );
}

function QrPanel({ connection }: { connection: WhatsAppConnection }) {
  // The list entry is kept live by `connection.status` events; the QR endpoint is polled while not open.
  const qr = useQrCode(connection.id, connection.status !== 'open');
  if (connection.status === 'open' || qr.data?.status === 'open') {
    return <Alert color="teal">{t.connections.connected}</Alert>;
  }
  const code = qr.data?.qr_code ?? connection.qr_code;
  return (
    <Stack align="center">
      <Text size="sm">{t.connections.qrHelp}</Text>
      {code ? (
        <Image src={qrSource(code)} alt={t.connections.qr} className="qr-image" />
      ) : qr.isError ? (
        <Alert color="red">{errorMessage(qr.error)}</Alert>
      ) : (
        <Center h={240}>
          <Stack align="center" gap="xs">
            <Loader />
            <Text size="sm" c="dimmed">
              {t.connections.qrWaiting}
            </Text>
          </Stack>
        </Center>
      )}
      <ConnectionStatus status={qr.data?.status ?? connection.status} />
    </Stack>
  );
}

function ConnectionForm({ onDone }: { onDone: (created: WhatsAppConnection) => void }) {
  const departments = useDepartments();
  const create = useCreateConnection();
  const [name, setName] = useState('');
  const [instance, setInstance] = useState('');
  const [department, setDepartment] = useState<string | null>(null);
  const errors = fieldErrors(create.error);
  const options = (departments.data ?? []).filter((d) => d.active).map((d) => ({ value: d.id, label: d.name }));
  return (
    <FormFrame
      onSubmit={() => {
        if (!department) return;
        create.mutate(
          { name, provider: 'evolution', instance_name: instance, default_department_id: department },
          {
            onSuccess: (created) => {
              notifications.show({ color: 'teal', message: t.connections.created });
              onDone(created);
            },
          },
        );
      }}
    >
      <TextInput label={t.connections.name} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
      <TextInput label={t.connections.instance} required value={instance} onChange={(e) => setInstance(e.currentTarget.value)} error={errors.instance_name} />
      <Select label={t.connections.department} required data={options} value={department} onChange={setDepartment} error={errors.default_department_id} />
      <FormActions
        mutation={create}
        fields={['name', 'instance_name', 'default_department_id']}
        disabled={!name.trim() || !instance.trim() || !department}
        label={t.app.create}
      />
    </FormFrame>
  );
}

/** A connection's name and where its new conversations wait (its default department). The backend
 * refuses to deactivate a department an active connection defaults to ("choose another default
 * first"): this is where another is chosen. An inactive current default is shown, not offered. */
function EditConnectionForm({ connection, departments, onDone }: { connection: WhatsAppConnection; departments: Department[]; onDone: () => void }) {
  const update = useUpdateConnection();
  const [name, setName] = useState(connection.name);
  const [department, setDepartment] = useState<string | null>(connection.default_department_id);
  const errors = fieldErrors(update.error);
  const options = departments
    .filter((d) => d.active || d.id === connection.default_department_id)
    .map((d) => ({ value: d.id, label: d.active ? d.name : `${d.name} (${t.app.inactive})`, disabled: !d.active }));
  return (
    <FormFrame
      onSubmit={() => {
        if (!department) return;
        const body = {
          ...(name !== connection.name ? { name } : {}),
          ...(department !== connection.default_department_id ? { default_department_id: department } : {}),
        };
        update.mutate(
          { id: connection.id, ...body },
          {
            onSuccess: () => {
              notifications.show({ color: 'teal', message: t.connections.updated });
              onDone();
            },
          },
        );
      }}
    >
      <TextInput label={t.connections.name} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
      <Select
        label={t.connections.department}
        description={t.connections.departmentHint}
        required
        data={options}
        value={department}
        onChange={setDepartment}
        allowDeselect={false}
        error={errors.default_department_id}
      />
      <FormActions
        mutation={update}
        fields={['name', 'default_department_id']}
        onCancel={onDone}
        disabled={!name.trim() || !department || (name === connection.name && department === connection.default_department_id)}
      />
    </FormFrame>
  );
}

export function ConnectionsPage() {
  const query = useConnections();
  const departments = useDepartments();
  const update = useUpdateConnection();
  const [creating, setCreating] = useState(false);
  const [qrFor, setQrFor] = useState<string | null>(null);
  const [menuFor, setMenuFor] = useState<string | null>(null);
  const [editFor, setEditFor] = useState<string | null>(null);
  const names = new Map((departments.data ?? []).map((d) => [d.id, d.name]));
  const shown = query.data?.find((c) => c.id === qrFor);
  const menuOf = query.data?.find((c) => c.id === menuFor);
  const editing = query.data?.find((c) => c.id === editFor);

  return (
    <>
      <PageHeader title={t.connections.title}>
        <Button onClick={() => setCreating(true)}>{t.connections.new}</Button>
      </PageHeader>
      <ListTable
        query={query}
        items={query.data ?? []}
        empty={t.connections.empty}
        minWidth={640}
        headers={[t.connections.name, t.connections.instance, t.connections.department, t.connections.menu, t.connections.status]}
        row={(c) => (
          <Table.Tr key={c.id} data-testid="connection-row">
            <Table.Td>
              {c.name} {!c.active && <Badge color="gray">{t.app.inactive}</Badge>}
            </Table.Td>
            <Table.Td>{c.instance_name}</Table.Td>
            <Table.Td>{(c.default_department_id && names.get(c.default_department_id)) || '—'}</Table.Td>
            <Table.Td data-testid="connection-menu">
              {c.menu_enabled ? (
                <Badge color="blue" variant="light">
                  {t.connections.menuOn} ({(c.menu_department_ids ?? []).length})
                </Badge>
              ) : (
                '—'
              )}
            </Table.Td>
            <Table.Td>
              <ConnectionStatus status={c.status} />
              {c.status !== 'open' && c.last_error && (
                <Text size="xs" c="red.7" maw={280} data-testid="connection-error">
                  {translateBackendMessage(c.last_error) ?? t.connections.providerError}
                </Text>
              )}
            </Table.Td>
            <Table.Td>
              <RowActions onEdit={() => setEditFor(c.id)}>
                {c.active && c.status !== 'open' && (
                  <Button size="compact-sm" onClick={() => setQrFor(c.id)}>
                    {t.connections.showQr}
                  </Button>
                )}
                <Button size="compact-sm" variant="default" onClick={() => setMenuFor(c.id)} aria-label={t.connections.menuTitle(c.name)}>
                  {t.connections.menu}
                </Button>
                <Button
                  size="compact-sm"
                  variant="subtle"
                  color={c.active ? 'red' : 'teal'}
                  onClick={() =>
                    update.mutate(
                      { id: c.id, active: !c.active },
                      {
                        onSuccess: () => notifications.show({ color: 'teal', message: t.connections.updated }),
                        onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
                      },
                    )
                  }
                >
                  {c.active ? t.app.deactivate : t.app.reactivate}
                </Button>
              </RowActions>
            </Table.Td>
          </Table.Tr>
        )}
      />
      <Modal opened={creating} onClose={() => setCreating(false)} title={t.connections.new}>
        {creating && (
          <ConnectionForm
            onDone={(created) => {
              setCreating(false);
              setQrFor(created.id);
            }}
          />
        )}
      </Modal>
      <Modal opened={!!editing} onClose={() => setEditFor(null)} title={editing ? t.connections.editTitle(editing.name) : t.app.edit}>
        {editing && <EditConnectionForm key={editing.id} connection={editing} departments={departments.data ?? []} onDone={() => setEditFor(null)} />}
      </Modal>
      <Modal opened={!!menuOf} onClose={() => setMenuFor(null)} title={menuOf ? t.connections.menuTitle(menuOf.name) : t.connections.menu} size="xl">
        {menuOf && <MenuForm key={menuOf.id} connection={menuOf} departments={departments.data ?? []} onDone={() => setMenuFor(null)} />}
      </Modal>
      <Modal opened={!!shown} onClose={() => setQrFor(null)} title={shown ? `${t.connections.qr} · ${shown.name}` : t.connections.qr}>
        {shown && <QrPanel connection={shown} />}
      </Modal>
    </>
  );
}
