import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { useState } from 'react';
import type { ScheduledMessage } from '../../api/types';
import { agentUser, messageFixture, mockApi, renderApp, signIn, stubServerSocket, stubWebSocket, ticketFixture } from '../../test/utils';
import { Composer } from './Composer';
import { ScheduledMessages } from './ScheduledMessages';
import { TicketView } from './TicketView';
import { DUE_POLL_MS, POLL_MS, defaultSendAt, localInputToIso, pollDelay, scheduleColor, scheduleStatusLabel, toLocalInput } from './scheduled';

const me = agentUser({ name: 'Ana Agente' });
const held = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name });
const SCHEDULES = `/api/v1/tickets/${held.id}/scheduled-messages`;

const schedule = (n: number, over: Partial<ScheduledMessage> = {}): ScheduledMessage => ({
  id: String(n).repeat(24),
  ticket_id: held.id,
  ticket_number: held.number,
  client_id: held.client_id,
  client_name: held.client_name,
  body: `agendada ${n}`,
  send_at: '2099-12-06T18:30:00Z',
  status: 'scheduled',
  reason: null,
  author_id: me.id,
  author_name: me.name,
  message_id: null,
  created_at: '2026-12-01T12:00:00Z',
  settled_at: null,
  ...over,
});

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

function common(path: string) {
  if (path === '/api/v1/auth/me') return { body: me };
  if (path === '/api/v1/quick-replies') return { body: { items: [], next_cursor: null } };
  return undefined;
}

describe('Agendar mensagem (the composer)', () => {
  it("posts the composer's text and the chosen local time as an ISO instant to the ticket, then clears the box and its draft", async () => {
    const calls = mockApi(({ method, path, body }) => {
      if (method === 'POST' && path === SCHEDULES) return { status: 201, body: schedule(1, body as Partial<ScheduledMessage>) };
      return common(path);
    });
    renderApp(<Composer ticket={held} canReply canNote />);
    const box = screen.getByLabelText('Mensagem');
    await userEvent.type(box, 'Bom dia, seu pedido sai hoje');
    // The draft is written (debounced), as for any text typed in the box.
    await waitFor(() => expect(window.localStorage.getItem(`iaze.drafts.${me.id}`)).toContain('Bom dia'));

    await userEvent.click(screen.getByRole('button', { name: 'Agendar mensagem' }));
    const dialog = await screen.findByRole('dialog', { name: 'Agendar mensagem' });
    const text = within(dialog).getByRole('textbox', { name: /Mensagem/ });
    expect(text).toHaveValue('Bom dia, seu pedido sai hoje');
    const when = within(dialog).getByLabelText(/Data e hora/);
    expect(when).toHaveAttribute('type', 'datetime-local');
    expect(when).toHaveAttribute('step', '1');
    // Suggested: an hour ahead, on a 5-minute mark.
    expect((when as HTMLInputElement).value).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d[05]$/);
    const suggested = Date.parse(localInputToIso((when as HTMLInputElement).value)!);
    expect(suggested - Date.now()).toBeGreaterThan(59 * 60_000);
    expect(suggested - Date.now()).toBeLessThanOrEqual(65 * 60_000);

    fireEvent.change(when, { target: { value: '2026-12-06T15:30:15' } });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Agendar' }));

    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true));
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.path).toBe(SCHEDULES);
    expect(post.body).toEqual({ body: 'Bom dia, seu pedido sai hoje', send_at: new Date('2026-12-06T15:30:15').toISOString() });
    expect((post.body as { send_at: string }).send_at).toMatch(/^2026-12-0\dT\d{2}:\d{2}:15\.000Z$/);
    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    expect(box).toHaveValue('');
    expect(window.localStorage.getItem(`iaze.drafts.${me.id}`) ?? '').not.toContain('Bom dia');
    // Only scheduled: nothing was sent as a reply.
    expect(calls.some((c) => c.method === 'POST' && c.path.endsWith('/messages'))).toBe(false);
  });

  it("shows the backend's 422 in pt-BR inside the modal and keeps it open", async () => {
    mockApi(({ method, path }) => {
      if (method === 'POST' && path === SCHEDULES) return { status: 422, body: { detail: 'send_at must be at least 30 seconds from now' } };
      return common(path);
    });
    renderApp(<Composer ticket={held} canReply canNote />);
    await userEvent.click(screen.getByRole('button', { name: 'Agendar mensagem' }));
    const dialog = await screen.findByRole('dialog', { name: 'Agendar mensagem' });
    await userEvent.type(within(dialog).getByRole('textbox', { name: /Mensagem/ }), 'Já volto');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Agendar' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Escolha um horário pelo menos 30 segundos depois de agora.');
    expect(screen.getByRole('dialog', { name: 'Agendar mensagem' })).toBeInTheDocument();
  });

  it('is not offered to whoever cannot reply, nor for a note', async () => {
    mockApi(({ path }) => common(path));
    const { unmount } = renderApp(<Composer ticket={ticketFixture()} canReply={false} canNote />);
    await screen.findByLabelText('Nota interna');
    expect(screen.queryByRole('button', { name: 'Agendar mensagem' })).not.toBeInTheDocument();
    unmount();

    renderApp(<Composer ticket={held} canReply canNote />);
    expect(screen.getByRole('button', { name: 'Agendar mensagem' })).toBeInTheDocument();
    await userEvent.click(screen.getByText('Nota interna'));
    await waitFor(() => expect(screen.queryByRole('button', { name: 'Agendar mensagem' })).not.toBeInTheDocument());
  });

  it('is not offered in a ticket someone else holds (TicketView)', async () => {
    const other = { ...held, agent_id: 'b'.repeat(24), agent_name: 'Bruno' };
    mockApi(({ path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: other };
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.startsWith(`/api/v1/tickets/${held.id}/`)) return { body: { items: [], next_cursor: null } };
      return common(path);
    });
    renderApp(<TicketView ticketId={held.id} />);
    expect(await screen.findByTestId('composer-hint')).toHaveTextContent('Em atendimento por Bruno.');
    expect(screen.queryByRole('button', { name: 'Agendar mensagem' })).not.toBeInTheDocument();
  });
});

describe('Mensagens agendadas (the list)', () => {
  const all = [
    schedule(1, { body: 'lembrete do boleto', send_at: '2099-12-06T18:30:00Z' }),
    schedule(2, { status: 'sent', message_id: 'm'.repeat(24), settled_at: '2026-12-01T13:00:00Z' }),
    schedule(3, { status: 'canceled', reason: 'canceled' }),
    schedule(4, { status: 'canceled', reason: 'finalized' }),
    schedule(5, { status: 'failed', reason: 'connection_disconnected' }),
    schedule(6, { status: 'failed', reason: 'connection_inactive' }),
    schedule(7, { status: 'failed', reason: 'no_connection' }),
  ];

  it('shows the waiting ones, all of them with "Ver todas", each with its chip, time, text and author', async () => {
    mockApi(({ path }) => (path === SCHEDULES ? { body: { items: all, next_cursor: null } } : common(path)));
    renderApp(<ScheduledMessages ticket={held} />);
    const region = await screen.findByRole('region', { name: 'Mensagens agendadas' });
    const rows = () => within(region).getAllByTestId('scheduled-message');
    expect(rows()).toHaveLength(1);
    expect(rows()[0]).toHaveTextContent('lembrete do boleto');
    expect(rows()[0]).toHaveTextContent('por Ana Agente');
    expect(rows()[0]).toHaveTextContent(new RegExp(`^${toDayTime('2099-12-06T18:30:00Z')}`));
    expect(within(region).getByText('1 aguardando')).toBeInTheDocument();

    await userEvent.click(within(region).getByRole('button', { name: 'Ver todas (7)' }));
    expect(rows().map((row) => within(row).getByTestId('schedule-status').textContent)).toEqual([
      'Agendada',
      'Enviada',
      'Cancelada',
      'Cancelada (atendimento finalizado)',
      'Falhou: conexão desconectada',
      'Falhou: conexão desativada',
      'Falhou: sem conexão',
    ]);
    // Only a waiting one can be canceled.
    expect(within(region).getAllByRole('button', { name: 'Cancelar agendamento' })).toHaveLength(1);
    expect(within(rows()[0]).getByRole('button', { name: 'Cancelar agendamento' })).toBeInTheDocument();
  });

  it('cancels through the cancel endpoint, and shows the chip "Cancelada"', async () => {
    let items = [schedule(1)];
    const calls = mockApi(({ method, path }) => {
      if (method === 'POST' && path === `/api/v1/scheduled-messages/${'1'.repeat(24)}/cancel`) {
        items = [schedule(1, { status: 'canceled', reason: 'canceled', settled_at: '2026-12-01T12:05:00Z' })];
        return { body: items[0] };
      }
      if (path === SCHEDULES) return { body: { items, next_cursor: null } };
      return common(path);
    });
    renderApp(<ScheduledMessages ticket={held} />);
    const row = await screen.findByTestId('scheduled-message');
    expect(within(row).getByTestId('schedule-status')).toHaveTextContent('Agendada');
    await userEvent.click(within(row).getByRole('button', { name: 'Cancelar agendamento' }));
    await waitFor(() => expect(within(screen.getByTestId('scheduled-message')).getByTestId('schedule-status')).toHaveTextContent('Cancelada'));
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.path)).toEqual([`/api/v1/scheduled-messages/${'1'.repeat(24)}/cancel`]);
    expect(screen.queryByRole('button', { name: 'Cancelar agendamento' })).not.toBeInTheDocument();
  });

  it('on a 409 (sent meanwhile) reads the list again and says why in pt-BR', async () => {
    let items = [schedule(1)];
    mockApi(({ method, path }) => {
      if (method === 'POST' && path.endsWith('/cancel')) {
        items = [schedule(1, { status: 'sent', message_id: 'm'.repeat(24) })];
        return { status: 409, body: { detail: { message: 'the scheduled message is no longer waiting', status: 'sent' } } };
      }
      if (path === SCHEDULES) return { body: { items, next_cursor: null } };
      return common(path);
    });
    renderApp(<ScheduledMessages ticket={held} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Cancelar agendamento' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Esta mensagem agendada não está mais aguardando');
    await waitFor(() => expect(screen.getByTestId('schedule-status')).toHaveTextContent('Enviada'));
  });

  it('turns the chip on scheduled.settled though a read taken before it is still in flight, and reads it on a finalize', async () => {
    const socket = stubServerSocket();
    let items = [schedule(1), schedule(2, { body: 'outra', send_at: '2099-12-07T18:30:00Z' })];
    const calls = mockApi(({ path }) => (path === SCHEDULES ? { body: { items, next_cursor: null } } : common(path)));
    const reads = () => calls.filter((c) => c.path === SCHEDULES).length;
    // The list's answers can be held back, as a slow server would (each read as it was when asked).
    const answered = globalThis.fetch;
    let gate: Promise<void> | null = null;
    let open = () => {};
    vi.stubGlobal('fetch', async (input: RequestInfo | URL, init?: RequestInit) => {
      const answer = answered(input, init);
      const held = gate;
      if (held && new URL(input instanceof Request ? input.url : String(input)).pathname === SCHEDULES) await held;
      return answer;
    });
    const { client } = renderApp(<Harness />);
    await screen.findAllByTestId('scheduled-message');
    await waitFor(() => expect(socket.last).not.toBeNull());
    socket.last!.frame({ type: 'hello', seq: 1, heartbeat: 25 });
    const chips = () => screen.getAllByTestId('schedule-status').map((chip) => chip.textContent);
    await waitFor(() => expect(chips()).toEqual(['Agendada', 'Agendada']));
    const before = reads();

    // A message of the ticket no longer reads the list: the schedule's own event says what became of it.
    const reply = messageFixture(held.id, 9, { id: 'f'.repeat(24), direction: 'out', sender_type: 'agent', body: 'oi', status: 'pending' });
    socket.last!.frame({ type: 'event', seq: 2, event: 'message.created', at: reply.created_at, ticket: null, message: reply, connection: null });
    await new Promise((r) => setTimeout(r, 20));
    expect(reads()).toBe(before);

    // A read (the poll) asks while the first one still waits; its answer is held back.
    gate = new Promise((resolve) => (open = resolve));
    void client.invalidateQueries({ queryKey: ['ticket', held.id, 'scheduled'] });
    await waitFor(() => expect(reads()).toBe(before + 1));

    const failed = schedule(1, { status: 'failed', reason: 'connection_disconnected', settled_at: '2026-12-01T13:00:00Z' });
    items = [failed, items[1]];
    socket.last!.frame({ type: 'event', seq: 3, event: 'scheduled.settled', at: '2026-12-01T13:00:00Z', ticket: held, message: null, connection: null, data: { schedule: failed } });
    // Shown from the event itself, while no read has answered.
    await waitFor(() => expect(chips()).toEqual(['Falhou: conexão desconectada', 'Agendada']));
    expect(screen.getByText('1 aguardando')).toBeInTheDocument();
    expect(reads()).toBe(before + 2); // read again after the event
    gate = null;
    open(); // the read taken before the event lands late: ignored
    await new Promise((r) => setTimeout(r, 50));
    expect(chips()).toEqual(['Falhou: conexão desconectada', 'Agendada']);
    expect(reads()).toBe(before + 2);

    // Finalized elsewhere: its waiting schedules were canceled with it.
    items = [failed, schedule(2, { status: 'canceled', reason: 'finalized' })];
    await userEvent.click(screen.getByRole('button', { name: 'finalizar' }));
    await waitFor(() => expect(reads()).toBe(before + 3));
    await waitFor(() => expect(chips()).toEqual(['Falhou: conexão desconectada', 'Cancelada (atendimento finalizado)']));
  });

  it("offers cancel on another agent's schedule only to whoever holds the ticket now", async () => {
    const bruno = { author_id: 'b'.repeat(24), author_name: 'Bruno' };
    mockApi(({ path }) => (path === SCHEDULES ? { body: { items: [schedule(1, bruno)], next_cursor: null } } : common(path)));
    const { unmount } = renderApp(<ScheduledMessages ticket={held} />);
    expect(await screen.findByTestId('scheduled-message')).toHaveTextContent('por Bruno');
    expect(screen.getByRole('button', { name: 'Cancelar agendamento' })).toBeInTheDocument(); // transferred to me
    unmount();

    renderApp(<ScheduledMessages ticket={{ ...held, agent_id: 'c'.repeat(24), agent_name: 'Carla' }} />);
    expect(await screen.findByTestId('scheduled-message')).toHaveTextContent('por Bruno');
    expect(screen.queryByRole('button', { name: 'Cancelar agendamento' })).not.toBeInTheDocument();
  });

  it('offers "Editar" only to its author, and only while they hold the ticket', async () => {
    const bruno = { author_id: 'b'.repeat(24), author_name: 'Bruno' };
    mockApi(({ path }) => (path === SCHEDULES ? { body: { items: [schedule(1), schedule(2, bruno)], next_cursor: null } } : common(path)));
    const { unmount } = renderApp(<ScheduledMessages ticket={held} />);
    const [mine, his] = await screen.findAllByTestId('scheduled-message');
    expect(within(mine).getByRole('button', { name: 'Editar agendamento' })).toHaveTextContent('Editar');
    // Bruno's: I may cancel it (I hold the ticket now), not edit it.
    expect(his).toHaveTextContent('por Bruno');
    expect(within(his).getByRole('button', { name: 'Cancelar agendamento' })).toBeInTheDocument();
    expect(within(his).queryByRole('button', { name: 'Editar agendamento' })).not.toBeInTheDocument();
    unmount();

    // Transferred to Carla: the backend would refuse my edit (scheduling needs the ticket held).
    renderApp(<ScheduledMessages ticket={{ ...held, agent_id: 'c'.repeat(24), agent_name: 'Carla' }} />);
    await screen.findAllByTestId('scheduled-message');
    expect(screen.queryByRole('button', { name: 'Editar agendamento' })).not.toBeInTheDocument();
  });

  it('edits through the replace endpoint: the form opens with its text and time, and the edit takes its place', async () => {
    const old = schedule(1, { body: 'lembrete do boleto', send_at: '2099-12-06T18:30:00Z' });
    const REPLACE = `/api/v1/scheduled-messages/${old.id}/replace`;
    let items = [old, schedule(2, { body: 'outra', send_at: '2099-12-08T18:30:00Z' })];
    const calls = mockApi(({ method, path, body }) => {
      if (method === 'POST' && path === REPLACE) {
        const edit = schedule(9, { ...(body as Partial<ScheduledMessage>), replaces: old.id, created_at: '2026-12-01T12:10:00Z' });
        // Soonest first, as the server lists them.
        items = [{ ...old, status: 'canceled', reason: 'edited', replaced_by: edit.id, settled_at: '2026-12-01T12:10:00Z' }, edit, items[1]];
        return { status: 201, body: edit };
      }
      if (path === SCHEDULES) return { body: { items, next_cursor: null } };
      return common(path);
    });
    renderApp(<ScheduledMessages ticket={held} />);
    const region = await screen.findByRole('region', { name: 'Mensagens agendadas' });
    await waitFor(() => expect(within(region).getAllByTestId('scheduled-message')).toHaveLength(2));
    await userEvent.click(within(within(region).getAllByTestId('scheduled-message')[0]).getByRole('button', { name: 'Editar agendamento' }));

    const dialog = await screen.findByRole('dialog', { name: 'Editar mensagem agendada' });
    const text = within(dialog).getByRole('textbox', { name: /Mensagem/ });
    expect(text).toHaveValue('lembrete do boleto');
    const when = within(dialog).getByLabelText(/Data e hora/);
    expect(when).toHaveValue(toLocalInput(new Date(old.send_at)));
    // Nothing changed yet: nothing to save.
    expect(within(dialog).getByRole('button', { name: 'Salvar alterações' })).toBeDisabled();

    await userEvent.clear(text);
    await userEvent.type(text, 'lembrete do boleto, vence amanhã');
    fireEvent.change(when, { target: { value: '2099-12-07T09:15' } });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Salvar alterações' }));

    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    const posts = calls.filter((c) => c.method === 'POST');
    expect(posts.map((c) => c.path)).toEqual([REPLACE]);
    expect(posts[0].body).toEqual({ body: 'lembrete do boleto, vence amanhã', send_at: new Date('2099-12-07T09:15').toISOString() });
    expect(await screen.findByText(`Agendamento alterado: envio em ${toDayTime(new Date('2099-12-07T09:15').toISOString())}`)).toBeInTheDocument();

    // The edit stands in the old one's place, in its time's order; the old one is only in "Ver todas".
    const rows = () => within(region).getAllByTestId('scheduled-message');
    await waitFor(() => expect(rows().map((row) => within(row).getByTitle(/./).textContent)).toEqual(['lembrete do boleto, vence amanhã', 'outra']));
    expect(rows().map((row) => within(row).getByTestId('schedule-status').textContent)).toEqual(['Agendada', 'Agendada']);
    expect(within(region).getByText('2 aguardando')).toBeInTheDocument();
    await userEvent.click(within(region).getByRole('button', { name: 'Ver todas (3)' }));
    expect(rows().map((row) => within(row).getByTestId('schedule-status').textContent)).toEqual(['Editada', 'Agendada', 'Agendada']);
    expect(rows()[0]).toHaveTextContent('lembrete do boleto');
    expect(within(rows()[0]).queryByRole('button', { name: 'Editar agendamento' })).not.toBeInTheDocument();
  });

  it('on a 409 (sent meanwhile) says why in the form and reads the list again', async () => {
    let items = [schedule(1)];
    mockApi(({ method, path }) => {
      if (method === 'POST' && path.endsWith('/replace')) {
        items = [schedule(1, { status: 'sent', message_id: 'm'.repeat(24) })];
        return { status: 409, body: { detail: { message: 'the scheduled message is no longer waiting', status: 'sent' } } };
      }
      if (path === SCHEDULES) return { body: { items, next_cursor: null } };
      return common(path);
    });
    renderApp(<ScheduledMessages ticket={held} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Editar agendamento' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar mensagem agendada' });
    await userEvent.type(within(dialog).getByRole('textbox', { name: /Mensagem/ }), ' (corrigida)');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Salvar alterações' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Esta mensagem agendada não está mais aguardando');
    await waitFor(() => expect(screen.getByTestId('schedule-status')).toHaveTextContent('Enviada'));
    expect(screen.queryByRole('button', { name: 'Editar agendamento' })).not.toBeInTheDocument();
  });

  it('shows nothing for a ticket without schedules, and only "Ver todas" when none waits', async () => {
    const calls = mockApi(({ path }) => (path === SCHEDULES ? { body: { items: [], next_cursor: null } } : common(path)));
    const { unmount } = renderApp(<ScheduledMessages ticket={held} />);
    await waitFor(() => expect(calls.some((c) => c.path === SCHEDULES)).toBe(true));
    expect(screen.queryByTestId('scheduled-messages')).not.toBeInTheDocument();
    unmount();

    mockApi(({ path }) => (path === SCHEDULES ? { body: { items: [schedule(2, { status: 'sent' })], next_cursor: null } } : common(path)));
    renderApp(<ScheduledMessages ticket={held} />);
    const region = await screen.findByRole('region', { name: 'Mensagens agendadas' });
    expect(within(region).queryAllByTestId('scheduled-message')).toHaveLength(0);
    await userEvent.click(within(region).getByRole('button', { name: 'Ver todas (1)' }));
    expect(within(region).getByTestId('schedule-status')).toHaveTextContent('Enviada');
  });
});

describe('scheduled helpers', () => {
  it('polls only while one waits: just after the soonest falls due, then often for a minute, then slowly', () => {
    const now = Date.parse('2026-12-06T12:00:00Z');
    const at = (offsetMs: number, status: ScheduledMessage['status'] = 'scheduled') => schedule(1, { status, send_at: new Date(now + offsetMs).toISOString() });
    expect(pollDelay(undefined, now)).toBe(false);
    expect(pollDelay([at(-5_000, 'sent'), at(10_000, 'canceled')], now)).toBe(false);
    expect(pollDelay([at(10 * 60_000)], now)).toBe(POLL_MS);
    expect(pollDelay([at(10 * 60_000), at(5_000)], now)).toBe(6_000);
    expect(pollDelay([at(-3_000)], now)).toBe(DUE_POLL_MS);
    expect(pollDelay([at(-5 * 60_000)], now)).toBe(POLL_MS);
  });

  it('suggests an hour ahead on the next 5 minutes', () => {
    expect(toLocalInput(defaultSendAt(new Date(2026, 11, 6, 14, 2, 0)))).toBe('2026-12-06T15:05');
    expect(toLocalInput(defaultSendAt(new Date(2026, 11, 6, 14, 0, 0)))).toBe('2026-12-06T15:00');
    expect(toLocalInput(defaultSendAt(new Date(2026, 11, 6, 14, 0, 1)))).toBe('2026-12-06T15:05');
    expect(toLocalInput(defaultSendAt(new Date(2026, 11, 6, 23, 58, 0)))).toBe('2026-12-07T01:00');
  });

  it('reads a datetime-local value as local time, and refuses anything else', () => {
    expect(localInputToIso('2026-12-06T15:30')).toBe(new Date(2026, 11, 6, 15, 30).toISOString());
    expect(localInputToIso('2026-12-06T15:30:35')).toBe(new Date(2026, 11, 6, 15, 30, 35).toISOString());
    expect(localInputToIso('')).toBeNull();
    expect(localInputToIso('amanhã')).toBeNull();
  });

  it('names why one was canceled or failed', () => {
    expect(scheduleStatusLabel({ status: 'failed', reason: 'something new' })).toBe('Falhou');
    expect(scheduleStatusLabel({ status: 'canceled', reason: null })).toBe('Cancelada');
    expect(scheduleStatusLabel({ status: 'canceled', reason: 'edited' })).toBe('Editada');
    expect(scheduleStatusLabel({ status: 'canceled', reason: 'edit_refused' })).toBe('Edição recusada');
    expect(scheduleStatusLabel({ status: 'canceled', reason: 'finalized' })).toBe('Cancelada (atendimento finalizado)');
    // Sent as a schedule, its message as WhatsApp has it: queued is not sent; refused says why.
    expect(scheduleStatusLabel({ status: 'sent', reason: null, delivery: 'pending' })).toBe('Na fila de envio');
    expect(scheduleStatusLabel({ status: 'sent', reason: null, delivery: 'delivered' })).toBe('Enviada');
    expect(scheduleStatusLabel({ status: 'sent', reason: null, delivery: 'failed', failure_reason: 'número sem WhatsApp' })).toBe(
      'Não enviada: número sem WhatsApp',
    );
    expect(scheduleStatusLabel({ status: 'sent', reason: null, delivery: 'failed' })).toBe('Não enviada');
    expect(scheduleColor({ status: 'sent', reason: null, delivery: 'failed' })).toBe('red');
    expect(scheduleColor({ status: 'sent', reason: null, delivery: 'read' })).toBe('teal');
  });
});

/** The list in a ticket the test finalizes, as a realtime frame would. */
function Harness() {
  const [ticket, setTicket] = useState(held);
  return (
    <>
      <button onClick={() => setTicket({ ...held, status: 'finalizado', version: 2 })}>finalizar</button>
      <ScheduledMessages ticket={ticket} />
    </>
  );
}

/** "06/12 15:30" in the test machine's zone (the list shows local time). */
function toDayTime(iso: string): string {
  const at = new Date(iso);
  const two = (n: number) => String(n).padStart(2, '0');
  const year = at.getFullYear() === new Date().getFullYear() ? '' : `/${at.getFullYear()}`;
  return `${two(at.getDate())}/${two(at.getMonth() + 1)}${year} ${two(at.getHours())}:${two(at.getMinutes())}`;
}
