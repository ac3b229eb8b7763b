import { Anchor, Badge, Button, Group, Paper, Select, Table, Tabs, Text, TextInput } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { Link, useLocation, useNavigate } from 'react-router';
import { STATUSES, isStatus, type Ticket, type TicketStatus } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { useUrlParams } from '../../lib/useUrlParams';
import { formatWhen } from '../../lib/format';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
import { ClientPhone } from '../contacts/ClientPhone';
import { previewText } from '../ticket/media';
import { REFRESH_MS, STATUS_COLOR, useCompanies, useCompanyTickets } from './conversations';

/** Who wrote the previewed message, when not the client: the helpdesk itself, or the staff (the
 * inbox says "Você" there; to the admin it is the company's team). */
function previewPrefix(ticket: Ticket): string {
  if (ticket.last_message_automatic) return `${t.inbox.automaticPreview}: `;
  return ticket.last_message_direction === 'out' ? `${t.adminConversations.staffPreview}: ` : '';
}

function TicketRows({ resellerId, status, q }: { resellerId: string; status: TicketStatus; q: string }) {
  const query = useCompanyTickets(resellerId, status, q);
  const navigate = useNavigate();
  const location = useLocation();
  const tickets = query.data?.pages.flatMap((page) => page.items) ?? [];
  const open = (ticket: Ticket) => ({ pathname: `/admin/conversas/${ticket.id}`, search: location.search });
  return (
    <>
      <Group justify="flex-end" gap="xs" mb="xs">
        <Text size="xs" c="dimmed">
          {t.adminConversations.refreshHint(REFRESH_MS / 1000)}
        </Text>
        <Button size="compact-sm" variant="default" onClick={() => void query.refetch()} loading={query.isRefetching} disabled={query.isPending}>
          {t.adminConversations.refresh}
        </Button>
      </Group>
      <QueryState query={query} />
      {query.isSuccess && tickets.length === 0 && (
        <Text c="dimmed" size="sm">
          {q ? t.adminConversations.emptySearch : t.adminConversations.empty}
        </Text>
      )}
      {tickets.length > 0 && (
        <Table.ScrollContainer minWidth={860}>
          <Table striped highlightOnHover aria-label={t.adminConversations.title} data-testid={`list-${status}`}>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.adminConversations.number}</Table.Th>
                <Table.Th>{t.adminConversations.client}</Table.Th>
                <Table.Th>{t.adminConversations.phone}</Table.Th>
                <Table.Th>{t.adminConversations.status}</Table.Th>
                <Table.Th>{t.adminConversations.agent}</Table.Th>
                <Table.Th>{t.adminConversations.lastMessage}</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {tickets.map((ticket) => (
                // The whole row opens the conversation; the client's name is the link keyboards reach.
                <Table.Tr key={ticket.id} data-testid="ticket-row" onClick={() => navigate(open(ticket))} style={{ cursor: 'pointer' }}>
                  <Table.Td>{t.inbox.ticketNumber(ticket.number)}</Table.Td>
                  <Table.Td>
                    <Anchor component={Link} to={open(ticket)} size="sm" fw={600} onClick={(e) => e.stopPropagation()}>
                      {ticket.client_name || <ClientPhone phone={ticket.client_phone} />}
                    </Anchor>
                  </Table.Td>
                  <Table.Td>
                    <ClientPhone phone={ticket.client_phone} />
                  </Table.Td>
                  <Table.Td>
                    <Badge color={STATUS_COLOR[ticket.status]} variant="light">
                      {t.status[ticket.status]}
                    </Badge>
                  </Table.Td>
                  <Table.Td>{ticket.agent_name ?? '—'}</Table.Td>
                  <Table.Td maw={360}>
                    <Text size="xs" c="dimmed">
                      <time dateTime={ticket.last_message_at}>{formatWhen(ticket.last_message_at)}</time>
                    </Text>
                    <Text size="sm" truncate>
                      {previewPrefix(ticket)}
                      {previewText(ticket.last_message_preview) || t.inbox.noPreview}
                    </Text>
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
    </>
  );
}

/** The platform admin's window on any company's conversations, read-only: a company, a status,
 * a search, the tickets; each opens in ConversationPage. The choices live in the URL (empresa, aba,
 * busca, as the inbox's), so the way back from a conversation and a reload keep them. */
export function ConversationsPage() {
  const [params, update] = useUrlParams();
  const companies = useCompanies();
  const companyId = params.get('empresa');
  const aba = params.get('aba');
  const tab: TicketStatus = isStatus(aba) ? aba : 'espera';
  const search = params.get('busca') ?? '';
  const [debounced] = useDebouncedValue(search.trim(), 300);


  return (
    <>
      <PageHeader title={t.adminConversations.title} />
      <Group align="flex-end" wrap="wrap" mb="sm">
        <Select
          label={t.adminConversations.company}
          data={(companies.data ?? []).map((r) => ({ value: r.id, label: r.active ? r.name : `${r.name} (${t.app.inactive})` }))}
          value={companyId}
          onChange={(v) => update({ empresa: v })}
          searchable
          nothingFoundMessage={t.adminConversations.noCompanyFound}
          w={280}
        />
        <TextInput
          type="search"
          label={t.adminConversations.searchLabel}
          placeholder={t.adminConversations.search}
          value={search}
          // The API takes up to 64 characters.
          maxLength={64}
          onChange={(e) => update({ busca: e.currentTarget.value })}
          disabled={!companyId}
          style={{ flex: 1, minWidth: 240 }}
        />
      </Group>
      <QueryState query={companies} />
      {!companyId ? (
        <Text c="dimmed">{t.adminConversations.pickCompany}</Text>
      ) : (
        <Paper withBorder p="xs">
          <Tabs value={tab} onChange={(v) => update({ aba: v ?? 'espera' })} keepMounted={false}>
            <Tabs.List aria-label={t.adminConversations.tabsLabel}>
              {STATUSES.map((status) => (
                <Tabs.Tab key={status} value={status} data-testid={`tab-${status}`}>
                  {t.status[status]}
                </Tabs.Tab>
              ))}
            </Tabs.List>
            {STATUSES.map((status) => (
              <Tabs.Panel key={status} value={status} pt="xs">
                <TicketRows resellerId={companyId} status={status} q={debounced} />
              </Tabs.Panel>
            ))}
          </Tabs>
        </Paper>
      )}
    </>
  );
}
