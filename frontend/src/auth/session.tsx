import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { api, ApiError, configureAuth, unwrap } from '../api/client';
import type { User } from '../api/types';

const STORAGE_KEY = 'iaze.session';

export type Session = { token: string; user: User; expiresAt: number };

export function loadSession(storage: Storage = window.localStorage): Session | null {
  try {
    const raw = storage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const session = JSON.parse(raw) as Session;
    if (!session.token || !session.user || session.expiresAt <= Date.now()) {
      storage.removeItem(STORAGE_KEY);
      return null;
    }
    return session;
  } catch {
    return null;
  }
}

function saveSession(session: Session | null, storage: Storage = window.localStorage): void {
  if (session) storage.setItem(STORAGE_KEY, JSON.stringify(session));
  else storage.removeItem(STORAGE_KEY);
}

type AuthState = {
  session: Session | null;
  /** Why the last session ended without the user asking ('expired'), for the login page. */
  endedBecause: 'expired' | null;
  login: (email: string, password: string) => Promise<User>;
  logout: () => void;
  /** After the user changed itself (name, or password with its fresh token). */
  updateSession: (change: Partial<Session>) => void;
  /** Reads the user again (/auth/me) into the session, e.g. when the server says its access changed
   * (the realtime socket's `resync`): its departments decide what lists, counts and alerts hold.
   * Resolves with the user read, or null when it could not be read (a 401 ends the session). */
  refreshUser: () => Promise<User | null>;
};

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [endedBecause, setEndedBecause] = useState<'expired' | null>(null);

  const end = useCallback(
    (reason: 'expired' | null) => {
      saveSession(null);
      setSession(null);
      setEndedBecause(reason);
      queryClient.clear();
    },
    [queryClient],
  );

  // Registered synchronously so the very first requests already carry the token.
  configureAuth({ token: () => loadSession()?.token ?? null, onUnauthorized: () => end('expired') });

  const refreshUser = useCallback(async (): Promise<User | null> => {
    const token = loadSession()?.token;
    let user: User;
    try {
      user = await unwrap(api.GET('/api/v1/auth/me'));
    } catch {
      return null; // a 401 already ended the session through the middleware
    }
    // Kept only while the session it was read for goes on (not signed out or in as someone else).
    const current = loadSession();
    if (!current || current.token !== token || current.user.id !== user.id) return null;
    const next = { ...current, user };
    saveSession(next);
    setSession(next);
    return user;
  }, []);

  // A kept session is re-validated once: the user may have been deactivated or changed meanwhile.
  useEffect(() => {
    if (!session) return;
    void refreshUser();
    // Only when the token changes, not on every user refresh.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [session?.token]);

  const login = useCallback(async (email: string, password: string) => {
    const body = await unwrap(api.POST('/api/v1/auth/login', { body: { email, password } }));
    const next: Session = { token: body.access_token, user: body.user, expiresAt: Date.now() + body.expires_in * 1000 };
    saveSession(next);
    setEndedBecause(null);
    setSession(next);
    return body.user;
  }, []);

  const logout = useCallback(() => end(null), [end]);

  const updateSession = useCallback((change: Partial<Session>) => {
    // Stored at once, not in a state updater: the next request must already carry a new token.
    const current = loadSession();
    if (!current) return;
    const next = { ...current, ...change };
    saveSession(next);
    setSession(next);
  }, []);

  const value = useMemo(
    () => ({ session, endedBecause, login, logout, updateSession, refreshUser }),
    [session, endedBecause, login, logout, updateSession, refreshUser],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const value = useContext(AuthContext);
  if (!value) throw new Error('useAuth outside AuthProvider');
  return value;
}

/** The signed-in user; only for components rendered behind RequireAuth. */
export function useMe(): User {
  const { session } = useAuth();
  if (!session) throw new Error('useMe without a session');
  return session.user;
}

export function homeFor(user: User): string {
  if (user.role === 'admin') return '/admin/revendas';
  return '/atendimento';
}

export function isApiStatus(error: unknown, status: number): boolean {
  return error instanceof ApiError && error.status === status;
}
