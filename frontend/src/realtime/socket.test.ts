import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RealtimeClient, wsUrl } from './socket';

class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 1;
  sent: string[] = [];
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  frame(data: object) {
    this.onmessage?.({ data: JSON.stringify(data) });
  }
  serverClose(code: number) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

const event = (seq: number) => ({ type: 'event', seq, event: 'ticket.created', at: '', ticket: null, message: null, connection: null });

function start(overrides: Partial<ConstructorParameters<typeof RealtimeClient>[0]> = {}) {
  const calls = { events: [] as number[], resyncs: 0, authFailed: 0, statuses: [] as string[] };
  const client = new RealtimeClient({
    url: (since) => `ws://x/api/v1/ws?token=t${since === null ? '' : `&since=${since}`}`,
    onEvent: (e) => calls.events.push(e.seq),
    onResync: () => (calls.resyncs += 1),
    onAuthFailed: () => (calls.authFailed += 1),
    onStatus: (s) => calls.statuses.push(s),
    WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    backoff: (attempt) => 100 * (attempt + 1),
    ...overrides,
  });
  client.start();
  return { client, calls, socket: () => FakeSocket.all[FakeSocket.all.length - 1] };
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe('RealtimeClient', () => {
  it('connects without since, opens on hello and answers pings with pong', () => {
    const { calls, socket } = start();
    expect(socket().url).toBe('ws://x/api/v1/ws?token=t');
    socket().frame({ type: 'hello', seq: 41, heartbeat: 25 });
    expect(calls.statuses).toEqual(['connecting', 'open']);
    socket().frame({ type: 'ping' });
    expect(socket().sent).toEqual(['{"type":"pong"}']);
  });

  it('delivers events in order once and resumes after the last seq on a slow-consumer close', () => {
    const { client, calls, socket } = start();
    socket().frame({ type: 'hello', seq: 10, heartbeat: 25 });
    socket().frame(event(11));
    socket().frame(event(12));
    socket().frame(event(12)); // replayed twice: ignored
    expect(calls.events).toEqual([11, 12]);
    expect(client.seq).toBe(12);

    socket().serverClose(4408);
    vi.advanceTimersByTime(0);
    expect(FakeSocket.all).toHaveLength(2);
    expect(socket().url).toBe('ws://x/api/v1/ws?token=t&since=12');
    socket().frame({ type: 'hello', seq: 14, heartbeat: 25 });
    socket().frame(event(13));
    expect(calls.events).toEqual([11, 12, 13]);
  });

  it('backs off on network drops and resets the backoff once a hello arrives', () => {
    const { socket } = start();
    socket().frame({ type: 'hello', seq: 1, heartbeat: 25 });
    socket().serverClose(1006);
    vi.advanceTimersByTime(99);
    expect(FakeSocket.all).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all).toHaveLength(2);
    socket().serverClose(1006); // no hello in between: the next wait is longer
    vi.advanceTimersByTime(199);
    expect(FakeSocket.all).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all).toHaveLength(3);
    expect(socket().url).toContain('since=1');
  });

  it('stops and reports when the token is refused (4401)', () => {
    const { calls, socket } = start();
    socket().serverClose(4401);
    vi.advanceTimersByTime(60_000);
    expect(calls.authFailed).toBe(1);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('passes resync frames on', () => {
    const { calls, socket } = start();
    socket().frame({ type: 'resync', reason: 'too old' });
    expect(calls.resyncs).toBe(1);
  });

  it('goes on live from the server head after a feed rolled back (resync: since is ahead of the feed)', () => {
    const { client, calls, socket } = start();
    socket().frame({ type: 'hello', seq: 500, heartbeat: 25 });
    socket().frame(event(501));
    socket().serverClose(1001);
    vi.advanceTimersByTime(100);
    expect(socket().url).toContain('since=501');
    // A restored database: the feed's head is 40 now, the server replays nothing and goes on from it.
    socket().frame({ type: 'hello', seq: 40, heartbeat: 25 });
    socket().frame({ type: 'resync', reason: 'since is ahead of the feed' });
    expect(calls.resyncs).toBe(1);
    for (let seq = 41; seq <= 43; seq++) socket().frame(event(seq));
    socket().frame(event(43)); // still deduplicated
    expect(calls.events).toEqual([501, 41, 42, 43]);
    expect(client.seq).toBe(43);
    socket().serverClose(1006);
    vi.advanceTimersByTime(100);
    expect(socket().url).toContain('since=43');
  });

  it('keeps its place on a resync mid-stream (access changed) and on a reconnect the server replays', () => {
    const { client, calls, socket } = start();
    socket().frame({ type: 'hello', seq: 10, heartbeat: 25 });
    socket().frame(event(11));
    socket().frame({ type: 'resync', reason: 'access changed' });
    expect(client.seq).toBe(11);
    socket().frame(event(12));
    socket().serverClose(1006);
    vi.advanceTimersByTime(100);
    expect(socket().url).toContain('since=12');
    socket().frame({ type: 'hello', seq: 15, heartbeat: 25 }); // then the replay of 13..15
    for (const seq of [13, 14, 15]) socket().frame(event(seq));
    expect(calls.events).toEqual([11, 12, 13, 14, 15]);
    // Another process behind the client (no resync): the client's place stands, the server skips to it.
    socket().serverClose(1006);
    vi.advanceTimersByTime(100);
    socket().frame({ type: 'hello', seq: 9, heartbeat: 25 });
    socket().frame(event(16));
    expect(calls.events).toEqual([11, 12, 13, 14, 15, 16]);
  });

  it('treats a silent connection as dead and reconnects', () => {
    const { socket } = start();
    socket().frame({ type: 'hello', seq: 5, heartbeat: 2 });
    vi.advanceTimersByTime(4_999);
    expect(FakeSocket.all).toHaveLength(1);
    vi.advanceTimersByTime(1 + 100);
    expect(FakeSocket.all).toHaveLength(2);
    expect(socket().url).toContain('since=5');
  });

  it('does not reconnect after stop()', () => {
    const { client, socket } = start();
    client.stop();
    socket().serverClose(1006);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});

describe('wsUrl', () => {
  it('uses the page origin and wss on https', () => {
    const location = { protocol: 'https:', host: 'app.example.com' } as Location;
    expect(wsUrl('a.b.c', 9, location)).toBe('wss://app.example.com/api/v1/ws?token=a.b.c&since=9');
    expect(wsUrl('tok', null, { protocol: 'http:', host: 'localhost:5173' } as Location)).toBe('ws://localhost:5173/api/v1/ws?token=tok');
  });
});
