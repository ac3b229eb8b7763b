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

export function formatDate(iso: string): string {
  return date.format(new Date(iso));
}

/** 5511987654321 → +55 (11) 98765-4321; anything else is shown as given. */
export function formatPhone(phone: string): string {
  const m = /^55(\d{2})(\d{4,5})(\d{4})$/.exec(phone);
  return m ? `+55 (${m[1]}) ${m[2]}-${m[3]}` : phone ? `+${phone}` : '';
}
