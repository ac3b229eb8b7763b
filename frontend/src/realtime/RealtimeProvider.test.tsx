import { useMutation } from '@tanstack/react-query';
import { act, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useTicketList } from '../api/queries';
import type { Ticket } from '../api/types';
import { useAuth } from '../auth/session';
import { agentUser, mockApi, renderApp, signIn, ticketFixture } from '../test/utils';

/** A socket that records where it was opened; the test closes it as the server would. */
class FakeSocket {
  static opened: FakeSocket[] = [];
  readyState = 0;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.opened.push(this);
  }
  send() {}
  close() {
    this.readyState = 3;
  }
  frame(data: object) {
    act(() => this.onmessage?.({ data: JSON.stringify(data) }));
  }
}

function Probe({ change }: { change: () => Promise<void> }) {
  const { session, updateSession } = useAuth();
  const password = useMutation({ mutationFn: change, onSuccess: () => updateSession({ token: 'new-token' }) });
  return (
    <div>
      <span data-testid="token">{session?.token ?? 'signed out'}</span>
      <button onClick={() => password.mutate()}>trocar</button>
    </div>
  );
}

beforeEach(() => {
  FakeSocket.opened = [];
  vi.stubGlobal('WebSocket', FakeSocket);
  mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: agentUser() } : undefined));
  signIn(agentUser(), 'old-token');
});

afterEach(() => {
  vi.unstubAllGlobals();
  window.localStorage.clear();
});

const tokenOf = (socket: FakeSocket) => new URL(socket.url).searchParams.get('token');

describe('the socket closed for a revoked token (4401)', () => {
  it('while a password change is still on its way back: the session keeps going with the new token', async () => {
    let answer: () => void = () => undefined;
    renderApp(<Probe change={() => new Promise<void>((resolve) => (answer = resolve))} />);
    await waitFor(() => expect(FakeSocket.opened).toHaveLength(1));

    await userEvent.click(screen.getByRole('button', { name: 'trocar' }));
    // The server ended the old token and closed its socket before the change's own answer arrived.
    act(() => FakeSocket.opened[0].onclose?.({ code: 4401 }));
    await new Promise((r) => setTimeout(r, 20));
    expect(screen.getByTestId('token')).toHaveTextContent('old-token');

    act(() => answer());
    await waitFor(() => expect(screen.getByTestId('token')).toHaveTextContent('new-token'));
    await waitFor(() => expect(FakeSocket.opened.map(tokenOf)).toContain('new-token'));
    expect(screen.getByTestId('token')).toHaveTextContent('new-token');
  });

  it('with nothing pending: the session ends', async () => {
    renderApp(<Probe change={() => Promise.resolve()} />);
    await waitFor(() => expect(FakeSocket.opened).toHaveLength(1));

    act(() => FakeSocket.opened[0].onclose?.({ code: 4401 }));

    await waitFor(() => expect(screen.getByTestId('token')).toHaveTextContent('signed out'));
  });
});

/** The espera list as the screen shows it, and the session user's departments. */
function Inbox() {
  const list = useTicketList('espera', '');
  const { session } = useAuth();
  const items = list.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <div>
      <span data-testid="list">{list.isSuccess ? items.map((t) => t.number).join(',') || 'empty' : 'loading'}</span>
      <span data-testid="departments">{session?.user.department_ids.join(',')}</span>
    </div>
  );
}

const d1 = 'd'.repeat(24);
const d2 = 'e'.repeat(24);
const created = (ticket: Ticket, seq: number) => {
  const { unread_count: _, ...framed } = ticket;
  return { type: 'event', seq, event: 'ticket.created', at: '', ticket: framed, message: null, connection: null };
};

describe('catching up', () => {
  it('reads the lists again once the first connection says hello: what was stored before it attached shows', async () => {
    const early = ticketFixture({ id: '1'.repeat(24), number: 1, department_id: d1 });
    const between = ticketFixture({ id: '2'.repeat(24), number: 2, department_id: d1, last_message_at: '2025-01-01T12:05:00Z' });
    let stored = [early];
    const calls = mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: agentUser() };
      if (path === '/api/v1/tickets') return { body: { items: stored, next_cursor: null } };
      return undefined;
    });
    renderApp(<Inbox />);
    await waitFor(() => expect(screen.getByTestId('list')).toHaveTextContent('1'));
    await waitFor(() => expect(FakeSocket.opened).toHaveLength(1));
    // Stored after the list was read, before the socket attached: the feed's head already counts it.
    stored = [between, early];
    FakeSocket.opened[0].frame({ type: 'hello', seq: 7, heartbeat: 25 });
    await waitFor(() => expect(screen.getByTestId('list')).toHaveTextContent('2,1'));
    expect(calls.filter((c) => c.path === '/api/v1/tickets')).toHaveLength(2);
  });

  it('on a resync (access changed) reads the user again: lists and live events follow its new departments', async () => {
    let departments = [d1];
    const inD2 = ticketFixture({ id: '3'.repeat(24), number: 3, department_id: d2 });
    let stored: Ticket[] = [];
    const calls = mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: agentUser({ department_ids: departments }) };
      if (path === '/api/v1/tickets') return { body: { items: stored, next_cursor: null } };
      return undefined;
    });
    renderApp(<Inbox />);
    await waitFor(() => expect(FakeSocket.opened).toHaveLength(1));
    const socket = FakeSocket.opened[0];
    socket.frame({ type: 'hello', seq: 1, heartbeat: 25 });
    await waitFor(() => expect(screen.getByTestId('list')).toHaveTextContent('empty'));
    const meReads = () => calls.filter((c) => c.path === '/api/v1/auth/me').length;
    const before = meReads();

    // The owner adds the agent to department 2; the server pushes a resync to its open socket.
    departments = [d1, d2];
    stored = [inD2];
    socket.frame({ type: 'resync', reason: 'access changed' });
    await waitFor(() => expect(screen.getByTestId('departments')).toHaveTextContent(`${d1},${d2}`));
    expect(meReads()).toBe(before + 1);
    await waitFor(() => expect(screen.getByTestId('list')).toHaveTextContent('3'));
    expect(JSON.parse(window.localStorage.getItem('iaze.session') ?? '{}').user.department_ids).toEqual([d1, d2]);

    // Live events now go by the new departments: a new ticket of department 2 joins the list,
    // and an event about the one shown keeps it there.
    const fresh = ticketFixture({ id: '4'.repeat(24), number: 4, department_id: d2, last_message_at: '2025-01-01T12:09:00Z' });
    socket.frame(created(fresh, 2));
    socket.frame({ ...created({ ...inD2, version: 2 }, 3), event: 'ticket.routed' });
    await waitFor(() => expect(screen.getByTestId('list')).toHaveTextContent('4,3'));
  });
});
