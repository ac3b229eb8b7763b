import { Alert, Group, Paper, Select, SimpleGrid, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { api, unwrap } from '../../api/client';
import { useAgents, useConnections, useDepartments } from '../../api/queries';
import type { AgentReport, Reseller, ReportSummary } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
import { ExportPanel } from './ExportPanel';
import { formatSeconds, lastDays, shortDay } from './format';

type Filters = { department_id: string | null; agent_id: string | null; connection_id: string | null };
type Quantiles = { median?: number | null; p90?: number | null };

function Card({ label, value, hint }: { label: string; value: string; hint?: string }) {
  return (
    <Paper withBorder p="sm" role="group" aria-label={label}>
      <Text size="xs" c="dimmed">
        {label}
      </Text>
      <Text fw={700} size="xl">
        {value}
      </Text>
      {hint && (
        <Text size="xs" c="dimmed">
          {hint}
        </Text>
      )}
    </Paper>
  );
}

function quantiles(q: Quantiles | undefined): { value: string; hint: string } {
  return { value: formatSeconds(q?.median), hint: t.reports.medianP90(formatSeconds(q?.median), formatSeconds(q?.p90)) };
}

type Satisfaction = NonNullable<ReportSummary['satisfaction']>;
const GRADES = ['1', '2', '3', '4', '5'] as const;

/** The clients' ratings (1-5) given in the period: average (one decimal, pt-BR) and how many. */
function satisfaction(s: Satisfaction | undefined): { value: string; hint: string } {
  const count = s?.count ?? 0;
  if (!count || s?.average === undefined || s.average === null) return { value: t.reports.none, hint: t.reports.noRatings };
  return { value: s.average.toLocaleString('pt-BR', { maximumFractionDigits: 1 }), hint: t.reports.satisfactionHint(count) };
}

export function SummaryCards({ summary }: { summary: ReportSummary }) {
  const first = quantiles(summary.first_response_seconds);
  const resolution = quantiles(summary.resolution_seconds);
  const rating = satisfaction(summary.satisfaction);
  const n = (v: number) => v.toLocaleString('pt-BR');
  return (
    <SimpleGrid cols={{ base: 2, sm: 3, lg: 4 }}>
      <Card label={t.reports.opened} value={n(summary.opened)} />
      <Card label={t.reports.assumed} value={n(summary.assumed)} />
      <Card label={t.reports.transferred} value={n(summary.transferred)} />
      <Card label={t.reports.finalized} value={n(summary.finalized)} />
      <Card label={t.reports.waitingNow} value={n(summary.waiting_now)} />
      <Card label={t.reports.oldestWait} value={formatSeconds(summary.oldest_wait_seconds)} />
      <Card label={t.reports.firstResponse} value={first.value} hint={first.hint} />
      <Card label={t.reports.resolution} value={resolution.value} hint={resolution.hint} />
      <Card label={t.reports.messagesIn} value={n(summary.messages_in)} />
      <Card label={t.reports.messagesOut} value={n(summary.messages_out)} />
      <Card label={t.reports.satisfaction} value={rating.value} hint={rating.hint} />
    </SimpleGrid>
  );
}

/** How many ratings of each grade: a bar chart, and the same counts as a list (readable without
 * the chart). */
function RatingsChart({ satisfaction: s }: { satisfaction: Satisfaction | undefined }) {
  const grades = GRADES.map((grade) => ({ grade, label: t.reports.grade(grade), count: s?.distribution?.[grade] ?? 0 }));
  return (
    <Paper withBorder p="sm">
      <Title order={3} size="h5" mb="xs">
        {t.reports.ratingsChart}
      </Title>
      <ResponsiveContainer width="100%" height={180}>
        <BarChart data={grades}>
          <CartesianGrid strokeDasharray="3 3" />
          <XAxis dataKey="grade" />
          <YAxis allowDecimals={false} />
          <Tooltip />
          <Bar dataKey="count" name={t.reports.ratings} fill="#fab005" />
        </BarChart>
      </ResponsiveContainer>
      <Group gap="md" component="ul" aria-label={t.reports.ratingsChart} style={{ listStyle: 'none', padding: 0, margin: 0 }}>
        {grades.map((g) => (
          <Text component="li" size="xs" key={g.grade}>
            {`${g.label}: ${g.count.toLocaleString('pt-BR')}`}
          </Text>
        ))}
      </Group>
    </Paper>
  );
}

function Charts({ summary }: { summary: ReportSummary }) {
  const hours = summary.per_hour.map((opened, hour) => ({
    hour: `${String(hour).padStart(2, '0')}h`,
    opened,
    messagesIn: summary.per_hour_messages_in[hour] ?? 0,
  }));
  const days = summary.per_day.map((d) => ({ ...d, day: shortDay(d.date) }));
  return (
    <SimpleGrid cols={{ base: 1, lg: 2 }}>
      <Paper withBorder p="sm">
        <Title order={3} size="h5" mb="xs">
          {t.reports.perHour}
        </Title>
        <ResponsiveContainer width="100%" height={240}>
          <BarChart data={hours}>
            <CartesianGrid strokeDasharray="3 3" />
            <XAxis dataKey="hour" interval={2} />
            <YAxis allowDecimals={false} />
            <Tooltip />
            <Legend />
            <Bar dataKey="opened" name={t.reports.hourOpened} fill="#228be6" />
            <Bar dataKey="messagesIn" name={t.reports.hourMessagesIn} fill="#12b886" />
          </BarChart>
        </ResponsiveContainer>
      </Paper>
      <Paper withBorder p="sm">
        <Title order={3} size="h5" mb="xs">
          {t.reports.perDay}
        </Title>
        <ResponsiveContainer width="100%" height={240}>
          <LineChart data={days}>
            <CartesianGrid strokeDasharray="3 3" />
            <XAxis dataKey="day" />
            <YAxis allowDecimals={false} />
            <Tooltip />
            <Legend />
            <Line dataKey="opened" name={t.reports.dayOpened} stroke="#228be6" />
            <Line dataKey="finalized" name={t.reports.dayFinalized} stroke="#fa5252" />
            <Line dataKey="messages_in" name={t.reports.dayIn} stroke="#12b886" />
            <Line dataKey="messages_out" name={t.reports.dayOut} stroke="#7950f2" />
          </LineChart>
        </ResponsiveContainer>
      </Paper>
      <RatingsChart satisfaction={summary.satisfaction} />
    </SimpleGrid>
  );
}

function agentSatisfaction(s: Satisfaction | undefined): string {
  const r = satisfaction(s);
  return s?.count ? `${r.value} (${s.count.toLocaleString('pt-BR')})` : r.value;
}

export function AgentsTable({ items }: { items: AgentReport[] }) {
  if (!items.length) return <Text c="dimmed">{t.reports.noAgents}</Text>;
  return (
    <Table.ScrollContainer minWidth={720}>
      <Table striped aria-label={t.reports.agentsTable}>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>{t.reports.agent}</Table.Th>
            <Table.Th>{t.reports.assumed}</Table.Th>
            <Table.Th>{t.reports.transferred}</Table.Th>
            <Table.Th>{t.reports.finalized}</Table.Th>
            <Table.Th>{t.reports.firstResponse}</Table.Th>
            <Table.Th>{t.reports.resolution}</Table.Th>
            <Table.Th>{t.reports.messagesOut}</Table.Th>
            <Table.Th>{t.reports.satisfaction}</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {items.map((a) => (
            <Table.Tr key={a.agent_id}>
              <Table.Td>{a.agent_name}</Table.Td>
              <Table.Td>{a.assumed}</Table.Td>
              <Table.Td>{a.transferred}</Table.Td>
              <Table.Td>{a.finalized}</Table.Td>
              <Table.Td>{quantiles(a.first_response_seconds).hint}</Table.Td>
              <Table.Td>{quantiles(a.resolution_seconds).hint}</Table.Td>
              <Table.Td>{a.messages_out}</Table.Td>
              <Table.Td>{agentSatisfaction(a.satisfaction)}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

function useResellers(enabled: boolean) {
  return useQuery({
    queryKey: ['resellers', 'all'],
    enabled,
    queryFn: () => unwrap(api.GET('/api/v1/resellers', { params: { query: { limit: 200 } } })),
  });
}

/** The dashboard: a period (the reseller's local days), filters, cards, charts, the agents' table
 * and the CSV exports — the filters narrow all of them. Agents see their own figures; the admin picks a reseller first. */
export function ReportsPage() {
  const me = useMe();
  const isAdmin = me.role === 'admin';
  const isOwner = me.role === 'reseller';
  const [period, setPeriod] = useState(() => lastDays(7));
  const [periodPicked, setPeriodPicked] = useState(false);
  const [filters, setFilters] = useState<Filters>({ department_id: null, agent_id: null, connection_id: null });
  const [resellerId, setResellerId] = useState<string | null>(null);
  const resellers = useResellers(isAdmin);
  const canFilter = isOwner || (isAdmin && !!resellerId);
  const departments = useDepartments(canFilter);
  const agents = useAgents(canFilter);
  const connections = useConnections(canFilter);
  const ofTenant = <T extends { reseller_id?: string | null }>(items: T[] | undefined) =>
    (items ?? []).filter((i) => !isAdmin || i.reseller_id === resellerId);
  const valid = !!period.from && !!period.to && period.from <= period.to;
  const ready = valid && (!isAdmin || !!resellerId);
  const tenant = isAdmin ? (resellerId ?? undefined) : undefined;

  // One query for everything the page shows or exports for the period: the same filters apply to each.
  const scoped = {
    from: period.from,
    to: period.to,
    reseller_id: tenant,
    department_id: filters.department_id ?? undefined,
    agent_id: filters.agent_id ?? undefined,
    connection_id: filters.connection_id ?? undefined,
  };

  const summary = useQuery({
    queryKey: ['reports', 'summary', tenant, period, filters],
    enabled: ready,
    queryFn: () => unwrap(api.GET('/api/v1/reports/summary', { params: { query: scoped } })),
  });
  // The default period is the company's last 7 days: its zone comes with the first answer, and
  // near midnight the browser's today (the first guess) can be a day off. A picked period stays.
  const zone = summary.data?.timezone;
  useEffect(() => {
    if (periodPicked || !zone) return;
    const local = lastDays(7, zone);
    if (local.from !== period.from || local.to !== period.to) setPeriod(local);
  }, [zone, periodPicked, period]);
  const pick = (next: typeof period) => {
    setPeriodPicked(true);
    setPeriod(next);
  };
  const perAgent = useQuery({
    queryKey: ['reports', 'agents', tenant, period, filters],
    enabled: ready,
    queryFn: () => unwrap(api.GET('/api/v1/reports/agents', { params: { query: scoped } })),
  });

  const set = (key: keyof Filters) => (value: string | null) => setFilters((f) => ({ ...f, [key]: value }));
  const options = (items: { id: string; name: string }[]) => items.map((i) => ({ value: i.id, label: i.name }));

  return (
    <Stack>
      <PageHeader title={t.reports.title} />
      <Group align="flex-end" wrap="wrap">
        {isAdmin && (
          <Select
            label={t.reports.reseller}
            data={(resellers.data?.items ?? []).map((r: Reseller) => ({ value: r.id, label: r.name }))}
            value={resellerId}
            onChange={(v) => {
              setResellerId(v);
              setFilters({ department_id: null, agent_id: null, connection_id: null });
            }}
            searchable
            w={240}
          />
        )}
        <TextInput type="date" label={t.reports.from} value={period.from} onChange={(e) => pick({ ...period, from: e.currentTarget.value })} />
        <TextInput type="date" label={t.reports.to} value={period.to} onChange={(e) => pick({ ...period, to: e.currentTarget.value })} />
        {canFilter && (
          <>
            <Select label={t.reports.department} placeholder={t.reports.all} data={options(ofTenant(departments.data))} value={filters.department_id} onChange={set('department_id')} clearable w={200} />
            <Select label={t.reports.agent} placeholder={t.reports.all} data={options(ofTenant(agents.data).filter((u) => u.role === 'agent'))} value={filters.agent_id} onChange={set('agent_id')} clearable w={200} />
            <Select label={t.reports.connection} placeholder={t.reports.all} data={options(ofTenant(connections.data))} value={filters.connection_id} onChange={set('connection_id')} clearable w={200} />
          </>
        )}
      </Group>
      {!valid && (
        <Alert color="red" role="alert">
          {t.reports.invalidPeriod}
        </Alert>
      )}
      {isAdmin && !resellerId && <Text c="dimmed">{t.reports.pickReseller}</Text>}
      {me.role === 'agent' && <Text c="dimmed">{t.reports.ownFigures}</Text>}
      {ready && <QueryState query={summary} />}
      {summary.data && (
        <>
          <Text size="xs" c="dimmed">
            {t.reports.timezone(summary.data.timezone)}
          </Text>
          <SummaryCards summary={summary.data} />
          <Charts summary={summary.data} />
        </>
      )}
      {ready && (
        <Paper withBorder p="sm">
          <Title order={3} size="h5" mb="xs">
            {t.reports.agentsTable}
          </Title>
          <QueryState query={perAgent} />
          {perAgent.data && <AgentsTable items={perAgent.data.items} />}
        </Paper>
      )}
      {ready && !(me.role === 'agent') && <ExportPanel from={period.from} to={period.to} resellerId={tenant} filters={filters} />}
    </Stack>
  );
}
