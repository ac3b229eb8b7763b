import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';
import { translateBackendMessage, validationIssueMessage, type ValidationIssue } from '../i18n/backendMessages';
import { t } from '../i18n/pt-BR';

/** An API answer other than 2xx, with the backend's `{"detail": …}` kept as is. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
  ) {
    super(ApiError.describe(status, detail));
    this.name = 'ApiError';
  }

  /** The pt-BR message for an answer: the backend's sentence translated (i18n/backendMessages.ts),
   * a 422's validation issues translated, or the status's generic text.
   *
   * A sentence the catalogue does not know yet shows only a pt-BR text, never the English: a
   * support agent cannot act on an English technical phrase and may take it for a crash, while
   * a generic "could not be done" plus the screen they are on is enough to retry or call for
   * help. Whoever investigates finds the original in `detail` (kept as is) and the network tab. */
  static describe(status: number, detail: unknown): string {
    if (Array.isArray(detail)) {
      const issues = detail.filter((item): item is ValidationIssue => !!item && typeof item === 'object');
      const messages = [...new Set(issues.map(validationIssueMessage))];
      if (messages.length) return messages.join(' ');
    }
    const sentence =
      typeof detail === 'string'
        ? detail
        : detail && typeof detail === 'object' && 'message' in detail && typeof detail.message === 'string'
          ? detail.message
          : null;
    return (sentence !== null ? translateBackendMessage(sentence) : undefined) ?? ApiError.generic(status);
  }

  /** The status's text, for an answer without a sentence this catalogue knows. Never "Confira os
   * campos destacados." here: nothing says a form highlights anything for such an answer. */
  private static generic(status: number): string {
    if (status === 0) return t.errors.network;
    if (status === 401) return t.auth.expired;
    if (status === 403) return t.errors.forbidden;
    if (status === 404) return t.errors.notFound;
    if (status === 409) return t.errors.conflict;
    if (status === 413) return t.errors.tooLarge;
    if (status === 429) return t.errors.tooMany;
    if (status === 503) return t.errors.unavailable;
    return t.errors.generic;
  }
}

type TokenSource = { token: () => string | null; onUnauthorized: () => void };
let auth: TokenSource = { token: () => null, onUnauthorized: () => undefined };

/** The session module registers how to find the token and what to do on a 401. */
export function configureAuth(source: TokenSource): void {
  auth = source;
}

const authMiddleware: Middleware = {
  onRequest({ request }) {
    const token = auth.token();
    if (token) request.headers.set('Authorization', `Bearer ${token}`);
    return request;
  },
  async onResponse({ response, request }) {
    if (response.status !== 401 || request.url.endsWith('/auth/login')) return response;
    if (!staleToken(request.headers)) {
      auth.onUnauthorized();
      return response;
    }
    // A read is safe to send again with the token the session holds now.
    if (request.method !== 'GET') return response;
    return globalThis.fetch(new Request(request, { headers: authorized(new Headers(request.headers)) }));
  },
};

/** A 401 answering a token the session has since replaced (a password change issues a new one and
 * ends the old) says nothing about the current session: it must not sign the user out. */
function staleToken(sent: Headers): boolean {
  const current = auth.token();
  return current !== null && sent.get('Authorization') !== `Bearer ${current}`;
}

function onUnauthorized(sent: Headers): void {
  if (!staleToken(sent)) auth.onUnauthorized();
}

// Same origin as the page (nginx or the dev proxy forwards /api); fetch looked up per call so tests can stub it.
export const api = createClient<paths>({
  baseUrl: typeof window === 'undefined' ? '' : window.location.origin,
  fetch: (input) => globalThis.fetch(input),
});
api.use(authMiddleware);

type Result<T> = { data?: T; error?: unknown; response: Response };

function authorized(headers: Headers): Headers {
  const token = auth.token();
  if (token) headers.set('Authorization', `Bearer ${token}`);
  return headers;
}

function detailOf(status: number, text: string): ApiError {
  let detail: unknown = null;
  try {
    const parsed: unknown = text ? JSON.parse(text) : null;
    detail = parsed && typeof parsed === 'object' && 'detail' in parsed ? parsed.detail : parsed;
  } catch {
    // not JSON (a proxy's error page): the status decides the message
  }
  return new ApiError(status, detail);
}

/** The bytes behind an API path (a message's media): an <img src> cannot send the bearer token,
 * so the page fetches them with it and shows them through an object URL. */
export async function fetchBlob(path: string, signal?: AbortSignal): Promise<Blob> {
  const headers = authorized(new Headers());
  let response: Response;
  try {
    response = await globalThis.fetch(new Request(new URL(path, window.location.origin), { headers, signal }));
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(0, null);
  }
  if (response.status === 401) onUnauthorized(headers);
  if (!response.ok) throw detailOf(response.status, await response.text());
  return response.blob();
}

/** POSTs a multipart form, reporting the upload's progress (0..1): fetch cannot, XMLHttpRequest can.
 * Resolves with the JSON answer of a 2xx, rejects with ApiError otherwise. */
export function postForm<T>(
  path: string,
  form: FormData,
  onProgress?: (fraction: number) => void,
  signal?: AbortSignal,
  extraHeaders?: Record<string, string>,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', new URL(path, window.location.origin).toString());
    const headers = authorized(new Headers(extraHeaders));
    headers.forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status === 401) onUnauthorized(headers);
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve((xhr.responseText ? JSON.parse(xhr.responseText) : null) as T);
        } catch {
          reject(new ApiError(xhr.status, null));
        }
      } else reject(detailOf(xhr.status, xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, null));
    xhr.onabort = () => reject(new DOMException('aborted', 'AbortError'));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(form);
  });
}

/** Returns the body of a 2xx answer or throws ApiError with the backend's detail. */
export async function unwrap<T>(pending: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await pending;
  } catch {
    throw new ApiError(0, null);
  }
  if (result.response.ok) return result.data as T;
  const detail = result.error && typeof result.error === 'object' && 'detail' in result.error ? result.error.detail : result.error;
  throw new ApiError(result.response.status, detail);
}

/** The message to show for any error thrown by a query or mutation. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  return t.app.genericError;
}

/** FastAPI 422 bodies: a list of {type, loc, msg}; maps each body field (the last loc element) to
 * its message in pt-BR. Issues not about a field of the body (a query parameter, a header, the
 * body as a whole: loc ["body"]) are left out: no form shows them on a field, and the form's
 * message (`errorMessage`, which translates every issue) says what is wrong instead. */
export function fieldErrors(error: unknown): Record<string, string> {
  if (!(error instanceof ApiError) || error.status !== 422 || !Array.isArray(error.detail)) return {};
  const out: Record<string, string> = {};
  for (const item of error.detail as ValidationIssue[]) {
    if (!item || !Array.isArray(item.loc) || item.loc[0] !== 'body' || item.loc.length < 2) continue;
    const field = item.loc[item.loc.length - 1];
    if (typeof field === 'string' && !(field in out)) out[field] = validationIssueMessage(item);
  }
  return out;
}
