import { Badge, Box, Button, Collapse, Group, Paper, Tabs, Text, TextInput } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { useState } from 'react';
import { useParams } from 'react-router';
import { useTicketCounts, type TicketFilters } from '../../api/queries';
import { STATUSES, isStatus, type TicketStatus } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { useUrlParams } from '../../lib/useUrlParams';
import { TicketView } from '../ticket/TicketView';
import { DisconnectedConnections } from './DisconnectedConnections';
import { TicketList } from './TicketList';
import { FILTER_PARAMS, InboxFilters, filtersFrom } from './InboxFilters';
import { UnstaffedQueues } from './UnstaffedQueues';

export function InboxPage() {
  const { ticketId } = useParams();
  const [params, update] = useUrlParams();
  const aba = params.get('aba');
  const tab: TicketStatus = isStatus(aba) ? aba : 'espera';
  const search = params.get('busca') ?? '';
  const [debounced] = useDebouncedValue(search.trim(), 300);
  const filters = filtersFrom(params);
  // The badges follow the Departamento filter (the counts endpoint takes it); the other filters
  // and the search have no counterpart there, so with them the badges stay the department's totals.
  const counts = useTicketCounts(filters.department_id);
  const filterCount = Object.keys(filters).length;
  // Narrowed past the department: the badges say they are the totals, not the list below.
  const narrowed = debounced !== '' || Object.keys(filters).some((field) => field !== 'department_id');
  const [showFilters, setShowFilters] = useState(filterCount > 0);

  function setFilters(next: TicketFilters) {
    update(Object.fromEntries(Object.entries(FILTER_PARAMS).map(([field, param]) => [param, next[field as keyof TicketFilters] ?? ''])));
  }

  /** The owner's "Ver conversas" on a queue nobody serves: its espera tickets, nothing hiding them
   * (the other filters and the search cleared), the Departamento filter shown holding it. */
  function showQueue(departmentId: string) {
    setFilters({ department_id: departmentId });
    update({ aba: 'espera', busca: '' });
    setShowFilters(true);
  }


  return (
    <div className="inbox-layout" data-has-ticket={ticketId ? 'true' : 'false'}>
      <Paper withBorder p="xs" className="inbox-list">
        <DisconnectedConnections />
        <UnstaffedQueues onShow={showQueue} />
        <Group gap="xs" wrap="nowrap" mb="xs">
          <TextInput
            type="search"
            aria-label={t.inbox.searchLabel}
            placeholder={t.inbox.search}
            value={search}
            onChange={(e) => update({ busca: e.currentTarget.value })}
            style={{ flex: 1 }}
          />
          <Button
            variant={filterCount ? 'light' : 'default'}
            onClick={() => setShowFilters((v) => !v)}
            aria-expanded={showFilters}
            rightSection={filterCount ? <Badge size="xs">{filterCount}</Badge> : undefined}
          >
            {t.inbox.filters}
          </Button>
        </Group>
        <Collapse in={showFilters} mb="xs">
          {showFilters && <InboxFilters value={filters} onChange={setFilters} />}
        </Collapse>
        <Tabs
          value={tab}
          onChange={(v) => update({ aba: v ?? 'espera' })}
          keepMounted={false}
          className="inbox-tabs"
          styles={{ tab: { paddingInline: 8 }, list: { flexWrap: 'nowrap' } }}
        >
          <Tabs.List grow aria-label={t.inbox.tabsLabel}>
            {STATUSES.map((status) => (
              <Tabs.Tab
                key={status}
                value={status}
                data-testid={`tab-${status}`}
                rightSection={
                  <Badge
                    size="sm"
                    variant={narrowed ? 'outline' : status === tab ? 'filled' : 'light'}
                    color={narrowed ? 'gray' : undefined}
                    title={narrowed ? t.inbox.totalsNotFiltered : undefined}
                    data-testid={`count-${status}`}
                    aria-label={`${counts.data?.[status] ?? 0}`}
                  >
                    {counts.data ? counts.data[status] : '…'}
                  </Badge>
                }
              >
                {t.status[status]}
              </Tabs.Tab>
            ))}
          </Tabs.List>
          {STATUSES.map((status) => (
            <Tabs.Panel key={status} value={status} className="inbox-panel" pt="xs">
              <TicketList status={status} q={debounced} filters={filters} selectedId={ticketId} />
            </Tabs.Panel>
          ))}
        </Tabs>
      </Paper>
      <Box className="inbox-detail">
        {ticketId ? (
          <TicketView key={ticketId} ticketId={ticketId} />
        ) : (
          <Paper withBorder p="xl" h="100%">
            <Text c="dimmed">{t.inbox.selectTicket}</Text>
          </Paper>
        )}
      </Box>
    </div>
  );
}
