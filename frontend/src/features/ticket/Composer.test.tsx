import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { QuickReply } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { afterSent, Composer } from './Composer';
import { fillTemplate, matchReplies, slashToken } from './quickReplies';

const me = agentUser({ name: 'Ana Agente' });
const reply = (over: Partial<QuickReply>): QuickReply => ({
  id: 'q'.repeat(24),
  reseller_id: 'r'.repeat(24),
  scope: 'reseller',
  owner_id: null,
  shortcut: 'ola',
  text: 'Olá {{cliente}}',
  active: true,
  created_at: '2025-01-01T00:00:00Z',
  updated_at: '2025-01-01T00:00:00Z',
  ...over,
});
const replies = [
  reply({ id: '1'.repeat(24), shortcut: 'pix', text: 'Oi {{cliente}}, sou {{agente}}. Protocolo {{ protocolo }}: PIX 123' }),
  reply({ id: '2'.repeat(24), shortcut: 'prazo', text: 'Entrega em 3 dias' }),
  reply({ id: '3'.repeat(24), shortcut: 'velho', text: 'inativa', active: false }),
];

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('Composer quick replies', () => {
  it('opens the list on "/", narrows it while typing, and inserts the filled text for editing', async () => {
    const calls = mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/quick-replies') return { body: { items: replies, next_cursor: null } };
      return undefined;
    });
    renderApp(<Composer ticket={ticketFixture({ number: 42, client_name: 'Maria' })} canReply canNote />);
    const box = screen.getByLabelText('Mensagem');
    await userEvent.type(box, 'Bom dia! /');
    expect(await screen.findAllByTestId('quick-reply-option')).toHaveLength(2);
    await userEvent.type(box, 'pi');
    await waitFor(() => expect(screen.getAllByTestId('quick-reply-option')).toHaveLength(1));
    await userEvent.keyboard('{Enter}');
    await waitFor(() => expect(box).toHaveValue('Bom dia! Oi Maria, sou Ana Agente. Protocolo 42: PIX 123'));
    // Inserted, not sent: the agent edits before sending.
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
    await userEvent.type(box, ' obrigado');
    expect(box).toHaveValue('Bom dia! Oi Maria, sou Ana Agente. Protocolo 42: PIX 123 obrigado');
  });

  it('leaves a slash inside a word alone and closes on Escape', async () => {
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/quick-replies') return { body: { items: replies, next_cursor: null } };
      return undefined;
    });
    renderApp(<Composer ticket={ticketFixture()} canReply canNote />);
    const box = screen.getByLabelText('Mensagem');
    await userEvent.type(box, 'e/ou');
    expect(screen.queryAllByTestId('quick-reply-option').filter((el) => el.checkVisibility?.() ?? true)).toHaveLength(0);
    await userEvent.type(box, ' /');
    await screen.findAllByTestId('quick-reply-option');
    await userEvent.keyboard('{Escape}');
    await waitFor(() => expect(screen.getByTestId('quick-reply-picker')).not.toBeVisible());
    expect(box).toHaveValue('e/ou /');
  });
});

/** The backend for replies: the first send's answer never comes (503), later ones are stored. */
function firstSendUnanswered() {
  let posts = 0;
  const calls = mockApi(({ method, path, body }) => {
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/quick-replies') return { body: { items: [], next_cursor: null } };
    if (method === 'POST' && path.endsWith('/messages')) {
      posts += 1;
      if (posts === 1) return { status: 503, body: { detail: 'indisponível' } };
      return { status: 201, body: { id: String(posts).repeat(24), body: (body as { body: string }).body } };
    }
    return undefined;
  });
  return { calls, posts: () => posts };
}

describe('Composer reply attempts', () => {
  it('sends a reply tried again unchanged with the same Idempotency-Key, and the next reply with a new one', async () => {
    const { calls, posts } = firstSendUnanswered();
    renderApp(<Composer ticket={ticketFixture()} canReply canNote />);
    const box = screen.getByLabelText('Mensagem');
    await userEvent.type(box, 'Chegou?');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts()).toBe(1));
    expect(box).toHaveValue('Chegou?'); // kept for another try
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(box).toHaveValue(''));
    // The same text again, on purpose, once its retried send was answered: a reply of its own.
    await userEvent.type(box, 'Chegou?');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts()).toBe(3));
    await waitFor(() => expect(box).toHaveValue(''));
    await userEvent.type(box, 'Outra');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts()).toBe(4));
    const keys = calls.filter((c) => c.method === 'POST').map((c) => c.headers.get('Idempotency-Key'));
    expect(keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[2]).not.toBe(keys[0]);
    expect(keys[3]).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(keys).size).toBe(3);
  });

  it('sends a note tried again unchanged with the same Idempotency-Key', async () => {
    let posts = 0;
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/quick-replies') return { body: { items: [], next_cursor: null } };
      if (method === 'POST' && path.endsWith('/notes')) {
        posts += 1;
        if (posts === 1) return { status: 503, body: { detail: 'the database did not answer; retry' } };
        const note = { id: 'a'.repeat(24), body: (body as { body: string }).body, direction: 'note', type: 'note' };
        return { status: 201, body: note };
      }
      return undefined;
    });
    renderApp(<Composer ticket={ticketFixture({ status: 'espera', agent_id: null })} canReply={false} canNote />);
    const box = screen.getByRole('textbox', { name: 'Nota interna' });
    await userEvent.type(box, 'ligar amanhã');
    await userEvent.click(screen.getByRole('button', { name: 'Salvar nota' }));
    await waitFor(() => expect(posts).toBe(1));
    expect(box).toHaveValue('ligar amanhã'); // kept for another try
    await userEvent.click(screen.getByRole('button', { name: 'Salvar nota' }));
    await waitFor(() => expect(box).toHaveValue(''));
    const keys = calls.filter((c) => c.method === 'POST').map((c) => c.headers.get('Idempotency-Key'));
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).toBe(keys[0]);
  });
});

describe('a key for the words it was made for', () => {
  it('sends other words, or the same words written again, with a new key after an unanswered send', async () => {
    const { calls, posts } = firstSendUnanswered();
    renderApp(<Composer ticket={ticketFixture()} canReply canNote />);
    const box = screen.getByLabelText('Mensagem');
    await userEvent.type(box, 'ok');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts()).toBe(1));
    // The agent sees the "ok" arrive after all (stored; only its answer was lost), clears the box,
    // and later means a new "ok": it must not be answered as the first one.
    await userEvent.clear(box);
    await userEvent.type(box, 'ok');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts()).toBe(2));
    const keys = calls.filter((c) => c.method === 'POST').map((c) => c.headers.get('Idempotency-Key'));
    expect(keys[1]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).not.toBe(keys[0]);
  });
});

describe('what the agent writes while a reply is on its way', () => {
  it('stays in the box when the reply is answered; only the sent words go', async () => {
    mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/quick-replies') return { body: { items: [], next_cursor: null } };
      if (method === 'POST' && path.endsWith('/messages')) return { status: 201, body: { id: 'a'.repeat(24), body: (body as { body: string }).body } };
      return undefined;
    });
    const answer = globalThis.fetch;
    let release: () => void = () => {};
    const answered = new Promise<void>((resolve) => (release = resolve));
    vi.stubGlobal('fetch', async (...args: Parameters<typeof fetch>) => {
      const request = args[0] instanceof Request ? args[0] : new Request(String(args[0]), args[1]);
      if (request.method === 'POST') await answered; // a slow store: the answer takes a while
      return answer(...args);
    });
    renderApp(<Composer ticket={ticketFixture()} canReply canNote />);
    const box = screen.getByLabelText('Mensagem');
    await userEvent.type(box, 'Primeira');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await userEvent.type(box, ' e a segunda, escrita enquanto a primeira ia');
    release();
    await waitFor(() => expect(box).toHaveValue('e a segunda, escrita enquanto a primeira ia'));
  });

  it('lets go of the sent words only when they are still in front', () => {
    expect(afterSent('Oi', 'Oi')).toBe('');
    expect(afterSent('  Oi  ', 'Oi')).toBe('');
    expect(afterSent('Oi tudo bem?', 'Oi')).toBe('tudo bem?');
    expect(afterSent('Outra coisa', 'Oi, pode ver?')).toBe('Outra coisa');
  });
});

describe('quick reply helpers', () => {
  it('fills every variable and keeps unknown ones', () => {
    expect(fillTemplate('{{Cliente}} {{agente}} {{protocolo}} {{outro}}', { cliente: 'M', agente: 'A', protocolo: '7' })).toBe('M A 7 {{outro}}');
  });
  it('finds the slash token only at a word start before the caret', () => {
    expect(slashToken('oi /pi', 6)).toEqual({ start: 3, query: 'pi' });
    expect(slashToken('/', 1)).toEqual({ start: 0, query: '' });
    expect(slashToken('a/b', 3)).toBeNull();
    expect(slashToken('oi /pi x', 8)).toBeNull();
  });
  it('ranks shortcut prefixes first and hides inactive replies', () => {
    expect(matchReplies(replies, 'p').map((r) => r.shortcut)).toEqual(['pix', 'prazo']);
    expect(matchReplies(replies, 'entrega').map((r) => r.shortcut)).toEqual(['prazo']);
    expect(matchReplies(replies, 'velho')).toEqual([]);
  });
});
