import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Department } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { DepartmentsPage } from './DepartmentsPage';

const owner = agentUser({ role: 'reseller', department_ids: [] });
const vendas = {
  id: '1'.repeat(24), name: 'Vendas', description: '', active: true, reseller_id: 'r'.repeat(24), created_at: '2025-01-01T00:00:00Z',
} as Department;

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
