import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
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
    // Whole local days: from the first day's start to the start of the day after the last.
    expect(new Date(last.get('created_from')!).getTime()).toBe(new Date(2025, 2, 1).getTime());
    expect(new Date(last.get('created_to')!).getTime()).toBe(new Date(2025, 3, 1).getTime());
    expect(screen.getByTestId('inbox-filters')).toBeInTheDocument();
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
    expect(screen.getByTestId('count-atendendo')).toHaveTextContent('1');
    expect(screen.getByTestId('count-finalizado')).toHaveTextContent('7');
    expect(asked).toEqual([dept]);

    await userEvent.click(screen.getByRole('button', { name: 'Limpar filtros' }));
    await waitFor(() => expect(screen.getByTestId('count-espera')).toHaveTextContent('30'));
    expect(screen.getByTestId('count-finalizado')).toHaveTextContent('70');
    expect(asked).toEqual([dept, null]);
  });
});
