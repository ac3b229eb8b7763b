import { InfiniteQueryObserver, QueryClient, QueryObserver, replaceEqualDeep, type InfiniteData } from '@tanstack/react-query';
import { describe, expect, it, vi } from 'vitest';
import type { Message, Page, RealtimeEvent, ScheduledMessage, Ticket } from '../api/types';
import { agentUser, ticketFixture } from '../test/utils';
import { COUNTS_REFRESH_MS, applyEvent, applyMessage, belongsIn, keepLaterStatuses, keys, resyncAll, setUnread, withReadSide } from './cache';
import { MEDIA_POLL_MS, pendingMediaPoll } from '../api/queries';

type Pages<T> = InfiniteData<Page<T>, string | null>;
const pages = <T,>(...lists: T[][]): Pages<T> => ({
  pages: lists.map((items, i) => ({ items, next_cursor: i < lists.length - 1 ? `c${i}` : null })),
  pageParams: lists.map((_, i) => (i === 0 ? null : `c${i - 1}`)),
});
const ids = (data: Pages<Ticket> | undefined) => data?.pages.flatMap((p) => p.items.map((t) => t.id));

function ev(event: RealtimeEvent['event'], over: Partial<RealtimeEvent>): RealtimeEvent {
  return { type: 'event', seq: 1, event, at: '2025-01-01T12:00:00Z', ticket: null, message: null, connection: null, ...over };
}

const me = agentUser();
const other = agentUser({ id: 'b'.repeat(24), name: 'Bruno' });
const t1 = ticketFixture({ id: '1'.repeat(24), last_message_at: '2025-01-01T12:03:00Z' });
const t2 = ticketFixture({ id: '2'.repeat(24), last_message_at: '2025-01-01T12:02:00Z' });
const t3 = ticketFixture({ id: '3'.repeat(24), last_message_at: '2025-01-01T12:01:00Z' });

function seeded() {
  const client = new QueryClient();
  client.setQueryData(keys.ticketList('espera', ''), pages([t1, t2, t3]));
  client.setQueryData(keys.ticketList('atendendo', ''), pages<Ticket>([]));
  return client;
}

describe('applyEvent', () => {
  it('takes a ticket assumed by someone else out of Espera and keeps it out of my Atendendo', () => {
    const client = seeded();
    const assumed = { ...t2, status: 'atendendo' as const, agent_id: other.id, agent_name: 'Bruno', version: 2 };
    applyEvent(client, ev('ticket.assumed', { ticket: assumed }), me);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t1.id, t3.id]);
    expect(ids(client.getQueryData(keys.ticketList('atendendo', '')))).toEqual([]);
    expect(client.getQueryData<Ticket>(keys.ticket(t2.id))?.agent_name).toBe('Bruno');
  });

  it('puts a ticket I assumed into my Atendendo list', () => {
    const client = seeded();
    const assumed = { ...t3, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, version: 2 };
    applyEvent(client, ev('ticket.assumed', { ticket: assumed }), me);
    expect(ids(client.getQueryData(keys.ticketList('atendendo', '')))).toEqual([t3.id]);
  });

  it('shows a new ticket of my department at the top, and ignores other departments', () => {
    const client = seeded();
    const fresh = ticketFixture({ id: '4'.repeat(24), last_message_at: '2025-01-01T12:09:00Z' });
    applyEvent(client, ev('ticket.created', { ticket: fresh }), me);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))?.[0]).toBe(fresh.id);
    const elsewhere = ticketFixture({ id: '5'.repeat(24), department_id: 'e'.repeat(24) });
    applyEvent(client, ev('ticket.created', { ticket: elsewhere }), me);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).not.toContain(elsewhere.id);
  });

  it('moves a ticket with a new message to the top and appends the message to a loaded thread', () => {
    const client = seeded();
    const thread: Pages<Message> = pages([]);
    client.setQueryData(keys.messages(t3.id), thread);
    const message: Message = {
      id: 'm'.repeat(24), ticket_id: t3.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'Oi de novo', status: 'received', automatic: false, created_at: '2025-01-01T12:10:00Z',
    };
    const touched = { ...t3, last_message_at: '2025-01-01T12:10:00Z', last_message_preview: 'Oi de novo' };
    applyEvent(client, ev('message.created', { ticket: touched, message }), me);
    applyEvent(client, ev('message.created', { ticket: touched, message }), me); // replay: stored once
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t3.id, t1.id, t2.id]);
    const loaded = client.getQueryData<Pages<Message>>(keys.messages(t3.id));
    expect(loaded?.pages[0].items.map((m) => m.body)).toEqual(['Oi de novo']);

    applyEvent(client, ev('message.status', { message: { ...message, status: 'read' } }), me);
    expect(client.getQueryData<Pages<Message>>(keys.messages(t3.id))?.pages[0].items[0].status).toBe('read');
  });

  it('applies the media-ready event to a loaded thread, and a late pending copy never hides the bytes again', () => {
    const client = seeded();
    const pendingMedia = {
      url: `/api/v1/messages/${'p'.repeat(24)}/media`, mime: 'application/pdf', size: null, name: 'boleto.pdf',
      sha256: null, status: 'pending' as const, voice: false,
    };
    const message: Message = {
      id: 'p'.repeat(24), ticket_id: t3.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'document', body: '', status: 'received', automatic: false, created_at: '2025-01-01T12:10:00Z',
      media: pendingMedia,
    };
    client.setQueryData(keys.messages(t3.id), pages([message]));
    const readyMedia = { ...pendingMedia, status: 'ready' as const, size: 2048, sha256: 'f'.repeat(64) };
    applyEvent(client, ev('message.status', { ticket: t3, message: { ...message, media: readyMedia } }), me);
    const shown = () => client.getQueryData<Pages<Message>>(keys.messages(t3.id))?.pages[0].items[0];
    expect(shown()?.media).toEqual(readyMedia);

    // The creation replayed after a reconnect still carries "pending": the bytes stay shown.
    applyEvent(client, ev('message.created', { ticket: t3, message }), me);
    expect(shown()?.media).toEqual(readyMedia);
    expect(client.getQueryData<Pages<Message>>(keys.messages(t3.id))?.pages[0].items).toHaveLength(1);

    // A failure followed by a retry moves a never-ready attachment as the events say.
    const other: Message = { ...message, id: 'q'.repeat(24), media: { ...pendingMedia, status: 'failed', error: 'gone' } };
    client.setQueryData(keys.messages(t3.id), pages([other]));
    applyEvent(client, ev('message.status', { ticket: t3, message: { ...other, media: pendingMedia } }), me);
    expect(shown()?.media?.status).toBe('pending');
  });

  it('keeps a slow look at a thread only while one of its attachments is pending', () => {
    const text: Message = {
      id: 't'.repeat(24), ticket_id: t3.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'oi', status: 'received', automatic: false, created_at: '2025-01-01T12:00:00Z',
    };
    const media = { url: '/api/v1/messages/x/media', mime: 'image/png', size: null, name: '', sha256: null, voice: false };
    const withMedia = (status: 'pending' | 'ready' | 'failed'): Message => ({ ...text, id: 'u'.repeat(24), type: 'image', media: { ...media, status } });
    expect(pendingMediaPoll(pages([text], [withMedia('pending')]))).toBe(MEDIA_POLL_MS);
    expect(pendingMediaPoll(pages([text, withMedia('ready')], [withMedia('failed')]))).toBe(false);
    expect(pendingMediaPoll(undefined)).toBe(false);
  });

  it('adds a live message to the newest page of a thread whose older pages are still unloaded', () => {
    const client = seeded();
    const older: Message = {
      id: 'a'.repeat(24), ticket_id: t3.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'antes', status: 'received', automatic: false, created_at: '2025-01-01T12:00:00Z',
    };
    client.setQueryData(keys.messages(t3.id), { pages: [{ items: [older], next_cursor: 'older-page' }], pageParams: [null] });
    const message: Message = { ...older, id: 'b'.repeat(24), body: 'agora', created_at: '2025-01-01T12:10:00Z' };
    applyEvent(client, ev('message.created', { ticket: t3, message }), me);
    const loaded = client.getQueryData<Pages<Message>>(keys.messages(t3.id));
    expect(loaded?.pages[0].items.map((m) => m.body)).toEqual(['antes', 'agora']);
    expect(loaded?.pages[0].next_cursor).toBe('older-page');
  });

  it('never rolls a ticket back to an older version', () => {
    const client = seeded();
    client.setQueryData(keys.ticket(t1.id), { ...t1, status: 'finalizado', version: 3 });
    applyEvent(client, ev('ticket.assumed', { ticket: { ...t1, status: 'atendendo', agent_id: me.id, version: 2 } }), me);
    expect(client.getQueryData<Ticket>(keys.ticket(t1.id))?.status).toBe('finalizado');
  });

  it('does not insert past the loaded pages when more pages exist', () => {
    const client = new QueryClient();
    client.setQueryData(keys.ticketList('espera', ''), pages([t1], [t2]));
    const old = ticketFixture({ id: '9'.repeat(24), last_message_at: '2024-12-01T00:00:00Z' });
    applyEvent(client, ev('ticket.transferred', { ticket: old }), me);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t1.id, t2.id, old.id]);
    client.setQueryData(keys.ticketList('espera', ''), { ...pages([t1], [t2]), pages: [{ items: [t1], next_cursor: 'more' }] });
    applyEvent(client, ev('ticket.transferred', { ticket: { ...old, version: 5 } }), me);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t1.id]);
  });

  it('marks counts and search results stale instead of guessing them', () => {
    vi.useFakeTimers();
    const client = seeded();
    client.setQueryData(keys.counts, { espera: 3, atendendo: 0, finalizado: 0 });
    client.setQueryData(keys.ticketList('espera', 'maria'), pages([t1]));
    applyEvent(client, ev('ticket.finalized', { ticket: { ...t1, status: 'finalizado', version: 2 } }), me);
    vi.advanceTimersByTime(COUNTS_REFRESH_MS);
    vi.useRealTimers();
    expect(client.getQueryState(keys.counts)?.isInvalidated).toBe(true);
    expect(client.getQueryState(keys.ticketList('espera', 'maria'))?.isInvalidated).toBe(true);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t2.id, t3.id]);
  });

  it('refetches the counts once per window for a burst of moves, and not for a ticket that did not move', async () => {
    vi.useFakeTimers();
    const client = seeded();
    const fetches = vi.fn(async () => ({ espera: 0, atendendo: 0, finalizado: 0 }));
    const observer = new QueryObserver(client, { queryKey: keys.counts, queryFn: fetches });
    const stop = observer.subscribe(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    expect(fetches).toHaveBeenCalledTimes(1);
    applyEvent(client, ev('ticket.assumed', { ticket: { ...t1, status: 'atendendo', agent_id: me.id, version: 2 } }), me);
    applyEvent(client, ev('ticket.assumed', { ticket: { ...t2, status: 'atendendo', agent_id: me.id, version: 2 } }), me);
    applyEvent(client, ev('ticket.finalized', { ticket: { ...t3, status: 'finalizado', version: 2 } }), me);
    await vi.advanceTimersByTimeAsync(COUNTS_REFRESH_MS - 1);
    expect(fetches).toHaveBeenCalledTimes(1); // not yet: the window is still open
    await vi.advanceTimersByTimeAsync(1);
    expect(fetches).toHaveBeenCalledTimes(2); // three moves, one refetch
    // The same move delivered again (a replay after a reconnect): nothing moved, no refetch.
    applyEvent(client, ev('ticket.assumed', { ticket: { ...t1, status: 'atendendo', agent_id: me.id, version: 2 } }), me);
    await vi.advanceTimersByTimeAsync(COUNTS_REFRESH_MS * 2);
    expect(fetches).toHaveBeenCalledTimes(2);
    stop();
    vi.useRealTimers();
  });

  it('updates a connection status in the connections list', () => {
    const client = new QueryClient();
    client.setQueryData(keys.connections, [{ id: 'x', name: 'Loja', status: 'connecting' }]);
    applyEvent(client, ev('connection.status', { connection: { id: 'x', status: 'open' } }), me);
    expect(client.getQueryData<{ status: string }[]>(keys.connections)?.[0].status).toBe('open');
  });
});

describe('withReadSide', () => {
  it('keeps the client name and tags already read over an event’s stored copy', () => {
    const known = ticketFixture({ client_name: 'Nome Novo', tags: ['vip'], version: 1 });
    const event = ticketFixture({ client_name: 'Nome Antigo', tags: [], version: 2, status: 'atendendo' });
    expect(withReadSide(event, known)).toMatchObject({ client_name: 'Nome Novo', tags: ['vip'], version: 2, status: 'atendendo' });
    expect(withReadSide(event, undefined)).toBe(event);
    const held = ticketFixture({ agent_id: 'a'.repeat(24), agent_name: 'Ana Renomeada', version: 3 });
    expect(withReadSide({ ...held, agent_name: 'Ana', version: 4 }, held).agent_name).toBe('Ana Renomeada');
    expect(withReadSide({ ...held, agent_id: 'b'.repeat(24), agent_name: 'Bruno', version: 4 }, held).agent_name).toBe('Bruno');
  });
});

describe('unread counts', () => {
  const inbound = (id: string, ticketId: string, over: Partial<Message> = {}): Message => ({
    id, ticket_id: ticketId, direction: 'in', sender_type: 'client', sender_name: 'Maria', type: 'text', body: 'oi',
    status: 'received', created_at: '2025-01-01T12:05:00Z', automatic: false, ...over,
  });
  const unreadIn = (client: QueryClient, id: string) =>
    client.getQueryData<Pages<Ticket>>(keys.ticketList('espera', ''))?.pages.flatMap((p) => p.items).find((t) => t.id === id)?.unread_count;
  // A frame's ticket has no count (it is per user): what the server sends for everyone else.
  const framed = (ticket: Ticket) => {
    const { unread_count: _, ...rest } = ticket;
    return rest;
  };

  it('adds a client message once, however often the feed repeats it, and never a reply or a note', () => {
    const client = seeded();
    const moved = { ...t2, last_message_at: '2025-01-01T12:05:00Z' };
    const m1 = inbound('m'.repeat(24), t2.id);
    applyEvent(client, ev('message.created', { ticket: framed(moved), message: m1 }), me);
    applyEvent(client, ev('message.created', { ticket: framed(moved), message: m1 }), me); // replayed
    expect(unreadIn(client, t2.id)).toBe(1);
    const reply = inbound('n'.repeat(24), t2.id, { direction: 'out', sender_type: 'agent' });
    const note = inbound('o'.repeat(24), t2.id, { direction: 'note', sender_type: 'agent', type: 'note' });
    applyEvent(client, ev('message.created', { ticket: framed(moved), message: reply }), me);
    applyEvent(client, ev('message.created', { ticket: framed(moved), message: note }), me);
    expect(unreadIn(client, t2.id)).toBe(1);
    // Another event about the ticket keeps the count it carries none of.
    applyEvent(client, ev('ticket.transferred', { ticket: framed({ ...moved, version: 2 }) }), me);
    expect(unreadIn(client, t2.id)).toBe(1);
  });

  it('does not count a client message again that the reader\'s ticket.read counted before it was announced', () => {
    // A read on another device lands between message 3's number and its announcement: its count
    // (0, through 3) covers it. Message 4, numbered after that read, is unread.
    const client = seeded();
    setUnread(client, t2.id, () => 2);
    applyEvent(client, ev('ticket.read', { ticket: { ...t2, unread_count: 0 }, data: { inbound_through: 3 } }), me);
    expect(unreadIn(client, t2.id)).toBe(0);
    const m3 = inbound('p'.repeat(24), t2.id);
    applyEvent(client, ev('message.created', { ticket: framed(t2), message: m3, data: { inbound_n: 3 } }), me);
    expect(unreadIn(client, t2.id)).toBe(0);
    const m4 = inbound('q'.repeat(24), t2.id);
    applyEvent(client, ev('message.created', { ticket: framed(t2), message: m4, data: { inbound_n: 4 } }), me);
    expect(unreadIn(client, t2.id)).toBe(1);
    // An older read delivered late does not move the mark back: 4 stays counted once.
    applyEvent(client, ev('ticket.read', { ticket: { ...t2, unread_count: 1 }, data: { inbound_through: 2 } }), me);
    const m5 = inbound('r'.repeat(24), t2.id);
    applyEvent(client, ev('message.created', { ticket: framed(t2), message: m5, data: { inbound_n: 3 } }), me);
    expect(unreadIn(client, t2.id)).toBe(1);
    // Another ticket's read covers nothing here.
    applyEvent(client, ev('ticket.read', { ticket: { ...t1, unread_count: 0 }, data: { inbound_through: 9 } }), me);
    const m6 = inbound('s'.repeat(24), t2.id);
    applyEvent(client, ev('message.created', { ticket: framed(t2), message: m6, data: { inbound_n: 5 } }), me);
    expect(unreadIn(client, t2.id)).toBe(2);
  });

  it('takes the reader\'s own count from its ticket.read (read on another device) and from a read answer', () => {
    const client = seeded();
    setUnread(client, t1.id, () => 4);
    expect(unreadIn(client, t1.id)).toBe(4);
    applyEvent(client, ev('ticket.read', { ticket: { ...t1, unread_count: 0 } }), me);
    expect(unreadIn(client, t1.id)).toBe(0);
    expect(client.getQueryData<Ticket>(keys.ticket(t1.id))?.unread_count).toBe(0);
  });
});

const message = (over: Partial<Message>): Message => ({
  id: 'm'.repeat(24), ticket_id: t1.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
  type: 'text', body: 'Oi', status: 'received', automatic: false, created_at: '2025-01-01T12:10:00Z', ...over,
});
const framedTicket = (ticket: Ticket) => {
  const { unread_count: _, ...rest } = ticket;
  return rest;
};

/** An infinite query whose first read answers `first` and every later read waits for the test to
 * release it (`release(n, answer)`: the n-th read, 1-based), so a refetch can be held in flight. */
function heldQuery<T>(client: QueryClient, key: readonly unknown[], first: T[] | null) {
  const answers: ((page: Page<T>) => void)[] = [];
  let reads = 0;
  const observer = new InfiniteQueryObserver(client, {
    queryKey: key,
    initialPageParam: null as string | null,
    getNextPageParam: () => null,
    queryFn: () => {
      reads += 1;
      if (reads === 1 && first) return Promise.resolve({ items: first, next_cursor: null });
      return new Promise<Page<T>>((resolve) => answers.push(resolve));
    },
  });
  const unsubscribe = observer.subscribe(() => {});
  return {
    observer,
    unsubscribe,
    reads: () => reads,
    /** Answers the n-th held read (1-based among the held ones). */
    release: (n: number, items: T[]) => answers[n - 1]({ items, next_cursor: null }),
    settled: () => vi.waitFor(() => expect(observer.getCurrentResult().isFetching).toBe(false)),
  };
}

describe('a fetch in flight never replaces a live event applied meanwhile', () => {
  it('espera list: a ticket.created during a refetch stays, the refetch read before it is replaced', async () => {
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    const list = heldQuery<Ticket>(client, keys.ticketList('espera', ''), [t1]);
    await vi.waitFor(() => expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t1.id]));

    void client.invalidateQueries({ queryKey: keys.tickets }); // e.g. useTicketUpdated after an assume
    await vi.waitFor(() => expect(list.reads()).toBe(2));
    const t4 = ticketFixture({ id: '4'.repeat(24), last_message_at: '2025-01-01T12:09:00Z' });
    applyEvent(client, ev('ticket.created', { ticket: t4 }), me);
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t4.id, t1.id]);
    expect(list.reads()).toBe(3); // a read started after the event

    list.release(1, [t1]); // the read taken before t4 existed lands late: ignored
    await new Promise((r) => setTimeout(r, 10));
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t4.id, t1.id]);
    list.release(2, [t4, t1]);
    await list.settled();
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t4.id, t1.id]);
    list.unsubscribe();
  });

  it('thread: a message.created during a resync refetch stays', async () => {
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    const old = message({ id: 'a'.repeat(24), created_at: '2025-01-01T12:00:00Z' });
    const thread = heldQuery<Message>(client, keys.messages(t1.id), [old]);
    const shown = () => client.getQueryData<Pages<Message>>(keys.messages(t1.id))?.pages.flatMap((p) => p.items.map((m) => m.id));
    await vi.waitFor(() => expect(shown()).toEqual([old.id]));

    resyncAll(client); // a reconnect
    await vi.waitFor(() => expect(thread.reads()).toBe(2));
    const fresh = message({ id: 'b'.repeat(24) });
    applyEvent(client, ev('message.created', { message: fresh, ticket: framedTicket(t1) }), me);
    expect(shown()).toEqual([old.id, fresh.id]);

    thread.release(1, [old]);
    await new Promise((r) => setTimeout(r, 10));
    expect(shown()).toEqual([old.id, fresh.id]);
    thread.release(2, [old, fresh]);
    await thread.settled();
    expect(shown()).toEqual([old.id, fresh.id]);
    thread.unsubscribe();
  });

  it('thread: a first load in flight when a message arrives is read again after it', async () => {
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    const thread = heldQuery<Message>(client, keys.messages(t1.id), null);
    await vi.waitFor(() => expect(thread.reads()).toBe(1));
    const fresh = message({ id: 'b'.repeat(24) });
    applyEvent(client, ev('message.created', { message: fresh, ticket: framedTicket(t1) }), me);
    expect(thread.reads()).toBe(2);
    thread.release(1, []); // read before the message was stored
    thread.release(2, [fresh]);
    await thread.settled();
    expect(client.getQueryData<Pages<Message>>(keys.messages(t1.id))?.pages[0].items.map((m) => m.id)).toEqual([fresh.id]);
    thread.unsubscribe();
  });
});

describe('delivery status never moves back', () => {
  const reply = message({ id: 'r'.repeat(24), direction: 'out', sender_type: 'agent', status: 'pending' });
  const shown = (client: QueryClient) => client.getQueryData<Pages<Message>>(keys.messages(t1.id))?.pages[0].items[0];

  it('the POST answer ("pending") applied after the websocket said failed or sent keeps that', () => {
    for (const first of ['failed', 'sent'] as const) {
      const client = new QueryClient();
      client.setQueryData(keys.messages(t1.id), pages<Message>([]));
      applyEvent(client, ev('message.created', { message: reply, ticket: framedTicket(t1) }), me);
      applyEvent(client, ev('message.status', { message: { ...reply, status: first, failure_reason: first === 'failed' ? 'sem WhatsApp' : null } }), me);
      applyMessage(client, reply); // Composer's onSuccess with the POST's answer
      expect(shown(client)?.status).toBe(first);
      expect(shown(client)?.failure_reason ?? null).toBe(first === 'failed' ? 'sem WhatsApp' : null);
    }
  });

  it('a status frame written before another but applied after it is ignored', () => {
    const client = new QueryClient();
    client.setQueryData(keys.messages(t1.id), pages([{ ...reply, status: 'sent' }]));
    applyEvent(client, ev('message.status', { message: { ...reply, status: 'delivered' } }), me);
    applyEvent(client, ev('message.status', { message: { ...reply, status: 'sent' } }), me);
    expect(shown(client)?.status).toBe('delivered');
    applyEvent(client, ev('message.status', { message: { ...reply, status: 'read' } }), me);
    expect(shown(client)?.status).toBe('read');
  });

  it('a thread read older than the status shown keeps the status (useMessages structural sharing)', async () => {
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    let answer: Message = { ...reply, status: 'sent' };
    const observer = new InfiniteQueryObserver(client, {
      queryKey: keys.messages(t1.id),
      initialPageParam: null as string | null,
      getNextPageParam: () => null,
      queryFn: () => Promise.resolve({ items: [answer], next_cursor: null }),
      structuralSharing: (known, fetched) => replaceEqualDeep(known, keepLaterStatuses(known, fetched)),
    });
    const unsubscribe = observer.subscribe(() => {});
    await vi.waitFor(() => expect(shown(client)?.status).toBe('sent'));
    applyEvent(client, ev('message.status', { message: { ...reply, status: 'delivered' } }), me);
    await observer.refetch(); // answered from a read taken before the delivery
    expect(shown(client)?.status).toBe('delivered');
    answer = { ...reply, status: 'read' };
    await observer.refetch();
    expect(shown(client)?.status).toBe('read');
    unsubscribe();
  });
});

describe('a ticket an agent finalized (finalized_by, backend/tickets/visibility.py)', () => {
  it('stays in its Finalizados though it holds no agent (finalized straight from espera)', () => {
    const client = new QueryClient();
    const t = ticketFixture({ status: 'finalizado', agent_id: null, finalized_at: '2025-01-01T13:00:00Z', finalized_by: me.id, version: 2 });
    client.setQueryData(keys.ticketList('finalizado', ''), pages([t]));
    expect(belongsIn(t, 'finalizado', me)).toBe(true);
    expect(belongsIn(t, 'finalizado', other)).toBe(false);
    applyEvent(client, ev('ticket.rated', { ticket: framedTicket({ ...t, rating: 5, version: 3 }) }), me);
    expect(ids(client.getQueryData(keys.ticketList('finalizado', '')))).toEqual([t.id]);
  });

  it('mirrors can_see: espera of my departments, what I hold, what I finalized; never the status of another list', () => {
    const dept = me.department_ids[0];
    const elsewhere = 'e'.repeat(24);
    expect(belongsIn(ticketFixture({ department_id: dept }), 'espera', me)).toBe(true);
    expect(belongsIn(ticketFixture({ department_id: elsewhere }), 'espera', me)).toBe(false);
    expect(belongsIn(ticketFixture({ department_id: elsewhere, agent_id: me.id }), 'espera', me)).toBe(true);
    expect(belongsIn(ticketFixture({ status: 'atendendo', department_id: dept, agent_id: other.id }), 'atendendo', me)).toBe(false);
    expect(belongsIn(ticketFixture({ status: 'finalizado', agent_id: other.id, finalized_by: me.id }), 'finalizado', me)).toBe(true);
    expect(belongsIn(ticketFixture({ status: 'finalizado', department_id: dept, finalized_by: other.id }), 'finalizado', me)).toBe(false);
    expect(belongsIn(ticketFixture({ status: 'finalizado', finalized_by: me.id }), 'espera', me)).toBe(false);
  });
});

describe('a message moved on by the finalize race (moved_from_ticket_id)', () => {
  it('leaves the finalized ticket\'s thread and counts as unread in the ticket it moved to', () => {
    const client = new QueryClient();
    const X = ticketFixture({ id: '1'.repeat(24), status: 'atendendo', agent_id: me.id });
    const Y = ticketFixture({ id: '9'.repeat(24) });
    client.setQueryData(keys.messages(X.id), pages<Message>([]));
    client.setQueryData(keys.ticketList('espera', ''), pages<Ticket>([]));
    const m = message({ ticket_id: X.id });
    applyEvent(client, ev('message.created', { message: m, ticket: framedTicket(X) }), me);
    applyEvent(client, ev('ticket.finalized', { ticket: framedTicket({ ...X, status: 'finalizado', version: 2 }) }), me);
    applyEvent(client, ev('ticket.created', { ticket: framedTicket(Y) }), me);
    const moved: Message = { ...m, ticket_id: Y.id, moved_from_ticket_id: X.id };
    applyEvent(client, ev('message.created', { message: moved, ticket: framedTicket(Y) }), me);
    applyEvent(client, ev('message.created', { message: moved, ticket: framedTicket(Y) }), me); // replayed

    expect(client.getQueryData<Pages<Message>>(keys.messages(X.id))?.pages[0].items).toEqual([]);
    const row = client.getQueryData<Pages<Ticket>>(keys.ticketList('espera', ''))?.pages[0].items[0];
    expect(row?.id).toBe(Y.id);
    expect(row?.unread_count).toBe(1); // as the server counts it in Y
  });
});

describe('scheduled.settled', () => {
  const waiting = (n: number, over: Partial<ScheduledMessage> = {}): ScheduledMessage => ({
    id: String(n).repeat(24), ticket_id: t1.id, ticket_number: t1.number, client_id: t1.client_id, client_name: t1.client_name,
    body: `agendada ${n}`, send_at: '2025-01-01T12:30:00Z', status: 'scheduled', reason: null, author_id: me.id, author_name: me.name,
    message_id: null, created_at: '2025-01-01T12:00:00Z', settled_at: null, ...over,
  });
  const settled = (schedule: ScheduledMessage, ticket: Ticket = t1) =>
    ev('scheduled.settled', { ticket: framedTicket(ticket), data: { schedule } });

  it("replaces the schedule in its ticket's strip, reads it and Agendamentos again, and moves no ticket", async () => {
    vi.useFakeTimers();
    const client = seeded();
    client.setQueryData(keys.counts, { espera: 3, atendendo: 0, finalizado: 0 });
    client.setQueryData(keys.events(t1.id), []);
    client.setQueryData(keys.scheduled(t1.id), [waiting(1), waiting(2)]);
    client.setQueryData([...keys.scheduledList, 'failed', ''], { items: [], next_cursor: null });
    const failed = waiting(1, { status: 'failed', reason: 'no_connection', settled_at: '2025-01-01T12:30:02Z' });
    applyEvent(client, settled(failed), me);
    expect(client.getQueryData<ScheduledMessage[]>(keys.scheduled(t1.id))).toEqual([failed, waiting(2)]);
    expect(client.getQueryState(keys.scheduled(t1.id))?.isInvalidated).toBe(true);
    expect(client.getQueryState([...keys.scheduledList, 'failed', ''])?.isInvalidated).toBe(true);
    // Its ticket is applied like any copy, where it was; the counts and the timeline are left alone.
    expect(ids(client.getQueryData(keys.ticketList('espera', '')))).toEqual([t1.id, t2.id, t3.id]);
    // Not even for a ticket not known here (which a ticket.* event would count as a move).
    const unknown = ticketFixture({ id: '9'.repeat(24), department_id: 'e'.repeat(24) });
    applyEvent(client, settled(waiting(4, { ticket_id: unknown.id }), unknown), me);
    await vi.advanceTimersByTimeAsync(COUNTS_REFRESH_MS * 2);
    vi.useRealTimers();
    expect(client.getQueryState(keys.counts)?.isInvalidated).toBe(false);
    expect(client.getQueryState(keys.events(t1.id))?.isInvalidated).toBe(false);
  });

  it('leaves a strip without that schedule (or never read) to its next read', () => {
    const client = seeded();
    client.setQueryData(keys.scheduled(t1.id), [waiting(2)]);
    applyEvent(client, settled(waiting(1, { status: 'sent', message_id: 'm'.repeat(24) })), me);
    expect(client.getQueryData<ScheduledMessage[]>(keys.scheduled(t1.id))).toEqual([waiting(2)]);
    expect(client.getQueryState(keys.scheduled(t1.id))?.isInvalidated).toBe(true);
    applyEvent(client, settled(waiting(3, { ticket_id: t2.id, status: 'canceled', reason: 'finalized' }), t2), me);
    expect(client.getQueryData(keys.scheduled(t2.id))).toBeUndefined();
  });

  it('a read of the strip in flight when the event arrives never puts the schedule back to waiting', async () => {
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    const answers: ((list: ScheduledMessage[]) => void)[] = [];
    let reads = 0;
    const observer = new QueryObserver<ScheduledMessage[]>(client, {
      queryKey: keys.scheduled(t1.id),
      queryFn: () => {
        reads += 1;
        if (reads === 1) return Promise.resolve([waiting(1)]);
        return new Promise<ScheduledMessage[]>((resolve) => answers.push(resolve));
      },
    });
    const stop = observer.subscribe(() => undefined);
    const shown = () => client.getQueryData<ScheduledMessage[]>(keys.scheduled(t1.id))?.map((s) => s.status);
    await vi.waitFor(() => expect(shown()).toEqual(['scheduled']));

    void client.invalidateQueries({ queryKey: keys.scheduled(t1.id) }); // the poll
    await vi.waitFor(() => expect(reads).toBe(2));
    const sent = waiting(1, { status: 'sent', message_id: 'm'.repeat(24) });
    applyEvent(client, settled(sent), me);
    expect(shown()).toEqual(['sent']);
    expect(reads).toBe(3); // read again after the event, once

    answers[0]([waiting(1)]); // read before it was sent: ignored
    await new Promise((r) => setTimeout(r, 10));
    expect(shown()).toEqual(['sent']);
    answers[1]([sent]);
    await vi.waitFor(() => expect(observer.getCurrentResult().isFetching).toBe(false));
    expect(shown()).toEqual(['sent']);
    stop();
  });
});
