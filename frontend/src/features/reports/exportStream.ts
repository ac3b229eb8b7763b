import { loadSession } from '../../auth/session';

export type ExportProgress = { bytes: number; rows: number };

/** Thrown when the export was refused or broke off; `status` 0 = network or cut mid-file;
 * `detail` = the backend's `{"detail": …}` of a refusal (null when there was none). */
export class ExportError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown = null,
  ) {
    super(`export failed (${status})`);
    this.name = 'ExportError';
  }
}

async function refusal(response: Response): Promise<ExportError> {
  let detail: unknown = null;
  try {
    const parsed: unknown = JSON.parse(await response.text());
    detail = parsed && typeof parsed === 'object' && 'detail' in parsed ? parsed.detail : null;
  } catch {
    // not JSON (a proxy's error page): the status decides the message
  }
  return new ExportError(response.status, detail);
}

/** The file name the server gave (`Content-Disposition: attachment; filename="…"`), if any. */
function filenameOf(response: Response): string | null {
  const match = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') ?? '');
  return match ? match[1] : null;
}

/**
 * Reads a CSV export as it is streamed, reporting bytes and data rows received after each chunk,
 * and answers the whole file as a Blob with the name the server gave it (period and filters). `signal` cancels it (the fetch rejects with AbortError).
 * Rows are counted by their CRLF ends (the backend writes one per row; a line break inside a
 * quoted cell is a bare LF), minus the header.
 */
export async function streamExport(
  url: string,
  { signal, onProgress }: { signal?: AbortSignal; onProgress?: (p: ExportProgress) => void } = {},
): Promise<{ blob: Blob; progress: ExportProgress; filename: string | null }> {
  const token = loadSession()?.token;
  const response = await globalThis.fetch(url, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    signal,
  });
  if (!response.ok) throw await refusal(response);
  if (!response.body) throw new ExportError(0);
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
  return { blob: new Blob(parts, { type: 'text/csv;charset=utf-8' }), progress, filename: filenameOf(response) };
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
