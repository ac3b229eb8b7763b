import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Department, RealtimeEvent, WhatsAppConnection } from '../../api/types';
import { applyEvent, keys } from '../../realtime/cache';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture, type Handler } from '../../test/utils';
import { InboxPage } from './InboxPage';

const me = agentUser();
const waiting = [
  ticketFixture({ id: '1'.repeat(24), client_name: 'Maria Silva', number: 1 }),
  ticketFixture({ id: '2'.repeat(24), client_name: 'João Souza', number: 2, last_message_direction: 'out', last_message_preview: 'Já volto' }),
  ticketFixture({
    id: '3'.repeat(24),
    client_name: 'Ana Lima',
    number: 3,
    last_message_direction: 'out',
    last_message_automatic: true,
    last_message_preview: 'Olá! Escolha o departamento',
  }),
];

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('InboxPage', () => {
  it('shows the three tabs with their counts and the Espera list first', async () => {
    mockApi(({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 2, atendendo: 5, finalizado: 40 } };
      if (path === '/api/v1/tickets' && url.searchParams.get('status') === 'espera') return { body: { items: waiting, next_cursor: null } };
      return undefined;
    });
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    const tabs = screen.getAllByRole('tab');
    expect(tabs.map((t) => t.textContent)).toEqual([expect.stringContaining('Espera'), expect.stringContaining('Atendendo'), expect.stringContaining('Finalizado')]);
    await waitFor(() => expect(screen.getByTestId('count-atendendo')).toHaveTextContent('5'));
    expect(screen.getByTestId('count-finalizado')).toHaveTextContent('40');
    const rows = await screen.findAllByTestId('ticket-row');
    expect(rows.map((r) => within(r).getAllByText(/Maria Silva|João Souza|Ana Lima/)[0].textContent)).toEqual(['Maria Silva', 'João Souza', 'Ana Lima']);
    expect(rows[0]).toHaveTextContent('Oi');
    expect(rows[0]).not.toHaveTextContent(/Você:|Automática:/);
    expect(rows[1]).toHaveTextContent('Você: Já volto');
    // The helpdesk's own message (greeting, menu) is not shown as the agent's.
    expect(rows[2]).toHaveTextContent('Automática: Olá! Escolha o departamento');
    expect(rows[2]).not.toHaveTextContent('Você:');
  });

  it('searches on the server with the typed text (q) and says when nothing matches', async () => {
    const queries: (string | null)[] = [];
    mockApi(({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 2, atendendo: 0, finalizado: 0 } };
      if (path === '/api/v1/tickets') {
        queries.push(url.searchParams.get('q'));
        return { body: { items: url.searchParams.get('q') ? [] : waiting, next_cursor: null } };
      }
      return undefined;
    });
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await screen.findAllByTestId('ticket-row');
    await userEvent.type(screen.getByRole('searchbox', { name: 'Buscar cliente' }), '9876');
    expect(await screen.findByText('Nenhum atendimento encontrado para esta busca.')).toBeInTheDocument();
    expect(queries).toContain('9876');
  });

  it('keeps a tab switched right before typing a search (both before the page re-renders)', async () => {
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 0, atendendo: 0, finalizado: 0 } };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento?aba=finalizado' });
    expect(screen.getByTestId('tab-finalizado')).toHaveAttribute('aria-selected', 'true');
    act(() => {
      fireEvent.click(screen.getByTestId('tab-espera'));
      fireEvent.change(screen.getByRole('searchbox', { name: 'Buscar cliente' }), { target: { value: 'maria' } });
    });
    await waitFor(() => expect(screen.getByTestId('tab-espera')).toHaveAttribute('aria-selected', 'true'));
    expect(screen.getByRole('searchbox', { name: 'Buscar cliente' })).toHaveValue('maria');
  });

  it('switches tabs with the keyboard', async () => {
    mockApi(({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 0, atendendo: 0, finalizado: 0 } };
      if (path === '/api/v1/tickets') return { body: { items: url.searchParams.get('status') === 'atendendo' ? [waiting[0]] : [], next_cursor: null } };
      return undefined;
    });
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    expect(await screen.findByText('Nenhum atendimento aqui.')).toBeInTheDocument();
    screen.getAllByRole('tab')[0].focus();
    await userEvent.keyboard('{ArrowRight}');
    expect(screen.getAllByRole('tab')[1]).toHaveAttribute('aria-selected', 'true');
    expect(await screen.findByText('Maria Silva')).toBeInTheDocument();
  });

  it('sends the filters from the address and shows how long each espera ticket has waited', async () => {
    const sent: URLSearchParams[] = [];
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000 - 5_000).toISOString();
    mockApi(({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 1, atendendo: 0, finalizado: 0 } };
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/users') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tags') return { body: { items: ['vip'] } };
      if (path === '/api/v1/tickets') {
        sent.push(url.searchParams);
        return { body: { items: [ticketFixture({ updated_at: tenMinutesAgo })], next_cursor: null } };
      }
      return undefined;
    });
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento?etiqueta=vip&agente=' + 'b'.repeat(24) + '&de=2025-03-01&ate=2025-03-31&busca=%232' });
    expect(await screen.findByTestId('waiting-for')).toHaveTextContent('esperando há 10 min');
    await waitFor(() => expect(sent.length).toBeGreaterThan(0));
    const last = sent[sent.length - 1];
    expect(last.get('tag')).toBe('vip');
    expect(last.get('agent_id')).toBe('b'.repeat(24));
    expect(last.get('q')).toBe('#2');
    // The days as picked, whatever the browser's timezone: the API places them in the company's.
    expect(last.get('opened_from_day')).toBe('2025-03-01');
    expect(last.get('opened_to_day')).toBe('2025-03-31');
    expect(last.has('created_from')).toBe(false);
    expect(last.has('created_to')).toBe(false);
    expect(screen.getByTestId('inbox-filters')).toBeInTheDocument();
    // The badges cannot follow these filters: they say they are the queues' totals.
    expect(screen.getByTestId('count-espera')).toHaveAttribute('title', 'Total da fila, sem contar a busca e os filtros');
  });
  it('counts the tabs within the Departamento filter, and tenant-wide again once it is cleared', async () => {
    const dept = 'd'.repeat(24);
    const asked: (string | null)[] = [];
    mockApi(({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets/counts') {
        const department = url.searchParams.get('department_id');
        asked.push(department);
        return { body: department === dept ? { espera: 3, atendendo: 1, finalizado: 7 } : { espera: 30, atendendo: 10, finalizado: 70 } };
      }
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/users') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tags') return { body: { items: [] } };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<InboxPage />, { path: '/atendimento', route: `/atendimento?depto=${dept}` });
    await waitFor(() => expect(screen.getByTestId('count-espera')).toHaveTextContent('3'));
    // The department filter is what the counts follow: no "totals" caveat on them.
    expect(screen.getByTestId('count-espera')).not.toHaveAttribute('title');
    expect(screen.getByTestId('count-atendendo')).toHaveTextContent('1');
    expect(screen.getByTestId('count-finalizado')).toHaveTextContent('7');
    expect(asked).toEqual([dept]);

    await userEvent.click(screen.getByRole('button', { name: 'Limpar filtros' }));
    await waitFor(() => expect(screen.getByTestId('count-espera')).toHaveTextContent('30'));
    expect(screen.getByTestId('count-finalizado')).toHaveTextContent('70');
    expect(asked).toEqual([dept, null]);
  });
});

describe('InboxPage · queues nobody serves (the owner\'s warning)', () => {
  const owner = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });
  const department = (over: Partial<Department>): Department => ({
    id: 'd'.repeat(24), name: 'Suporte', description: '', active: true, reseller_id: 'r'.repeat(24), created_at: '2025-01-01T00:00:00Z', active_agents: 0, ...over,
  });
  const suporte = department({});
  const vendas = department({ id: 'e'.repeat(24), name: 'Vendas', active_agents: 3 });
  const financeiro = department({ id: 'f'.repeat(24), name: 'Financeiro' });
  const antigo = department({ id: '9'.repeat(24), name: 'Antigo', active: false });

  /** The tenant's departments; `waiting`: how many espera tickets each department's counts say. */
  function tenant(user: typeof owner, waiting: Record<string, number>, sent: URLSearchParams[] = []): Handler {
    return ({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: user };
      if (path === '/api/v1/departments') return { body: { items: [suporte, vendas, financeiro, antigo], next_cursor: null } };
      if (path === '/api/v1/tickets/counts') {
        const id = url.searchParams.get('department_id');
        return { body: { espera: id ? (waiting[id] ?? 0) : 9, atendendo: 0, finalizado: 0 } };
      }
      if (path === '/api/v1/tickets') {
        sent.push(url.searchParams);
        return { body: { items: [], next_cursor: null } };
      }
      if (path === '/api/v1/users') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/whatsapp-connections') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tags') return { body: { items: [] } };
      return undefined;
    };
  }

  it('names each unstaffed queue where conversations wait, with their count', async () => {
    signIn(owner);
    // Vendas has agents and Antigo is inactive: whatever waits there, no warning.
    mockApi(tenant(owner, { [suporte.id]: 2, [financeiro.id]: 1, [vendas.id]: 5, [antigo.id]: 4 }));
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await waitFor(() => expect(screen.getAllByTestId('unstaffed-queue')).toHaveLength(2));
    const [first, second] = screen.getAllByTestId('unstaffed-queue');
    expect(first).toHaveTextContent('Ninguém atende a fila Suporte: 2 conversas esperando.');
    expect(within(first).getByText('Suporte').tagName).toBe('STRONG');
    expect(second).toHaveTextContent('Ninguém atende a fila Financeiro: 1 conversa esperando.');
    expect(within(first).getByRole('link', { name: 'Adicionar atendentes' })).toHaveAttribute('href', '/revenda/agentes');
  });

  it('shows nothing while no conversation waits in an unstaffed queue', async () => {
    signIn(owner);
    const calls = mockApi(tenant(owner, { [vendas.id]: 5 }));
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await waitFor(() => expect(calls.filter((c) => c.path === '/api/v1/tickets/counts')).toHaveLength(3));
    await screen.findByText('Nenhum atendimento aqui.');
    expect(screen.queryByTestId('unstaffed-queue')).not.toBeInTheDocument();
    expect(screen.queryByText(/Ninguém atende/)).not.toBeInTheDocument();
  });

  it('"Ver conversas" shows that queue\'s espera tickets, with nothing else filtering them', async () => {
    signIn(owner);
    const sent: URLSearchParams[] = [];
    mockApi(tenant(owner, { [suporte.id]: 2 }, sent));
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento?aba=finalizado&etiqueta=vip&busca=maria' });
    const banner = await screen.findByTestId('unstaffed-queue');
    await userEvent.click(within(banner).getByRole('button', { name: 'Ver conversas' }));
    await waitFor(() => expect(screen.getByTestId('tab-espera')).toHaveAttribute('aria-selected', 'true'));
    await waitFor(() => {
      const last = sent[sent.length - 1];
      expect(last.get('status')).toBe('espera');
      expect(last.get('department_id')).toBe(suporte.id);
      expect(last.get('tag')).toBeNull();
      expect(last.get('q')).toBeNull();
    });
    expect(screen.getByRole('searchbox', { name: 'Buscar cliente' })).toHaveValue('');
    // The Departamento filter, open, holds it: the tabs count within it.
    expect(await screen.findByRole('textbox', { name: 'Departamento' })).toHaveValue('Suporte');
    await waitFor(() => expect(screen.getByTestId('count-espera')).toHaveTextContent('2'));
  });

  it('shows an agent nothing, even with the departments cached', async () => {
    signIn(me);
    const calls = mockApi(tenant(me, { [suporte.id]: 2 }));
    const { client } = renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    act(() => {
      client.setQueryData(keys.departments, [suporte]);
    });
    await screen.findByText('Nenhum atendimento aqui.');
    expect(screen.queryByTestId('unstaffed-queue')).not.toBeInTheDocument();
    expect(calls.some((c) => c.path === '/api/v1/departments')).toBe(false);
  });
});

describe('InboxPage · WhatsApp connections down (the owner\'s warning)', () => {
  const owner = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });
  const connection = (over: Partial<WhatsAppConnection>): WhatsAppConnection => ({
    id: 'w'.repeat(24), reseller_id: 'r'.repeat(24), name: 'Loja Centro', provider: 'evolution', instance_name: 'loja-centro', default_department_id: 'd'.repeat(24),
    status: 'open', qr_code: null, active: true, last_error: null, menu_enabled: false, menu_department_ids: [], menu_text: '', menu_max_invalid: 2,
    created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-01T12:00:00Z', ...over,
  });
  const centro = connection({ status: 'close' });
  const bairro = connection({ id: 'x'.repeat(24), name: 'Loja Bairro', instance_name: 'loja-bairro', status: 'connecting' });
  const vendas = connection({ id: 'y'.repeat(24), name: 'Vendas', instance_name: 'vendas', status: 'open' });
  const antiga = connection({ id: 'z'.repeat(24), name: 'Antiga', instance_name: 'antiga', status: 'close', active: false });

  function tenant(user: typeof owner, connections: WhatsAppConnection[]): Handler {
    return ({ path }) => {
      if (path === '/api/v1/auth/me') return { body: user };
      if (path === '/api/v1/whatsapp-connections') return { body: { items: connections, next_cursor: null } };
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tickets/counts') return { body: { espera: 0, atendendo: 0, finalizado: 0 } };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      return undefined;
    };
  }

  it('names each active connection that is not connected, with the way to connect it again', async () => {
    signIn(owner);
    // Vendas is connected and Antiga deactivated in IAZE: no warning for them.
    mockApi(tenant(owner, [centro, bairro, vendas, antiga]));
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await waitFor(() => expect(screen.getAllByTestId('disconnected-connection')).toHaveLength(2));
    const [closed, connecting] = screen.getAllByTestId('disconnected-connection');
    expect(closed).toHaveTextContent('O WhatsApp Loja Centro está desconectado: as mensagens dos clientes não chegam até ele ser conectado de novo.');
    expect(within(closed).getByText('Loja Centro').tagName).toBe('STRONG');
    expect(within(closed).getByRole('link', { name: 'Conectar' })).toHaveAttribute('href', '/revenda/whatsapp');
    expect(connecting).toHaveTextContent('O WhatsApp Loja Bairro está se reconectando ou aguardando a leitura do QR code');
    expect(screen.queryByText(/Vendas|Antiga/)).not.toBeInTheDocument();
  });

  it('shows nothing while every active connection is connected', async () => {
    signIn(owner);
    const calls = mockApi(tenant(owner, [vendas, antiga]));
    renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await waitFor(() => expect(calls.some((c) => c.path === '/api/v1/whatsapp-connections')).toBe(true));
    await screen.findByText('Nenhum atendimento aqui.');
    expect(screen.queryByTestId('disconnected-connection')).not.toBeInTheDocument();
  });

  it('goes away as soon as a connection.status event says it is connected again, with no request', async () => {
    signIn(owner);
    const calls = mockApi(tenant(owner, [centro, vendas]));
    const { client } = renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    await screen.findByTestId('disconnected-connection');
    const asked = calls.filter((c) => c.path === '/api/v1/whatsapp-connections').length;
    const reopened: RealtimeEvent = {
      type: 'event', seq: 2, event: 'connection.status', at: '2025-01-01T12:10:00Z', ticket: null, message: null,
      connection: { ...centro, status: 'open', updated_at: '2025-01-01T12:10:00Z' },
    };
    act(() => applyEvent(client, reopened, owner));
    await waitFor(() => expect(screen.queryByTestId('disconnected-connection')).not.toBeInTheDocument());
    expect(calls.filter((c) => c.path === '/api/v1/whatsapp-connections')).toHaveLength(asked);
    // And back when it drops again.
    act(() => applyEvent(client, { ...reopened, seq: 3, connection: { ...centro, status: 'close', updated_at: '2025-01-01T12:20:00Z' } }, owner));
    expect(await screen.findByTestId('disconnected-connection')).toHaveTextContent('Loja Centro está desconectado');
  });

  it('shows an agent nothing, even with the connections cached', async () => {
    signIn(me);
    const calls = mockApi(tenant(me, [centro, bairro]));
    const { client } = renderApp(<InboxPage />, { path: '/atendimento', route: '/atendimento' });
    act(() => {
      client.setQueryData(keys.connections, [centro, bairro]);
    });
    await screen.findByText('Nenhum atendimento aqui.');
    expect(screen.queryByTestId('disconnected-connection')).not.toBeInTheDocument();
    expect(calls.some((c) => c.path === '/api/v1/whatsapp-connections')).toBe(false);
  });
});
