import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Message, TicketEvent } from '../../api/types';
import { applyEvent } from '../../realtime/cache';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture, messageFixture, minuteAt } from '../../test/utils';
import { mergeTimeline, timelineText } from './MessageThread';
import { TicketView } from './TicketView';

const me = agentUser();
const held = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, version: 2 });
const espera = ticketFixture({ id: '2'.repeat(24) });
const base = `/api/v1/tickets/${held.id}`;

const at = minuteAt;
const msg = (n: number, over: Partial<Message> = {}): Message => messageFixture(held.id, n, over);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => msg(from + i));
const event = (over: Partial<TicketEvent>): TicketEvent => ({
  id: `${held.id}:${over.version}`, ticket_id: held.id, version: 1, type: 'created', actor_id: null, actor_role: null,
  from_status: null, to_status: 'espera', at: at(0), data: {}, actor_name: null, target_name: null, ...over,
});

function common(path: string, ticket = held) {
  if (path === '/api/v1/auth/me') return { body: me };
  if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
  if (path === `/api/v1/tickets/${ticket.id}`) return { body: ticket };
  if (path === `/api/v1/tickets/${ticket.id}/events`) return { body: { items: [], next_cursor: null } };
  if (path === `/api/v1/tickets/${ticket.id}/history`) return { body: { items: [], next_cursor: null } };
  return undefined;
}

/** jsdom lays nothing out: give the thread a fixed geometry whose scrollTop the test can read. */
function geometry(el: HTMLElement, height: number, viewport = 400) {
  let top = 0;
  Object.defineProperty(el, 'scrollHeight', { configurable: true, get: () => height });
  Object.defineProperty(el, 'clientHeight', { configurable: true, get: () => viewport });
  Object.defineProperty(el, 'scrollTop', { configurable: true, get: () => top, set: (v: number) => { top = v; } });
}

const firstLine = (el: Element) => (el.getAttribute('data-testid') === 'message' ? el.querySelector('p')?.textContent ?? '' : (el.textContent ?? '').split(' · ')[0]);
const bodies = () => screen.getAllByTestId('message').map(firstLine);

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('MessageThread', () => {
  it('opens at the newest page and prepends older pages, asking with the cursor it was given', async () => {
    const calls = mockApi(({ path, url }) => {
      if (path === `${base}/messages`) {
        return url.searchParams.get('cursor') === 'older'
          ? { body: { items: range(0, 10), next_cursor: null } }
          : { body: { items: range(10, 60), next_cursor: 'older' } };
      }
      return common(path);
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('mensagem 59');
    expect(screen.queryByText('mensagem 9')).not.toBeInTheDocument();
    const first = bodies();
    expect(first[0]).toContain('mensagem 10');
    expect(first[first.length - 1]).toContain('mensagem 59');
    await userEvent.click(screen.getByTestId('older-messages'));
    await screen.findByText('mensagem 0');
    const all = bodies();
    expect(all).toHaveLength(60);
    expect(all).toEqual(range(0, 60).map((m) => m.body));
    const reads = calls.filter((c) => c.path === `${base}/messages`);
    expect(reads).toHaveLength(2);
    expect(screen.queryByTestId('older-messages')).not.toBeInTheDocument();
  });

  it('loads the older page when scrolled to the top and keeps the reader in place', async () => {
    mockApi(({ path, url }) => {
      if (path === `${base}/messages`) {
        return url.searchParams.get('cursor') === 'older'
          ? { body: { items: range(0, 10), next_cursor: null } }
          : { body: { items: range(10, 60), next_cursor: 'older' } };
      }
      return common(path);
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('mensagem 59');
    const thread = screen.getByTestId('thread');
    let height = 3000;
    geometry(thread, 0);
    Object.defineProperty(thread, 'scrollHeight', { configurable: true, get: () => height });
    thread.scrollTop = 50; // the reader scrolled up near the top
    height = 3000;
    fireEvent.scroll(thread);
    height = 3600; // what the older page adds above (the layout effect reads it after render)
    await screen.findByText('mensagem 0');
    expect(thread.scrollTop).toBe(3600 - 3000 + 50);
  });

  it('follows new messages only at the bottom; otherwise a pill counts them', async () => {
    mockApi(({ path }) => (path === `${base}/messages` ? { body: { items: range(0, 20), next_cursor: null } } : common(path)));
    const { client } = renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('mensagem 19');
    const thread = screen.getByTestId('thread');
    geometry(thread, 2000);
    thread.scrollTop = 300; // reading older messages
    fireEvent.scroll(thread);
    const live = (m: Message) => act(() => applyEvent(client, { type: 'event', seq: 1, event: 'message.created', at: m.created_at, ticket: null, message: m, connection: null }, me));
    live(msg(30));
    live(msg(31));
    expect(await screen.findByTestId('new-messages')).toHaveTextContent('2 novas mensagens');
    expect(thread.scrollTop).toBe(300);
    await userEvent.click(screen.getByTestId('new-messages'));
    expect(thread.scrollTop).toBe(2000);
    expect(screen.queryByTestId('new-messages')).not.toBeInTheDocument();
    fireEvent.scroll(thread); // at the bottom now: the next one is followed
    thread.scrollTop = 1600;
    live(msg(32));
    await screen.findByText('mensagem 32');
    expect(thread.scrollTop).toBe(2000);
    expect(screen.queryByTestId('new-messages')).not.toBeInTheDocument();
  });

  it('shows the timeline between the messages, with names, and notes apart', async () => {
    const note = msg(3, { direction: 'note', type: 'note', sender_type: 'agent', sender_name: 'Ana Agente', body: 'cliente VIP', status: 'internal' });
    mockApi(({ path }) => {
      if (path === `${base}/messages`) return { body: { items: [msg(1), msg(2), note, msg(5)], next_cursor: null } };
      if (path === `${base}/events`) {
        return {
          body: {
            items: [
              event({ version: 1, type: 'created', at: at(1) }),
              event({ version: 2, type: 'assumed', at: at(2).replace(':00Z', ':30Z'), actor_name: 'Ana Agente', to_status: 'atendendo' }),
              event({ version: 3, type: 'transferred', at: at(4), actor_name: 'Ana Agente', target_name: 'Bruno', data: { to_agent_id: 'b'.repeat(24) } }),
              event({ version: 4, type: 'transferred', at: at(6), actor_name: 'Dona', target_name: 'Financeiro', data: { to_department_id: 'd'.repeat(24) } }),
            ],
            next_cursor: null,
          },
        };
      }
      return common(path);
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findAllByTestId('timeline-event');
    const rows = within(screen.getByTestId('thread'))
      .getAllByText((_, el) => el?.getAttribute('data-testid') === 'message' || el?.getAttribute('data-testid') === 'timeline-event')
      .map(firstLine);
    expect(rows).toEqual([
      'mensagem 1',
      'mensagem 2',
      'Ana Agente assumiu o atendimento',
      'Nota interna · Ana Agente',
      'Ana Agente transferiu para Bruno',
      'mensagem 5',
      'Dona devolveu à fila Financeiro',
    ]);
    const noteBubble = screen.getByRole('note', { name: 'Nota interna da equipe' });
    expect(noteBubble).toHaveAttribute('data-direction', 'note');
    expect(noteBubble).toHaveTextContent('cliente VIP');
  });

  it('says why a ticket went back to the queue when the agent holding it was deactivated', () => {
    const agent = 'a'.repeat(24);
    const data = { to_department_id: 'd'.repeat(24), from_agent_id: agent, reason: 'agent_deactivated', action: 'release' };
    const released = event({ version: 3, type: 'transferred', actor_id: 'o'.repeat(24), actor_role: 'reseller', actor_name: 'Dona', target_name: 'Suporte', data });
    expect(timelineText(released)).toBe('Dona devolveu à fila Suporte: o agente que atendia foi desativado');
    // Its own assume landed just after the deactivation: handed back in its name.
    const own = event({ ...released, actor_id: agent, actor_role: 'agent', actor_name: 'Ana', data: { ...data, action: 'transfer_to_department' } });
    expect(timelineText(own)).toBe('Voltou à fila Suporte: o usuário Ana foi desativado');
  });

  it('keeps events older than the loaded page for when that page is loaded', () => {
    const items = mergeTimeline([msg(10), msg(11)], [event({ version: 2, type: 'assumed', at: at(5) })], false);
    expect(items.map((i) => i.key)).toEqual([msg(10).id, msg(11).id]);
    const whole = mergeTimeline([msg(10), msg(11)], [event({ version: 2, type: 'assumed', at: at(5) })], true);
    expect(whole[0].event?.type).toBe('assumed');
  });
});

describe('internal notes', () => {
  it('an agent adds a note to an espera ticket it cannot answer yet; it shows as a note', async () => {
    const note = msg(9, { ticket_id: espera.id, direction: 'note', type: 'note', sender_type: 'agent', sender_name: me.name, body: 'ligar amanhã', status: 'internal' });
    const calls = mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${espera.id}/notes` && method === 'POST') return { status: 201, body: note };
      if (path === `/api/v1/tickets/${espera.id}/messages`) return { body: { items: [msg(1, { ticket_id: espera.id })], next_cursor: null } };
      return common(path, espera);
    });
    renderApp(<TicketView ticketId={espera.id} />);
    expect(await screen.findByTestId('composer-hint')).toHaveTextContent('Assuma o atendimento para responder.');
    expect(screen.queryByRole('textbox', { name: 'Mensagem' })).not.toBeInTheDocument();
    await userEvent.type(screen.getByRole('textbox', { name: 'Nota interna' }), 'ligar amanhã');
    await userEvent.click(screen.getByRole('button', { name: 'Salvar nota' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST' && c.path.endsWith('/notes'))).toBe(true));
    expect(calls.some((c) => c.method === 'POST' && c.path.endsWith('/messages'))).toBe(false);
    const bubble = await screen.findByRole('note', { name: 'Nota interna da equipe' });
    expect(bubble).toHaveTextContent('ligar amanhã');
  });

  it('the holding agent switches the composer to Nota interna and back', async () => {
    const calls = mockApi(({ method, path, body }) => {
      if (path === `${base}/notes` && method === 'POST') return { status: 201, body: msg(40, { direction: 'note', type: 'note', body: (body as { body: string }).body }) };
      if (path === `${base}/messages`) return { body: { items: [msg(1)], next_cursor: null } };
      return common(path);
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByRole('textbox', { name: 'Mensagem' });
    await userEvent.click(screen.getByRole('radio', { name: 'Nota interna' }));
    await userEvent.type(screen.getByRole('textbox', { name: 'Nota interna' }), 'só para a equipe{Control>}{Enter}{/Control}');
    await waitFor(() => expect(calls.find((c) => c.method === 'POST')?.path).toBe(`${base}/notes`));
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ body: 'só para a equipe' });
  });
});

describe('client history', () => {
  it('lists the client\'s other tickets and opens one read-only through the current ticket', async () => {
    const earlier = ticketFixture({ id: '3'.repeat(24), number: 3, status: 'finalizado', agent_name: 'Bruno', finalized_at: at(9) });
    const calls = mockApi(({ path }) => {
      if (path === `${base}/messages`) return { body: { items: [msg(1)], next_cursor: null } };
      if (path === `${base}/history`) return { body: { items: [earlier], next_cursor: null } };
      if (path === `${base}/history/${earlier.id}/messages`) {
        return { body: { items: [msg(1, { ticket_id: earlier.id, body: 'pedido antigo' })], next_cursor: null } };
      }
      return common(path);
    });
    renderApp(<TicketView ticketId={held.id} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Histórico do cliente (1)' }));
    const row = await screen.findByTestId('history-ticket');
    expect(row).toHaveTextContent('#3');
    expect(row).toHaveTextContent('Finalizado');
    expect(row).toHaveTextContent('Bruno');
    await userEvent.click(row);
    const thread = await screen.findByTestId('history-thread');
    expect(await within(thread).findByText('pedido antigo')).toBeInTheDocument();
    expect(within(thread).queryByRole('textbox')).not.toBeInTheDocument();
    expect(calls.some((c) => c.path === `/api/v1/tickets/${earlier.id}` || c.path === `/api/v1/tickets/${earlier.id}/messages`)).toBe(false);
  });
});
