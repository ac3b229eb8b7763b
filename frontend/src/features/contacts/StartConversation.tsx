import { Alert, Button, Group, NativeSelect, Stack, Text, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useNavigate } from 'react-router';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import { useConnections, useDepartments } from '../../api/queries';
import type { Client } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { keys } from '../../realtime/cache';
import { ClientPhone } from './ClientPhone';

/** The open ticket a 409 names: the contact already has one on that connection. */
function openTicketOf(error: unknown): string | null {
  if (!(error instanceof ApiError) || error.status !== 409) return null;
  const detail = error.detail;
  if (detail && typeof detail === 'object' && 'ticket_id' in detail && typeof detail.ticket_id === 'string') {
    return detail.ticket_id;
  }
  return null;
}

/** An agent (or the owner) writes first to a contact on a WhatsApp connection: the message goes
 * out as theirs, and the ticket opens with them, where the client's answer arrives. */
export function StartConversation({ contact, onDone }: { contact: Client; onDone: () => void }) {
  const connections = useConnections();
  const departments = useDepartments();
  const navigate = useNavigate();
  const client = useQueryClient();
  const [connectionId, setConnectionId] = useState<string | null>(null);
  const [departmentId, setDepartmentId] = useState<string | null>(null);
  const [message, setMessage] = useState('');
  const usable = (connections.data ?? []).filter((c) => c.active);
  const connectionOptions = usable.map((c) => ({
    value: c.id,
    label: c.status === 'open' ? c.name : `${c.name} (${t.contacts.connectionUnavailable})`,
    disabled: c.status !== 'open',
  }));
  const departmentOptions = (departments.data ?? []).filter((d) => d.active).map((d) => ({ value: d.id, label: d.name }));
  const chosen = usable.find((c) => c.id === connectionId);
  // Only a department the select lists (an active one) is ever submitted: a connection whose
  // default department was deactivated leaves the choice to the user, as the select shows "—".
  const listed = (id: string | null | undefined) => (id && departmentOptions.some((d) => d.value === id) ? id : null);
  const department = listed(departmentId) ?? listed(chosen?.default_department_id);

  const start = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/api/v1/tickets', {
          body: { client_id: contact.id, department_id: department ?? '', message, connection_id: connectionId },
        }),
      ),
    onSuccess: (ticket) => {
      client.setQueryData(keys.ticket(ticket.id), ticket);
      void client.invalidateQueries({ queryKey: keys.tickets });
      notifications.show({ color: 'teal', message: t.contacts.started });
      onDone();
      navigate(`/atendimento/${ticket.id}`);
    },
  });
  const existing = openTicketOf(start.error);
  const noneOpen = connections.isSuccess && !usable.some((c) => c.status === 'open');

  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        if (connectionId && department && message.trim()) start.mutate();
      }}
    >
      <Stack>
        <Text size="sm">
          {contact.name} · <ClientPhone phone={contact.phone} />
        </Text>
        {noneOpen && (
          <Alert color="orange" role="status">
            {t.contacts.noConnections}
          </Alert>
        )}
        <NativeSelect
          label={t.contacts.connection}
          data={[{ value: '', label: '—' }, ...connectionOptions]}
          value={connectionId ?? ''}
          onChange={(e) => setConnectionId(e.currentTarget.value || null)}
          required
        />
        <NativeSelect
          label={t.contacts.department}
          data={[{ value: '', label: '—' }, ...departmentOptions]}
          value={department ?? ''}
          onChange={(e) => setDepartmentId(e.currentTarget.value || null)}
          required
        />
        <Textarea
          label={t.contacts.firstMessage}
          autosize
          minRows={3}
          maxLength={4096}
          value={message}
          onChange={(e) => setMessage(e.currentTarget.value)}
          required
        />
        {start.isError && (
          <Alert color="red" role="alert">
            {existing ? t.contacts.alreadyOpen : errorMessage(start.error)}
            {existing && (
              <Button variant="subtle" size="compact-sm" ml="xs" onClick={() => navigate(`/atendimento/${existing}`)}>
                {t.contacts.openExisting}
              </Button>
            )}
          </Alert>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            {t.app.cancel}
          </Button>
          <Button type="submit" loading={start.isPending} disabled={!connectionId || !department || !message.trim()}>
            {t.contacts.start}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
