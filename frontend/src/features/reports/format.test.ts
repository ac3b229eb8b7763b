import { describe, expect, it } from 'vitest';
import { lastDays, todayIn } from './format';

describe('the reports period', () => {
  // 16:30 UTC on 6 December: already the 7th in Tokyo (UTC+9), still the 6th in São Paulo (UTC-3).
  const now = new Date('2026-12-06T16:30:00Z');

  it("ends on the company's today, not the browser's", () => {
    expect(todayIn('Asia/Tokyo', now)).toBe('2026-12-07');
    expect(todayIn('America/Sao_Paulo', now)).toBe('2026-12-06');
    expect(lastDays(7, 'Asia/Tokyo', now)).toEqual({ from: '2026-12-01', to: '2026-12-07' });
    expect(lastDays(7, 'America/Sao_Paulo', now)).toEqual({ from: '2026-11-30', to: '2026-12-06' });
  });

  it('crosses a month, a year and a leap day', () => {
    expect(lastDays(7, 'UTC', new Date('2027-01-03T12:00:00Z'))).toEqual({ from: '2026-12-28', to: '2027-01-03' });
    expect(lastDays(2, 'UTC', new Date('2028-03-01T12:00:00Z'))).toEqual({ from: '2028-02-29', to: '2028-03-01' });
    expect(lastDays(1, 'UTC', now)).toEqual({ from: '2026-12-06', to: '2026-12-06' });
  });
});
