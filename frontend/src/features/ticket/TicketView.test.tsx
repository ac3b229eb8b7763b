import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { allowedActions, assumeConflictMessage } from './actions';
import { ApiError } from '../../api/client';
import { TicketView } from './TicketView';
import { useParams } from 'react-router';

const me = agentUser();
const base = ticketFixture();
const message = {
  id: 'm'.repeat(24), ticket_id: base.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
  type: 'text', body: 'Meu pedido não chegou', status: 'received', created_at: '2025-01-01T12:00:00Z',
};
const outgoing = { ...message, id: 'n'.repeat(24), direction: 'out', sender_type: 'agent', sender_name: 'Ana', body: 'Já verifico', status: 'delivered' };
const image = { ...message, id: 'o'.repeat(24), type: 'image', body: '', media: { mimetype: 'image/jpeg' } };

function common(path: string) {
  if (path === '/api/v1/auth/me') return { body: me };
  if (path === '/api/v1/departments') return { body: { items: [{ id: base.department_id, name: 'Suporte', active: true, reseller_id: 'r', description: '', created_at: '' }], next_cursor: null } };
  if (path === `/api/v1/tickets/${base.id}/messages`) return { body: { items: [message, outgoing, image], next_cursor: null } };
  if (path === `/api/v1/tickets/${base.id}/events` || path === `/api/v1/tickets/${base.id}/history`) return { body: { items: [], next_cursor: null } };
  return undefined;
}

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('TicketView', () => {
  it("shows the hidden number label in the header for a client WhatsApp named without a number", async () => {
    const lid = { ...base, client_phone: '' };
    mockApi(({ path }) => (path === `/api/v1/tickets/${base.id}` ? { body: lid } : common(path)));
    renderApp(<TicketView ticketId={base.id} />);
    const header = (await screen.findByRole('heading', { name: 'Maria Cliente' })).closest('.mantine-Stack-root') as HTMLElement;
    await waitFor(() => expect(header).toHaveTextContent('#7 · Número oculto pelo WhatsApp · Departamento: Suporte'));
  });

  it('shows the hidden number label as the title when the client has neither name nor number', async () => {
    mockApi(({ path }) => (path === `/api/v1/tickets/${base.id}` ? { body: { ...base, client_name: '', client_phone: '' } } : common(path)));
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByRole('heading', { name: 'Número oculto pelo WhatsApp' })).toBeInTheDocument();
  });

  it('shows the thread with direction, delivery ticks and a media placeholder', async () => {
    mockApi(({ path }) => (path === `/api/v1/tickets/${base.id}` ? { body: base } : common(path)));
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByText('Meu pedido não chegou')).toBeInTheDocument();
    const bubbles = await screen.findAllByTestId('message');
    expect(bubbles.map((b) => b.getAttribute('data-direction'))).toEqual(['in', 'out', 'in']);
    expect(within(bubbles[1]).getByRole('img', { name: 'Entregue' })).toBeInTheDocument();
    expect(screen.getByTestId('media-placeholder')).toHaveTextContent('Imagem');
    expect(screen.getByTestId('composer-hint')).toHaveTextContent('Assuma o atendimento para responder.');
  });

  it('says who took the ticket when Assumir loses the race (409) and shows the ticket as it is now', async () => {
    const taken = { ...base, status: 'atendendo', agent_id: 'b'.repeat(24), agent_name: 'Bruno Rápido', version: 2 };
    let assumed = false;
    mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/assume` && method === 'POST') {
        assumed = true;
        return { status: 409, body: { detail: { message: 'already assumed', status: 'atendendo', ticket: taken } } };
      }
      if (path === `/api/v1/tickets/${base.id}`) return { body: assumed ? taken : base };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 0, atendendo: 1, finalizado: 0 } };
      return common(path);
    });
    renderApp(<TicketView ticketId={base.id} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Assumir' }));
    expect(await screen.findByText('Este atendimento já foi assumido por Bruno Rápido.')).toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId('ticket-status')).toHaveTextContent('Atendendo'));
    expect(screen.queryByRole('button', { name: 'Assumir' })).not.toBeInTheDocument();
    expect(screen.getByTestId('composer-hint')).toHaveTextContent('Em atendimento por Bruno Rápido.');
  });

  it('takes a 409 naming the agent itself (its first click landed, the answer was lost) as assumed', async () => {
    const mine = { ...base, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, version: 2 };
    let clicked = false;
    mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/assume` && method === 'POST') {
        clicked = true;
        return { status: 409, body: { detail: { message: 'already assumed', status: 'atendendo', ticket: mine } } };
      }
      if (path === `/api/v1/tickets/${base.id}`) return { body: clicked ? mine : base };
      return common(path);
    });
    renderApp(<TicketView ticketId={base.id} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Assumir' }));
    expect(await screen.findByText('Atendimento assumido')).toBeInTheDocument();
    expect(screen.queryByText(/já foi assumido/)).not.toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId('ticket-status')).toHaveTextContent('Atendendo'));
    expect(screen.getByLabelText('Mensagem')).toBeInTheDocument(); // the composer is the holder's
  });

  it('reads the ticket again when a reply is refused for its state (409): the composer says why', async () => {
    const mine = { ...base, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, version: 2 };
    const taken = { ...mine, agent_id: 'b'.repeat(24), agent_name: 'Bruno Rápido', version: 3 };
    let refused = false;
    mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/messages` && method === 'POST') {
        refused = true;
        return { status: 409, body: { detail: { message: 'ticket is not held by you', status: 'atendendo' } } };
      }
      if (path === `/api/v1/tickets/${base.id}`) return { body: refused ? taken : mine };
      return common(path);
    });
    renderApp(<TicketView ticketId={base.id} />);
    const box = await screen.findByRole('textbox', { name: 'Mensagem' });
    await userEvent.type(box, 'Pode deixar');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    expect(await screen.findByTestId('composer-hint')).toHaveTextContent('Em atendimento por Bruno Rápido.');
  });

  it('asks for confirmation before Finalizar and only then calls the API', async () => {
    const mine = { ...base, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, version: 2 };
    const calls = mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/finalize` && method === 'POST') return { body: { ...mine, status: 'finalizado', version: 3 } };
      if (path === `/api/v1/tickets/${base.id}`) return { body: mine };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 0, atendendo: 0, finalizado: 1 } };
      return common(path);
    });
    renderApp(<TicketView ticketId={base.id} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Finalizar' }));
    expect(await screen.findByText(/Finalizar este atendimento\?/)).toBeInTheDocument();
    expect(calls.some((c) => c.path.endsWith('/finalize'))).toBe(false);
    await userEvent.click(screen.getByTestId('confirm-finalize'));
    await waitFor(() => expect(screen.getByTestId('ticket-status')).toHaveTextContent('Finalizado'));
    expect(calls.filter((c) => c.path.endsWith('/finalize'))).toHaveLength(1);
    expect(screen.getByTestId('composer-hint')).toHaveTextContent('somente leitura');
  });

  it('sends a reply from the composer with Ctrl+Enter', async () => {
    const mine = { ...base, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, version: 2 };
    const calls = mockApi(({ method, path, body }) => {
      if (path === `/api/v1/tickets/${base.id}/messages` && method === 'POST') return { status: 201, body: { ...outgoing, body: (body as { body: string }).body } };
      if (path === `/api/v1/tickets/${base.id}`) return { body: mine };
      return common(path);
    });
    renderApp(<TicketView ticketId={base.id} />);
    const box = await screen.findByRole('textbox', { name: 'Mensagem' });
    await userEvent.type(box, 'Pode deixar{Control>}{Enter}{/Control}');
    await waitFor(() => expect(calls.some((c) => c.method === 'POST' && c.path.endsWith('/messages'))).toBe(true));
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ body: 'Pode deixar' });
    await waitFor(() => expect(box).toHaveValue(''));
  });

  it('marks the thread read when it opens with unread client messages, and not when there are none', async () => {
    let unread = 2;
    const calls = mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/read` && method === 'POST') {
        unread = 0;
        return { body: { ...base, unread_count: 0 } };
      }
      if (path === `/api/v1/tickets/${base.id}`) return { body: { ...base, unread_count: unread } };
      return common(path);
    });
    const { client } = renderApp(<TicketView ticketId={base.id} />);
    await waitFor(() => expect(calls.filter((c) => c.method === 'POST' && c.path.endsWith('/read'))).toHaveLength(1));
    await waitFor(() => expect(client.getQueryData<{ unread_count: number }>(['ticket', base.id])?.unread_count).toBe(0));
    expect(calls.filter((c) => c.path.endsWith('/read'))).toHaveLength(1); // cleared: no second call
  });

  it('asks again after a pause, not at once, when marking read fails', async () => {
    const calls = mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/read` && method === 'POST') return { status: 503, body: { detail: 'the database did not answer; retry' } };
      if (path === `/api/v1/tickets/${base.id}`) return { body: { ...base, unread_count: 2 } };
      return common(path);
    });
    const answer = globalThis.fetch;
    // Answers that take a moment, as a network's do: the click's pending state is rendered first.
    vi.stubGlobal('fetch', async (...args: Parameters<typeof fetch>) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return answer(...args);
    });
    renderApp(<TicketView ticketId={base.id} />);
    const reads = () => calls.filter((c) => c.method === 'POST' && c.path.endsWith('/read'));
    await waitFor(() => expect(reads()).toHaveLength(1));
    await new Promise((resolve) => setTimeout(resolve, 400)); // many round trips of the mocked server
    expect(reads()).toHaveLength(1);
  });
});

describe('Reabrir and unreachable clients', () => {
  it('reopens a finalized ticket and goes to the new one, which links back', async () => {
    const closed = { ...base, status: 'finalizado' as const, agent_id: me.id, agent_name: me.name, version: 3 };
    const next = { ...base, id: '2'.repeat(24), number: 8, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, reopened_from_ticket_id: base.id };
    const calls = mockApi(({ method, path }) => {
      if (path === `/api/v1/tickets/${base.id}/reopen` && method === 'POST') return { status: 201, body: next };
      if (path === `/api/v1/tickets/${base.id}`) return { body: closed };
      if (path === `/api/v1/tickets/${next.id}`) return { body: next };
      if (path === `/api/v1/tickets/${next.id}/messages` || path === `/api/v1/tickets/${next.id}/history`) return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      return common(path);
    });
    renderApp(<TicketRoute />, { path: '/atendimento/:ticketId', route: `/atendimento/${base.id}` });
    await userEvent.click(await screen.findByRole('button', { name: 'Reabrir' }));
    expect(await screen.findByTestId('reopened-from')).toHaveTextContent('reabre um atendimento finalizado');
    expect(calls.filter((c) => c.method === 'POST' && c.path.endsWith('/reopen'))).toHaveLength(1);
    expect(screen.getByRole('link', { name: 'Ver atendimento anterior' })).toHaveAttribute('href', `/atendimento/${base.id}`);
  });

  it('shows on the finalized ticket the one that reopened it, and no Reabrir', async () => {
    const closed = { ...base, status: 'finalizado' as const, reopened_as_ticket_id: '2'.repeat(24) };
    mockApi(({ path }) => (path === `/api/v1/tickets/${base.id}` ? { body: closed } : common(path)));
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByTestId('reopened-as')).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Ver novo atendimento' })).toHaveAttribute('href', `/atendimento/${'2'.repeat(24)}`);
    expect(screen.queryByRole('button', { name: 'Reabrir' })).not.toBeInTheDocument();
  });

  it('disables replying with the reason when nothing reaches the client, leaving internal notes', async () => {
    const mine = { ...base, status: 'atendendo' as const, agent_id: me.id, agent_name: me.name, version: 2, reply_blocked: 'connection_disconnected' as const };
    mockApi(({ path }) => (path === `/api/v1/tickets/${base.id}` ? { body: mine } : common(path)));
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByTestId('reply-blocked')).toHaveTextContent('desconectada');
    expect(screen.queryByRole('textbox', { name: 'Mensagem' })).not.toBeInTheDocument();
    expect(screen.getByRole('textbox', { name: 'Nota interna' })).toBeInTheDocument();
  });

  it('shows why a message failed', async () => {
    const failed = { ...outgoing, status: 'failed', failure_reason: 'number is not on WhatsApp' };
    mockApi(({ path }) => {
      if (path === `/api/v1/tickets/${base.id}`) return { body: base };
      if (path === `/api/v1/tickets/${base.id}/messages`) return { body: { items: [failed], next_cursor: null } };
      return common(path);
    });
    renderApp(<TicketView ticketId={base.id} />);
    expect(await screen.findByTestId('failure-reason')).toHaveTextContent('Este número não tem WhatsApp.');
  });
});

function TicketRoute() {
  const { ticketId } = useParams();
  return <TicketView ticketId={ticketId ?? ''} />;
}

describe('allowedActions', () => {
  const reseller = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });
  it('lets an agent assume or route from espera but only the holder answer, transfer or finalize', () => {
    expect(allowedActions(base, me)).toEqual({ assume: true, transfer: true, finalize: true, reply: false, note: true, reopen: false });
    const held = { ...base, status: 'atendendo' as const, agent_id: me.id };
    expect(allowedActions(held, me)).toEqual({ assume: false, transfer: true, finalize: true, reply: true, note: true, reopen: false });
    const others = { ...held, agent_id: 'b'.repeat(24) };
    expect(allowedActions(others, me)).toEqual({ assume: false, transfer: false, finalize: false, reply: false, note: true, reopen: false });
  });
  it('lets the owner act as an agent: assume from espera, answer what it holds, reopen a finalized ticket', () => {
    const held = { ...base, status: 'atendendo' as const, agent_id: me.id };
    expect(allowedActions(held, reseller)).toEqual({ assume: false, transfer: true, finalize: true, reply: false, note: true, reopen: false });
    expect(allowedActions(base, reseller)).toEqual({ assume: true, transfer: true, finalize: true, reply: false, note: true, reopen: false });
    expect(allowedActions({ ...held, agent_id: reseller.id }, reseller).reply).toBe(true);
    const closed = { ...base, status: 'finalizado' as const };
    expect(allowedActions(closed, reseller)).toEqual({ assume: false, transfer: false, finalize: false, reply: false, note: true, reopen: true });
    expect(allowedActions({ ...closed, reopened_as_ticket_id: '9'.repeat(24) }, reseller).reopen).toBe(false);
  });
  it('words a 409 by what its body carries', () => {
    expect(assumeConflictMessage(new ApiError(409, { message: 'x', ticket: { ...base, agent_name: 'Bia' } }))).toBe('Este atendimento já foi assumido por Bia.');
    expect(assumeConflictMessage(new ApiError(409, { message: 'x', ticket: base }))).toBe('Este atendimento já foi assumido por outro agente.');
    expect(assumeConflictMessage(new ApiError(409, { message: 'x', status: 'atendendo' }))).toBe('Este atendimento já foi assumido por outro agente.');
    expect(assumeConflictMessage(new ApiError(409, 'busy'))).toMatch(/mudou/);
  });
});
