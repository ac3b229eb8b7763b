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
  const { session, logout } = useAuth();
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
    const client = new RealtimeClient({
      url: (since) => wsUrl(token, since),
      onEvent: (event) => {
        if (userRef.current) applyEvent(queryClient, event, userRef.current);
        for (const listener of listeners) listener(event);
      },
      onResync: () => resyncAll(queryClient),
      onAuthFailed: () => {
        // A password change ends this token and may close the socket before its own answer, with
        // the session's new token, arrives: only a token still current after that means signed out.
        void mutationsSettled(queryClient).then(() => {
          if (loadSession()?.token === token) logout();
        });
      },
      onStatus: (next) => {
        // Whatever happened while the socket was down was replayed from `since`, or a resync
        // follows; lists are still refreshed once so a lost replay can never leave them stale.
        if (next === 'open' && reconnected) resyncAll(queryClient);
        if (next === 'closed') reconnected = true;
        setStatus(next);
      },
    });
    client.start();
    return () => client.stop();
  }, [token, isAdmin, queryClient, logout, listeners]);

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
