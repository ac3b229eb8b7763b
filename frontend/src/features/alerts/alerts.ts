import type { ConnectionState, RealtimeEvent, User } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { isClientMessage } from '../../realtime/cache';
import { clientLabel } from '../contacts/ClientPhone';
import { isDisconnected } from '../inbox/DisconnectedConnections';
import { previewText } from '../ticket/media';

/** What deserves the user's attention right now: a sound and a desktop notification. Most are
 * about a ticket: the notification opens it, and the tab title counts it until it is opened. One
 * about something else (a WhatsApp connection down) opens `href` and counts nowhere: a banner
 * above the inbox stays while it lasts. */
export type Alert = { key: string; title: string; body: string } & ({ ticketId: string; href?: never } | { ticketId?: never; href: string });

/** The tenant's WhatsApp connections' statuses as last known before the event at hand, by id. */
export type ConnectionStates = ReadonlyMap<string, ConnectionState>;

const CONNECTIONS_PAGE = '/revenda/whatsapp';

/** Alerts are the agent's: a new ticket waiting in one of its departments' queues (opened, sent
 * back to the queue, or routed there by the client's menu choice), a ticket transferred to it, and
 * a new client message in a ticket it holds. The owner's: a ticket waiting the same way in a queue
 * nobody serves, which only it sees — `unstaffed`, those departments' names by id
 * (features/reseller/staffing.ts) —, a new client message in a ticket it holds (it may assume
 * tickets like an agent), and an active WhatsApp connection of its tenant that was open
 * (`connections`, as known before this event) and is no longer: no client's message arrives there. */
export function alertFor(
  event: RealtimeEvent,
  user: User,
  unstaffed: ReadonlyMap<string, string> = new Map(),
  connections: ConnectionStates = new Map(),
): Alert | null {
  if (user.role !== 'agent' && user.role !== 'reseller') return null;
  if (event.event === 'connection.status') return user.role === 'reseller' ? connectionDropped(event, connections) : null;
  const ticket = event.ticket;
  if (!ticket) return null;
  const who = clientLabel(ticket.client_name, ticket.client_phone);
  const queued = event.event === 'ticket.created' || event.event === 'ticket.transferred' || event.event === 'ticket.routed';
  if (event.event === 'ticket.transferred' && ticket.status === 'atendendo' && ticket.agent_id === user.id) {
    return {
      key: `transferred:${ticket.id}:${ticket.version}`,
      ticketId: ticket.id,
      title: t.alerts.transferred(who),
      body: previewText(ticket.last_message_preview) || t.alerts.transferredBody(ticket.number),
    };
  }
  if (user.role === 'reseller') {
    const queue = unstaffed.get(ticket.department_id);
    if (queued && ticket.status === 'espera' && queue !== undefined) {
      return {
        key: `unstaffed:${ticket.id}:${ticket.version}`,
        ticketId: ticket.id,
        title: t.alerts.unstaffedTicket(who),
        body: t.alerts.unstaffedBody(queue),
      };
    }
  } else if (queued && ticket.status === 'espera' && user.department_ids.includes(ticket.department_id)) {
    return {
      key: `queued:${ticket.id}:${ticket.version}`,
      ticketId: ticket.id,
      title: t.alerts.newTicket(who),
      body: previewText(ticket.last_message_preview) || t.alerts.newTicketBody(ticket.number),
    };
  }
  const message = event.message;
  if (event.event === 'message.created' && message && isClientMessage(message)) {
    if (ticket.status !== 'atendendo' || ticket.agent_id !== user.id) return null;
    return {
      key: `message:${message.id}`,
      ticketId: ticket.id,
      title: t.alerts.newMessage(who),
      // Without text: its kind in Portuguese ("[Imagem]", "[Chamada de voz]", "[Mensagem apagada]").
      body: message.body || previewText(`[${message.type}]`),
    };
  }
  return null;
}

/** An active connection that closed (logged out on the phone, or given up reconnecting) after it
 * was open or reconnecting. Not while it only reconnects (`connecting`: a network blip of the
 * phone says so for seconds; the banner above the inbox shows it). Once per drop: the key holds
 * the change's time (a delivery announced again carries the same); one closed already says nothing. */
function connectionDropped(event: RealtimeEvent, before: ConnectionStates): Alert | null {
  // The frame carries the whole connection (backend/connections/service.py `announce`).
  const { id, name = '', active, status, updated_at } = event.connection ?? {};
  if (!id || active === undefined || status !== 'close') return null;
  const was = before.get(id);
  if (was === undefined || was === 'close' || !isDisconnected({ active, status })) return null;
  return {
    key: `connection:${id}:${updated_at ?? event.seq}`,
    href: CONNECTIONS_PAGE,
    title: t.alerts.disconnected(name),
    body: t.alerts.disconnectedBody,
  };
}

/** A scheduled message the server could not send, told to its author in the app (a toast on any
 * screen, whatever the alerts toggle says: the reply the client expects did not go out). Sent or
 * canceled ones say nothing (the strip's chip shows them). Once per schedule: the key is its id. */
export type ScheduleFailure = { key: string; ticketId: string; message: string };

export function scheduleFailureFor(event: RealtimeEvent, user: User): ScheduleFailure | null {
  const sent = event.message;
  if (event.event === 'message.status' && sent?.scheduled_id && sent.status === 'failed') {
    // Sent at its time, then refused by WhatsApp: the client did not get it either.
    if (sent.sender_id !== user.id || !event.ticket) return null;
    const who = clientLabel(event.ticket.client_name, event.ticket.client_phone);
    return {
      key: `schedule-failed:${sent.scheduled_id}`,
      ticketId: event.ticket.id,
      message: t.alerts.scheduleFailed(who, event.ticket.number, sent.failure_reason ?? null),
    };
  }
  const schedule = event.data?.schedule;
  if (event.event !== 'scheduled.settled' || !schedule) return null;
  if (schedule.status !== 'failed' || schedule.author_id !== user.id) return null;
  const ticket = event.ticket?.id === schedule.ticket_id ? event.ticket : null;
  const who = clientLabel(schedule.client_name || ticket?.client_name || '', ticket?.client_phone ?? '');
  const reason = (schedule.reason && t.ticket.schedule.failedReason[schedule.reason]) || null;
  return {
    key: `schedule-failed:${schedule.id}`,
    ticketId: schedule.ticket_id,
    message: t.alerts.scheduleFailed(who, schedule.ticket_number ?? ticket?.number ?? null, reason),
  };
}

/** Pending alerts per ticket; opening a ticket clears its own. */
export type Pending = ReadonlyMap<string, number>;

export function withAlert(pending: Pending, ticketId: string): Pending {
  return new Map(pending).set(ticketId, (pending.get(ticketId) ?? 0) + 1);
}

export function withoutTicket(pending: Pending, ticketId: string): Pending {
  if (!pending.has(ticketId)) return pending;
  const next = new Map(pending);
  next.delete(ticketId);
  return next;
}

export function pendingCount(pending: Pending): number {
  let total = 0;
  for (const n of pending.values()) total += n;
  return total;
}

/** "(3) IAZE Atendimento" while 3 alerts wait, the plain title otherwise. */
export function titleWith(base: string, count: number): string {
  return count > 0 ? `(${count}) ${base}` : base;
}

/** The agent's choice, per user on this browser: never asked for on load, only from its toggle. */
const storageKey = (userId: string) => `iaze.alerts.${userId}`;

export function alertsEnabled(userId: string, storage: Storage = localStorage): boolean {
  return storage.getItem(storageKey(userId)) === 'on';
}

export function setAlertsEnabled(userId: string, on: boolean, storage: Storage = localStorage): void {
  storage.setItem(storageKey(userId), on ? 'on' : 'off');
}

/** Whether the browser will show a desktop notification now. */
export function canNotify(): boolean {
  return typeof Notification !== 'undefined' && Notification.permission === 'granted';
}
