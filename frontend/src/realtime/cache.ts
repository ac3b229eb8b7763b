import type { InfiniteData, QueryClient } from '@tanstack/react-query';
import type { EventTicket, Message, Page, RealtimeEvent, Ticket, TicketStatus, User, WhatsAppConnection } from '../api/types';

/** Every cache key the app uses, in one place, so live events know what to touch. */
export const keys = {
  tickets: ['tickets'] as const,
  ticketList: (status: TicketStatus, q: string) => // q: the search and filters, '' for none
    ['tickets', 'list', status, q] as const,
  counts: ['tickets', 'counts'] as const,
  ticket: (id: string) => ['ticket', id] as const,
  messages: (id: string) => ['ticket', id, 'messages'] as const,
  events: (id: string) => ['ticket', id, 'events'] as const,
  history: (id: string) => ['ticket', id, 'history'] as const,
  historyMessages: (id: string, otherId: string) => ['ticket', id, 'history', otherId, 'messages'] as const,
  departments: ['departments'] as const,
  agents: ['agents'] as const,
  connections: ['connections'] as const,
  config: ['reseller-config'] as const,
  resellers: ['resellers'] as const,
  quickReplies: ['quick-replies'] as const,
  clients: ['clients'] as const,
  tags: ['tags'] as const,
};

type TicketPages = InfiniteData<Page<Ticket>, string | null>;
type MessagePages = InfiniteData<Page<Message>, string | null>;

/** Whether `user` would find `ticket` in the list of `status` (mirrors backend/tickets/visibility.py). */
export function belongsIn(ticket: Ticket, status: TicketStatus, user: User): boolean {
  if (ticket.status !== status) return false;
  if (user.role !== 'agent') return true;
  if (ticket.status === 'espera') return user.department_ids.includes(ticket.department_id);
  return ticket.agent_id === user.id;
}

function newerFirst(a: Ticket, b: Ticket): number {
  const byTime = b.last_message_at.localeCompare(a.last_message_at);
  return byTime !== 0 ? byTime : b.id.localeCompare(a.id);
}

/** Puts `ticket` where it belongs in a loaded list (or takes it out), keeping newest activity first. */
export function placeTicket(data: TicketPages, ticket: Ticket, keep: boolean): TicketPages {
  const pages = data.pages.map((page) => ({ ...page, items: page.items.filter((item) => item.id !== ticket.id) }));
  if (keep && pages.length > 0) {
    const all = pages.flatMap((p) => p.items);
    const older = all.find((item) => newerFirst(ticket, item) < 0);
    const last = pages[pages.length - 1];
    // Beyond the loaded pages (and more exist): leave it for when they are fetched.
    if (older || !last.next_cursor) {
      const index = pages.findIndex((p) => p.items.some((item) => item === older));
      const target = index === -1 ? pages.length - 1 : index;
      const items = [...pages[target].items, ticket].sort(newerFirst);
      pages[target] = { ...pages[target], items };
    }
  }
  return { ...data, pages };
}

/** Events carry the ticket as stored; the API joins the client's and agent's current names and the
 * ticket's tags when it reads one, so an event keeps those from the copy already read (the agent's
 * name only while it is the same agent: a transfer names the new one). The unread count is the
 * reader's own: only the reader's `ticket.read` carries one, every other event keeps ours. */
export function withReadSide(ticket: EventTicket, known: Ticket | undefined): Ticket {
  if (!known) return ticket.unread_count === undefined ? { ...ticket, unread_count: 0 } : (ticket as Ticket);
  const unread = ticket.unread_count ?? known.unread_count;
  const agentName = known.agent_id === ticket.agent_id ? known.agent_name : ticket.agent_name;
  // Frames carry the stored ticket; what only a single ticket's read answers (why replies cannot
  // reach the client, the ticket Reabrir opened for it) stays as last read.
  const readOnly = {
    reply_blocked: known.reply_blocked,
    reopened_as_ticket_id: ticket.reopened_as_ticket_id ?? known.reopened_as_ticket_id,
  };
  return { ...ticket, client_name: known.client_name, tags: known.tags, agent_name: agentName, unread_count: unread, ...readOnly };
}

/** Sets the unread count of every cached copy of a ticket (its own query and the loaded lists). */
export function setUnread(client: QueryClient, id: string, count: (current: number) => number): void {
  const change = (ticket: Ticket): Ticket => ({ ...ticket, unread_count: count(ticket.unread_count ?? 0) });
  client.setQueryData<Ticket>(keys.ticket(id), (ticket) => (ticket ? change(ticket) : ticket));
  for (const [key, data] of client.getQueriesData<TicketPages>({ queryKey: ['tickets', 'list'] })) {
    if (!data?.pages.some((p) => p.items.some((item) => item.id === id))) continue;
    client.setQueryData<TicketPages>(key, {
      ...data,
      pages: data.pages.map((p) => ({ ...p, items: p.items.map((item) => (item.id === id ? change(item) : item)) })),
    });
  }
}

/** A client's message counts as unread (backend/unread: client messages, never notes or replies). */
export function isClientMessage(message: Message): boolean {
  return message.direction === 'in' && message.sender_type === 'client';
}

// Messages already counted, per cache: the feed is at-least-once (a replay repeats an event).
const counted = new WeakMap<QueryClient, Set<string>>();
const COUNTED_KEEP = 2000;

function countOnce(client: QueryClient, messageId: string): boolean {
  let seen = counted.get(client);
  if (!seen) counted.set(client, (seen = new Set()));
  if (seen.has(messageId)) return false;
  seen.add(messageId);
  if (seen.size > COUNTED_KEEP) seen.delete(seen.values().next().value as string);
  return true;
}

function knownCopy(client: QueryClient, id: string): Ticket | undefined {
  const single = client.getQueryData<Ticket>(keys.ticket(id));
  if (single) return single;
  for (const [, data] of client.getQueriesData<TicketPages>({ queryKey: ['tickets', 'list'] })) {
    const found = data?.pages.flatMap((p) => p.items).find((item) => item.id === id);
    if (found) return found;
  }
  return undefined;
}

function applyTicket(client: QueryClient, event: EventTicket, user: User): void {
  const previous = client.getQueryData<Ticket>(keys.ticket(event.id));
  // Events can arrive after a fresher read (e.g. our own mutation's answer): never go back in version.
  if (previous && previous.version > event.version) return;
  const ticket = withReadSide(event, knownCopy(client, event.id));
  client.setQueryData(keys.ticket(ticket.id), ticket);
  for (const [key, data] of client.getQueriesData<TicketPages>({ queryKey: ['tickets', 'list'] })) {
    if (!data) continue;
    const [, , status, q] = key as ReturnType<typeof keys.ticketList>;
    if (q) {
      void client.invalidateQueries({ queryKey: key, exact: true });
      continue;
    }
    client.setQueryData<TicketPages>(key, placeTicket(data, ticket, belongsIn(ticket, status, user)));
  }
}

function chronological(a: Message, b: Message): number {
  const byTime = a.created_at.localeCompare(b.created_at);
  return byTime !== 0 ? byTime : a.id.localeCompare(b.id);
}

/** An event's copy of a message over the cached one. Bytes once in stay in (a fetch retry only
 * starts from "failed"), so an older copy still "pending" (a creation replayed after a reconnect,
 * once a read or the fetch's own event showed the bytes) never hides an attachment already shown. */
function merged(known: Message, message: Message): Message {
  if (known.media?.status === 'ready' && message.media && message.media.status !== 'ready') {
    return { ...known, ...message, media: known.media };
  }
  return { ...known, ...message };
}

/** A thread's pages run newest first (pages[0] is the newest page, the next ones older), so a
 * live message always belongs to pages[0]: it is loaded from the first fetch on. */
export function applyMessage(client: QueryClient, message: Message): void {
  client.setQueryData<MessagePages>(keys.messages(message.ticket_id), (data) => {
    if (!data || data.pages.length === 0) return data;
    const exists = data.pages.some((p) => p.items.some((m) => m.id === message.id));
    const pages = data.pages.map((p) => ({
      ...p,
      items: p.items.map((m) => (m.id === message.id ? merged(m, message) : m)),
    }));
    if (!exists) pages[0] = { ...pages[0], items: [...pages[0].items, message].sort(chronological) };
    return { ...data, pages };
  });
}

function applyConnection(client: QueryClient, connection: Partial<WhatsAppConnection> & { id: string }): void {
  client.setQueryData<WhatsAppConnection[]>(keys.connections, (list) =>
    list?.map((c) => (c.id === connection.id ? { ...c, ...connection } : c)),
  );
}

/** At most one counts refetch per this many ms, however many tickets move (a busy queue sends a
 * burst of events; every open screen used to refetch the counts for each one). */
export const COUNTS_REFRESH_MS = 1000;
const countsDue = new WeakMap<QueryClient, ReturnType<typeof setTimeout>>();

/** Marks the counts stale once the window closes: the first move opens it, the later ones ride along. */
function countsMoved(client: QueryClient): void {
  if (countsDue.has(client)) return;
  countsDue.set(
    client,
    setTimeout(() => {
      countsDue.delete(client);
      void client.invalidateQueries({ queryKey: keys.counts });
    }, COUNTS_REFRESH_MS),
  );
}

/** Whether an event can change the counts: a new ticket, or a ticket whose status, department or
 * agent differs from the copy already known (an event about an unknown ticket may). */
function movesCounts(known: Ticket | undefined, event: RealtimeEvent): boolean {
  if (event.event === 'ticket.created' || !event.ticket || !known) return true;
  const t = event.ticket;
  return known.status !== t.status || known.department_id !== t.department_id || known.agent_id !== t.agent_id;
}

/** Applies one websocket event to the cache: the screens re-render from it, no refetch needed. */
export function applyEvent(client: QueryClient, event: RealtimeEvent, user: User): void {
  const known = event.ticket ? knownCopy(client, event.ticket.id) : undefined;
  if (event.ticket) applyTicket(client, event.ticket, user);
  if (event.message && (event.event === 'message.created' || event.event === 'message.status')) {
    applyMessage(client, event.message);
  }
  if (event.event === 'message.created' && event.message && isClientMessage(event.message)) {
    // The server counted it too (its count reads the same on the next fetch); the open thread
    // marks it read at once (TicketView).
    if (countOnce(client, event.message.id)) setUnread(client, event.message.ticket_id, (n) => n + 1);
  }
  if (event.connection) applyConnection(client, event.connection);
  if (event.event.startsWith('ticket.') && event.event !== 'ticket.read') {  // a read moves no ticket
    if (movesCounts(known, event)) countsMoved(client);
    if (event.ticket) void client.invalidateQueries({ queryKey: keys.events(event.ticket.id) });
  }
}

/** After a gap the server could not replay: everything cached may be stale. */
export function resyncAll(client: QueryClient): void {
  void client.invalidateQueries();
}
