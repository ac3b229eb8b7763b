import type { Message } from '../api/types';

/** The order of a message's delivery statuses: the frontend's one copy of backend/messages/
 * repository.py `RANK` (and of its `move_status_internal` rule for `failed`). Keep them in step. */
const RANK: Readonly<Record<string, number>> = { pending: 0, sent: 1, delivered: 2, read: 3 };

/** Whether a message shown as `from` may be shown as `to`: only what the backend could have written
 * after it. Statuses only move forward; `failed` only from before the provider took the message
 * (pending, sent), and nothing moves a failed message on. A status outside the order (a client's
 * message, a note) is taken as it comes. */
export function statusMayMove(from: string, to: string): boolean {
  if (from === to) return true;
  if (to === 'failed') return from === 'pending' || from === 'sent';
  if (from === 'failed') return false;
  if (!(from in RANK) || !(to in RANK)) return true;
  return RANK[to] > RANK[from];
}

/** `incoming` over `known` (the same message), keeping the known delivery status (and its failure
 * reason) when the incoming copy's would move it back: a POST answer still "pending" applied after
 * the websocket's "failed", a "sent" frame written before the "delivered" one applied after it, or
 * a read taken before either. Every path that writes a message into the cache goes through this. */
export function withLaterStatus(known: Message, incoming: Message): Message {
  if (statusMayMove(known.status, incoming.status)) return incoming;
  return { ...incoming, status: known.status, failure_reason: known.failure_reason };
}
