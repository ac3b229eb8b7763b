import { type InfiniteData, replaceEqualDeep, useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, unwrap } from './client';
import { keepLaterStatuses, keys, setUnread } from '../realtime/cache';
import type {
  Department,
  Message,
  Page,
  ResellerConfigUpdate,
  Ticket,
  TicketEvent,
  TicketStatus,
  User,
  WhatsAppConnection,
  WhatsAppConnectionCreate,
  WhatsAppConnectionUpdate,
} from './types';

const PAGE = 50;

/** The inbox's filters beyond status and search (GET /tickets); `from`/`to` are calendar days
 * (yyyy-mm-dd, both inclusive) sent as picked: the API reads them in the company's timezone, which
 * the browser's may not be. */
export type TicketFilters = {
  department_id?: string;
  agent_id?: string;
  connection_id?: string;
  tag?: string;
  from?: string;
  to?: string;
};

export function useTicketList(status: TicketStatus, q: string, filters: TicketFilters = {}) {
  const active = Object.fromEntries(Object.entries(filters).filter(([, v]) => v)) as TicketFilters;
  const filterKey = q || Object.keys(active).length ? JSON.stringify({ q, ...active }) : '';
  return useInfiniteQuery({
    queryKey: keys.ticketList(status, filterKey),
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/tickets', {
          params: {
            query: {
              status,
              limit: PAGE,
              cursor: pageParam ?? undefined,
              q: q || undefined,
              department_id: active.department_id,
              agent_id: active.agent_id,
              connection_id: active.connection_id,
              tag: active.tag,
              opened_from_day: active.from,
              opened_to_day: active.to,
            },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
  });
}

/** The tabs' totals, within one department when `departmentId` is given (the inbox's filter;
 * the backend counts by department only). The key extends `keys.counts`, so invalidating the
 * counts refreshes every department's. */
export function useTicketCounts(departmentId?: string) {
  return useQuery({
    queryKey: departmentId ? [...keys.counts, departmentId] : keys.counts,
    queryFn: () =>
      unwrap(api.GET('/api/v1/tickets/counts', { params: { query: departmentId ? { department_id: departmentId } : {} } })),
  });
}

export function useTicket(id: string) {
  return useQuery({
    queryKey: keys.ticket(id),
    queryFn: () => unwrap(api.GET('/api/v1/tickets/{ticket_id}', { params: { path: { ticket_id: id } } })),
  });
}

/** A ticket's thread: pages[0] is the newest page (the API answers it without a cursor), each
 * next page is older. Screens show the pages reversed; refetches start again from the newest. */
export function useMessages(ticketId: string) {
  return useInfiniteQuery({
    queryKey: keys.messages(ticketId),
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/tickets/{ticket_id}/messages', {
          params: { path: { ticket_id: ticketId }, query: { limit: THREAD_PAGE, cursor: pageParam ?? undefined } },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
    // A received attachment is stored at once and its bytes fetched after it; the fetch announces
    // the message again (`message.status`, with its media) and the realtime cache applies it. This
    // slow look is the fallback for a process that died between storing the bytes and announcing.
    refetchInterval: (query) => pendingMediaPoll(query.state.data),
    // A read never moves a delivery status shown back (realtime/delivery.ts).
    structuralSharing: (known, fetched) => replaceEqualDeep(known, keepLaterStatuses(known, fetched)),
  });
}

export const MEDIA_POLL_MS = 15_000;

/** How soon a loaded thread looks again: while one of its attachments waits for its bytes, else never. */
export function pendingMediaPoll(data: InfiniteData<Page<Message>, string | null> | undefined): number | false {
  return data?.pages.some((page) => page.items.some((m) => m.media?.status === 'pending')) ? MEDIA_POLL_MS : false;
}
const THREAD_PAGE = 50;

/** The ticket's timeline (assumed, transferred, finalized): a handful per ticket, all loaded. */
export function useTicketEvents(ticketId: string) {
  return useQuery({
    queryKey: keys.events(ticketId),
    queryFn: () =>
      allPages<TicketEvent>((cursor) =>
        unwrap(
          api.GET('/api/v1/tickets/{ticket_id}/events', {
            params: { path: { ticket_id: ticketId }, query: { limit: 200, cursor } },
          }),
        ),
      ),
  });
}

/** The client's other tickets, seen through this one (newest opened first). */
export function useClientHistory(ticketId: string) {
  return useInfiniteQuery({
    queryKey: keys.history(ticketId),
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/tickets/{ticket_id}/history', {
          params: { path: { ticket_id: ticketId }, query: { limit: 20, cursor: pageParam ?? undefined } },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
  });
}

/** One earlier ticket's thread, read through the current ticket; paged like useMessages. */
export function useHistoryMessages(ticketId: string, otherId: string | null) {
  return useInfiniteQuery({
    queryKey: keys.historyMessages(ticketId, otherId ?? ''),
    enabled: otherId !== null,
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/tickets/{ticket_id}/history/{other_id}/messages', {
          params: {
            path: { ticket_id: ticketId, other_id: otherId ?? '' },
            query: { limit: THREAD_PAGE, cursor: pageParam ?? undefined },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
    // Realtime events reach whoever sees a ticket, and a history reader may not see the earlier
    // one: an attachment still being fetched there is looked at again, slowly.
    refetchInterval: (query) => pendingMediaPoll(query.state.data),
  });
}

/** Loads every page of a small admin list (departments, agents): these stay in the tens. */
export async function allPages<T>(fetchPage: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor?: string | null }>) {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 50; i += 1) {
    const page = await fetchPage(cursor);
    items.push(...page.items);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return items;
}

export function useDepartments(enabled = true) {
  return useQuery({
    queryKey: keys.departments,
    enabled,
    queryFn: () =>
      allPages<Department>((cursor) =>
        unwrap(api.GET('/api/v1/departments', { params: { query: { limit: 200, cursor } } })),
      ),
  });
}

export function useAgents(enabled = true) {
  return useQuery({
    queryKey: keys.agents,
    enabled,
    queryFn: () =>
      allPages<User>((cursor) => unwrap(api.GET('/api/v1/users', { params: { query: { limit: 200, cursor } } }))),
  });
}

/** After a mutation answered with the fresh ticket: the cache takes it, lists and counts refresh. */
/** The thread is on screen: the user's unread count of the ticket clears (POST /tickets/{id}/read). */
export function useMarkRead(ticketId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: () => unwrap(api.POST('/api/v1/tickets/{ticket_id}/read', { params: { path: { ticket_id: ticketId } } })),
    onSuccess: (ticket) => setUnread(client, ticket.id, () => ticket.unread_count),
  });
}

export function useTicketUpdated() {
  const client = useQueryClient();
  return (ticket: Ticket) => {
    client.setQueryData(keys.ticket(ticket.id), ticket);
    void client.invalidateQueries({ queryKey: keys.tickets });
  };
}

export function useConnections(enabled = true) {
  return useQuery({
    queryKey: keys.connections,
    enabled,
    queryFn: () =>
      allPages<WhatsAppConnection>((cursor) =>
        unwrap(api.GET('/api/v1/whatsapp-connections', { params: { query: { limit: 200, cursor } } })),
      ),
  });
}

export function useCreateConnection() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (body: WhatsAppConnectionCreate) => unwrap(api.POST('/api/v1/whatsapp-connections', { body })),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.connections }),
  });
}

export function useUpdateConnection() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ id, ...body }: WhatsAppConnectionUpdate & { id: string }) =>
      unwrap(
        api.PATCH('/api/v1/whatsapp-connections/{connection_id}', { params: { path: { connection_id: id } }, body }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.connections }),
  });
}

export function useQrCode(id: string, enabled: boolean) {
  return useQuery({
    queryKey: [...keys.connections, id, 'qrcode'],
    enabled,
    queryFn: () =>
      unwrap(
        api.GET('/api/v1/whatsapp-connections/{connection_id}/qrcode', { params: { path: { connection_id: id } } }),
      ),
    // The provider rotates the QR code about every 20-40 s; the websocket reports status changes.
    refetchInterval: (query) => (query.state.data?.status === 'open' ? false : 15_000),
  });
}

export function useResellerConfig() {
  return useQuery({ queryKey: keys.config, queryFn: () => unwrap(api.GET('/api/v1/reseller-config')) });
}

export function useUpdateResellerConfig() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (body: ResellerConfigUpdate) => unwrap(api.PATCH('/api/v1/reseller-config', { body })),
    onSuccess: (data) => client.setQueryData(keys.config, data),
  });
}

export function useQuickReplies(enabled = true) {
  return useQuery({
    queryKey: keys.quickReplies,
    enabled,
    queryFn: async () => (await unwrap(api.GET('/api/v1/quick-replies'))).items,
  });
}

/** Every tag in use in the tenant; `on`: only the ones on clients (or on tickets). */
export function useTags(on?: 'clients' | 'tickets') {
  return useQuery({
    queryKey: on ? [...keys.tags, on] : keys.tags,
    queryFn: async () => (await unwrap(api.GET('/api/v1/tags', { params: { query: { on } } }))).items,
  });
}

/** `withInactive`: deactivated contacts too (by default the list holds the active ones). */
export function useClients(q: string, tag: string, withInactive = false) {
  return useInfiniteQuery({
    queryKey: [...keys.clients, q, tag, withInactive],
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/clients', {
          params: {
            query: { limit: PAGE, cursor: pageParam ?? undefined, q: q || undefined, tag: tag || undefined, active: withInactive ? undefined : true },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
  });
}
