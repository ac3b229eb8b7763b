import { loadSession } from '../../auth/session';

export type ExportProgress = { bytes: number; rows: number };

/** Thrown when the export was refused or broke off; `status` 0 = network or cut mid-file. */
export class ExportError extends Error {
  constructor(readonly status: number) {
    super(`export failed (${status})`);
    this.name = 'ExportError';
  }
}

/**
 * Reads a CSV export as it is streamed, reporting bytes and data rows received after each chunk,
 * and answers the whole file as a Blob. `signal` cancels it (the fetch rejects with AbortError).
 * Rows are counted by their CRLF ends (the backend writes one per row; a line break inside a
 * quoted cell is a bare LF), minus the header.
 */
export async function streamExport(
  url: string,
  { signal, onProgress }: { signal?: AbortSignal; onProgress?: (p: ExportProgress) => void } = {},
): Promise<{ blob: Blob; progress: ExportProgress }> {
  const token = loadSession()?.token;
  const response = await globalThis.fetch(url, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    signal,
  });
  if (!response.ok || !response.body) throw new ExportError(response.status);
  const reader = response.body.getReader();
  const parts: BlobPart[] = [];
  let bytes = 0;
  let lines = 0;
  let lastWasCr = false;
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new ExportError(0);
    }
    if (chunk.done) break;
    const data = chunk.value;
    parts.push(data as Uint8Array<ArrayBuffer>);
    bytes += data.byteLength;
    for (let i = 0; i < data.length; i++) {
      if (data[i] === 10 && (i > 0 ? data[i - 1] === 13 : lastWasCr)) lines++;
    }
    lastWasCr = data.length > 0 && data[data.length - 1] === 13;
    onProgress?.({ bytes, rows: Math.max(0, lines - 1) });
  }
  const progress = { bytes, rows: Math.max(0, lines - 1) };
  return { blob: new Blob(parts, { type: 'text/csv;charset=utf-8' }), progress };
}

/** "512 B", "12,5 KB", "3,2 MB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toLocaleString('pt-BR', { maximumFractionDigits: 1 })} ${units[unit]}`;
}

/** Hands the browser a file to save. */
export function saveBlob(blob: Blob, name: string): void {
  const href = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = href;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 0);
}
