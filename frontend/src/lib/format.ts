const time = new Intl.DateTimeFormat('pt-BR', { hour: '2-digit', minute: '2-digit' });
const dateTime = new Intl.DateTimeFormat('pt-BR', { dateStyle: 'short', timeStyle: 'short' });
const date = new Intl.DateTimeFormat('pt-BR', { dateStyle: 'short' });

function sameDay(a: Date, b: Date): boolean {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** Today: "14:05"; other days: "03/02/2025 14:05". */
export function formatWhen(iso: string, now: Date = new Date()): string {
  const at = new Date(iso);
  return sameDay(at, now) ? time.format(at) : dateTime.format(at);
}

/** A moment as "06/12 15:30" (day/month, 24 h), with the year only when it is not this one
 * ("06/12/2027 15:30"): built from numbers, since Intl puts a comma between date and time. */
export function formatDayTime(iso: string, now: Date = new Date()): string {
  const at = new Date(iso);
  const two = (n: number) => String(n).padStart(2, '0');
  const year = at.getFullYear() === now.getFullYear() ? '' : `/${at.getFullYear()}`;
  return `${two(at.getDate())}/${two(at.getMonth() + 1)}${year} ${two(at.getHours())}:${two(at.getMinutes())}`;
}

export function formatDate(iso: string): string {
  return date.format(new Date(iso));
}

/** 5511987654321 → +55 (11) 98765-4321; anything else is shown as given. */
export function formatPhone(phone: string): string {
  const m = /^55(\d{2})(\d{4,5})(\d{4})$/.exec(phone);
  return m ? `+55 (${m[1]}) ${m[2]}-${m[3]}` : phone ? `+${phone}` : '';
}

/** How long since `iso`, short: "agora", "12 min", "2 h 05 min", "3 d 4 h". */
export function formatDuration(iso: string, now: Date = new Date()): string {
  const minutes = Math.max(0, Math.floor((now.getTime() - new Date(iso).getTime()) / 60_000));
  if (minutes < 1) return 'menos de 1 min';
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const decimal = new Intl.NumberFormat('pt-BR', { maximumFractionDigits: 1 });

/** A file size as people read it in Brazil: "512 B", "12,5 KB", "1,2 MB" (binary multiples). */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${decimal.format(value)} ${units[unit]}`;
}

/** A media length in seconds as a player shows it: "0:07", "12:30", "1:02:03". */
export function formatClock(seconds: number): string {
  const total = Math.max(0, Math.round(Number.isFinite(seconds) ? seconds : 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** A calendar day as stored ("2025-12-25") → "25/12/2025", with no time zone to shift it. */
export function formatDay(day: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  return m ? `${m[3]}/${m[2]}/${m[1]}` : day;
}
