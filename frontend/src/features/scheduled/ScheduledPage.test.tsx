import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ScheduledMessage } from '../../api/types';
import { AppRoutes } from '../../routes';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { POLL_MS, toLocalInput } from '../ticket/scheduled';
import { ScheduledPage, listPollDelay } from './ScheduledPage';

const ana = agentUser({ name: 'Ana Agente' });
const bruno = agentUser({ id: 'b'.repeat(24), name: 'Bruno Agente', email: 'bruno@example.com' });
const owner = agentUser({ id: 'o'.repeat(24), name: 'Dona Revenda', email: 'dona@example.com', role: 'reseller', department_ids: [] });
const LIST = '/api/v1/scheduled-messages';

const schedule = (n: number, over: Partial<ScheduledMessage> = {}): ScheduledMessage => ({
  id: String(n).repeat(24),
  ticket_id: `${n}`.padStart(24, 't'),
  ticket_number: 40 + n,
  client_id: 'c'.repeat(24),
  client_name: `Cliente ${n}`,
  body: `mensagem agendada ${n}`,
  send_at: `2099-12-0${n}T18:30:00Z`,
  status: 'scheduled',
  reason: null,
  author_id: ana.id,
  author_name: ana.name,
  message_id: null,
  created_at: '2026-12-01T12:00:00Z',
  settled_at: null,
  ...over,
});

type Asked = { status: string | null; author_id: string | null; cursor: string | null };

/** Serves the list (`answer` gets what was asked), /auth/me and the agents; records each list read. */
function serve(me: typeof ana, answer: (asked: Asked) => { items: ScheduledMessage[]; next_cursor: string | null }, more: Parameters<typeof mockApi>[0] = () => undefined) {
  const asked: Asked[] = [];
  const calls = mockApi((request) => {
    const { method, path, url } = request;
    if (method === 'GET' && path === LIST) {
      const query = { status: url.searchParams.get('status'), author_id: url.searchParams.get('author_id'), cursor: url.searchParams.get('cursor') };
      asked.push(query);
      return { body: answer(query) };
    }
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/users') return { body: { items: [owner, ana, bruno], next_cursor: null } };
    return more(request);
  });
  return { asked, calls };
}

const rows = () => screen.getAllByTestId('scheduled-row');
const chips = () => rows().map((row) => within(row).getByTestId('schedule-status').textContent);

beforeEach(() => {
  stubWebSocket();
  signIn(ana);
});

describe('Agendamentos', () => {
  it("asks for the waiting ones by default and shows each with its time, client, ticket link, text and chip (an agent: no author)", async () => {
    const long = 'Bom dia! '.repeat(40).trim();
    const { asked, calls } = serve(ana, () => ({ items: [schedule(1, { body: long }), schedule(2, { ticket_number: null })], next_cursor: null }));
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });

    expect(await screen.findByRole('heading', { name: 'Agendamentos' })).toBeInTheDocument();
    await waitFor(() => expect(rows()).toHaveLength(2));
    expect(asked).toEqual([{ status: 'scheduled', author_id: null, cursor: null }]);
    expect(screen.getByRole('radio', { name: 'Agendadas' })).toBeChecked();

    const [first, second] = rows();
    const link = within(first).getByRole('link', { name: 'Cliente 1 #41' });
    expect(link).toHaveAttribute('href', `/atendimento/${schedule(1).ticket_id}`);
    expect(within(second).getByRole('link', { name: 'Cliente 2' })).toHaveAttribute('href', `/atendimento/${schedule(2).ticket_id}`);
    expect(within(first).getByTitle(long)).toHaveTextContent(long);
    expect(first).toHaveTextContent(toDayTime(schedule(1).send_at));
    expect(chips()).toEqual(['Agendada', 'Agendada']);
    expect(within(first).getByRole('button', { name: 'Cancelar agendamento' })).toHaveTextContent('Cancelar');

    // An agent's list is theirs alone: no author column, no author filter, no agents read.
    expect(screen.getAllByRole('columnheader').map((h) => h.textContent)).toEqual(['Quando', 'Cliente', 'Mensagem', 'Situação', '']);
    expect(screen.queryByRole('textbox', { name: 'Autor' })).not.toBeInTheDocument();
    expect(first).not.toHaveTextContent('Ana Agente');
    expect(calls.some((c) => c.path === '/api/v1/users')).toBe(false);
  });

  it('asks for another status when the filter changes, and for all of them with "Todas"', async () => {
    const { asked } = serve(ana, ({ status }) => {
      if (status === 'sent') return { items: [schedule(3, { status: 'sent', message_id: 'm'.repeat(24) })], next_cursor: null };
      if (status === 'failed') return { items: [schedule(4, { status: 'failed', reason: 'connection_disconnected' })], next_cursor: null };
      if (status === null) return { items: [schedule(1), schedule(3, { status: 'sent' }), schedule(5, { status: 'canceled', reason: 'finalized' })], next_cursor: null };
      return { items: [schedule(1)], next_cursor: null };
    });
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(chips()).toEqual(['Agendada']));

    await userEvent.click(screen.getByRole('radio', { name: 'Enviadas' }));
    await waitFor(() => expect(chips()).toEqual(['Enviada']));
    expect(rows()[0]).toHaveTextContent('Cliente 3');
    // Nothing left to send: no cancel.
    expect(screen.queryByRole('button', { name: 'Cancelar agendamento' })).not.toBeInTheDocument();

    await userEvent.click(screen.getByRole('radio', { name: 'Falharam' }));
    await waitFor(() => expect(chips()).toEqual(['Falhou: conexão desconectada']));

    await userEvent.click(screen.getByRole('radio', { name: 'Todas' }));
    await waitFor(() => expect(chips()).toEqual(['Agendada', 'Enviada', 'Cancelada (atendimento finalizado)']));
    expect(asked.map((a) => a.status)).toEqual(['scheduled', 'sent', 'failed', null]);
  });

  it('shows the empty text when there is none', async () => {
    serve(ana, () => ({ items: [], next_cursor: null }));
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    expect(await screen.findByText('Nenhuma mensagem agendada.')).toBeInTheDocument();
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
  });

  it("shows the reseller everyone's, with the author column, and narrows to one author with the filter", async () => {
    signIn(owner);
    const { asked } = serve(owner, ({ author_id }) =>
      author_id === bruno.id
        ? { items: [schedule(2, { author_id: bruno.id, author_name: bruno.name })], next_cursor: null }
        : { items: [schedule(1), schedule(2, { author_id: bruno.id, author_name: bruno.name })], next_cursor: null },
    );
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(rows()).toHaveLength(2));
    expect(screen.getAllByRole('columnheader').map((h) => h.textContent)).toEqual(['Quando', 'Cliente', 'Mensagem', 'Autor', 'Situação', '']);
    expect(rows()[0]).toHaveTextContent('Ana Agente');
    expect(rows()[1]).toHaveTextContent('Bruno Agente');
    // The owner cancels anyone's.
    expect(screen.getAllByRole('button', { name: 'Cancelar agendamento' })).toHaveLength(2);

    await userEvent.click(screen.getByRole('textbox', { name: 'Autor' }));
    // The owner may schedule too (holding a ticket): offered first, as "(você)".
    expect(await screen.findByRole('option', { name: 'Dona Revenda (você)', hidden: true })).toBeInTheDocument();
    fireEvent.click(await screen.findByRole('option', { name: 'Bruno Agente', hidden: true }));
    await waitFor(() => expect(rows()).toHaveLength(1));
    expect(rows()[0]).toHaveTextContent('Bruno Agente');
    expect(asked).toEqual([
      { status: 'scheduled', author_id: null, cursor: null },
      { status: 'scheduled', author_id: bruno.id, cursor: null },
    ]);
  });

  it('cancels through the endpoint: the chip turns "Cancelada" and the row stays, though the list is read again', async () => {
    let waiting = [schedule(1), schedule(2)];
    const cancelPath = `/api/v1/scheduled-messages/${schedule(1).id}/cancel`;
    const { asked, calls } = serve(
      ana,
      () => ({ items: waiting, next_cursor: null }),
      ({ method, path }) => {
        if (method === 'POST' && path === cancelPath) {
          waiting = [schedule(2)];
          return { body: schedule(1, { status: 'canceled', reason: 'canceled', settled_at: '2026-12-01T12:05:00Z' }) };
        }
        return undefined;
      },
    );
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(chips()).toEqual(['Agendada', 'Agendada']));

    await userEvent.click(within(rows()[0]).getByRole('button', { name: 'Cancelar agendamento' }));
    await waitFor(() => expect(chips()).toEqual(['Cancelada', 'Agendada']));
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.path)).toEqual([cancelPath]);
    expect(await screen.findByText('Agendamento cancelado')).toBeInTheDocument();
    // Read again after the cancel (the server no longer lists it among the waiting ones)…
    await waitFor(() => expect(asked).toHaveLength(2));
    // …and still shown, canceled, with nothing left to cancel on it.
    expect(chips()).toEqual(['Cancelada', 'Agendada']);
    expect(rows()[0]).toHaveTextContent('Cliente 1');
    expect(within(rows()[0]).queryByRole('button', { name: 'Cancelar agendamento' })).not.toBeInTheDocument();
    expect(within(rows()[1]).getByRole('button', { name: 'Cancelar agendamento' })).toBeInTheDocument();
  });

  it('on a 409 (sent meanwhile) says why in pt-BR and shows what became of it', async () => {
    let waiting = [schedule(1)];
    serve(
      ana,
      () => ({ items: waiting, next_cursor: null }),
      ({ method, path }) => {
        if (method === 'POST' && path.endsWith('/cancel')) {
          waiting = [];
          return { status: 409, body: { detail: { message: 'the scheduled message is no longer waiting', status: 'sent' } } };
        }
        return undefined;
      },
    );
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await userEvent.click(await screen.findByRole('button', { name: 'Cancelar agendamento' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Esta mensagem agendada não está mais aguardando');
    await waitFor(() => expect(chips()).toEqual(['Enviada']));
  });

  it('offers "Editar" on a waiting one to its author only: the owner edits none of the agents\' ones', async () => {
    serve(ana, () => ({ items: [schedule(1)], next_cursor: null }));
    const { unmount } = renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(rows()).toHaveLength(1));
    expect(within(rows()[0]).getByRole('button', { name: 'Editar' })).toBeInTheDocument();
    unmount();

    signIn(owner);
    serve(owner, () => ({
      items: [schedule(1), schedule(2, { author_id: bruno.id, author_name: bruno.name }), schedule(3, { author_id: owner.id, author_name: owner.name })],
      next_cursor: null,
    }));
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(rows()).toHaveLength(3));
    expect(rows().map((row) => within(row).queryByRole('button', { name: 'Editar' }) !== null)).toEqual([false, false, true]);
    expect(screen.getAllByRole('button', { name: 'Cancelar agendamento' })).toHaveLength(3);
  });

  it('edits through the replace endpoint: the old row turns "Editada" and the edit shows up', async () => {
    const old = schedule(1);
    const REPLACE = `/api/v1/scheduled-messages/${old.id}/replace`;
    let waiting = [old, schedule(2)];
    const { asked, calls } = serve(
      ana,
      () => ({ items: waiting, next_cursor: null }),
      ({ method, path, body }) => {
        if (method === 'POST' && path === REPLACE) {
          const edit = schedule(3, { ...(body as Partial<ScheduledMessage>), ticket_id: old.ticket_id, ticket_number: old.ticket_number, client_name: old.client_name, replaces: old.id });
          waiting = [schedule(2), edit];
          return { status: 201, body: edit };
        }
        return undefined;
      },
    );
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(chips()).toEqual(['Agendada', 'Agendada']));

    await userEvent.click(within(rows()[0]).getByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar mensagem agendada' });
    const text = within(dialog).getByRole('textbox', { name: /Mensagem/ });
    expect(text).toHaveValue('mensagem agendada 1');
    expect(within(dialog).getByLabelText(/Data e hora/)).toHaveValue(toLocalInput(new Date(old.send_at)));
    await userEvent.clear(text);
    await userEvent.type(text, 'mensagem corrigida');
    fireEvent.change(within(dialog).getByLabelText(/Data e hora/), { target: { value: '2099-12-03T08:00:30' } });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Salvar alterações' }));

    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    const posts = calls.filter((c) => c.method === 'POST');
    expect(posts.map((c) => c.path)).toEqual([REPLACE]);
    expect(posts[0].body).toEqual({ body: 'mensagem corrigida', send_at: new Date('2099-12-03T08:00:30').toISOString() });
    // Read again: the server lists the edit among the waiting ones, and the edited one stays, as "Editada".
    await waitFor(() => expect(asked).toHaveLength(2));
    await waitFor(() => expect(chips()).toEqual(['Editada', 'Agendada', 'Agendada']));
    expect(rows().map((row) => within(row).getByTitle(/./).textContent)).toEqual(['mensagem agendada 1', 'mensagem agendada 2', 'mensagem corrigida']);
    expect(within(rows()[0]).queryByRole('button', { name: 'Editar' })).not.toBeInTheDocument();
    expect(within(rows()[0]).queryByRole('button', { name: 'Cancelar agendamento' })).not.toBeInTheDocument();
    expect(within(rows()[2]).getByRole('button', { name: 'Editar' })).toBeInTheDocument();
  });

  it('on a 409 of an edit (sent meanwhile) says why in the form and reads the list again', async () => {
    let waiting = [schedule(1)];
    const { asked } = serve(
      ana,
      () => ({ items: waiting, next_cursor: null }),
      ({ method, path }) => {
        if (method === 'POST' && path.endsWith('/replace')) {
          waiting = [];
          return { status: 409, body: { detail: { message: 'the scheduled message is no longer waiting', status: 'sent' } } };
        }
        return undefined;
      },
    );
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await userEvent.click(await screen.findByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar mensagem agendada' });
    await userEvent.type(within(dialog).getByRole('textbox', { name: /Mensagem/ }), '!');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Salvar alterações' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Esta mensagem agendada não está mais aguardando');
    await waitFor(() => expect(asked).toHaveLength(2));
  });

  it('asks for the next page with "Carregar mais" and appends it', async () => {
    const { asked } = serve(ana, ({ cursor }) =>
      cursor === 'pagina-2' ? { items: [schedule(3)], next_cursor: null } : { items: [schedule(1), schedule(2)], next_cursor: 'pagina-2' },
    );
    renderApp(<ScheduledPage />, { path: '/agendamentos', route: '/agendamentos' });
    await waitFor(() => expect(rows()).toHaveLength(2));
    await userEvent.click(screen.getByRole('button', { name: 'Carregar mais' }));
    await waitFor(() => expect(rows()).toHaveLength(3));
    expect(rows()[2]).toHaveTextContent('Cliente 3');
    expect(asked).toEqual([
      { status: 'scheduled', author_id: null, cursor: null },
      { status: 'scheduled', author_id: null, cursor: 'pagina-2' },
    ]);
    expect(screen.queryByRole('button', { name: 'Carregar mais' })).not.toBeInTheDocument();
  });

  it('is polled only while it shows one waiting', () => {
    const pages = (...items: ScheduledMessage[][]) => ({ pages: items.map((list) => ({ items: list, next_cursor: null })), pageParams: items.map(() => null) });
    expect(listPollDelay(undefined)).toBe(false);
    expect(listPollDelay(pages([]))).toBe(false);
    expect(listPollDelay(pages([schedule(1, { status: 'sent' })], [schedule(2, { status: 'canceled' })]))).toBe(false);
    expect(listPollDelay(pages([schedule(1, { status: 'sent' })], [schedule(2)]))).toBe(POLL_MS);
    expect(POLL_MS).toBe(30_000);
  });

  it('is in the menu for agents and resellers, and not for the admin', async () => {
    serve(ana, () => ({ items: [schedule(1)], next_cursor: null }), ({ path }) =>
      path.startsWith('/api/v1/') ? { body: { items: [], next_cursor: null } } : undefined,
    );
    const { unmount } = renderApp(<AppRoutes />, { path: '*', route: '/respostas' });
    const menu = await screen.findByRole('navigation', { name: 'Menu' });
    await userEvent.click(within(menu).getByRole('link', { name: 'Agendamentos' }));
    expect(await screen.findByRole('heading', { name: 'Agendamentos' })).toBeInTheDocument();
    await waitFor(() => expect(rows()).toHaveLength(1));
    unmount();

    const admin = agentUser({ id: 'e'.repeat(24), role: 'admin', department_ids: [], reseller_id: null });
    signIn(admin);
    mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: admin } : path.startsWith('/api/v1/') ? { body: { items: [], next_cursor: null } } : undefined));
    renderApp(<AppRoutes />, { path: '*', route: '/agendamentos' });
    const adminMenu = await screen.findByRole('navigation', { name: 'Menu' });
    expect(within(adminMenu).queryByRole('link', { name: 'Agendamentos' })).not.toBeInTheDocument();
    expect(screen.queryByRole('heading', { name: 'Agendamentos' })).not.toBeInTheDocument();
  });
});

/** "06/12 15:30" in the test machine's zone (the page shows local time). */
function toDayTime(iso: string): string {
  const at = new Date(iso);
  const two = (n: number) => String(n).padStart(2, '0');
  const year = at.getFullYear() === new Date().getFullYear() ? '' : `/${at.getFullYear()}`;
  return `${two(at.getDate())}/${two(at.getMonth() + 1)}${year} ${two(at.getHours())}:${two(at.getMinutes())}`;
}
