import { act, render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter, Route, Routes } from 'react-router';
import { vi } from 'vitest';
import { makeQueryClient, Providers } from '../App';
import type { Message, Ticket, User } from '../api/types';

export type Handler = (request: { method: string; path: string; body: unknown; url: URL }) =>
  | { status?: number; body?: unknown }
  | undefined;

/** Stubs fetch with a router of handlers; unmatched requests fail the test loudly (status 599). */
export function mockApi(handler: Handler) {
  const calls: { method: string; path: string; body: unknown; headers: Headers }[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(String(input), init);
    const url = new URL(request.url);
    const text = await request.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text; // not JSON (a form)
    }
    calls.push({ method: request.method, path: url.pathname, body, headers: request.headers });
    const answer = handler({ method: request.method, path: url.pathname, body, url });
    if (!answer) return new Response(JSON.stringify({ detail: `unmocked ${request.method} ${url.pathname}` }), { status: 599 });
    if (answer.body instanceof Blob) return new Response(answer.body, { status: answer.status ?? 200, headers: { 'Content-Type': answer.body.type } });
    return new Response(answer.body === undefined ? null : JSON.stringify(answer.body), {
      status: answer.status ?? 200,
      headers: { 'Content-Type': 'application/json' },
    });
  });
  vi.stubGlobal('fetch', fetchMock);
  return calls;
}

/** Stops the realtime provider from opening a socket in component tests. */
export function stubWebSocket() {
  class Silent {
    readyState = 0;
    onmessage: unknown = null;
    onclose: unknown = null;
    send() {}
    close() {}
  }
  vi.stubGlobal('WebSocket', Silent);
}

/** A socket the test speaks through as the server would: `ServerSocket.last.frame(...)` delivers a
 * server frame to the socket the app opened most recently. */
export class ServerSocket {
  static last: ServerSocket | null = null;
  readyState = 0;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: unknown = null;
  constructor() {
    ServerSocket.last = this;
  }
  send() {}
  close() {}
  frame(data: object) {
    act(() => this.onmessage?.({ data: JSON.stringify(data) }));
  }
}

export function stubServerSocket(): typeof ServerSocket {
  ServerSocket.last = null;
  vi.stubGlobal('WebSocket', ServerSocket);
  return ServerSocket;
}

export function signIn(user: User, token = 'test-token') {
  window.localStorage.setItem('iaze.session', JSON.stringify({ token, user, expiresAt: Date.now() + 3_600_000 }));
}

export function renderApp(ui: ReactElement, { path = '/', route = '/' }: { path?: string; route?: string } = {}) {
  const client = makeQueryClient();
  client.setDefaultOptions({ queries: { retry: false, staleTime: Infinity }, mutations: { retry: false } });
  const result = render(
    <MemoryRouter initialEntries={[route]}>
      <Providers client={client}>
        <Routes>
          <Route path={path} element={ui} />
          <Route path="*" element={<div>outra página</div>} />
        </Routes>
      </Providers>
    </MemoryRouter>,
  );
  return { ...result, client };
}

export const agentUser = (over: Partial<User> = {}): User => ({
  id: 'a'.repeat(24),
  name: 'Ana Agente',
  email: 'ana@example.com',
  role: 'agent',
  reseller_id: 'r'.repeat(24),
  department_ids: ['d'.repeat(24)],
  active: true,
  created_at: '2025-01-01T00:00:00Z',
  ...over,
});

export const ticketFixture = (over: Partial<Ticket> = {}): Ticket => ({
  id: '1'.repeat(24),
  number: 7,
  status: 'espera',
  reseller_id: 'r'.repeat(24),
  client_id: 'c'.repeat(24),
  client_name: 'Maria Cliente',
  client_phone: '5511987654321',
  department_id: 'd'.repeat(24),
  agent_id: null,
  agent_name: null,
  channel: 'api',
  version: 1,
  last_message_at: '2025-01-01T12:00:00Z',
  last_message_preview: 'Oi',
  last_message_direction: 'in',
  last_message_automatic: false,
  created_at: '2025-01-01T12:00:00Z',
  updated_at: '2025-01-01T12:00:00Z',
  finalized_at: null,
  tags: [],
  unread_count: 0,
  out_of_hours: false,
  menu_pending: false,
  ...over,
});

/** The thread's n-th message of `ticketId`, stamped at minute n (a client's text unless `over` says otherwise). */
export const minuteAt = (minute: number) => `2025-01-01T12:${String(minute).padStart(2, '0')}:00Z`;
export function messageFixture(ticketId: string, n: number, over: Partial<Message> = {}): Message {
  return {
    id: n.toString(16).padStart(24, '0'),
    ticket_id: ticketId,
    direction: 'in',
    sender_type: 'client',
    sender_name: 'Maria',
    type: 'text',
    body: `mensagem ${n}`,
    status: 'received',
    created_at: minuteAt(n),
    automatic: false,
    ...over,
  };
}
