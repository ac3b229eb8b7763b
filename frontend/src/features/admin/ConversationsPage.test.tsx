import userEvent from '@testing-library/user-event';
import { focusManager } from '@tanstack/react-query';
import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useLocation } from 'react-router';
import type { Reseller, Ticket } from '../../api/types';
import { AppRoutes } from '../../routes';
import { agentUser, messageFixture, minuteAt, mockApi, renderApp, signIn, ticketFixture } from '../../test/utils';

const admin = agentUser({ id: 'e'.repeat(24), name: 'Adm Plataforma', role: 'admin', reseller_id: null, department_ids: [] });
const AZUL = 'r'.repeat(24);
const VERDE = 'v'.repeat(24);
const company = (id: string, name: string): Reseller => ({
  id, name, owner_id: 'o'.repeat(24), owner_email: `${id.slice(0, 1)}@example.com`, active: true, created_at: '2025-01-01T00:00:00Z',
});
const waiting = ticketFixture({ reseller_id: AZUL });
const T = waiting.id;
const held = ticketFixture({
  id: '2'.repeat(24), number: 8, status: 'atendendo', reseller_id: AZUL, client_name: 'João Atendido', client_phone: '5521912345678',
  agent_id: 'b'.repeat(24), agent_name: 'Bruno Agente', last_message_direction: 'out', last_message_preview: 'Já vejo isso',
});
const later = ticketFixture({ id: '3'.repeat(24), number: 9, status: 'atendendo', reseller_id: AZUL, client_name: 'Carla Depois', agent_name: 'Bruno Agente' });

// The ticket opened: held by an agent, with a newest page that leads to an older one.
const opened: Ticket = { ...waiting, status: 'atendendo', agent_id: 'b'.repeat(24), agent_name: 'Bruno Agente', tags: ['vip'] };
const older = [messageFixture(T, 1), messageFixture(T, 2)];
const newest = [
  messageFixture(T, 3),
  messageFixture(T, 5, { direction: 'out', sender_type: 'agent', sender_id: 'b'.repeat(24), sender_name: 'Bruno Agente', body: '*Bruno Agente:*\nJá verifico', status: 'read' }),
  messageFixture(T, 6, { direction: 'note', sender_type: 'agent', sender_name: 'Bruno Agente', body: 'cliente antigo', status: 'sent' }),
  messageFixture(T, 7, {
    type: 'document', body: '',
    media: { url: `/api/v1/messages/${'7'.padStart(24, '0')}/media`, mime: 'application/pdf', size: 100, name: 'nota.pdf', sha256: 'a'.repeat(64), status: 'failed', voice: false, error: 'O provedor não entregou o arquivo.' },
  } as never),
  messageFixture(T, 8, { type: 'contact', body: '', contacts: [{ name: 'Zé Indicado', phones: ['+55 11 90000-1111'] }] } as never),
];
const assumedEvent = {
  id: 'f'.repeat(24), ticket_id: T, version: 2, type: 'assumed', actor_id: 'b'.repeat(24), actor_role: 'agent',
  from_status: 'espera', to_status: 'atendendo', at: minuteAt(4), data: {}, actor_name: 'Bruno Agente', target_name: null,
};

/** Counts the websockets the app opens: the admin's screens must open none. */
let sockets = 0;
class CountingSocket {
  readyState = 0;
  onmessage: unknown = null;
  onclose: unknown = null;
  constructor() {
    sockets += 1;
  }
  send() {}
  close() {}
}

afterEach(() => {
  vi.useRealTimers();
  focusManager.setFocused(undefined);
});

beforeEach(() => {
  sockets = 0;
  vi.stubGlobal('WebSocket', CountingSocket);
  signIn(admin);
});

/** Serves the admin's API; returns every request (method, path) and the queries the list was read with. */
function serve() {
  const listed: URLSearchParams[] = [];
  const threads: URLSearchParams[] = [];
  const calls = mockApi(({ method, path, url }) => {
    if (method !== 'GET') return undefined; // nothing here may write: an unmocked answer fails loudly
    if (path === '/api/v1/auth/me') return { body: admin };
    if (path === '/api/v1/resellers') return { body: { items: [company(AZUL, 'Loja Azul'), company(VERDE, 'Loja Verde')], next_cursor: null } };
    if (path === '/api/v1/tickets') {
      listed.push(url.searchParams);
      const q = url.searchParams;
      if (q.get('reseller_id') !== AZUL) return { body: { items: [], next_cursor: null } };
      if (q.get('status') === 'atendendo') {
        return q.get('cursor') === 'pagina-2' ? { body: { items: [later], next_cursor: null } } : { body: { items: [held], next_cursor: 'pagina-2' } };
      }
      if (q.get('status') === 'espera' && (!q.get('q') || q.get('q') === 'maria')) return { body: { items: [waiting], next_cursor: null } };
      return { body: { items: [], next_cursor: null } };
    }
    if (path === `/api/v1/tickets/${T}`) return { body: opened };
    if (path === `/api/v1/tickets/${T}/messages`) {
      threads.push(url.searchParams);
      return url.searchParams.get('cursor') === 'mais-antigas'
        ? { body: { items: older, next_cursor: null } }
        : { body: { items: newest, next_cursor: 'mais-antigas' } };
    }
    if (path === `/api/v1/tickets/${T}/events`) return { body: { items: [assumedEvent], next_cursor: null } };
    if (path === `/api/v1/departments/${waiting.department_id}`) {
      return { body: { id: waiting.department_id, reseller_id: AZUL, name: 'Suporte', description: '', active: true, created_at: '2025-01-01T00:00:00Z', active_agents: 1 } };
    }
    return undefined;
  });
  return { calls, listed, threads };
}

function Where() {
  const location = useLocation();
  return <output data-testid="where">{location.pathname + location.search}</output>;
}

function renderAt(route: string) {
  return renderApp(
    <>
      <AppRoutes />
      <Where />
    </>,
    { path: '*', route },
  );
}

async function pickCompany(name: string) {
  await userEvent.click(await screen.findByRole('textbox', { name: 'Revenda' }));
  fireEvent.click(await screen.findByRole('option', { name, hidden: true }));
}

const lastListed = (listed: URLSearchParams[]) => Object.fromEntries(listed.at(-1) ?? []);

describe('Conversas (admin)', () => {
  it('is in the menu for the admin, and not for a reseller or an agent', async () => {
    serve();
    const { unmount } = renderAt('/admin/revendas');
    const menu = await screen.findByRole('navigation', { name: 'Menu' });
    await userEvent.click(within(menu).getByRole('link', { name: 'Conversas' }));
    expect(await screen.findByRole('heading', { name: 'Conversas' })).toBeInTheDocument();
    expect(sockets).toBe(0);
    unmount();

    for (const role of ['reseller', 'agent'] as const) {
      const user = agentUser({ role, department_ids: role === 'agent' ? ['d'.repeat(24)] : [] });
      signIn(user);
      mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: user } : path.startsWith('/api/v1/') ? { body: { items: [], next_cursor: null } } : undefined));
      const other = renderAt('/admin/conversas');
      const theirs = await screen.findByRole('navigation', { name: 'Menu' });
      expect(within(theirs).getByRole('link', { name: 'Atendimento' })).toBeInTheDocument();
      expect(within(theirs).queryByRole('link', { name: 'Conversas' })).not.toBeInTheDocument();
      // The route itself sends them home.
      await waitFor(() => expect(screen.getByTestId('where')).toHaveTextContent('/atendimento'));
      // Their live feed opens, as it should: the count below is of real attempts.
      await waitFor(() => expect(sockets).toBeGreaterThan(0));
      sockets = 0;
      expect(screen.queryByRole('heading', { name: 'Conversas' })).not.toBeInTheDocument();
      other.unmount();
    }
  });

  it('shows nothing before a company is chosen, then lists its tickets by status and search', async () => {
    const { listed } = serve();
    renderAt('/admin/conversas');
    expect(await screen.findByText('Escolha uma revenda para ver as conversas.')).toBeInTheDocument();
    expect(listed).toHaveLength(0);

    await pickCompany('Loja Azul');
    const row = (await screen.findByText('Maria Cliente')).closest('tr') as HTMLElement;
    expect(row).toHaveTextContent('#7');
    expect(row).toHaveTextContent('+55 (11) 98765-4321');
    expect(row).toHaveTextContent('Espera');
    expect(row).toHaveTextContent('Oi');
    expect(lastListed(listed)).toMatchObject({ reseller_id: AZUL, status: 'espera' });
    expect(lastListed(listed)).not.toHaveProperty('q');
    expect(screen.getByTestId('where')).toHaveTextContent(`/admin/conversas?empresa=${AZUL}`);

    await userEvent.type(screen.getByRole('searchbox', { name: 'Buscar conversa' }), 'maria');
    await waitFor(() => expect(lastListed(listed)).toMatchObject({ reseller_id: AZUL, status: 'espera', q: 'maria' }));

    await userEvent.clear(screen.getByRole('searchbox', { name: 'Buscar conversa' }));
    await userEvent.click(screen.getByRole('tab', { name: 'Atendendo' }));
    const heldRow = (await screen.findByText('João Atendido')).closest('tr') as HTMLElement;
    expect(heldRow).toHaveTextContent('Bruno Agente');
    expect(heldRow).toHaveTextContent('Equipe: Já vejo isso');
    await waitFor(() => expect(lastListed(listed)).toEqual({ reseller_id: AZUL, status: 'atendendo', limit: '50' }));

    await userEvent.click(screen.getByRole('button', { name: 'Carregar mais' }));
    expect(await screen.findByText('Carla Depois')).toBeInTheDocument();
    expect(lastListed(listed)).toMatchObject({ reseller_id: AZUL, status: 'atendendo', cursor: 'pagina-2' });
    expect(screen.queryByRole('button', { name: 'Carregar mais' })).not.toBeInTheDocument();

    // Another company: its own list (empty here), asked with its id.
    await pickCompany('Loja Verde');
    expect(await screen.findByText('Nenhuma conversa aqui.')).toBeInTheDocument();
    expect(lastListed(listed)).toMatchObject({ reseller_id: VERDE, status: 'atendendo' });
  });

  it('keeps the company and the status in the URL', async () => {
    const { listed } = serve();
    renderAt(`/admin/conversas?empresa=${AZUL}&aba=atendendo`);
    expect(await screen.findByText('João Atendido')).toBeInTheDocument();
    expect(lastListed(listed)).toMatchObject({ reseller_id: AZUL, status: 'atendendo' });
    await waitFor(() => expect(screen.getByRole('textbox', { name: 'Revenda' })).toHaveValue('Loja Azul'));
    expect(screen.getByRole('tab', { name: 'Atendendo' })).toHaveAttribute('aria-selected', 'true');
  });

  it('opens a conversation read-only: its thread, older pages and events, and nothing to act with; no socket, no write', async () => {
    const { calls, threads } = serve();
    renderAt(`/admin/conversas?empresa=${AZUL}`);
    await userEvent.click(await screen.findByRole('link', { name: 'Maria Cliente' }));
    expect(await screen.findByRole('heading', { name: 'Maria Cliente' })).toBeInTheDocument();
    expect(screen.getByTestId('where')).toHaveTextContent(`/admin/conversas/${T}?empresa=${AZUL}`);
    expect(screen.getByTestId('read-only')).toHaveTextContent('Somente leitura');
    expect(screen.getByTestId('ticket-status')).toHaveTextContent('Atendendo');
    await waitFor(() => expect(screen.getByText(/Departamento: Suporte/)).toHaveTextContent('Revenda: Loja Azul'));
    expect(screen.getByText(/Departamento: Suporte/)).toHaveTextContent('Agente: Bruno Agente');
    expect(screen.getByRole('group', { name: 'Etiquetas' })).toHaveTextContent('vip');

    // The thread as the agents see it: the client's and the agent's messages, the note, the media.
    const thread = await screen.findByTestId('thread');
    expect(await within(thread).findByText('mensagem 3')).toBeInTheDocument();
    expect(within(thread).getByText('Já verifico')).toBeInTheDocument();
    expect(within(thread).getByRole('note', { name: 'Nota interna da equipe' })).toHaveTextContent('cliente antigo');
    expect(within(thread).getByTestId('media-failed')).toHaveTextContent('O provedor não entregou o arquivo.');
    expect(within(thread).getByTestId('contact-card')).toHaveTextContent('Zé Indicado');
    expect(await within(thread).findByText(/Bruno Agente assumiu o atendimento/)).toBeInTheDocument();

    await userEvent.click(within(thread).getByRole('button', { name: 'Carregar mensagens anteriores' }));
    expect(await within(thread).findByText('mensagem 1')).toBeInTheDocument();
    expect(threads.at(-1)?.get('cursor')).toBe('mais-antigas');

    // Nothing to act with: no composer, no ticket action, no bubble action, no media retry.
    for (const name of ['Assumir', 'Transferir', 'Finalizar', 'Reabrir', 'Enviar', 'Salvar nota', 'Tentar novamente', 'Agendar']) {
      expect(screen.queryByRole('button', { name })).not.toBeInTheDocument();
    }
    expect(screen.queryByRole('textbox', { name: 'Mensagem' })).not.toBeInTheDocument();
    expect(screen.queryByTestId('ticket-tags')).not.toBeInTheDocument();
    expect(screen.queryByTestId('reply-to')).not.toBeInTheDocument();
    expect(screen.queryByTestId('react')).not.toBeInTheDocument();
    expect(screen.queryByRole('link', { name: 'Iniciar conversa' })).not.toBeInTheDocument();
    expect(screen.getByTestId('read-only-hint')).toBeInTheDocument();

    // "Atualizar" reads the ticket and its thread again.
    const reads = () => calls.filter((c) => c.path === `/api/v1/tickets/${T}/messages`).length;
    const before = reads();
    await userEvent.click(screen.getByRole('button', { name: 'Atualizar' }));
    await waitFor(() => expect(reads()).toBeGreaterThan(before));

    await userEvent.click(screen.getByRole('link', { name: /Voltar às conversas/ }));
    expect(await screen.findByRole('link', { name: 'Maria Cliente' })).toBeInTheDocument();
    expect(screen.getByTestId('where')).toHaveTextContent(`/admin/conversas?empresa=${AZUL}`);

    expect(sockets).toBe(0);
    expect(calls.filter((c) => c.method !== 'GET')).toEqual([]);
    expect(calls.some((c) => c.path.endsWith('/read'))).toBe(false);
  });

  it('reads the list and the conversation again every 15 s while the page is visible, never when hidden', async () => {
    // Only the intervals are faked: the waits of Testing Library keep their real timeouts.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const { calls } = serve();
    const count = (path: string) => calls.filter((c) => c.path === path).length;
    renderAt(`/admin/conversas?empresa=${AZUL}`);
    await screen.findByRole('link', { name: 'Maria Cliente' });
    const lists = count('/api/v1/tickets');
    act(() => vi.advanceTimersByTime(15_000));
    await waitFor(() => expect(count('/api/v1/tickets')).toBe(lists + 1));

    await userEvent.click(screen.getByRole('link', { name: 'Maria Cliente' }));
    await screen.findByText('mensagem 3');
    const messages = count(`/api/v1/tickets/${T}/messages`);
    const events = count(`/api/v1/tickets/${T}/events`);
    act(() => vi.advanceTimersByTime(15_000));
    await waitFor(() => expect(count(`/api/v1/tickets/${T}/messages`)).toBeGreaterThan(messages));
    await waitFor(() => expect(count(`/api/v1/tickets/${T}/events`)).toBe(events + 1));

    const settled = calls.length;
    act(() => focusManager.setFocused(false));
    act(() => vi.advanceTimersByTime(45_000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls.length).toBe(settled);
    expect(sockets).toBe(0);
  });
});
