import { useMutation } from '@tanstack/react-query';
import { act, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useAuth } from '../auth/session';
import { agentUser, mockApi, renderApp, signIn } from '../test/utils';

/** A socket that records where it was opened; the test closes it as the server would. */
class FakeSocket {
  static opened: FakeSocket[] = [];
  readyState = 0;
  onmessage: unknown = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.opened.push(this);
  }
  send() {}
  close() {
    this.readyState = 3;
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
