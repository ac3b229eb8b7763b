import { Alert, Anchor, Badge, Box, Button, Group, SegmentedControl, Select, Table, Text } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { type InfiniteData, useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import { useAgents } from '../../api/queries';
import type { Page, ScheduledMessage } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { ListTable, RowActions } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
import { formatDayTime } from '../../lib/format';
import { keys } from '../../realtime/cache';
import { ScheduleMessageModal } from '../ticket/ScheduleMessageModal';
import { POLL_MS, asEdited, scheduleColor, scheduleStatusLabel } from '../ticket/scheduled';

type Status = ScheduledMessage['status'];
type Filter = Status | 'all';
type Pages = InfiniteData<Page<ScheduledMessage>, string | null>;

const PAGE = 50;

// The filter lives in the address (?situacao=enviadas&autor=<id>): following a ticket's link and
// coming back with the browser's Back keeps what was being looked at.
const FILTER_SLUGS: Record<Filter, string> = {
  scheduled: 'agendadas',
  sent: 'enviadas',
  canceled: 'canceladas',
  failed: 'falharam',
  all: 'todas',
};
const FILTERS = Object.keys(FILTER_SLUGS) as Filter[];

function filterFrom(slug: string | null): Filter {
  return FILTERS.find((f) => FILTER_SLUGS[f] === slug) ?? 'scheduled';
}

const STATUSES: readonly string[] = ['scheduled', 'sent', 'canceled', 'failed'] satisfies Status[];

/** The status a 409 of the cancel names ("no longer waiting": sent or failed meanwhile). */
function statusOfConflict(error: unknown): Status | null {
  if (!(error instanceof ApiError) || error.status !== 409) return null;
  const detail = error.detail;
  const status = detail && typeof detail === 'object' && 'status' in detail ? detail.status : null;
  return typeof status === 'string' && STATUSES.includes(status) ? (status as Status) : null;
}

const bySendAt = (a: ScheduledMessage, b: ScheduledMessage) => a.send_at.localeCompare(b.send_at) || a.id.localeCompare(b.id);

/** A waiting one is sent, or fails, at its time, and nothing announces it: while the list shows
 * one waiting, it is read again every POLL_MS (the ticket's own strip polls the same way). */
export function listPollDelay(data: Pages | undefined): number | false {
  return data?.pages.some((p) => p.items.some((s) => s.status === 'scheduled')) ? POLL_MS : false;
}

function useScheduledList(status: Filter, authorId: string | null) {
  return useInfiniteQuery({
    queryKey: [...keys.scheduledList, status, authorId ?? ''],
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/scheduled-messages', {
          params: {
            query: {
              status: status === 'all' ? undefined : status,
              author_id: authorId ?? undefined,
              limit: PAGE,
              cursor: pageParam ?? undefined,
            },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
    // No live event announces a schedule's outcome, and schedules are made and canceled from the
    // tickets: whatever was cached is read again on coming back here.
    staleTime: 0,
    refetchInterval: (query) => listPollDelay(query.state.data),
  });
}

/** "Agendamentos": the scheduled messages across tickets, soonest first. The reseller owner sees
 * everyone's and may narrow to one author; an agent sees the ones they wrote (the backend decides). */
export function ScheduledPage() {
  const me = useMe();
  const owner = me.role === 'reseller';
  const client = useQueryClient();
  const [params, setParams] = useSearchParams();
  const status = filterFrom(params.get('situacao'));
  const authorId = owner ? params.get('autor') || null : null;
  const agents = useAgents(owner);
  const list = useScheduledList(status, authorId);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<{ schedule: ScheduledMessage; view: string } | null>(null);
  // What was canceled (or found settled) on this screen stays on it with its new chip, instead of
  // vanishing from "Agendadas" at the next read: the person sees what their click did. Kept per
  // filter, so another filter shows only what the server says.
  const view = `${status}|${authorId ?? ''}`;
  const [settledHere, setSettledHere] = useState<{ view: string; byId: Record<string, ScheduledMessage> }>({ view, byId: {} });
  const settled = settledHere.view === view ? settledHere.byId : {};
  // Under the filter the click was made in: the answer may come after a switch to another one.
  const remember = (schedule: ScheduledMessage, where: string) =>
    setSettledHere((before) => ({ view: where, byId: { ...(before.view === where ? before.byId : {}), [schedule.id]: schedule } }));

  const update = (next: { situacao?: string | null; autor?: string | null }) => {
    setError(null);
    setParams(
      (before) => {
        const out = new URLSearchParams(before);
        for (const [name, value] of Object.entries(next)) {
          if (value) out.set(name, value);
          else out.delete(name);
        }
        return out;
      },
      { replace: true },
    );
  };

  const refresh = (schedule: ScheduledMessage) => {
    void client.invalidateQueries({ queryKey: keys.scheduledList });
    // The ticket's own strip, when it is opened next, shows the same outcome.
    void client.invalidateQueries({ queryKey: keys.scheduled(schedule.ticket_id), exact: true });
  };

  const cancel = useMutation({
    mutationFn: (schedule: ScheduledMessage) =>
      unwrap(api.POST('/api/v1/scheduled-messages/{schedule_id}/cancel', { params: { path: { schedule_id: schedule.id } } })),
    onMutate: () => {
      setError(null);
      return { view };
    },
    onSuccess: (canceled, _schedule, context) => {
      remember(canceled, context.view);
      client.setQueriesData<Pages>({ queryKey: keys.scheduledList }, (data) =>
        data && { ...data, pages: data.pages.map((p) => ({ ...p, items: p.items.map((s) => (s.id === canceled.id ? canceled : s)) })) },
      );
      refresh(canceled);
      notifications.show({ color: 'teal', message: t.ticket.schedule.canceled });
    },
    onError: (failed, schedule, context) => {
      // Sent or failed meanwhile: the row says which, and the list is read again.
      const now = statusOfConflict(failed);
      if (now && now !== 'scheduled' && context) remember({ ...schedule, status: now, reason: null }, context.view);
      if (failed instanceof ApiError && failed.status === 409) refresh(schedule);
      setError(errorMessage(failed));
    },
  });

  const loaded = list.data?.pages.flatMap((p) => p.items) ?? [];
  const byId = new Map(loaded.map((s) => [s.id, settled[s.id] ?? s]));
  const missing = Object.values(settled).filter((s) => !byId.has(s.id));
  for (const s of missing) byId.set(s.id, s);
  const items = missing.length > 0 ? [...byId.values()].sort(bySendAt) : [...byId.values()];

  const authorOptions = [
    // The owner may hold tickets and schedule too.
    { value: me.id, label: t.scheduled.you(me.name) },
    ...(agents.data ?? []).filter((u) => u.role === 'agent' && u.id !== me.id).map((u) => ({ value: u.id, label: u.name })),
  ];
  const headers = [t.scheduled.when, t.scheduled.client, t.scheduled.message, ...(owner ? [t.scheduled.author] : []), t.scheduled.status];

  return (
    <>
      <PageHeader title={t.scheduled.title} />
      <Group mb="md" gap="sm" align="flex-end" wrap="wrap">
        <Box style={{ maxWidth: '100%', overflowX: 'auto' }}>
          <SegmentedControl
            aria-label={t.scheduled.filterStatus}
            value={status}
            onChange={(value) => update({ situacao: value === 'scheduled' ? null : FILTER_SLUGS[value as Filter] })}
            data={FILTERS.map((f) => ({ value: f, label: t.scheduled.filters[f] }))}
          />
        </Box>
        {owner && (
          <Select
            label={t.scheduled.author}
            placeholder={t.scheduled.allAuthors}
            data={authorOptions}
            value={authorId}
            onChange={(value) => update({ autor: value })}
            clearable
            searchable
            w={220}
          />
        )}
      </Group>
      {error && (
        <Alert color="red" role="alert" mb="sm" withCloseButton onClose={() => setError(null)} closeButtonLabel={t.app.close}>
          {error}
        </Alert>
      )}
      <ListTable
        query={list}
        items={items}
        empty={t.scheduled.empty}
        minWidth={owner ? 860 : 720}
        headers={headers}
        pager={list}
        row={(s) => (
          <Table.Tr key={s.id} data-testid="scheduled-row" data-status={s.status}>
            <Table.Td style={{ whiteSpace: 'nowrap' }}>{formatDayTime(s.send_at)}</Table.Td>
            <Table.Td>
              <Anchor component={Link} to={`/atendimento/${s.ticket_id}`} size="sm">
                {s.client_name || t.scheduled.openTicket(s.ticket_number ?? null)}
                {s.client_name && s.ticket_number != null && (
                  <>
                    {' '}
                    <Text span size="sm" c="dimmed">
                      {t.scheduled.ticket(s.ticket_number)}
                    </Text>
                  </>
                )}
              </Anchor>
            </Table.Td>
            <Table.Td style={{ maxWidth: 360 }}>
              <Text size="sm" lineClamp={1} title={s.body} style={{ wordBreak: 'break-word' }}>
                {s.body}
              </Text>
            </Table.Td>
            {owner && <Table.Td>{s.author_name}</Table.Td>}
            <Table.Td>
              <Badge variant="light" color={scheduleColor(s)} data-testid="schedule-status" style={{ whiteSpace: 'nowrap' }}>
                {scheduleStatusLabel(s)}
              </Badge>
            </Table.Td>
            <Table.Td>
              {/* Only a waiting one can be canceled; an agent's list holds only their own, and the
                  owner may cancel anyone's (backend/scheduled/service.py `cancel`), but edits only
                  their own (`replace`). */}
              {s.status === 'scheduled' && (
                <RowActions
                  onEdit={
                    s.author_id === me.id
                      ? () => {
                          setError(null);
                          setEditing({ schedule: s, view });
                        }
                      : undefined
                  }
                >
                  <Button
                    size="compact-sm"
                    variant="subtle"
                    color="red"
                    aria-label={t.ticket.schedule.cancel}
                    onClick={() => cancel.mutate(s)}
                    loading={cancel.isPending && cancel.variables?.id === s.id}
                  >
                    {t.app.cancel}
                  </Button>
                </RowActions>
              )}
            </Table.Td>
          </Table.Tr>
        )}
      />
      <ScheduleMessageModal
        schedule={editing?.schedule}
        opened={editing !== null}
        onClose={() => setEditing(null)}
        // The edited one stays on screen as "Editada", as a canceled one does; the edit shows up when
        // the list is read again (the modal has it read), under whichever filter it belongs to.
        onScheduled={(edit) => editing && remember(asEdited(editing.schedule, edit), editing.view)}
      />
    </>
  );
}
