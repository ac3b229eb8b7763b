import type { InfiniteData, Query, QueryClient, QueryKey } from '@tanstack/react-query';
import type { EventTicket, Message, Page, RealtimeEvent, ScheduledMessage, Ticket, TicketStatus, User, WhatsAppConnection } from '../api/types';
import { withLaterStatus } from './delivery';

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
  // Under the ticket's key: whatever reads the ticket again (a conflict, Reabrir) reads these too.
  scheduled: (id: string) => ['ticket', id, 'scheduled'] as const,
  // "Agendamentos": the tenant's (or the agent's) schedules across tickets, one entry per filter.
  scheduledList: ['scheduled-messages'] as const,
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

/** Whether `user` would find `ticket` in the list of `status`: the list's status, then who sees it,
 * exactly as backend/tickets/visibility.py `can_see` (keep the two in step): an agent sees the espera
 * tickets of its departments, the tickets it holds and the ones it finalized (also straight from
 * espera, with no agent on them); the tenant's other staff see all of its tickets. */
export function belongsIn(ticket: Ticket, status: TicketStatus, user: User): boolean {
  if (ticket.status !== status) return false;
  if (user.role !== 'agent') return true;
  return (
    (ticket.status === 'espera' && user.department_ids.includes(ticket.department_id)) ||
    ticket.agent_id === user.id ||
    ticket.finalized_by === user.id
  );
}

/** Writes a live event into one cached query, so that no answer older than the event replaces it.
 * A fetch in flight there may have read the server before the event was stored (a refetch after an
 * assume or a reply, a reconnect's resync, a thread's media poll, a first load): landing after the
 * patch, its answer would replace the patched data and the event would vanish until some later
 * refetch. So that fetch is cancelled first (silently: its state is not reverted, which would undo
 * events patched in since it started) and a new one started after the patch; that one reads the
 * server after the event was stored, so it holds it, and it replaces the data (or is itself
 * replaced, by the next event). A fetch started after the event was stored is refetched needlessly;
 * which one is older cannot be told. A query nothing could refetch (no observer and never loaded) is
 * left alone: cancelled it would stay "fetching" forever. */
function patchQuery<T>(client: QueryClient, key: QueryKey, update: (data: T | undefined) => T | undefined): void {
  const dropped = dropFetchInFlight(client.getQueryCache().find({ queryKey: key, exact: true }));
  client.setQueryData<T>(key, update);
  if (dropped) void client.refetchQueries({ queryKey: key, exact: true });
}

/** Cancels `query`'s fetch in flight, if any, leaving its data as it is; true when it did. */
function dropFetchInFlight(query: Query | undefined): boolean {
  if (!query || query.state.fetchStatus === 'idle' || query.isDisabled()) return false;
  void query.cancel({ silent: true });
  return true;
}

/** Reads `key` again after an event it cannot be patched with (search results, a timeline): a fetch
 * in flight is started again, also a first load (which an invalidation would join). */
function readAgain(client: QueryClient, key: QueryKey): void {
  if (dropFetchInFlight(client.getQueryCache().find({ queryKey: key, exact: true }))) {
    void client.refetchQueries({ queryKey: key, exact: true });
  } else {
    void client.invalidateQueries({ queryKey: key, exact: true });
  }
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
  patchQuery<Ticket>(client, keys.ticket(id), (ticket) => (ticket ? change(ticket) : ticket));
  for (const [key, data] of client.getQueriesData<TicketPages>({ queryKey: ['tickets', 'list'] })) {
    if (!data?.pages.some((p) => p.items.some((item) => item.id === id))) continue;
    patchQuery<TicketPages>(client, key, () => ({
      ...data,
      pages: data.pages.map((p) => ({ ...p, items: p.items.map((item) => (item.id === id ? change(item) : item)) })),
    }));
  }
}

/** A client's message counts as unread (backend/unread: client messages, never notes or replies). */
export function isClientMessage(message: Message): boolean {
  return message.direction === 'in' && message.sender_type === 'client';
}

// Messages already counted, per cache and ticket: the feed is at-least-once (a replay repeats an
// event). Per ticket, as the server counts: a message moved on by the finalize race is announced
// again under the ticket it moved to, and counts there too (backend/unread/service.py).
const counted = new WeakMap<QueryClient, Set<string>>();
const COUNTED_KEEP = 2000;

function countOnce(client: QueryClient, message: Message): boolean {
  let seen = counted.get(client);
  if (!seen) counted.set(client, (seen = new Set()));
  const key = `${message.ticket_id}:${message.id}`;
  if (seen.has(key)) return false;
  seen.add(key);
  if (seen.size > COUNTED_KEEP) seen.delete(seen.values().next().value as string);
  return true;
}

// Per cache and ticket, the inbound number the reader's last `ticket.read` counted through: a
// client message numbered at or below it is in that count already (read then, or unread since),
// also when its `message.created` comes after the read (a read made between the message's number
// and its announcement, on any device). Numbers and markers only grow, so the largest holds.
const countedThrough = new WeakMap<QueryClient, Map<string, number>>();

function throughOf(client: QueryClient): Map<string, number> {
  let through = countedThrough.get(client);
  if (!through) countedThrough.set(client, (through = new Map()));
  return through;
}

function readThrough(client: QueryClient, ticketId: string, n: number): void {
  const through = throughOf(client);
  const known = through.get(ticketId) ?? 0;
  through.delete(ticketId); // re-inserted last: the oldest entries go first past the bound
  through.set(ticketId, Math.max(known, n));
  if (through.size > COUNTED_KEEP) through.delete(through.keys().next().value as string);
}

function countedByRead(client: QueryClient, message: Message, n: number | undefined): boolean {
  return n !== undefined && n <= (throughOf(client).get(message.ticket_id) ?? 0);
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
  patchQuery<Ticket>(client, keys.ticket(ticket.id), () => ticket);
  // Lists still on their first load too: patchQuery starts their read again after the event.
  for (const [key] of client.getQueriesData<TicketPages>({ queryKey: ['tickets', 'list'] })) {
    const [, , status, q] = key as ReturnType<typeof keys.ticketList>;
    if (q) {
      readAgain(client, key);
      continue;
    }
    const keep = belongsIn(ticket, status, user);
    patchQuery<TicketPages>(client, key, (current) => (current ? placeTicket(current, ticket, keep) : current));
  }
}

function chronological(a: Message, b: Message): number {
  const byTime = a.created_at.localeCompare(b.created_at);
  return byTime !== 0 ? byTime : a.id.localeCompare(b.id);
}

/** An event's (or a POST answer's) copy of a message over the cached one. Bytes once in stay in (a
 * fetch retry only starts from "failed"), so an older copy still "pending" (a creation replayed
 * after a reconnect, once a read or the fetch's own event showed the bytes) never hides an
 * attachment already shown; and a delivery status never moves back (./delivery.ts). */
function merged(known: Message, message: Message): Message {
  const next = withLaterStatus(known, message);
  if (known.media?.status === 'ready' && next.media && next.media.status !== 'ready') {
    return { ...known, ...next, media: known.media };
  }
  return { ...known, ...next };
}

/** A thread's pages run newest first (pages[0] is the newest page, the next ones older), so a
 * live message always belongs to pages[0]: it is loaded from the first fetch on. A message moved on
 * by the finalize race (backend/messages/service.py refile_after_finalize) is announced again under
 * its new ticket with `moved_from_ticket_id`: it leaves the thread it was shown in. */
export function applyMessage(client: QueryClient, message: Message): void {
  patchQuery<MessagePages>(client, keys.messages(message.ticket_id), (data) => {
    if (!data || data.pages.length === 0) return data;
    const exists = data.pages.some((p) => p.items.some((m) => m.id === message.id));
    const pages = data.pages.map((p) => ({
      ...p,
      items: p.items.map((m) => (m.id === message.id ? merged(m, message) : m)),
    }));
    if (!exists) pages[0] = { ...pages[0], items: [...pages[0].items, message].sort(chronological) };
    return { ...data, pages };
  });
  const from = message.moved_from_ticket_id;
  if (from && from !== message.ticket_id) {
    const shown = client.getQueryData<MessagePages>(keys.messages(from));
    if (shown?.pages.some((p) => p.items.some((m) => m.id === message.id))) {
      patchQuery<MessagePages>(client, keys.messages(from), (data) =>
        data ? { ...data, pages: data.pages.map((p) => ({ ...p, items: p.items.filter((m) => m.id !== message.id) })) } : data,
      );
    }
  }
}

/** A thread's refetched pages over the cached ones (useMessages' structural sharing): a read never
 * moves a shown delivery status back either (a read taken before the status event it crossed). */
export function keepLaterStatuses(known: unknown, fetched: unknown): unknown {
  const old = known as MessagePages | undefined;
  const next = fetched as MessagePages | undefined;
  if (!old?.pages || !next?.pages) return fetched;
  const shown = new Map(old.pages.flatMap((p) => p.items.map((m) => [m.id, m] as const)));
  return {
    ...next,
    pages: next.pages.map((p) => ({
      ...p,
      items: p.items.map((m) => {
        const before = shown.get(m.id);
        return before ? withLaterStatus(before, m) : m;
      }),
    })),
  };
}

function applyConnection(client: QueryClient, connection: Partial<WhatsAppConnection> & { id: string }): void {
  patchQuery<WhatsAppConnection[]>(client, keys.connections, (list) =>
    list?.map((c) => (c.id === connection.id ? { ...c, ...connection } : c)),
  );
}

/** A schedule settled (sent, canceled or failed): its chip in the ticket's strip turns at once (the
 * cached copy is replaced, a fetch in flight, read before, is dropped) and the strip is read again,
 * as is "Agendamentos" (its filters and order cannot be patched). A schedule the strip has not read
 * yet is left to that read. */
export function applySchedule(client: QueryClient, schedule: ScheduledMessage): void {
  const key = keys.scheduled(schedule.ticket_id);
  const dropped = dropFetchInFlight(client.getQueryCache().find({ queryKey: key, exact: true }));
  client.setQueryData<ScheduledMessage[]>(key, (list) =>
    list?.some((s) => s.id === schedule.id) ? list.map((s) => (s.id === schedule.id ? schedule : s)) : list,
  );
  if (dropped) void client.refetchQueries({ queryKey: key, exact: true });
  else void client.invalidateQueries({ queryKey: key, exact: true });
  void client.invalidateQueries({ queryKey: keys.scheduledList });
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
  if (event.event === 'ticket.read' && event.ticket && event.data?.inbound_through !== undefined) {
    readThrough(client, event.ticket.id, event.data.inbound_through);
  }
  if (event.event === 'message.created' && event.message && isClientMessage(event.message)) {
    // The server counted it too (its count reads the same on the next fetch); the open thread
    // marks it read at once (TicketView).
    const counted = countedByRead(client, event.message, event.data?.inbound_n);
    if (countOnce(client, event.message) && !counted) setUnread(client, event.message.ticket_id, (n) => n + 1);
  }
  if (event.connection) applyConnection(client, event.connection);
  // Its ticket is the one stored (applied above like any other copy); it moves no ticket, so
  // neither the counts nor the ticket's timeline are read again.
  if (event.event === 'message.status' && event.message?.scheduled_id && event.ticket) {
    // A scheduled message's reply moved (taken by WhatsApp, or refused): its chip follows it.
    readAgain(client, keys.scheduled(event.ticket.id));
    void client.invalidateQueries({ queryKey: keys.scheduledList });
  }
  if (event.event === 'scheduled.settled') {
    if (event.data?.schedule) applySchedule(client, event.data.schedule);
    else if (event.ticket) {
      readAgain(client, keys.scheduled(event.ticket.id));
      void client.invalidateQueries({ queryKey: keys.scheduledList });
    }
  }
  if (event.event.startsWith('ticket.') && event.event !== 'ticket.read') {  // a read moves no ticket
    if (movesCounts(known, event)) countsMoved(client);
    if (event.ticket) readAgain(client, keys.events(event.ticket.id));
  }
}

/** After a gap the server could not replay (or a first connection, which replays nothing):
 * everything cached may be stale. Every query in use is read again; a fetch in flight is restarted,
 * since its read may predate the gap's end: TanStack restarts a refetch by itself (cancelRefetch)
 * but joins a first load still in flight, so those are cancelled (silently) and started again here
 * too, unused ones included (nothing else would restart them). */
export function resyncAll(client: QueryClient): void {
  const dropped = client.getQueryCache().findAll().filter(dropFetchInFlight);
  void client.invalidateQueries();
  for (const query of dropped) {
    if (!query.isActive()) void client.refetchQueries({ queryKey: query.queryKey, exact: true });
  }
}
