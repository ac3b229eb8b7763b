import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ReportSummary } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { formatSeconds, lastDays } from './format';
import { ReportsPage } from './ReportsPage';

const owner = agentUser({ role: 'reseller', department_ids: [], name: 'Dona Revenda' });
const agent = agentUser();
const admin = agentUser({ role: 'admin', reseller_id: null, department_ids: [] });
const R = 'r'.repeat(24);
const D1 = '1'.repeat(24);
const D2 = '2'.repeat(24);

const summary = (over: Partial<ReportSummary> = {}): ReportSummary => ({
  opened: 12,
  assumed: 10,
  transferred: 3,
  finalized: 9,
  waiting_now: 2,
  oldest_wait_seconds: 754,
  first_response_seconds: { median: 90, p90: 600 },
  resolution_seconds: { median: 3700, p90: 90000 },
  messages_in: 140,
  messages_out: 121,
  satisfaction: { average: 4.33, count: 3, distribution: { '1': 0, '2': 0, '3': 1, '4': 0, '5': 2 } },
  period_from: '2025-03-01',
  period_to: '2025-03-07',
  timezone: 'America/Sao_Paulo',
  per_day: [{ date: '2025-03-01', opened: 12, finalized: 9, messages_in: 140, messages_out: 121 }],
  per_hour: Array.from({ length: 24 }, (_, h) => (h === 9 ? 12 : 0)),
  per_hour_messages_in: Array.from({ length: 24 }, (_, h) => (h === 9 ? 140 : 0)),
  ...over,
});
const agentRow = {
  agent_id: agent.id,
  agent_name: 'Ana Agente',
  ...summary({
    assumed: 4,
    transferred: 1,
    finalized: 3,
    messages_out: 55,
    satisfaction: { average: 5, count: 1, distribution: { '1': 0, '2': 0, '3': 0, '4': 0, '5': 1 } },
  }),
};
const noRatings = { average: null, count: 0, distribution: { '1': 0, '2': 0, '3': 0, '4': 0, '5': 0 } };

function api(user: typeof owner, over: Partial<ReportSummary> = {}) {
  return mockApi(({ path }) => {
    if (path === '/api/v1/auth/me') return { body: user };
    if (path === '/api/v1/reports/summary') return { body: summary(over) };
    if (path === '/api/v1/reports/agents') return { body: { items: [agentRow] } };
    if (path === '/api/v1/departments')
      return {
        body: {
          items: [
            { id: D1, reseller_id: R, name: 'Vendas', active: true, created_at: '2025-01-01T00:00:00Z' },
            { id: D2, reseller_id: 'x'.repeat(24), name: 'De outra', active: true, created_at: '2025-01-01T00:00:00Z' },
          ],
          next_cursor: null,
        },
      };
    if (path === '/api/v1/users') return { body: { items: [{ ...agent, name: 'Ana Agente' }], next_cursor: null } };
    if (path === '/api/v1/whatsapp-connections') return { body: { items: [], next_cursor: null } };
    if (path === '/api/v1/resellers')
      return { body: { items: [{ id: R, name: 'Loja Azul', owner_id: 'o', owner_email: 'o@x', active: true, created_at: '2025-01-01T00:00:00Z' }], next_cursor: null } };
    return undefined;
  });
}

function card(label: string) {
  return within(screen.getByRole('group', { name: label }));
}

beforeEach(() => stubWebSocket());

describe('ReportsPage', () => {
  it("shows the reseller's cards, the agents' table and asks again with a filter", async () => {
    signIn(owner);
    const calls = api(owner);
    renderApp(<ReportsPage />);
    await screen.findByRole('group', { name: 'Abertos' });
    expect(card('Abertos').getByText('12')).toBeInTheDocument();
    expect(card('Transferidos').getByText('3')).toBeInTheDocument();
    expect(card('Em espera agora').getByText('2')).toBeInTheDocument();
    expect(card('Espera mais antiga').getByText('12 min 34 s')).toBeInTheDocument();
    expect(card('Primeira resposta').getByText('mediana 1 min 30 s · p90 10 min')).toBeInTheDocument();
    expect(card('Resolução').getByText('mediana 1 h 01 min · p90 1 d 1 h')).toBeInTheDocument();
    expect(card('Mensagens recebidas').getByText('140')).toBeInTheDocument();
    expect(card('Satisfação').getByText('4,3')).toBeInTheDocument();
    expect(card('Satisfação').getByText('de 5 · 3 avaliações')).toBeInTheDocument();
    const grades = screen.getByRole('list', { name: 'Avaliações por nota' });
    expect(within(grades).getAllByRole('listitem').map((li) => li.textContent)).toEqual([
      'Nota 1: 0', 'Nota 2: 0', 'Nota 3: 1', 'Nota 4: 0', 'Nota 5: 2',
    ]);
    const table = await screen.findByRole('table', { name: 'Por agente' });
    const row = within(table).getByText('Ana Agente').closest('tr')!;
    expect(within(row).getAllByRole('cell').map((c) => c.textContent)).toEqual([
      'Ana Agente', '4', '1', '3', 'mediana 1 min 30 s · p90 10 min', 'mediana 1 h 01 min · p90 1 d 1 h', '55', '5 (1)',
    ]);
    const period = lastDays(7, 'America/Sao_Paulo'); // the zone the summary answers with
    const first = calls.find((c) => c.path === '/api/v1/reports/summary');
    expect(first).toBeTruthy();

    await userEvent.click(screen.getByRole('textbox', { name: 'Departamento' }));
    fireEvent.click(await screen.findByRole('option', { name: 'Vendas', hidden: true }));
    await waitFor(() => expect(lastSummaryQuery()?.get('department_id')).toBe(D1));
    const query = lastSummaryQuery()!;
    expect([query.get('from'), query.get('to'), query.get('reseller_id')]).toEqual([period.from, period.to, null]);
    expect(screen.getByRole('button', { name: 'Exportar tickets' })).toBeEnabled();
  });

  it('sends the filters to the per-agent table and to the exports too', async () => {
    signIn(owner);
    api(owner);
    renderApp(<ReportsPage />);
    await screen.findByRole('table', { name: 'Por agente' });
    await userEvent.click(screen.getByRole('textbox', { name: 'Departamento' }));
    fireEvent.click(await screen.findByRole('option', { name: 'Vendas', hidden: true }));
    await waitFor(() => expect(lastQuery('/api/v1/reports/agents')?.get('department_id')).toBe(D1));
    await userEvent.click(screen.getByRole('textbox', { name: 'Agente' }));
    fireEvent.click(await screen.findByRole('option', { name: 'Ana Agente', hidden: true }));
    await waitFor(() => expect(lastQuery('/api/v1/reports/agents')?.get('agent_id')).toBe(agent.id));
    const period = lastDays(7, 'America/Sao_Paulo'); // the zone the summary answers with
    const agents = lastQuery('/api/v1/reports/agents')!;
    expect(Object.fromEntries(agents)).toEqual({ from: period.from, to: period.to, department_id: D1, agent_id: agent.id });
    expect(Object.fromEntries(lastQuery('/api/v1/reports/summary')!)).toEqual(Object.fromEntries(agents));

    await userEvent.click(screen.getByRole('button', { name: 'Exportar tickets' }));
    await waitFor(() => expect(lastQuery('/api/v1/exports/tickets.csv')).toBeTruthy());
    expect(Object.fromEntries(lastQuery('/api/v1/exports/tickets.csv')!)).toEqual(Object.fromEntries(agents));
  });

  it("asks for the company's last 7 days, not the browser's, until a period is picked", async () => {
    // Zones 25 hours apart are always on different dates: one of them differs from the browser's.
    const zone = ['Pacific/Kiritimati', 'Pacific/Pago_Pago'].find((z) => lastDays(7, z).to !== lastDays(7).to)!;
    signIn(owner);
    api(owner, { timezone: zone });
    renderApp(<ReportsPage />);
    const company = lastDays(7, zone);
    await waitFor(() => expect(lastSummaryQuery()?.get('to')).toBe(company.to));
    expect(lastSummaryQuery()?.get('from')).toBe(company.from);
    expect(screen.getByLabelText('Até')).toHaveValue(company.to);

    fireEvent.change(screen.getByLabelText('De'), { target: { value: '2025-03-01' } });
    await waitFor(() => expect(lastSummaryQuery()?.get('from')).toBe('2025-03-01'));
    expect(lastSummaryQuery()?.get('to')).toBe(company.to);
    fireEvent.change(screen.getByLabelText('Até'), { target: { value: '2025-03-02' } });
    await waitFor(() => expect(lastSummaryQuery()?.get('to')).toBe('2025-03-02'));
    expect(screen.getByLabelText('De')).toHaveValue('2025-03-01');
  });

  it('says when nobody rated in the period', async () => {
    signIn(owner);
    api(owner, { satisfaction: noRatings });
    renderApp(<ReportsPage />);
    await screen.findByRole('group', { name: 'Satisfação' });
    expect(card('Satisfação').getByText('—')).toBeInTheDocument();
    expect(card('Satisfação').getByText('Nenhuma avaliação no período')).toBeInTheDocument();
    const grades = screen.getByRole('list', { name: 'Avaliações por nota' });
    expect(within(grades).getAllByRole('listitem').map((li) => li.textContent)).toEqual([
      'Nota 1: 0', 'Nota 2: 0', 'Nota 3: 0', 'Nota 4: 0', 'Nota 5: 0',
    ]);
  });

  it('refuses a period that ends before it starts without asking the server', async () => {
    signIn(owner);
    const calls = api(owner);
    renderApp(<ReportsPage />);
    await screen.findByRole('group', { name: 'Abertos' });
    const asked = calls.filter((c) => c.path === '/api/v1/reports/summary').length;
    fireEvent.change(screen.getByLabelText('Até'), { target: { value: '2000-01-01' } });
    expect(await screen.findByText('A data final deve ser igual ou posterior à inicial.')).toBeInTheDocument();
    expect(calls.filter((c) => c.path === '/api/v1/reports/summary').length).toBe(asked);
  });

  it('gives an agent its own figures, without filters or exports', async () => {
    signIn(agent);
    api(agent);
    renderApp(<ReportsPage />);
    await screen.findByRole('group', { name: 'Abertos' });
    expect(screen.getByText('Seus números no período.')).toBeInTheDocument();
    expect(screen.queryByRole('textbox', { name: 'Departamento' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Exportar tickets' })).not.toBeInTheDocument();
  });

  it('has the admin pick a reseller, then asks for that reseller only', async () => {
    signIn(admin);
    const calls = api(admin);
    renderApp(<ReportsPage />);
    expect(await screen.findByText('Escolha uma revenda para ver os relatórios.')).toBeInTheDocument();
    expect(calls.some((c) => c.path === '/api/v1/reports/summary')).toBe(false);
    await userEvent.click(screen.getByRole('textbox', { name: 'Revenda' }));
    fireEvent.click(await screen.findByRole('option', { name: 'Loja Azul', hidden: true }));
    await screen.findByRole('group', { name: 'Abertos' });
    expect(lastSummaryQuery()?.get('reseller_id')).toBe(R);
    // Only the picked reseller's departments are offered.
    await userEvent.click(screen.getByRole('textbox', { name: 'Departamento' }));
    expect(await screen.findByRole('option', { name: 'Vendas', hidden: true })).toBeInTheDocument();
    expect(screen.queryByRole('option', { name: 'De outra', hidden: true })).not.toBeInTheDocument();
  });
});

/** The query of the last request sent to `path`. */
function lastQuery(path: string): URLSearchParams | undefined {
  const fetchMock = globalThis.fetch as unknown as ReturnType<typeof vi.fn>;
  const urls = fetchMock.mock.calls
    .map(([input]) => new URL(input instanceof Request ? input.url : String(input), window.location.origin))
    .filter((u) => u.pathname === path);
  return urls.at(-1)?.searchParams;
}

/** The query of the last summary request sent. */
function lastSummaryQuery(): URLSearchParams | undefined {
  return lastQuery('/api/v1/reports/summary');
}

describe('formatSeconds', () => {
  it('reads like a wait', () => {
    expect([null, 0, 45, 60, 200, 3600, 3700, 90000].map(formatSeconds)).toEqual([
      '—', '0 s', '45 s', '1 min', '3 min 20 s', '1 h 00 min', '1 h 01 min', '1 d 1 h',
    ]);
  });
});
