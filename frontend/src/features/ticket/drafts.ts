import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';

/** What an agent typed in a ticket's composer and has not sent, kept in this browser's
 * localStorage so that opening another conversation, reloading or a crashed tab loses nothing.
 *
 * One entry per user (`iaze.drafts.<user id>`), a map from ticket id to its draft: two people
 * signing in on the same browser never see each other's words, and the per-user bounds below are
 * enforced in one read and one write. Only text is kept: a chosen file cannot be stored.
 *
 * Storage is a convenience here, never a requirement: quota, disabled storage (Safari private
 * mode, policies) or a corrupted entry all read as "no draft" and every write failure is
 * swallowed, so the composer works exactly as it did without drafts. */

export type DraftMode = 'reply' | 'note';
/** `key`: the Idempotency-Key of a send of exactly this text whose answer never came, so that
 * sending it again after a reload is still the same reply (stored once by the server). */
export type Draft = { text: string; mode: DraftMode; at: number; key?: string };

const PREFIX = 'iaze.drafts.';
/** Per user; past it the least recently written drafts go. */
export const MAX_DRAFTS = 200;
/** A draft left this long is for a conversation long over: ignored, and removed when read. */
export const MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000;
/** Typing writes at most this often; the last keystrokes are flushed on pagehide and unmount. */
export const SAVE_DELAY_MS = 300;

function storage(): Storage | null {
  try {
    // Reading the property itself throws where storage is disabled.
    return window.localStorage;
  } catch {
    return null;
  }
}

function isDraft(value: unknown): value is Draft {
  if (!value || typeof value !== 'object') return false;
  const { text, mode, at, key } = value as Record<string, unknown>;
  return (
    typeof text === 'string' &&
    (mode === 'reply' || mode === 'note') &&
    typeof at === 'number' &&
    Number.isFinite(at) &&
    (key === undefined || typeof key === 'string')
  );
}

/** The user's live drafts, and whether what is stored held anything else (expired, malformed). */
function readAll(userId: string, now: number): { drafts: Record<string, Draft>; stale: boolean } {
  let parsed: unknown;
  try {
    const raw = storage()?.getItem(PREFIX + userId);
    if (!raw) return { drafts: {}, stale: false };
    parsed = JSON.parse(raw);
  } catch {
    return { drafts: {}, stale: true };
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { drafts: {}, stale: true };
  const drafts: Record<string, Draft> = {};
  let stale = false;
  for (const [ticketId, draft] of Object.entries(parsed)) {
    if (isDraft(draft) && now - draft.at < MAX_AGE_MS) drafts[ticketId] = draft;
    else stale = true;
  }
  return { drafts, stale };
}

const listeners = new Set<() => void>();

/** `announce`: false for purging what no reader shows anyway (expired, malformed); that purge runs
 * while a composer renders, when telling the inbox list would update it mid-render. */
function writeAll(userId: string, drafts: Record<string, Draft>, announce = true): void {
  const kept = Object.entries(drafts)
    .sort(([, a], [, b]) => b.at - a.at)
    .slice(0, MAX_DRAFTS);
  try {
    const store = storage();
    if (!store) return;
    if (kept.length === 0) store.removeItem(PREFIX + userId);
    else store.setItem(PREFIX + userId, JSON.stringify(Object.fromEntries(kept)));
  } catch {
    // Quota or storage refused: this write is lost, the composer's text is not.
    return;
  }
  if (announce) listeners.forEach((listener) => listener());
}

/** The draft of `ticketId` for `userId`, or null; expired or unreadable entries are dropped. */
export function readDraft(userId: string, ticketId: string, now = Date.now()): Draft | null {
  const { drafts, stale } = readAll(userId, now);
  if (stale) writeAll(userId, drafts, false);
  return drafts[ticketId] ?? null;
}

/** Keeps `text` as the draft of the ticket; blank text removes it (nothing worth restoring). */
export function saveDraft(
  userId: string,
  ticketId: string,
  draft: { text: string; mode: DraftMode; key?: string },
  now = Date.now(),
): void {
  const { drafts } = readAll(userId, now);
  const before = drafts[ticketId];
  // A send's key stays with its words (and mode) while they stay the same.
  const same = before?.key !== undefined && before.text.trim() === draft.text.trim() && before.mode === draft.mode;
  const key = draft.key ?? (same ? before.key : undefined); // '' drops it (`forgetKey`)
  if (draft.text.trim()) drafts[ticketId] = { text: draft.text, mode: draft.mode, at: now, ...(key ? { key } : {}) };
  else if (ticketId in drafts) delete drafts[ticketId];
  else return;
  writeAll(userId, drafts);
}

/** Removes the ticket's draft once `sent` went out, unless the draft has become other text since
 * (the agent went on writing after sending, elsewhere): only what was sent is cleared. */
export function clearDraft(userId: string, ticketId: string, sent: string, now = Date.now()): void {
  const { drafts } = readAll(userId, now);
  const draft = drafts[ticketId];
  if (!draft || draft.text.trim() !== sent.trim()) return;
  delete drafts[ticketId];
  writeAll(userId, drafts);
}

/** The composer's side: the draft found when it opened (read once: TicketView keys the composer by
 * ticket), `save` for every change, debounced, and `discard` for a text that was sent. */
export function useDraft(userId: string, ticketId: string) {
  const [restored] = useState(() => readDraft(userId, ticketId));
  const pending = useRef<{ text: string; mode: DraftMode } | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const flush = useCallback(() => {
    clearTimeout(timer.current);
    const next = pending.current;
    pending.current = null;
    if (next) saveDraft(userId, ticketId, next);
  }, [userId, ticketId]);

  useEffect(() => {
    // pagehide covers reloads and closed tabs; a tab sent to the background may be discarded
    // without one, and "hidden" is the last moment a page is sure to run.
    const onHidden = () => {
      if (document.visibilityState === 'hidden') flush();
    };
    window.addEventListener('pagehide', flush);
    document.addEventListener('visibilitychange', onHidden);
    return () => {
      window.removeEventListener('pagehide', flush);
      document.removeEventListener('visibilitychange', onHidden);
      flush();
    };
  }, [flush]);

  const save = useCallback(
    (text: string, mode: DraftMode) => {
      pending.current = { text, mode };
      clearTimeout(timer.current);
      timer.current = setTimeout(flush, SAVE_DELAY_MS);
    },
    [flush],
  );

  const discard = useCallback(
    (sent: string) => {
      // At once, not debounced: a crash right after sending must not bring the sent text back.
      if (pending.current && pending.current.text.trim() === sent.trim()) {
        pending.current = null;
        clearTimeout(timer.current);
      }
      clearDraft(userId, ticketId, sent);
    },
    [userId, ticketId],
  );

  /** A send of `text` whose answer never came: its key is kept with the draft (`Draft.key`). */
  const remember = useCallback(
    (text: string, mode: DraftMode, key: string) => {
      flush();
      const stored = readDraft(userId, ticketId);
      // The agent went on writing: those words are a new message, never this send's repeat.
      if (stored && stored.text.trim() !== text.trim()) return;
      saveDraft(userId, ticketId, { text: stored?.text ?? text, mode, key });
    },
    [userId, ticketId, flush],
  );

  /** The draft's words are to go as a new message ("Escrever de novo"): no earlier send's key. */
  const forgetKey = useCallback(() => {
    flush();
    const stored = readDraft(userId, ticketId);
    if (stored?.key) saveDraft(userId, ticketId, { text: stored.text, mode: stored.mode, key: '' });
  }, [userId, ticketId, flush]);

  return { restored, save, discard, remember, forgetKey };
}

function subscribe(listener: () => void): () => void {
  // Other tabs of the same user write too; the storage event is how they are heard here.
  const onStorage = (event: StorageEvent) => {
    if (event.key === null || event.key.startsWith(PREFIX)) listener();
  };
  listeners.add(listener);
  window.addEventListener('storage', onStorage);
  return () => {
    listeners.delete(listener);
    window.removeEventListener('storage', onStorage);
  };
}

/** The ids of the tickets holding a draft of `userId`, for the inbox list. The same Set is
 * answered while they stay the same, so typing (which rewrites the store) re-renders no row. */
export function useDraftTickets(userId: string): ReadonlySet<string> {
  const cache = useRef<{ key: string; ids: ReadonlySet<string> } | null>(null);
  const snapshot = () => {
    const ids = Object.keys(readAll(userId, Date.now()).drafts).sort();
    const key = `${userId}|${ids.join(',')}`;
    if (cache.current?.key !== key) cache.current = { key, ids: new Set(ids) };
    return cache.current.ids;
  };
  return useSyncExternalStore(subscribe, snapshot);
}
