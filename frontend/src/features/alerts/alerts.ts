import type { RealtimeEvent, User } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { isClientMessage } from '../../realtime/cache';
import { clientLabel } from '../contacts/ClientPhone';
import { previewText } from '../ticket/media';

/** What deserves the agent's attention right now: a sound, a desktop notification, the tab title. */
export type Alert = { key: string; ticketId: string; title: string; body: string };

/** Alerts are the agent's: a new ticket waiting in one of its departments' queues (opened, sent
 * back to the queue, or routed there by the client's menu choice), and a new client message in a
 * ticket it holds. The owner's: a ticket waiting the same way in a queue nobody serves, which only
 * it sees — `unstaffed`, those departments' names by id (features/reseller/staffing.ts). */
export function alertFor(event: RealtimeEvent, user: User, unstaffed: ReadonlyMap<string, string> = new Map()): Alert | null {
  const ticket = event.ticket;
  if (!ticket || (user.role !== 'agent' && user.role !== 'reseller')) return null;
  const who = clientLabel(ticket.client_name, ticket.client_phone);
  const queued = event.event === 'ticket.created' || event.event === 'ticket.transferred' || event.event === 'ticket.routed';
  if (user.role === 'reseller') {
    const queue = unstaffed.get(ticket.department_id);
    if (!queued || ticket.status !== 'espera' || queue === undefined) return null;
    return {
      key: `unstaffed:${ticket.id}:${ticket.version}`,
      ticketId: ticket.id,
      title: t.alerts.unstaffedTicket(who),
      body: t.alerts.unstaffedBody(queue),
    };
  }
  if (queued && ticket.status === 'espera' && user.department_ids.includes(ticket.department_id)) {
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
