import { Alert, Badge, Button, Center, Group, Loader, Paper, Stack, Text, Title } from '@mantine/core';
import { useIsFetching, useQueryClient } from '@tanstack/react-query';
import { Link, useLocation, useParams } from 'react-router';
import { errorMessage } from '../../api/client';
import { useTicket } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatWhen } from '../../lib/format';
import { keys } from '../../realtime/cache';
import { ClientPhone } from '../contacts/ClientPhone';
import { TicketMarkers } from '../inbox/TicketList';
import { ReadOnlyThread } from '../ticket/MessageMedia';
import { MessageThread } from '../ticket/MessageThread';
import { Rating } from '../ticket/TicketView';
import { REFRESH_MS, STATUS_COLOR, useCompanies, useDepartmentName, useRereadWhileVisible } from './conversations';

// Not the agents' TicketView: that one marks the thread read (POST /tickets/{id}/read), clears the
// user's alerts, edits tags and holds the composer, the schedules and every ticket action. Only
// what reads is reused here: the thread (its bubbles, media and notes, and the events between them)
// and the header's markers.

/** One conversation of any company, as the platform admin sees it: read-only. */
export function ConversationPage() {
  const { ticketId = '' } = useParams();
  const location = useLocation();
  const query = useTicket(ticketId);
  useRereadWhileVisible(keys.ticket(ticketId));
  if (query.isPending) {
    return (
      <Center p="xl">
        <Loader aria-label={t.app.loading} />
      </Center>
    );
  }
  if (query.isError) {
    return (
      <Stack align="flex-start">
        <BackLink search={location.search} />
        <Alert color="red" role="alert" w="100%">
          {errorMessage(query.error)}
        </Alert>
      </Stack>
    );
  }
  return <Conversation key={ticketId} ticket={query.data} />;
}

function BackLink({ search }: { search: string }) {
  return (
    <Button component={Link} to={{ pathname: '/admin/conversas', search }} variant="subtle" size="compact-sm">
      ← {t.adminConversations.back}
    </Button>
  );
}

function Conversation({ ticket }: { ticket: Ticket }) {
  const client = useQueryClient();
  const location = useLocation();
  // Opened from a link without the list's choices: back to this ticket's company at least.
  const search = location.search || `?${new URLSearchParams({ empresa: ticket.reseller_id }).toString()}`;
  const department = useDepartmentName(ticket.department_id);
  const company = useCompanies().data?.find((r) => r.id === ticket.reseller_id);
  const refreshing = useIsFetching({ queryKey: keys.ticket(ticket.id) }) > 0;
  const linkTo = (id: string) => ({ pathname: `/admin/conversas/${id}`, search });

  return (
    <Paper withBorder className="admin-conversation">
      <Stack gap={4} p="sm" style={{ borderBottom: '1px solid var(--mantine-color-gray-3)' }}>
        <Group justify="space-between" wrap="wrap" gap="xs">
          <Group gap="xs" wrap="nowrap" style={{ minWidth: 0 }}>
            <BackLink search={search} />
            <Title order={2} size="h4" style={{ minWidth: 0 }} lineClamp={1}>
              {ticket.client_name || <ClientPhone phone={ticket.client_phone} />}
            </Title>
            <Badge color={STATUS_COLOR[ticket.status]} data-testid="ticket-status" style={{ flexShrink: 0 }}>
              {t.status[ticket.status]}
            </Badge>
            <Badge color="gray" variant="outline" data-testid="read-only" title={t.adminConversations.readOnlyHint} style={{ flexShrink: 0 }}>
              {t.adminConversations.readOnly}
            </Badge>
            <TicketMarkers ticket={ticket} />
          </Group>
          <Button
            size="compact-sm"
            variant="default"
            title={t.adminConversations.refreshHint(REFRESH_MS / 1000)}
            loading={refreshing}
            onClick={() => void client.invalidateQueries({ queryKey: keys.ticket(ticket.id) })}
          >
            {t.adminConversations.refresh}
          </Button>
        </Group>
        <Text size="xs" c="dimmed">
          {t.inbox.ticketNumber(ticket.number)} · <ClientPhone phone={ticket.client_phone} /> · {t.adminConversations.company}:{' '}
          {company?.name ?? '—'} · {t.ticket.department}: {department.data ?? '—'} · {t.ticket.agent}:{' '}
          {ticket.agent_name ?? t.ticket.noAgent} · {t.ticket.opened} {formatWhen(ticket.created_at)}
        </Text>
        {ticket.status === 'finalizado' && typeof ticket.rating === 'number' && <Rating value={ticket.rating} />}
        {ticket.tags.length > 0 && (
          <Group gap={4} aria-label={t.tags.label} role="group">
            {ticket.tags.map((tag) => (
              <Badge key={tag} size="sm" variant="light" color="gray">
                {tag}
              </Badge>
            ))}
          </Group>
        )}
        {ticket.reopened_from_ticket_id && (
          <LinkBanner text={t.ticket.reopenedFrom} label={t.ticket.openPrevious} to={linkTo(ticket.reopened_from_ticket_id)} />
        )}
        {ticket.reopened_as_ticket_id && (
          <LinkBanner text={t.ticket.reopenedAs} label={t.ticket.openNext} to={linkTo(ticket.reopened_as_ticket_id)} />
        )}
      </Stack>
      {/* No reply, reaction, edit or deletion handlers: the bubbles offer none of them. */}
      <ReadOnlyThread.Provider value>
        <MessageThread key={ticket.id} ticketId={ticket.id} />
      </ReadOnlyThread.Provider>
      <Text size="sm" c="dimmed" p="sm" data-testid="read-only-hint" style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }}>
        {t.adminConversations.readOnlyHint}
      </Text>
    </Paper>
  );
}

function LinkBanner({ text, label, to }: { text: string; label: string; to: { pathname: string; search: string } }) {
  return (
    <Alert color="blue" p="xs">
      <Group gap="xs" justify="space-between">
        <Text size="sm">{text}</Text>
        <Button component={Link} to={to} size="compact-sm" variant="light">
          {label}
        </Button>
      </Group>
    </Alert>
  );
}
