import { Button, Stack, Text } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { useLocation, useNavigate } from 'react-router';
import { useConnections } from '../../api/queries';
import type { ConnectionState, RealtimeEvent } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { useRealtimeEvents } from '../../realtime/RealtimeProvider';
import { namesById, useUnstaffedDepartments } from '../reseller/staffing';
import {
  alertFor,
  alertsEnabled,
  canNotify,
  pendingCount,
  scheduleFailureFor,
  titleWith,
  withAlert,
  withoutTicket,
  type Pending,
  type ScheduleFailure,
} from './alerts';
import { playChime } from './sound';

type AlertsApi = { clearTicket: (ticketId: string) => void; pending: number };
const AlertsContext = createContext<AlertsApi>({ clearTicket: () => undefined, pending: 0 });
const SEEN_KEEP = 500;

function openTicketId(pathname: string): string | undefined {
  return /^\/atendimento\/([0-9a-f]{24})/.exec(pathname)?.[1];
}

function looking(): boolean {
  return document.visibilityState === 'visible' && document.hasFocus();
}

/** The agent's alerts and the owner's (features/alerts/alerts.ts `alertFor`): sound and desktop
 * notification (when its toggle is on), and the tab title counting the tickets' alerts waiting for
 * it. Opening a ticket clears its alerts; a notification opens its ticket, or its page (a WhatsApp
 * connection down: Conexões). Apart from those, the author of a scheduled message the server
 * could not send gets a red toast in the app (alerts.ts `scheduleFailureFor`) that opens its ticket. */
export function AlertsProvider({ children }: { children: ReactNode }) {
  const me = useMe();
  const unstaffedDepartments = useUnstaffedDepartments();
  const unstaffed = useMemo(() => namesById(unstaffedDepartments), [unstaffedDepartments]);
  // The owner's connections' statuses before each event (a drop is a change from open): its
  // listener runs after the cache applied the event, so they are kept here, from the list as read
  // and from each event as it passes.
  const connections = useConnections(me.role === 'reseller').data;
  const connectionStates = useRef(new Map<string, ConnectionState>());
  useEffect(() => {
    for (const c of connections ?? []) connectionStates.current.set(c.id, c.status);
  }, [connections]);
  const navigate = useNavigate();
  const location = useLocation();
  const [pending, setPending] = useState<Pending>(new Map());
  const seen = useRef(new Set<string>());
  const baseTitle = useRef(document.title);
  const openId = openTicketId(location.pathname);
  const openRef = useRef(openId);
  openRef.current = openId;

  const clearTicket = useCallback((ticketId: string) => setPending((p) => withoutTicket(p, ticketId)), []);

  // The feed is at-least-once (a replay after a reconnect repeats events): each alert once.
  const firstTime = (key: string) => {
    if (seen.current.has(key)) return false;
    seen.current.add(key);
    if (seen.current.size > SEEN_KEEP) seen.current.delete(seen.current.values().next().value as string);
    return true;
  };
  const showScheduleFailure = (failure: ScheduleFailure) => {
    const open = () => {
      notifications.hide(failure.key);
      navigate(`/atendimento/${failure.ticketId}`);
    };
    notifications.show({
      id: failure.key,
      color: 'red',
      title: t.alerts.scheduleFailedTitle,
      autoClose: false, // until the author closes it or opens the ticket: the client is still waiting
      message: (
        <Stack gap={4} align="flex-start">
          <Text size="sm">{failure.message}</Text>
          <Button size="compact-xs" variant="light" color="red" onClick={open}>
            {t.alerts.openTicket}
          </Button>
        </Stack>
      ),
    });
  };

  useRealtimeEvents((event: RealtimeEvent) => {
    const failure = scheduleFailureFor(event, me);
    if (failure && firstTime(failure.key)) showScheduleFailure(failure);
    const alert = alertFor(event, me, unstaffed, connectionStates.current);
    if (event.connection?.status) connectionStates.current.set(event.connection.id, event.connection.status);
    if (!alert || !firstTime(alert.key)) return;
    if (alert.ticketId !== undefined) {
      if (alert.ticketId === openRef.current && looking()) return; // already in front of the agent
      setPending((p) => withAlert(p, alert.ticketId));
    }
    if (!alertsEnabled(me.id)) return;
    playChime();
    if (!canNotify()) return;
    const notification = new Notification(alert.title, { body: alert.body, tag: alert.key });
    notification.onclick = () => {
      window.focus();
      navigate(alert.ticketId !== undefined ? `/atendimento/${alert.ticketId}` : alert.href);
      notification.close();
    };
  });

  useEffect(() => {
    // Back at the window: what the open ticket alerted about is in front of the agent now.
    const back = () => {
      if (openRef.current && looking()) clearTicket(openRef.current);
    };
    window.addEventListener('focus', back);
    document.addEventListener('visibilitychange', back);
    return () => {
      window.removeEventListener('focus', back);
      document.removeEventListener('visibilitychange', back);
    };
  }, [clearTicket]);

  const count = pendingCount(pending);
  useEffect(() => {
    document.title = titleWith(baseTitle.current, count);
  }, [count]);
  useEffect(() => {
    const base = baseTitle.current;
    return () => {
      document.title = base;
    };
  }, []);

  const api = useMemo(() => ({ clearTicket, pending: count }), [clearTicket, count]);
  return <AlertsContext.Provider value={api}>{children}</AlertsContext.Provider>;
}

export function useAlerts(): AlertsApi {
  return useContext(AlertsContext);
}
