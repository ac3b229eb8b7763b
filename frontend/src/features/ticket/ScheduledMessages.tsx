import { Alert, Badge, Button, Group, Stack, Text } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import type { ScheduledMessage, Ticket } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { formatDayTime } from '../../lib/format';
import { keys } from '../../realtime/cache';
import { ClockIcon } from './icons';
import { ScheduleMessageModal } from './ScheduleMessageModal';
import { replacedByEdit, scheduleColor, scheduleStatusLabel, useScheduledMessages } from './scheduled';

/** The ticket's scheduled messages, as a strip above the composer: the ones waiting (and those seen
 * waiting while the ticket is open, so one that goes out turns "Enviada" instead of vanishing, but
 * not one its author edited: the edit stands in its place); "Ver todas" shows the earlier ones too.
 * Nothing at all for a ticket that never had one. */
export function ScheduledMessages({ ticket }: { ticket: Ticket }) {
  const me = useMe();
  const client = useQueryClient();
  const query = useScheduledMessages(ticket.id);
  const items = query.data ?? [];
  const [showAll, setShowAll] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<ScheduledMessage | null>(null);
  const [seen, setSeen] = useState<ReadonlySet<string>>(() => new Set());
  const waiting = items.filter((s) => s.status === 'scheduled');
  const anyWaiting = waiting.length > 0;

  useEffect(() => {
    const ids = items.filter((s) => s.status === 'scheduled' && !seen.has(s.id)).map((s) => s.id);
    if (ids.length > 0) setSeen((before) => new Set([...before, ...ids]));
  }, [items, seen]);

  const refresh = () => void client.invalidateQueries({ queryKey: keys.scheduled(ticket.id), exact: true });
  // A finalize (here or elsewhere) cancels the waiting ones on the server: read what it left.
  const status = ticket.status;
  const firstStatus = useRef(status);
  useEffect(() => {
    if (status === firstStatus.current) return;
    firstStatus.current = status;
    void client.invalidateQueries({ queryKey: keys.scheduled(ticket.id), exact: true });
  }, [status, client, ticket.id]);
  // A schedule sent, canceled or failed is announced live (`scheduled.settled`): realtime/cache.ts
  // `applySchedule` turns its chip and reads the list again; the poll (./scheduled.ts) is the fallback.

  const cancel = useMutation({
    mutationFn: (schedule: ScheduledMessage) =>
      unwrap(api.POST('/api/v1/scheduled-messages/{schedule_id}/cancel', { params: { path: { schedule_id: schedule.id } } })),
    onMutate: () => setError(null),
    onSuccess: (canceled) => {
      client.setQueryData<ScheduledMessage[]>(keys.scheduled(ticket.id), (list) => list?.map((s) => (s.id === canceled.id ? canceled : s)));
      refresh();
      notifications.show({ color: 'teal', message: t.ticket.schedule.canceled });
    },
    onError: (failed) => {
      // Sent, failed or canceled meanwhile (409): what became of it is read again.
      if (failed instanceof ApiError && failed.status === 409) refresh();
      setError(errorMessage(failed));
    },
  });

  if (items.length === 0) return null;
  const shown = showAll ? items : items.filter((s) => s.status === 'scheduled' || (seen.has(s.id) && !replacedByEdit(s)));
  // As the backend allows: its author, whoever holds the ticket now (after a transfer, the new
  // holder answers for what is still to be sent), or the reseller owner.
  const mayCancel = (s: ScheduledMessage) =>
    me.role === 'reseller' || (me.role === 'agent' && (s.author_id === me.id || ticket.agent_id === me.id));
  // Only its author edits one, and the edit is checked as scheduling anew (backend/scheduled/service.py
  // `replace`): so only while they hold the ticket, answering in it.
  const mayEdit = (s: ScheduledMessage) => s.author_id === me.id && ticket.status === 'atendendo' && ticket.agent_id === me.id;

  return (
    <>
      <Stack
        gap={4}
        px="sm"
        py={6}
        data-testid="scheduled-messages"
        aria-label={t.ticket.schedule.list}
        role="region"
        style={{ borderTop: '1px solid var(--mantine-color-gray-3)', background: 'var(--mantine-color-gray-0)', maxHeight: 180, overflowY: 'auto' }}
      >
        <Group gap="xs" justify="space-between" wrap="nowrap">
          <Group gap={6} wrap="nowrap">
            <ClockIcon size={14} />
            <Text size="xs" fw={600}>
              {t.ticket.schedule.list}
            </Text>
            {anyWaiting && (
              <Badge size="xs" variant="light" color="blue">
                {t.ticket.schedule.waiting(waiting.length)}
              </Badge>
            )}
          </Group>
          {shown.length < items.length || showAll ? (
            <Button size="compact-xs" variant="subtle" onClick={() => setShowAll((all) => !all)} aria-expanded={showAll}>
              {showAll ? t.ticket.schedule.showLess : t.ticket.schedule.showAll(items.length)}
            </Button>
          ) : null}
        </Group>
        {error && (
          <Alert color="red" role="alert" p={6} data-testid="schedule-cancel-error" withCloseButton onClose={() => setError(null)} closeButtonLabel={t.media.close}>
            <Text size="xs">{error}</Text>
          </Alert>
        )}
        {shown.map((s) => (
          <Group key={s.id} gap="xs" wrap="nowrap" data-testid="scheduled-message" data-status={s.status}>
            <Text size="xs" fw={600} style={{ flexShrink: 0 }}>
              {formatDayTime(s.send_at)}
            </Text>
            <Text size="xs" lineClamp={1} title={s.body} style={{ flex: 1, minWidth: 0 }}>
              {s.body}
            </Text>
            <Text size="xs" c="dimmed" style={{ flexShrink: 0 }}>
              {t.ticket.schedule.by(s.author_name)}
            </Text>
            <Badge size="sm" variant="light" color={scheduleColor(s)} style={{ flexShrink: 0 }} data-testid="schedule-status">
              {scheduleStatusLabel(s)}
            </Badge>
            {s.status === 'scheduled' && mayEdit(s) && (
              <Button
                size="compact-xs"
                variant="subtle"
                style={{ flexShrink: 0 }}
                aria-label={t.ticket.schedule.edit}
                onClick={() => {
                  setError(null);
                  setEditing(s);
                }}
              >
                {t.app.edit}
              </Button>
            )}
            {s.status === 'scheduled' && mayCancel(s) && (
              <Button
                size="compact-xs"
                variant="subtle"
                color="red"
                style={{ flexShrink: 0 }}
                aria-label={t.ticket.schedule.cancel}
                onClick={() => cancel.mutate(s)}
                loading={cancel.isPending && cancel.variables?.id === s.id}
              >
                {t.app.cancel}
              </Button>
            )}
          </Group>
        ))}
      </Stack>
      <ScheduleMessageModal schedule={editing} opened={editing !== null} onClose={() => setEditing(null)} />
    </>
  );
}
