import { screen } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Department, WhatsAppConnection } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { MenuForm } from './MenuForm';

const owner = agentUser({ role: 'reseller', department_ids: [] });
const dept = (id: string, name: string, active = true): Department =>
  ({ id: id.repeat(24), name, description: '', active, reseller_id: 'r'.repeat(24), created_at: '2025-01-01T00:00:00Z' }) as Department;
const suporte = dept('1', 'Suporte');
const antigo = dept('4', 'Antigo', false);
const financeiro = dept('2', 'Financeiro');
const connection = {
  id: 'e'.repeat(24), reseller_id: 'r'.repeat(24), name: 'Loja Centro', provider: 'evolution', instance_name: 'loja',
  default_department_id: suporte.id, status: 'open', qr_code: null, active: true, last_error: null,
  created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-01T00:00:00Z',
  menu_enabled: true, menu_department_ids: [suporte.id, antigo.id, financeiro.id], menu_text: 'Escolha:', menu_max_invalid: 2,
} as WhatsAppConnection;

beforeEach(() => {
  stubWebSocket();
  signIn(owner);
  mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: owner } : undefined));
});

describe('MenuForm', () => {
  it('numbers the listed departments as the client is sent them: an inactive one has no number', async () => {
    renderApp(<MenuForm connection={connection} departments={[suporte, antigo, financeiro]} onDone={() => {}} />);
    const rows = await screen.findAllByTestId('menu-department');
    // The menu sent skips Antigo (backend/automation), so Financeiro is the client's "2", not "3".
    expect(rows.map((li) => li.textContent)).toEqual(['1 - Suporte↑↓✕', 'AntigoInativo↑↓✕', '2 - Financeiro↑↓✕']);
    expect(screen.getByTestId('menu-preview').textContent).toBe('Escolha:\n1 - Suporte\n2 - Financeiro');
  });
});
