import { focusManager, useInfiniteQuery, useQuery, useQueryClient, type QueryKey } from '@tanstack/react-query';
import { useEffect } from 'react';
import { api, unwrap } from '../../api/client';
import { allPages } from '../../api/queries';
import type { Reseller, TicketStatus } from '../../api/types';
import { keys } from '../../realtime/cache';

// The platform admin reads any company's conversations and writes nothing there. The server
// refuses the admin a websocket (4403): what these screens show is read again instead, every
// REFRESH_MS while the page is visible (and on "Atualizar").

export const REFRESH_MS = 15_000;

/** A status's badge colour, as on the agents' ticket header. */
export const STATUS_COLOR: Record<string, string> = { espera: 'yellow', atendendo: 'teal', finalizado: 'gray' };
const PAGE = 50;

/** Every company, for the picker: a few dozen, all loaded. Not `keys.resellers`' pages (the
 * Revendas table), nor the reports' single page under ['resellers', 'all']: another shape. */
export function useCompanies() {
  return useQuery({
    queryKey: [...keys.resellers, 'every'],
    queryFn: () =>
      allPages<Reseller>((cursor) => unwrap(api.GET('/api/v1/resellers', { params: { query: { limit: 200, cursor } } }))),
  });
}

/** One company's tickets of one status. Kept apart from `keys.tickets` (the inbox's lists, which
 * live events patch as the user's own): these hold another tenant's tickets per company. */
export function useCompanyTickets(resellerId: string | null, status: TicketStatus, q: string) {
  return useInfiniteQuery({
    queryKey: ['admin', 'tickets', resellerId, status, q],
    enabled: !!resellerId,
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/tickets', {
          params: {
            query: { reseller_id: resellerId ?? undefined, status, q: q || undefined, limit: PAGE, cursor: pageParam ?? undefined },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? null,
    // refetchIntervalInBackground stays off: a hidden tab asks nothing.
    refetchInterval: REFRESH_MS,
  });
}

/** The department a ticket is in, by id: the admin's department list spans every company. */
export function useDepartmentName(id: string) {
  return useQuery({
    queryKey: [...keys.departments, id],
    queryFn: () => unwrap(api.GET('/api/v1/departments/{department_id}', { params: { path: { department_id: id } } })),
    select: (department) => department.name,
  });
}

/** Reads again, every REFRESH_MS while the page is visible, the queries under `key` that are on
 * screen. For a ticket, `keys.ticket(id)` covers it, its thread (every page loaded) and its events;
 * the thread's own hooks (features/ticket/MessageThread.tsx) stay as the agents' screen uses them. */
export function useRereadWhileVisible(key: QueryKey) {
  const client = useQueryClient();
  const serialized = JSON.stringify(key);
  useEffect(() => {
    const queryKey = JSON.parse(serialized) as QueryKey;
    const timer = window.setInterval(() => {
      if (focusManager.isFocused()) void client.invalidateQueries({ queryKey });
    }, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [client, serialized]);
}
