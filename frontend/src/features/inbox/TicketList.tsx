import { Alert, Badge, Button, Center, Group, Loader, Stack, Text } from '@mantine/core';
import { Link, useLocation } from 'react-router';
import { errorMessage } from '../../api/client';
import { useTicketList, type TicketFilters } from '../../api/queries';
import type { Ticket, TicketStatus } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDuration, formatWhen } from '../../lib/format';
import { ClientPhone } from '../contacts/ClientPhone';
import { useDraftTickets } from '../ticket/drafts';
import { previewText } from '../ticket/media';
import { useMe } from '../../auth/session';
import { useNow } from '../../lib/useNow';

/** Issue 16: a ticket that arrived outside business hours, and one whose client has not yet
 * chosen a department in the connection's menu (it waits in the connection's default department). */
export function TicketMarkers({ ticket }: { ticket: Ticket }) {
  const pending = ticket.status === 'espera' && ticket.menu_pending;
  if (!ticket.out_of_hours && !pending) return null;
  return (
    <Group gap={4} wrap="wrap">
      {ticket.out_of_hours && (
        <Badge size="xs" variant="light" color="grape" data-testid="out-of-hours" title={t.inbox.outOfHoursHint}>
          {t.inbox.outOfHours}
        </Badge>
      )}
      {pending && (
        <Badge size="xs" variant="light" color="blue" data-testid="menu-pending" title={t.inbox.menuPendingHint}>
          {t.inbox.menuPending}
        </Badge>
      )}
    </Group>
  );
}

/** Who wrote the previewed message, when not the client: the helpdesk itself, or the agents. */
function previewPrefix(ticket: Ticket): string {
  if (ticket.last_message_automatic) return `${t.inbox.automaticPreview}: `;
  return ticket.last_message_direction === 'out' ? `${t.ticket.you}: ` : '';
}

function TicketRow({ ticket, selected, now, draft }: { ticket: Ticket; selected: boolean; now: Date; draft: boolean }) {
  const location = useLocation();
  const unread = ticket.unread_count ?? 0;
  return (
    <Link
      to={{ pathname: `/atendimento/${ticket.id}`, search: location.search }}
      className="ticket-row"
      aria-current={selected ? 'page' : undefined}
      data-testid="ticket-row"
      data-ticket-id={ticket.id}
      data-unread={unread > 0 ? unread : undefined}
    >
      <Group justify="space-between" wrap="nowrap" gap="xs">
        <Text fw={unread > 0 ? 800 : 600} size="sm" truncate>
          {ticket.client_name || <ClientPhone phone={ticket.client_phone} />}
        </Text>
        <Group gap={6} wrap="nowrap" style={{ flexShrink: 0 }}>
          <Text size="xs" c={unread > 0 ? 'teal.8' : 'dimmed'} fw={unread > 0 ? 700 : undefined}>
            {formatWhen(ticket.last_message_at)}
          </Text>
          {unread > 0 && (
            <Badge size="sm" circle color="teal" data-testid="unread-badge" aria-label={t.inbox.unread(unread)} title={t.inbox.unread(unread)}>
              {unread > 99 ? '99+' : unread}
            </Badge>
          )}
        </Group>
      </Group>
      <Group justify="space-between" wrap="nowrap" gap="xs">
        <Text size="xs" c={unread > 0 ? undefined : 'dimmed'} fw={unread > 0 ? 600 : undefined} truncate>
          {previewPrefix(ticket)}
          {previewText(ticket.last_message_preview) || t.inbox.noPreview}
        </Text>
        <Group gap={6} wrap="nowrap" style={{ flexShrink: 0 }}>
          {draft && (
            <Badge size="xs" variant="light" color="orange" data-testid="draft-marker" title={t.inbox.draftHint}>
              {t.inbox.draft}
            </Badge>
          )}
          <Text size="xs" c="dimmed">
            {t.inbox.ticketNumber(ticket.number)}
          </Text>
        </Group>
      </Group>
      {ticket.status === 'espera' && (
        <Group gap={6} wrap="wrap">
          {/* In espera since its last state change: opened, or sent back to the queue. */}
          <Text size="xs" c="orange.8" data-testid="waiting-for">
            {t.inbox.waiting(formatDuration(ticket.updated_at, now))}
          </Text>
          <TicketMarkers ticket={ticket} />
        </Group>
      )}
      {ticket.status !== 'espera' && ticket.out_of_hours && <TicketMarkers ticket={ticket} />}
      {ticket.status === 'finalizado' && typeof ticket.rating === 'number' && (
        <Text size="xs" c="yellow.8" data-testid="row-rating" aria-label={`${t.ticket.rating}: ${t.ticket.ratingValue(ticket.rating)}`}>
          ★ {ticket.rating}/5
        </Text>
      )}
      {ticket.status === 'atendendo' && ticket.agent_name && (
        <Text size="xs" c="teal.8">
          {t.inbox.assignedTo(ticket.agent_name)}
        </Text>
      )}
    </Link>
  );
}

export function TicketList({
  status,
  q,
  filters = {},
  selectedId,
}: {
  status: TicketStatus;
  q: string;
  filters?: TicketFilters;
  selectedId?: string;
}) {
  const query = useTicketList(status, q, filters);
  const now = useNow();
  const me = useMe();
  const drafts = useDraftTickets(me.id);
  if (query.isPending) {
    return (
      <Center p="md">
        <Loader size="sm" aria-label={t.app.loading} />
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
  const tickets = query.data.pages.flatMap((page) => page.items);
  if (tickets.length === 0) {
    return (
      <Text c="dimmed" size="sm" p="sm">
        {q || Object.keys(filters).length ? t.inbox.emptySearch : t.inbox.empty}
      </Text>
    );
  }
  return (
    <Stack gap={2} component="ul" style={{ listStyle: 'none', margin: 0, padding: 0 }} data-testid={`list-${status}`}>
      {tickets.map((ticket) => (
        <li key={ticket.id}>
          <TicketRow ticket={ticket} selected={ticket.id === selectedId} now={now} draft={drafts.has(ticket.id)} />
        </li>
      ))}
      {query.hasNextPage && (
        <li>
          <Button variant="subtle" fullWidth onClick={() => query.fetchNextPage()} loading={query.isFetchingNextPage}>
            {t.app.loadMore}
          </Button>
        </li>
      )}
    </Stack>
  );
}
