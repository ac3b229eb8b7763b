import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Department } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { DepartmentsPage } from './DepartmentsPage';

const owner = agentUser({ role: 'reseller', department_ids: [] });
const vendas = {
  id: '1'.repeat(24), name: 'Vendas', description: '', active: true, reseller_id: 'r'.repeat(24), created_at: '2025-01-01T00:00:00Z', active_agents: 2,
} satisfies Department;

beforeEach(() => {
  stubWebSocket();
  signIn(owner);
});

describe('DepartmentsPage · deactivation', () => {
  it("says which connections still open conversations in a department it may not deactivate", async () => {
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/departments') return { body: { items: [vendas], next_cursor: null } };
      if (path === `/api/v1/departments/${vendas.id}` && method === 'PATCH') {
        return { status: 409, body: { detail: 'department is the default of connection(s): Loja Centro, Loja Sul; choose another default first' } };
      }
      return undefined;
    });
    renderApp(<DepartmentsPage />, { path: '/', route: '/' });
    await userEvent.click(await screen.findByRole('button', { name: 'Desativar' }));
    expect(await screen.findByText(/padrão de conexão de WhatsApp \(Loja Centro, Loja Sul\)/)).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'PATCH')?.body).toEqual({ active: false });
  });
});

describe('DepartmentsPage · who serves each queue', () => {
  it('marks an active department with no active agent "Sem atendentes", and counts the others\' agents', async () => {
    const items = [
      vendas,
      { ...vendas, id: '2'.repeat(24), name: 'Suporte', active_agents: 0 },
      { ...vendas, id: '3'.repeat(24), name: 'Financeiro', active_agents: 1 },
      // Inactive: it receives nothing, so nobody missing there.
      { ...vendas, id: '4'.repeat(24), name: 'Antigo', active: false, active_agents: 0 },
    ];
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/departments') return { body: { items, next_cursor: null } };
      return undefined;
    });
    renderApp(<DepartmentsPage />, { path: '/', route: '/' });
    const badge = async (name: string) => within((await screen.findByRole('cell', { name })).closest('tr')!).getByTestId('staff-badge');
    const none = await badge('Suporte');
    expect(none).toHaveTextContent('Sem atendentes');
    expect(none.getAttribute('style')).toContain('orange');
    expect(screen.getByRole('columnheader', { name: 'Atendentes' })).toBeInTheDocument();
    expect(await badge('Vendas')).toHaveTextContent('2 atendentes');
    expect(await badge('Financeiro')).toHaveTextContent('1 atendente');
    expect(await badge('Antigo')).toHaveTextContent('0 atendentes');
    expect(screen.getAllByText('Sem atendentes')).toHaveLength(1);
  });
});
