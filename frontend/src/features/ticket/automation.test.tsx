// Issue 16 in the agent's screens: automatic messages labelled, the menu choice and the rating
// in the timeline, the rating on a finalized ticket, and the inbox's out-of-hours / menu markers.
import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Message, TicketEvent } from '../../api/types';
import { alertFor } from '../alerts/alerts';
import { InboxPage } from '../inbox/InboxPage';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { timelineText } from './MessageThread';
import { TicketView } from './TicketView';

const me = agentUser();
const base = ticketFixture();
const msg = (over: Partial<Message>): Message => ({
  id: 'm'.repeat(24), ticket_id: base.id, direction: 'in', sender_type: 'client', sender_name: 'Maria', type: 'text',
  body: 'Oi', status: 'received', created_at: '2025-01-01T12:00:00Z', automatic: false, ...over,
});
const event = (over: Partial<TicketEvent>): TicketEvent => ({
  id: `${base.id}:2`, ticket_id: base.id, version: 2, type: 'routed', actor_id: base.client_id, actor_role: 'client',
  from_status: 'espera', to_status: 'espera', at: '2025-01-01T12:00:05Z', data: { to_department_id: 'f'.repeat(24), fallback: false },
  actor_name: 'Maria Cliente', target_name: 'Financeiro', ...over,
});

function serve(ticket = base, messages: Message[] = [], events: TicketEvent[] = []) {
  return mockApi(({ path, url }) => {
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
    if (path === `/api/v1/tickets/${ticket.id}`) return { body: ticket };
    if (path === `/api/v1/tickets/${ticket.id}/messages`) return { body: { items: messages, next_cursor: null } };
    if (path === `/api/v1/tickets/${ticket.id}/events`) return { body: { items: events, next_cursor: null } };
    if (path === `/api/v1/tickets/${ticket.id}/history`) return { body: { items: [], next_cursor: null } };
    if (path === '/api/v1/tickets/counts') return { body: { espera: 3, atendendo: 0, finalizado: 0 } };
    if (path === '/api/v1/tickets' && url.searchParams.get('status') === 'finalizado') {
      return { body: { items: [ticketFixture({ id: '4'.repeat(24), status: 'finalizado', client_name: 'Avaliou', rating: 4 }), ticketFixture({ id: '5'.repeat(24), status: 'finalizado', client_name: 'Calado' })], next_cursor: null } };
    }
    if (path === '/api/v1/tickets' && url.searchParams.get('status') === 'espera') {
      return {
        body: {
          items: [
            ticketFixture({ id: '1'.repeat(24), client_name: 'Noturna', out_of_hours: true }),
            ticketFixture({ id: '2'.repeat(24), client_name: 'No Menu', menu_pending: true }),
            ticketFixture({ id: '3'.repeat(24), client_name: 'Comum' }),
          ],
          next_cursor: null,
        },
      };
    }
    return undefined;
  });
}

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('automatic messages and ratings', () => {
  it('labels automatic messages "automática", and only those', async () => {
    serve(base, [
      msg({ id: '1'.repeat(24) }),
      msg({ id: '2'.repeat(24), direction: 'out', sender_type: 'system', sender_name: 'IAZE', automatic: true, automatic_purpose: 'greeting', body: 'Bem-vinda, Maria!', status: 'delivered' }),
      msg({ id: '3'.repeat(24), direction: 'out', sender_type: 'agent', sender_name: 'Ana', body: 'Posso ajudar?', status: 'sent' }),
    ]);
    renderApp(<TicketView ticketId={base.id} />);
    await screen.findByText('Bem-vinda, Maria!');
    const bubbles = screen.getAllByTestId('message');
    expect(within(bubbles[1]).getByTestId('automatic')).toHaveTextContent('automática');
    expect(within(bubbles[1]).getByTestId('automatic')).toHaveAttribute('title', 'Mensagem automática enviada pelo sistema: boas-vindas');
    expect(bubbles[1]).toHaveTextContent('IAZE'); // the company's name, as the backend stores it
    expect(within(bubbles[2]).queryByTestId('automatic')).not.toBeInTheDocument();
    expect(bubbles[2]).toHaveTextContent('Ana');
  });

  it('shows the rating on a finalized ticket, and the rated event in its timeline', async () => {
    const done = { ...base, status: 'finalizado' as const, finalized_at: '2025-01-01T12:10:00Z', rating: 4 };
    serve(done, [msg({})], [event({ id: `${base.id}:3`, version: 3, type: 'rated', actor_role: 'client', from_status: 'finalizado', to_status: 'finalizado', at: '2025-01-01T12:20:00Z', data: { rating: 4 }, target_name: null })]);
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByTestId('ticket-rating')).toHaveTextContent('4 de 5');
    expect(await screen.findByTestId('timeline-event')).toHaveTextContent('Maria Cliente avaliou o atendimento: 4 de 5');
  });

  it('the ticket header repeats the inbox markers while they hold', async () => {
    serve({ ...base, out_of_hours: true, menu_pending: true }, [msg({})]);
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByTestId('menu-pending')).toHaveTextContent('Aguardando menu');
    expect(screen.getByTestId('out-of-hours')).toHaveTextContent('Fora do horário');
  });

  it('a ticket without a rating shows none', async () => {
    serve({ ...base, status: 'finalizado', finalized_at: '2025-01-01T12:10:00Z' }, [msg({})]);
    renderApp(<TicketView ticketId={base.id} />);
    await screen.findByText('Oi');
    expect(screen.queryByTestId('ticket-rating')).not.toBeInTheDocument();
  });

  it('tells the client\'s menu choice from the menu giving up, and names an unnamed client "O cliente"', () => {
    expect(timelineText(event({}))).toBe('Maria Cliente escolheu Financeiro no menu');
    expect(timelineText(event({ actor_name: null }))).toBe('O cliente escolheu Financeiro no menu');
    expect(timelineText(event({ data: { to_department_id: 'f'.repeat(24), fallback: true }, target_name: 'Suporte' }))).toBe('Sem resposta válida ao menu: ficou em Suporte');
    expect(timelineText(event({ type: 'transferred', actor_role: 'agent', actor_name: 'Ana' }))).toBe('Ana devolveu à fila Financeiro');
  });
});

describe('inbox markers', () => {
  it('marks the tickets that arrived out of hours and those waiting for the menu choice', async () => {
    serve();
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    const rows = await screen.findAllByTestId('ticket-row');
    expect(within(rows[0]).getByTestId('out-of-hours')).toHaveTextContent('Fora do horário');
    expect(within(rows[0]).queryByTestId('menu-pending')).not.toBeInTheDocument();
    expect(within(rows[1]).getByTestId('menu-pending')).toHaveTextContent('Aguardando menu');
    expect(within(rows[2]).queryByTestId('out-of-hours')).not.toBeInTheDocument();
    expect(within(rows[2]).queryByTestId('menu-pending')).not.toBeInTheDocument();
  });
});

describe('finalized list', () => {
  it('shows the rating of the finalized tickets that have one', async () => {
    serve();
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await userEvent.click(await screen.findByTestId('tab-finalizado'));
    const rows = await screen.findAllByTestId('ticket-row');
    expect(rows.map((r) => r.textContent)).toEqual([expect.stringContaining('Avaliou'), expect.stringContaining('Calado')]);
    expect(within(rows[0]).getByTestId('row-rating')).toHaveAccessibleName('Avaliação do cliente: 4 de 5');
    expect(within(rows[1]).queryByTestId('row-rating')).not.toBeInTheDocument();
  });
});

describe('alerts', () => {
  it('alerts the agents of the department the client chose in the menu, and no one else', () => {
    const financeiro = 'f'.repeat(24);
    const routed = { ...base, department_id: financeiro, version: 2 };
    const frame = { type: 'event' as const, seq: 1, event: 'ticket.routed' as const, at: '2025-01-01T12:00:05Z', ticket: routed, message: null, connection: null };
    expect(alertFor(frame, agentUser({ department_ids: [financeiro] }))?.ticketId).toBe(base.id);
    expect(alertFor(frame, agentUser({ department_ids: ['d'.repeat(24)] }))).toBeNull();
  });
});
