import { Alert, Badge, Button, Center, Group, Loader, Paper, Stack, Text, Title } from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useLocation, useNavigate } from 'react-router';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import { useDepartments, useMarkRead, useTicket, useTicketUpdated } from '../../api/queries';
import type { Message, Ticket } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { formatWhen } from '../../lib/format';
import { applyMessage, keys } from '../../realtime/cache';
import { useAlerts } from '../alerts/AlertsProvider';
import { ClientPhone } from '../contacts/ClientPhone';
import { allowedActions, assumeConflictMessage, conflictTicket } from './actions';
import { TicketMarkers } from '../inbox/TicketList';
import { ClientHistory } from './ClientHistory';
import { Composer } from './Composer';
import { EditMessageModal, type Editing } from './EditMessageModal';
import { TicketTags } from './TicketTags';
import { MessageThread, splitSignature } from './MessageThread';
import { ScheduledMessages } from './ScheduledMessages';
import { TransferModal } from './TransferModal';

const READ_RETRY_MS = 5_000; // a failed read's pause before the thread asks again

const STATUS_COLOR: Record<string, string> = { espera: 'yellow', atendendo: 'teal', finalizado: 'gray' };

/** The client's answer to the satisfaction survey (issue 16), on the finalized ticket. */
export function Rating({ value }: { value: number }) {
  const stars = Math.max(0, Math.min(5, Math.round(value)));
  return (
    <Group gap={6} data-testid="ticket-rating">
      <Text size="xs" c="dimmed">
        {t.ticket.rating}:
      </Text>
      <Text size="sm" c="yellow.7" aria-hidden>
        {'★'.repeat(stars)}
        {'☆'.repeat(5 - stars)}
      </Text>
      <Text size="xs" fw={600}>
        {t.ticket.ratingValue(value)}
      </Text>
    </Group>
  );
}

export function TicketView({ ticketId }: { ticketId: string }) {
  const query = useTicket(ticketId);
  const location = useLocation();
  if (query.isPending) {
    return (
      <Center p="xl">
        <Loader aria-label={t.app.loading} />
      </Center>
    );
  }
  if (query.isError) {
    return (
      <Alert color="red" role="alert">
        {errorMessage(query.error)}
      </Alert>
    );
  }
  return <LoadedTicket ticket={query.data} backTo={{ pathname: '/atendimento', search: location.search }} />;
}

function LoadedTicket({ ticket, backTo }: { ticket: Ticket; backTo: { pathname: string; search: string } }) {
  const me = useMe();
  const client = useQueryClient();
  const updated = useTicketUpdated();
  const departments = useDepartments();
  const [transferOpen, setTransferOpen] = useState(false);
  // The message the agent chose to answer quoting it ("Responder" on a bubble).
  const [quoting, setQuoting] = useState<Message | null>(null);
  // A failed reply's text, chosen with "Escrever de novo", back in the composer.
  const [rewrite, setRewrite] = useState<{ text: string } | null>(null);
  // The reply being corrected ("Editar" on a bubble of one's own).
  const [editing, setEditing] = useState<Editing | null>(null);
  const react = useMutation({
    mutationFn: ({ message, emoji }: { message: Message; emoji: string }) =>
      unwrap(
        api.POST('/api/v1/tickets/{ticket_id}/messages/{message_id}/reaction', {
          params: { path: { ticket_id: ticket.id, message_id: message.id } },
          body: { emoji },
        }),
      ),
    // Shown at once; the websocket's copy of it is applied by id (realtime/cache.ts).
    onSuccess: (reaction) => applyMessage(client, reaction),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const revoke = useMutation({
    mutationFn: (message: Message) =>
      unwrap(api.POST('/api/v1/tickets/{ticket_id}/messages/{message_id}/revoke', { params: { path: { ticket_id: ticket.id, message_id: message.id } } })),
    onSuccess: (record) => applyMessage(client, record),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const confirmRevoke = (message: Message) =>
    modals.openConfirmModal({
      title: t.ticket.revokeTitle,
      children: <Text size="sm">{t.ticket.revokeBody}</Text>,
      labels: { confirm: t.ticket.revokeConfirm, cancel: t.app.cancel },
      confirmProps: { color: 'red', 'data-testid': 'confirm-revoke' } as Record<string, string>,
      onConfirm: () => revoke.mutate(message),
    });
  const can = allowedActions(ticket, me);
  const department = departments.data?.find((d) => d.id === ticket.department_id);
  const markRead = useMarkRead(ticket.id);
  const { clearTicket } = useAlerts();
  const unread = ticket.unread_count ?? 0;
  // The thread is on screen: its client messages are read, on this device and (through the
  // server's ticket.read) on the user's others; so are the alerts about it.
  useEffect(() => clearTicket(ticket.id), [ticket.id, clearTicket]);
  const { mutate: read, isPending: reading } = markRead;
  // A read that failed (the store away) is tried again after a pause, not at once: every open
  // thread asking again on each answer would only add to the outage.
  const [readPaused, setReadPaused] = useState(false);
  useEffect(() => {
    if (unread > 0 && !reading && !readPaused) read(undefined, { onError: () => setReadPaused(true) });
  }, [ticket.id, unread, reading, read, readPaused]);
  useEffect(() => {
    if (!readPaused) return;
    const timer = window.setTimeout(() => setReadPaused(false), READ_RETRY_MS);
    return () => window.clearTimeout(timer);
  }, [readPaused]);

  const onConflict = (error: unknown, assume: boolean) => {
    const current = conflictTicket(error);
    if (current) client.setQueryData(keys.ticket(current.id), current);
    void client.invalidateQueries({ queryKey: keys.tickets });
    void client.invalidateQueries({ queryKey: keys.ticket(ticket.id) });
    notifications.show({ color: 'orange', message: assume ? assumeConflictMessage(error) : errorMessage(error) });
  };

  const assume = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/api/v1/tickets/{ticket_id}/assume', { params: { path: { ticket_id: ticket.id } } })),
    onSuccess: (data) => {
      updated(data);
      notifications.show({ color: 'teal', message: t.ticket.assumed });
    },
    onError: (error) => {
      // Ours already: the repeat of a click whose answer was lost (the store's hiccup). The
      // ticket is the agent's, as the lost answer would have said.
      const current = conflictTicket(error);
      if (current && current.status === 'atendendo' && current.agent_id === me.id) {
        updated(current);
        // The conflict's copy lacks the reader's own fields (unread count, reply blocked): read it.
        void client.invalidateQueries({ queryKey: keys.ticket(ticket.id), exact: true });
        notifications.show({ color: 'teal', message: t.ticket.assumed });
      } else onConflict(error, true);
    },
  });

  const finalize = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/api/v1/tickets/{ticket_id}/finalize', { params: { path: { ticket_id: ticket.id } } })),
    onSuccess: (data) => {
      updated(data);
      notifications.show({ color: 'teal', message: t.ticket.finalized });
    },
    onError: (error) => onConflict(error, false),
  });

  const navigate = useNavigate();
  const reopen = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/api/v1/tickets/{ticket_id}/reopen', { params: { path: { ticket_id: ticket.id } } })),
    onSuccess: (data) => {
      updated(data);
      void client.invalidateQueries({ queryKey: keys.ticket(ticket.id) });
      notifications.show({ color: 'teal', message: t.ticket.reopened });
      navigate({ pathname: `/atendimento/${data.id}`, search: backTo.search });
    },
    onError: (error) => {
      // Another Reabrir, or the client writing in, opened the client's ticket first: go there.
      const open = openTicketOf(error);
      void client.invalidateQueries({ queryKey: keys.ticket(ticket.id) });
      notifications.show({ color: 'orange', message: errorMessage(error) });
      if (open) navigate({ pathname: `/atendimento/${open}`, search: backTo.search });
    },
  });

  const confirmFinalize = () =>
    modals.openConfirmModal({
      title: t.ticket.finalizeTitle,
      children: <Text size="sm">{t.ticket.finalizeConfirm}</Text>,
      labels: { confirm: t.ticket.finalize, cancel: t.app.cancel },
      confirmProps: { color: 'red', 'data-testid': 'confirm-finalize' } as Record<string, string>,
      onConfirm: () => finalize.mutate(),
    });

  return (
    <Paper withBorder h="100%" style={{ display: 'flex', flexDirection: 'column', minHeight: 0 }}>
      <Stack gap={4} p="sm" style={{ borderBottom: '1px solid var(--mantine-color-gray-3)' }}>
        <Group justify="space-between" wrap="wrap" gap="xs">
          <Group gap="xs" wrap="nowrap" style={{ minWidth: 0 }}>
            <Button component={Link} to={backTo} variant="subtle" size="compact-sm" hiddenFrom="sm" aria-label={t.ticket.back} title={t.ticket.back}>
              ←
            </Button>
            <Title order={2} size="h4" style={{ minWidth: 0 }} lineClamp={1}>
              {ticket.client_name || <ClientPhone phone={ticket.client_phone} />}
            </Title>
            <Badge color={STATUS_COLOR[ticket.status]} data-testid="ticket-status" style={{ flexShrink: 0 }}>
              {t.status[ticket.status]}
            </Badge>
            <TicketMarkers ticket={ticket} />
          </Group>
          <Group gap="xs">
            {me.role !== 'admin' && <ClientHistory key={ticket.id} ticket={ticket} />}
            {can.assume && (
              <Button onClick={() => assume.mutate()} loading={assume.isPending}>
                {t.ticket.assume}
              </Button>
            )}
            {can.transfer && (
              <Button variant="default" onClick={() => setTransferOpen(true)}>
                {t.ticket.transfer}
              </Button>
            )}
            {can.reopen && (
              <Button variant="light" onClick={() => reopen.mutate()} loading={reopen.isPending}>
                {t.ticket.reopen}
              </Button>
            )}
            {can.finalize && (
              <Button variant="light" color="red" onClick={confirmFinalize} loading={finalize.isPending}>
                {t.ticket.finalize}
              </Button>
            )}
          </Group>
        </Group>
        <Text size="xs" c="dimmed">
          {t.inbox.ticketNumber(ticket.number)} · <ClientPhone phone={ticket.client_phone} /> · {t.ticket.department}:{' '}
          {department?.name ?? '—'} · {t.ticket.agent}: {ticket.agent_name ?? t.ticket.noAgent} · {t.ticket.opened}{' '}
          {formatWhen(ticket.created_at)}
        </Text>
        {ticket.status === 'finalizado' && typeof ticket.rating === 'number' && <Rating value={ticket.rating} />}
        <TicketTags ticket={ticket} />
        {ticket.reopened_from_ticket_id && (
          <LinkBanner testId="reopened-from" text={t.ticket.reopenedFrom} label={t.ticket.openPrevious} to={{ pathname: `/atendimento/${ticket.reopened_from_ticket_id}`, search: backTo.search }} />
        )}
        {ticket.reopened_as_ticket_id && (
          <LinkBanner testId="reopened-as" text={t.ticket.reopenedAs} label={t.ticket.openNext} to={{ pathname: `/atendimento/${ticket.reopened_as_ticket_id}`, search: backTo.search }} />
        )}
      </Stack>
      <MessageThread
        key={ticket.id}
        ticketId={ticket.id}
        onReply={can.reply ? setQuoting : undefined}
        onRewrite={can.reply ? (failed) => setRewrite({ text: splitSignature(failed.body).text }) : undefined}
        onReact={can.reply ? (message, emoji) => react.mutate({ message, emoji }) : undefined}
        onRevoke={can.reply ? confirmRevoke : undefined}
        onEdit={can.reply ? (message, current) => setEditing({ message, text: splitSignature(current).text }) : undefined}
      />
      <ScheduledMessages key={`scheduled-${ticket.id}`} ticket={ticket} />
      <Composer
        key={`composer-${ticket.id}`}
        ticket={ticket}
        canReply={can.reply}
        canNote={can.note}
        quoting={can.reply ? quoting : null}
        onQuoteDone={() => setQuoting(null)}
        rewrite={can.reply ? rewrite : null}
      />
      <EditMessageModal ticketId={ticket.id} editing={can.reply ? editing : null} onClose={() => setEditing(null)} />
      <TransferModal ticket={ticket} opened={transferOpen} onClose={() => setTransferOpen(false)} onConflict={(e) => onConflict(e, false)} />
    </Paper>
  );
}

function LinkBanner({ testId, text, label, to }: { testId: string; text: string; label: string; to: { pathname: string; search: string } }) {
  return (
    <Alert color="blue" p="xs" data-testid={testId}>
      <Group gap="xs" justify="space-between">
        <Text size="sm">{text}</Text>
        <Button component={Link} to={to} size="compact-sm" variant="light">
          {label}
        </Button>
      </Group>
    </Alert>
  );
}

/** From a 409 of Reabrir: the client's ticket that is open now, when the answer names it. */
function openTicketOf(error: unknown): string | null {
  if (!(error instanceof ApiError) || error.status !== 409) return null;
  const detail = error.detail;
  if (detail && typeof detail === 'object' && 'ticket_id' in detail && typeof detail.ticket_id === 'string') {
    return detail.ticket_id;
  }
  return null;
}
