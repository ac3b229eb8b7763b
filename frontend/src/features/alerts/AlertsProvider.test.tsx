import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ScheduledMessage, User } from '../../api/types';
import { ServerSocket, agentUser, mockApi, renderApp, signIn, stubServerSocket, ticketFixture } from '../../test/utils';
import { AlertsProvider } from './AlertsProvider';

const ana = agentUser({ name: 'Ana Agente' });
const bruno = agentUser({ id: 'b'.repeat(24), name: 'Bruno' });
const ticket = ticketFixture({ status: 'atendendo', agent_id: ana.id, agent_name: ana.name, number: 42 });

const schedule = (over: Partial<ScheduledMessage> = {}): ScheduledMessage => ({
  id: '5'.repeat(24),
  ticket_id: ticket.id,
  ticket_number: ticket.number,
  client_id: ticket.client_id,
  client_name: ticket.client_name,
  body: 'lembrete do boleto',
  send_at: '2026-12-06T18:30:00Z',
  status: 'failed',
  reason: 'connection_disconnected',
  author_id: ana.id,
  author_name: ana.name,
  message_id: null,
  created_at: '2026-12-01T12:00:00Z',
  settled_at: '2026-12-06T18:30:02Z',
  ...over,
});

let seq = 1;
const settled = (s: ScheduledMessage) => {
  seq += 1;
  const { unread_count: _, ...stored } = ticket;
  return { type: 'event', seq, event: 'scheduled.settled', at: '2026-12-06T18:30:02Z', ticket: stored, message: null, connection: null, data: { schedule: s } };
};

async function signedInAs(user: User) {
  stubServerSocket();
  signIn(user);
  mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: user } : undefined));
  renderApp(
    <AlertsProvider>
      <div>caixa de entrada</div>
    </AlertsProvider>,
    { path: '/', route: '/' },
  );
  await waitFor(() => expect(ServerSocket.last).not.toBeNull());
  ServerSocket.last!.frame({ type: 'hello', seq: 1, heartbeat: 25 });
  return ServerSocket.last!;
}

const TEXT = 'Mensagem agendada não enviada para Maria Cliente (#42): conexão desconectada';

beforeEach(() => {
  seq = 1;
});

describe('a scheduled message that failed (scheduled.settled)', () => {
  it('tells its author, in red, once, with a way to open the ticket', async () => {
    const socket = await signedInAs(ana);
    socket.frame(settled(schedule()));
    const toast = (await screen.findByText(TEXT)).closest('.mantine-Notification-root') as HTMLElement;
    expect(toast).not.toBeNull();
    expect(within(toast).getByText('Falha no envio agendado')).toBeInTheDocument();
    expect(toast.getAttribute('style') ?? '').toContain('red');
    // The same outcome announced again (settle is idempotent; a replay): still one toast.
    socket.frame(settled(schedule()));
    await new Promise((r) => setTimeout(r, 20));
    expect(screen.getAllByText(TEXT)).toHaveLength(1);

    await userEvent.click(within(toast).getByRole('button', { name: 'Abrir atendimento' }));
    // renderApp's catch-all route: the app went to /atendimento/<id>.
    expect(await screen.findByText('outra página')).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByText(TEXT)).not.toBeInTheDocument());
  });

  it('says nothing to another user who sees the ticket', async () => {
    const socket = await signedInAs(bruno);
    socket.frame(settled(schedule()));
    await new Promise((r) => setTimeout(r, 50));
    expect(screen.queryByText(/Mensagem agendada não enviada/)).not.toBeInTheDocument();
  });

  it('says nothing when it was sent or canceled', async () => {
    const socket = await signedInAs(ana);
    socket.frame(settled(schedule({ status: 'sent', reason: null, message_id: 'm'.repeat(24) })));
    socket.frame(settled(schedule({ id: '6'.repeat(24), status: 'canceled', reason: 'finalized' })));
    await new Promise((r) => setTimeout(r, 50));
    expect(screen.queryByText(/Mensagem agendada não enviada/)).not.toBeInTheDocument();
    // …while a failure after them does (the listener is live).
    socket.frame(settled(schedule({ id: '7'.repeat(24), reason: 'no_connection' })));
    expect(await screen.findByText('Mensagem agendada não enviada para Maria Cliente (#42): sem conexão')).toBeInTheDocument();
  });
});
