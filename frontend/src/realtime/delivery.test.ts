import { describe, expect, it } from 'vitest';
import { statusMayMove } from './delivery';

describe('statusMayMove (the order of backend/messages/repository.py RANK)', () => {
  it('moves forward only: pending, sent, delivered, read', () => {
    const order = ['pending', 'sent', 'delivered', 'read'];
    order.forEach((from, i) =>
      order.forEach((to, j) => expect(statusMayMove(from, to), `${from} -> ${to}`).toBe(j >= i)),
    );
  });

  it('fails only from before the provider took it, and a failed message stays failed', () => {
    expect(statusMayMove('pending', 'failed')).toBe(true);
    expect(statusMayMove('sent', 'failed')).toBe(true);
    expect(statusMayMove('delivered', 'failed')).toBe(false);
    expect(statusMayMove('read', 'failed')).toBe(false);
    for (const to of ['pending', 'sent', 'delivered', 'read']) expect(statusMayMove('failed', to)).toBe(false);
  });

  it('takes a status outside the order as it comes (a client message, a note)', () => {
    expect(statusMayMove('received', 'received')).toBe(true);
    expect(statusMayMove('received', 'pending')).toBe(true);
  });
});
