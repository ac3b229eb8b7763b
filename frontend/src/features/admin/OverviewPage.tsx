import { Badge, Group, Table, Text } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { api, unwrap } from '../../api/client';
import type { ResellerOverview } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDate } from '../../lib/format';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';

const STATUS_COLOR = { open: 'teal', connecting: 'yellow', close: 'red' } as const;

function Connections({ row }: { row: ResellerOverview }) {
  if (!row.connections.length) return <Text c="dimmed" size="sm">{t.overview.noConnections}</Text>;
  return (
    <Group gap={4}>
      {row.connections.map((c) => (
        <Badge
          key={c.id}
          color={c.active ? STATUS_COLOR[c.status] : 'gray'}
          variant="light"
          title={c.last_error ?? undefined}
        >
          {c.name}: {t.overview.status[c.status]}
          {!c.active && ` (${t.overview.inactive})`}
        </Badge>
      ))}
    </Group>
  );
}

/** The platform admin's view: every reseller's tickets and messages, and its numbers' status. */
export function OverviewPage() {
  const overview = useQuery({
    queryKey: ['admin', 'overview'],
    queryFn: () => unwrap(api.GET('/api/v1/admin/overview')),
  });
  const data = overview.data;
  return (
    <>
      <PageHeader title={t.overview.title}>
        {data && <Text size="sm" c="dimmed">{t.overview.period(formatDate(`${data.period_from}T12:00:00`), formatDate(`${data.period_to}T12:00:00`))}</Text>}
      </PageHeader>
      <QueryState query={overview} />
      {data && (
        <Table.ScrollContainer minWidth={720}>
          <Table striped aria-label={t.overview.title}>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.overview.reseller}</Table.Th>
                <Table.Th>{t.overview.tickets}</Table.Th>
                <Table.Th>{t.overview.messages}</Table.Th>
                <Table.Th>{t.overview.connections}</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {data.items.map((row) => (
                <Table.Tr key={row.id}>
                  <Table.Td>
                    {row.name}
                    {!row.active && (
                      <Badge ml="xs" color="gray" size="sm">
                        {t.app.inactive}
                      </Badge>
                    )}
                  </Table.Td>
                  <Table.Td>
                    {row.tickets.espera} · {row.tickets.atendendo} · {row.tickets.finalizado}
                  </Table.Td>
                  <Table.Td>
                    {row.messages_in} · {row.messages_out}
                  </Table.Td>
                  <Table.Td>
                    <Connections row={row} />
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </>
  );
}
