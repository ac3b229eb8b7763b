import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExportError, formatBytes, streamExport } from './exportStream';
import { signIn, agentUser } from '../../test/utils';

const encoder = new TextEncoder();

/** A streamed answer whose chunks are handed out one by one when `next()` is called. */
function controlledBody(chunks: string[]) {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  let i = 0;
  return {
    stream,
    next() {
      if (i < chunks.length) controller.enqueue(encoder.encode(chunks[i++]));
      else controller.close();
    },
    fail(reason: unknown) {
      controller.error(reason);
    },
  };
}

afterEach(() => vi.useRealTimers());

describe('streamExport', () => {
  it('reports bytes and data rows as chunks arrive, counting CRLF row ends split across chunks', async () => {
    signIn(agentUser({ role: 'reseller' }), 'tok-123');
    // header, a row whose quoted cell holds a bare LF, a row split inside its CRLF, a last row.
    const chunks = ['\ufeffnumero;texto\r\n1;"linha\num"\r', '\n2;dois\r\n', '3;três\r\n'];
    const body = controlledBody(chunks);
    const fetchMock = vi.fn(async () => new Response(body.stream, { status: 200, headers: { 'Content-Type': 'text/csv' } }));
    vi.stubGlobal('fetch', fetchMock);
    const seen: { bytes: number; rows: number }[] = [];
    const pending = streamExport('/api/v1/exports/tickets.csv?from=2025-01-01&to=2025-01-02', {
      onProgress: (p) => seen.push(p),
    });
    for (let k = 0; k <= chunks.length; k++) {
      body.next();
      await new Promise((r) => setTimeout(r, 0));
    }
    const { blob, progress } = await pending;
    const sizes = chunks.map((c) => encoder.encode(c).byteLength);
    expect(seen).toEqual([
      { bytes: sizes[0], rows: 0 },
      { bytes: sizes[0] + sizes[1], rows: 2 },
      { bytes: sizes[0] + sizes[1] + sizes[2], rows: 3 },
    ]);
    expect(progress).toEqual({ bytes: sizes[0] + sizes[1] + sizes[2], rows: 3 });
    const saved = await new Promise<ArrayBuffer>((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result as ArrayBuffer);
      reader.readAsArrayBuffer(blob);
    });
    expect(Array.from(new Uint8Array(saved))).toEqual(Array.from(encoder.encode(chunks.join('')))); // the BOM kept
    const init = (fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer tok-123');
  });

  it('stops when cancelled, and tells a refusal by its status', async () => {
    const body = controlledBody(['\ufeffa;b\r\n', '1;2\r\n']);
    vi.stubGlobal(
      'fetch',
      vi.fn(async (_url: string, init: RequestInit) => {
        // What a browser's fetch does: the pending read rejects with an AbortError.
        init.signal?.addEventListener('abort', () => body.fail(new DOMException('aborted', 'AbortError')));
        return new Response(body.stream, { status: 200 });
      }),
    );
    const controller = new AbortController();
    const pending = streamExport('/x.csv', { signal: controller.signal });
    body.next();
    await new Promise((r) => setTimeout(r, 0));
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });

    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ detail: 'busy' }), { status: 429 })));
    await expect(streamExport('/x.csv')).rejects.toEqual(new ExportError(429, 'busy')); // the status, and the server's reason
  });

  it('formats sizes in pt-BR', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(12_800)).toBe('12,5 KB');
    expect(formatBytes(3 * 1024 * 1024)).toBe('3 MB');
  });
});
