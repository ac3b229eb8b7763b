import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Message } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture, type Handler } from '../../test/utils';
import { EDIT_WINDOW_MS, MessageBubble, editable } from './MessageThread';
import { TicketView } from './TicketView';

const me = agentUser();
const held = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, version: 2 });
const base = `/api/v1/tickets/${held.id}`;

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
let seq = 0;
/** A text reply `me` sent `minutes` ago (signed, as the tenant's signature puts it). */
const reply = (text: string, over: Partial<Message> = {}, minutes = 2): Message => ({
  id: (0xe00 + ++seq).toString(16).padStart(24, '0'),
  ticket_id: held.id,
  direction: 'out',
  sender_type: 'agent',
  sender_id: me.id,
  sender_name: me.name,
  type: 'text',
  body: `*${me.name}:*\n${text}`,
  status: 'delivered',
  created_at: minutesAgo(minutes),
  automatic: false,
  ...over,
});
const question: Message = {
  id: 'c'.repeat(24), ticket_id: held.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
  type: 'text', body: 'Quando chega?', status: 'received', created_at: minutesAgo(5), automatic: false,
};
/** The backend's record of `me`'s edit of `target` (type "edit", annotating it, quoting it). */
const editRecord = (target: Message, text: string, over: Partial<Message> = {}): Message => ({
  ...reply(text, {}, 0),
  id: 'ed'.padStart(24, '0'),
  type: 'edit',
  status: 'pending',
  annotates: target.id,
  quoted: { message_id: target.id, body: target.body, type: 'text' },
  ...over,
});

function api(messages: Message[], handle: Handler = () => undefined) {
  return mockApi((request) => {
    const answer = handle(request);
    if (answer) return answer;
    const { method, path } = request;
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
    if (path === base) return { body: held };
    if (path === `${base}/messages` && method === 'GET') return { body: { items: messages, next_cursor: null } };
    if (path === `${base}/events` || path === `${base}/history`) return { body: { items: [], next_cursor: null } };
    return undefined;
  });
}

/** The bubble of the message saying `text` (not an entry quoting it). */
const bubbleOf = (text: string) =>
  waitFor(() => {
    const found = screen
      .getAllByText(text, { exact: true })
      .map((el) => el.closest('[data-testid="message"]') as HTMLElement)
      .find((el) => el && !el.hasAttribute('data-annotation'));
    if (!found) throw new Error(`no message "${text}"`);
    return found;
  });

/** The actions of a bubble's menu (none when it has no menu). jsdom lays nothing out, so Mantine
 * soon hides an open dropdown as if its button were scrolled away: its items are read hidden. */
async function menuOf(bubble: HTMLElement): Promise<string[]> {
  const button = within(bubble).queryByTestId('react');
  if (!button) return [];
  await userEvent.click(button);
  const menu = await screen.findByRole('menu', { hidden: true });
  const items = within(menu).getAllByRole('menuitem', { hidden: true }).map((item) => item.textContent ?? '');
  await userEvent.click(button); // closes it
  await waitFor(() => expect(screen.queryByRole('menu', { hidden: true })).not.toBeInTheDocument());
  return items;
}

async function openEdit(text: string) {
  await userEvent.click(within(await bubbleOf(text)).getByTestId('react'));
  await userEvent.click(await screen.findByRole('menuitem', { name: 'Editar' }));
  return screen.findByRole('textbox', { name: 'Novo texto' });
}

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('which replies can be edited', () => {
  it("follows the backend's rules: one's own sent text, within 15 minutes", () => {
    const now = Date.parse('2025-01-01T12:30:00Z');
    const at = (iso: string) => reply('x', { created_at: iso });
    expect(editable(at('2025-01-01T12:20:00Z'), me.id, now)).toBe(true);
    expect(editable(at(new Date(now - EDIT_WINDOW_MS).toISOString()), me.id, now)).toBe(true);
    expect(editable(at(new Date(now - EDIT_WINDOW_MS - 1000).toISOString()), me.id, now)).toBe(false);
    for (const status of ['sent', 'delivered', 'read']) expect(editable(reply('x', { status }), me.id)).toBe(true);
    for (const status of ['pending', 'failed']) expect(editable(reply('x', { status }), me.id)).toBe(false);
    expect(editable(reply('x', { sender_id: 'b'.repeat(24) }), me.id)).toBe(false);
    expect(editable(reply('x', { type: 'image' }), me.id)).toBe(false);
    expect(editable(reply('x', { type: 'edit', annotates: 'f'.repeat(24) }), me.id)).toBe(false);
    expect(editable(question, me.id)).toBe(false);
  });

  it("offers Editar only on one's own sent text replies of the last 15 minutes, not on a deleted one", async () => {
    const mine = reply('Sai hoje');
    const others = reply('Eu cuido disso', { sender_id: 'b'.repeat(24), sender_name: 'Bruno' });
    const pending = reply('Ainda indo', { status: 'pending' });
    const old = reply('Faz tempo', {}, 16);
    const revoked = reply('Cliente errado', { status: 'read' });
    const revoke: Message = { ...editRecord(revoked, ''), id: 'ee'.padStart(24, '0'), type: 'revoke', body: '', status: 'sent' };
    api([question, old, others, mine, pending, revoked, revoke]);
    renderApp(<TicketView ticketId={held.id} />);
    expect(await menuOf(await bubbleOf('Sai hoje'))).toContain('Editar');
    for (const text of ['Quando chega?', 'Eu cuido disso', 'Ainda indo', 'Faz tempo', 'Cliente errado']) {
      expect(await menuOf(await bubbleOf(text)), text).not.toContain('Editar');
    }
  });
});

describe('editing a reply', () => {
  it('opens with the text without the signature and posts the new text; the edit shows beside the reply', async () => {
    const mine = reply('Seu pedido sai hoje');
    const calls = api([question, mine], ({ method, path, body }) => {
      if (method === 'POST' && path === `${base}/messages/${mine.id}/edit`) {
        return { status: 201, body: editRecord(mine, (body as { body: string }).body, { body: `*${me.name}:*\n${(body as { body: string }).body}` }) };
      }
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    const box = await openEdit('Seu pedido sai hoje');
    expect(box).toHaveValue('Seu pedido sai hoje');
    const save = screen.getByRole('button', { name: 'Salvar' });
    expect(save).toBeDisabled(); // nothing changed yet
    await userEvent.clear(box);
    await userEvent.type(box, 'Seu pedido sai amanhã');
    await userEvent.click(save);
    await waitFor(() => expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1));
    expect(calls.find((c) => c.method === 'POST')).toMatchObject({ path: `${base}/messages/${mine.id}/edit`, body: { body: 'Seu pedido sai amanhã' } });
    await waitFor(() => expect(screen.queryByRole('textbox', { name: 'Novo texto' })).not.toBeInTheDocument());

    // The record is in the thread without a reload; the reply keeps its words, marked.
    const entry = await waitFor(() => {
      const found = screen.getAllByTestId('message').find((el) => el.getAttribute('data-annotation') === 'edit');
      if (!found) throw new Error('no edit yet');
      return found;
    });
    expect(within(entry).getByTestId('annotation-label')).toHaveTextContent('✏️ Mensagem editada');
    expect(within(entry).getByTestId('quote')).toHaveTextContent(/^Seu pedido sai hoje$/);
    expect(within(entry).getByTestId('signature')).toHaveTextContent(`${me.name}:`);
    expect(within(entry).getByTestId('annotation-body')).toHaveTextContent(new RegExp(`^${me.name}:Seu pedido sai amanhã$`));
    expect(within(await bubbleOf('Seu pedido sai hoje')).getByTestId('annotation-marks')).toHaveTextContent('editada');
  });

  it("shows the backend's refusal in Portuguese and keeps the text", async () => {
    const mine = reply('Seu pedido sai hoje');
    api([question, mine], ({ method, path }) => {
      if (method === 'POST' && path.endsWith('/edit')) {
        return { status: 409, body: { detail: 'WhatsApp lets a message be edited only within 15 minutes of sending it' } };
      }
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    const box = await openEdit('Seu pedido sai hoje');
    await userEvent.type(box, '!');
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    expect(await screen.findByTestId('edit-error')).toHaveTextContent('O WhatsApp só permite editar uma mensagem até 15 minutos depois do envio.');
    expect(box).toHaveValue('Seu pedido sai hoje!');
  });

  it('says in a toast when an edit fails after its window was closed, with the words it was', async () => {
    const mine = reply('Seu pedido sai hoje');
    let refuse: () => void = () => {};
    const refused = new Promise<void>((resolve) => (refuse = resolve));
    api([question, mine], ({ method, path }) => {
      if (method === 'POST' && path.endsWith('/edit')) return { status: 503, body: { detail: 'the database did not answer; retry' } };
      return undefined;
    });
    const answer = globalThis.fetch;
    vi.stubGlobal('fetch', async (...args: Parameters<typeof fetch>) => {
      const request = args[0] instanceof Request ? args[0] : new Request(String(args[0]), args[1]);
      if (request.method === 'POST') await refused; // a slow store
      return answer(...args);
    });
    renderApp(<TicketView ticketId={held.id} />);
    const box = await openEdit('Seu pedido sai hoje');
    await userEvent.clear(box);
    await userEvent.type(box, 'Seu pedido sai amanhã');
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await userEvent.click(screen.getByRole('button', { name: 'Cancelar' }));
    refuse();
    expect(await screen.findByText(/A correção "Seu pedido sai amanhã" não foi enviada/)).toBeInTheDocument();
  });

  it('starts a second edit from the text the chat shows now', async () => {
    const mine = reply('Seu pedido sai hoje');
    api([question, mine, editRecord(mine, 'Seu pedido sai amanhã', { status: 'delivered' })]);
    renderApp(<TicketView ticketId={held.id} />);
    expect(await openEdit('Seu pedido sai hoje')).toHaveValue('Seu pedido sai amanhã');
  });

  it("shows an agent's edit signed as its replies are: the name in bold once, then the text", () => {
    const mine = reply('Seu pedido sai hoje');
    renderApp(<MessageBubble message={editRecord(mine, 'Seu pedido sai amanhã', { status: 'sent' })} />);
    const body = screen.getByTestId('annotation-body');
    expect(within(body).getByTestId('signature')).toHaveTextContent(`${me.name}:`);
    expect(within(body).getAllByText(/Seu pedido sai amanhã/)).toHaveLength(1);
    expect(within(screen.getByTestId('message')).getByTestId('ticks')).toHaveAttribute('data-status', 'sent');
  });
});
