import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
import { useQueryClient, type QueryClient } from '@tanstack/react-query';
import type { RealtimeEvent } from '../api/types';
import { loadSession, useAuth } from '../auth/session';
import { applyEvent, resyncAll } from './cache';
import { RealtimeClient, wsUrl, type SocketStatus } from './socket';

const StatusContext = createContext<SocketStatus>('closed');
type Listener = (event: RealtimeEvent) => void;
const ListenersContext = createContext<Set<Listener>>(new Set());

function mutationsSettled(queryClient: QueryClient): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (queryClient.isMutating() > 0) return;
      unsubscribe();
      resolve();
    };
    const unsubscribe = queryClient.getMutationCache().subscribe(check);
    check();
  });
}

/** Keeps one websocket open while signed in and feeds its events into the query cache. */
export function RealtimeProvider({ children }: { children: ReactNode }) {
  const { session, logout, refreshUser } = useAuth();
  const queryClient = useQueryClient();
  const [status, setStatus] = useState<SocketStatus>('closed');
  const [listeners] = useState(() => new Set<Listener>());
  const userRef = useRef(session?.user);
  userRef.current = session?.user;
  const token = session?.token;
  const isAdmin = session?.user.role === 'admin';

  useEffect(() => {
    if (!token || isAdmin) return; // admins have no tenant feed
    let reconnected = false;
    let stopped = false;
    /** Everything cached, and the session's user: the server's `resync` also means "your access
     * changed" (new departments, backend/realtime/routes.py `_recheck`), and the user decides which
     * live events go into which list (belongsIn), and the alerts. Events applied before the user is
     * read again went by the old departments: when they changed, the lists are read once more. */
    const refreshAll = () => {
      resyncAll(queryClient);
      void refreshUser().then((user) => {
        if (!user || stopped) return;
        const before = userRef.current;
        userRef.current = user; // at once, before React renders the new session
        if (!before || before.role !== user.role || before.department_ids.join() !== user.department_ids.join()) {
          resyncAll(queryClient);
        }
      });
    };
    const client = new RealtimeClient({
      url: (since) => wsUrl(token, since),
      onEvent: (event) => {
        if (userRef.current) applyEvent(queryClient, event, userRef.current);
        for (const listener of listeners) listener(event);
      },
      onResync: refreshAll,
      onAuthFailed: () => {
        // A password change ends this token and may close the socket before its own answer, with
        // the session's new token, arrives: only a token still current after that means signed out.
        void mutationsSettled(queryClient).then(() => {
          if (loadSession()?.token === token) logout();
        });
      },
      onStatus: (next) => {
        if (next === 'open') {
          if (reconnected) {
            // Whatever happened while the socket was down was replayed from `since`, or a resync
            // follows; the user (its departments may have changed meanwhile, and the server only
            // pushes that to an open socket) and the lists are still refreshed once, so a lost
            // replay can never leave them stale.
            refreshAll();
          } else {
            // The first connection replays nothing: its hello starts the feed at the current
            // head, and what was stored between the screen's first reads and the socket
            // attaching would never be shown. The queries in use are read again once, now that
            // every later event comes live (one still in flight is restarted after the hello).
            resyncAll(queryClient);
          }
        }
        if (next === 'closed') reconnected = true;
        setStatus(next);
      },
    });
    client.start();
    return () => {
      stopped = true;
      client.stop();
    };
  }, [token, isAdmin, queryClient, logout, listeners, refreshUser]);

  return (
    <ListenersContext.Provider value={listeners}>
      <StatusContext.Provider value={status}>{children}</StatusContext.Provider>
    </ListenersContext.Provider>
  );
}

/** Calls `listener` with every live event, after the cache has applied it. */
export function useRealtimeEvents(listener: Listener): void {
  const listeners = useContext(ListenersContext);
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => {
    const call: Listener = (event) => ref.current(event);
    listeners.add(call);
    return () => {
      listeners.delete(call);
    };
  }, [listeners]);
}

export function useRealtimeStatus(): SocketStatus {
  return useContext(StatusContext);
}
