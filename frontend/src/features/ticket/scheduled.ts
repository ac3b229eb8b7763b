import { type InfiniteData, type QueryClient, useQuery } from '@tanstack/react-query';
import { api, unwrap } from '../../api/client';
import type { Page, ScheduledMessage } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { keys } from '../../realtime/cache';

/** Scheduled messages ("Agendar mensagem"): a reply the holder writes now and the server sends at
 * `send_at` (backend/scheduled). Its outcome (sent, canceled, failed) is announced live
 * (`scheduled.settled`, applied by realtime/cache.ts `applySchedule`); the list is also polled
 * while one waits, a fallback should that event never come. */

/** A waiting schedule is looked at this often, to see it settle should its event never come. */
export const POLL_MS = 30_000;
/** Once one falls due, the server's pass settles it within seconds and says so live: looked at
 * this often for a while all the same (only a fallback now, so not every 2 s). */
export const DUE_POLL_MS = 5_000;
const DUE_FAST_FOR_MS = 60_000;
const AFTER_DUE_MS = 1_000;

/** When to read a ticket's schedules again: right after the soonest waiting one falls due, then
 * briefly often (the due pass is about to settle it), else every POLL_MS; never when none waits.
 * Past its fast window an overdue one is left to the slow poll: a server whose pass is down must
 * not be asked every 2 s for as long as the ticket is open. */
export function pollDelay(items: ScheduledMessage[] | undefined, now = Date.now()): number | false {
  const waiting = (items ?? []).filter((s) => s.status === 'scheduled');
  if (waiting.length === 0) return false;
  const until = Math.min(...waiting.map((s) => Date.parse(s.send_at))) - now;
  if (until > 0) return Math.min(POLL_MS, until + AFTER_DUE_MS);
  return -until < DUE_FAST_FOR_MS ? DUE_POLL_MS : POLL_MS;
}

/** A ticket's schedules, whatever became of them, soonest first. */
export function useScheduledMessages(ticketId: string) {
  return useQuery({
    queryKey: keys.scheduled(ticketId),
    queryFn: () =>
      unwrap(api.GET('/api/v1/tickets/{ticket_id}/scheduled-messages', { params: { path: { ticket_id: ticketId } } })).then(
        (page) => page.items,
      ),
    refetchInterval: (query) => pollDelay(query.state.data),
  });
}

const CANCELED_BY: Record<string, string> = {
  finalized: t.ticket.schedule.status.finalized,
  edited: t.ticket.schedule.status.edited,
  edit_refused: t.ticket.schedule.status.editRefused,
};

type Shown = Pick<ScheduledMessage, 'status' | 'reason'> & Partial<Pick<ScheduledMessage, 'delivery' | 'failure_reason'>>;

/** The chip of a schedule: its status, and for a canceled or failed one, why. A sent one follows
 * its message (`delivery`): queued is not sent, and one WhatsApp refused says so with the reason. */
export function scheduleStatusLabel(schedule: Shown): string {
  const labels = t.ticket.schedule;
  if (schedule.status === 'canceled') return (schedule.reason && CANCELED_BY[schedule.reason]) || labels.status.canceled;
  if (schedule.status === 'failed') return (schedule.reason && labels.failed[schedule.reason]) || labels.status.failed;
  if (schedule.status === 'sent' && schedule.delivery === 'failed') return labels.status.notDelivered(schedule.failure_reason ?? null);
  if (schedule.status === 'sent' && schedule.delivery === 'pending') return labels.status.queued;
  return labels.status[schedule.status];
}

const STATUS_COLORS: Record<ScheduledMessage['status'], string> = {
  scheduled: 'blue',
  sent: 'teal',
  canceled: 'gray',
  failed: 'red',
};

/** The chip's color, by the same rule as its label. */
export function scheduleColor(schedule: Shown): string {
  if (schedule.status === 'sent' && schedule.delivery === 'failed') return 'red';
  if (schedule.status === 'sent' && schedule.delivery === 'pending') return 'yellow';
  return STATUS_COLORS[schedule.status];
}

const two = (n: number) => String(n).padStart(2, '0');

/** A local moment as a datetime-local input's value, "2026-12-06T15:30" (with ":SS" when asked). */
export function toLocalInput(at: Date, seconds = false): string {
  const day = `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}`;
  return `${day}T${two(at.getHours())}:${two(at.getMinutes())}${seconds ? `:${two(at.getSeconds())}` : ''}`;
}

/** The form's first suggestion: an hour from now, on the next 5 minutes (14:02 → 15:05). */
export function defaultSendAt(now = new Date()): Date {
  const at = new Date(now.getTime() + 60 * 60_000);
  at.setSeconds(0, 0);
  const over = at.getMinutes() % 5;
  if (over !== 0 || now.getSeconds() > 0 || now.getMilliseconds() > 0) at.setMinutes(at.getMinutes() + (5 - over));
  return at;
}

/** A datetime-local value (the browser's own zone, no offset) as the instant the API takes: an ISO
 * string in UTC ("…Z"), which carries its offset as the backend requires. Null when not a date. */
export function localInputToIso(value: string): string | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value)) return null;
  // ECMAScript reads a date-time without an offset as local time: the agent's clock.
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? null : at.toISOString();
}

/** An edit's old schedule as the server now has it: canceled, its place taken by the edit. */
export function asEdited(old: ScheduledMessage, edit: ScheduledMessage): ScheduledMessage {
  return { ...old, status: 'canceled', reason: 'edited', replaced_by: edit.id, settled_at: old.settled_at ?? edit.created_at };
}

/** Whether a schedule is one its author edited: the edit stands in its place. */
export const replacedByEdit = (s: Pick<ScheduledMessage, 'status' | 'reason'>) => s.status === 'canceled' && s.reason === 'edited';

const soonestFirst = (a: ScheduledMessage, b: ScheduledMessage) => Date.parse(a.send_at) - Date.parse(b.send_at) || a.id.localeCompare(b.id);

/** After an edit: the old one's own `scheduled.settled` will say it was edited, but nothing
 * announces the new one, so both are written into the caches at once (the ticket's strip and every
 * cached "Agendamentos" filter), then read again, as after scheduling one. */
export function applyEdit(client: QueryClient, old: ScheduledMessage, edit: ScheduledMessage): void {
  const replaced = asEdited(old, edit);
  client.setQueryData<ScheduledMessage[]>(
    keys.scheduled(old.ticket_id),
    (list) => list && [...list.filter((s) => s.id !== edit.id).map((s) => (s.id === old.id ? replaced : s)), edit].sort(soonestFirst),
  );
  // Which filter (and page) the new one belongs in is the server's to say: only the old one is patched.
  client.setQueriesData<InfiniteData<Page<ScheduledMessage>, string | null>>({ queryKey: keys.scheduledList }, (data) =>
    data && { ...data, pages: data.pages.map((p) => ({ ...p, items: p.items.map((s) => (s.id === old.id ? replaced : s)) })) },
  );
  void client.invalidateQueries({ queryKey: keys.scheduled(old.ticket_id), exact: true });
  void client.invalidateQueries({ queryKey: keys.scheduledList });
}
