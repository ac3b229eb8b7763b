import type { RealtimeEvent, ServerFrame } from '../api/types';

export type SocketStatus = 'connecting' | 'open' | 'closed';

export type RealtimeOptions = {
  /** Websocket URL for a connection that resumes after `since` (null on the first connection). */
  url: (since: number | null) => string;
  onEvent: (event: RealtimeEvent) => void;
  /** The server cannot replay what was missed: refetch everything. */
  onResync: () => void;
  /** Closed with 4401: the token is no longer accepted. */
  onAuthFailed: () => void;
  onStatus?: (status: SocketStatus) => void;
  WebSocketImpl?: typeof WebSocket;
  /** Delay before reconnect attempt n (0-based), in ms. */
  backoff?: (attempt: number) => number;
};

export const CLOSE_AUTH = 4401;
export const CLOSE_SLOW = 4408;

export function defaultBackoff(attempt: number): number {
  const base = Math.min(10_000, 500 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

/**
 * One live connection to /api/v1/ws: answers pings, remembers the last sequence number seen and
 * reconnects with backoff asking for what came after it. Silence longer than a few heartbeats
 * counts as a dead connection.
 */
export class RealtimeClient {
  private ws: WebSocket | null = null;
  private lastSeq: number | null = null;
  /** Where the server's stream on the current connection stands: its head at `hello`, then each
   * event's seq. A `resync` continues live from there (see `handle`). */
  private streamSeq: number | null = null;
  private attempt = 0;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private silenceTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatMs = 30_000;
  private readonly Impl: typeof WebSocket;
  private readonly backoff: (attempt: number) => number;

  constructor(private readonly options: RealtimeOptions) {
    this.Impl = options.WebSocketImpl ?? WebSocket;
    this.backoff = options.backoff ?? defaultBackoff;
  }

  get seq(): number | null {
    return this.lastSeq;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000);
    this.options.onStatus?.('closed');
  }

  private connect(): void {
    this.options.onStatus?.('connecting');
    this.streamSeq = null;
    const ws = new this.Impl(this.options.url(this.lastSeq));
    this.ws = ws;
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      this.armSilenceTimer();
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(msg.data)) as ServerFrame;
      } catch {
        return;
      }
      this.handle(ws, frame);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.lost(ev.code);
    };
  }

  /** The current connection is gone (closed by the server, or silent too long): retry unless told not to. */
  private lost(code: number): void {
    this.ws = null;
    this.clearTimers();
    this.options.onStatus?.('closed');
    if (this.stopped) return;
    if (code === CLOSE_AUTH) {
      this.stopped = true;
      this.options.onAuthFailed();
      return;
    }
    const delay = code === CLOSE_SLOW ? 0 : this.backoff(this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private handle(ws: WebSocket, frame: ServerFrame): void {
    switch (frame.type) {
      case 'hello':
        // `seq` is the feed's head (backend/realtime/routes.py `_send`). A first connection goes on
        // live from it. A reconnect keeps its own lastSeq for now: what follows is the replay of
        // since+1..head (each event above lastSeq taken), or, for a since ahead of the head,
        // either nothing (this server process is behind the client: it skips to since) or a
        // resync (the feed was rolled back), which moves lastSeq to this head.
        this.attempt = 0;
        this.streamSeq = frame.seq;
        if (frame.heartbeat > 0) this.heartbeatMs = frame.heartbeat * 1000;
        if (this.lastSeq === null) this.lastSeq = frame.seq;
        this.armSilenceTimer();
        this.options.onStatus?.('open');
        return;
      case 'ping':
        ws.send(JSON.stringify({ type: 'pong' }));
        return;
      case 'resync':
        // The server replays nothing and goes on live from where its stream stands: the hello's
        // head, or the last event sent on this socket ("access changed" comes mid-stream). That
        // may be below lastSeq (the feed was rolled back, e.g. a restored database: "since is
        // ahead of the feed"); keeping the old lastSeq would drop every live event up to it as a
        // replay, a frozen screen on a socket showing connected.
        if (this.streamSeq !== null) this.lastSeq = this.streamSeq;
        this.options.onResync();
        return;
      case 'event':
        if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // replayed twice
        this.lastSeq = frame.seq;
        this.streamSeq = frame.seq;
        this.options.onEvent(frame);
        return;
    }
  }

  private armSilenceTimer(): void {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    const ws = this.ws;
    this.silenceTimer = setTimeout(() => {
      if (!ws || this.ws !== ws) return;
      ws.close(4000);
      this.lost(4000);
    }, this.heartbeatMs * 2.5);
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.retryTimer = null;
    this.silenceTimer = null;
  }
}

export function wsUrl(token: string, since: number | null, location: Location = window.location): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const params = new URLSearchParams({ token });
  if (since !== null) params.set('since', String(since));
  return `${scheme}//${location.host}/api/v1/ws?${params.toString()}`;
}
