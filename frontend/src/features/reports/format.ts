/** Seconds as people read a wait: "45 s", "3 min 20 s", "2 h 05 min", "1 d 3 h"; null → "—". */
export function formatSeconds(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  const s = Math.max(0, Math.round(value));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return s % 60 ? `${minutes} min ${s % 60} s` : `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** The date `now` falls on in `zone` (the company's; the browser's when not known yet), as yyyy-mm-dd. */
export function todayIn(zone?: string, now: Date = new Date()): string {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' })
    .formatToParts(now);
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? '';
  return `${part('year')}-${part('month')}-${part('day')}`;
}

/** The last `days` days ending today in `zone`, as yyyy-mm-dd (both inclusive): the reports count
 * the company's days, so near midnight the browser's own today can be a day off. */
export function lastDays(days: number, zone?: string, now: Date = new Date()): { from: string; to: string } {
  const to = todayIn(zone, now);
  const [y, m, d] = to.split('-').map(Number);
  const from = new Date(Date.UTC(y, m - 1, d - (days - 1))).toISOString().slice(0, 10);
  return { from, to };
}

/** "2025-03-04" → "04/03". */
export function shortDay(day: string): string {
  const [, m, d] = day.split('-');
  return `${d}/${m}`;
}
