import { screen, within } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { OverviewPage } from './OverviewPage';

const admin = agentUser({ role: 'admin', reseller_id: null, department_ids: [] });

beforeEach(() => {
  stubWebSocket();
  signIn(admin);
});

describe('OverviewPage', () => {
  it("lists every reseller's tickets, messages and connections' status", async () => {
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: admin };
      if (path === '/api/v1/admin/overview')
        return {
          body: {
            period_from: '2025-03-01',
            period_to: '2025-03-07',
            items: [
              {
                id: 'a'.repeat(24), name: 'Loja Azul', active: true, timezone: 'America/Sao_Paulo',
                tickets: { espera: 2, atendendo: 1, finalizado: 30 }, messages_in: 120, messages_out: 98,
                connections: [
                  { id: 'c1', name: 'Vendas', status: 'open', active: true, last_error: null },
                  { id: 'c2', name: 'Suporte', status: 'close', active: true, last_error: 'sem sinal' },
                ],
              },
              {
                id: 'b'.repeat(24), name: 'Loja Verde', active: false, timezone: 'America/Manaus',
                tickets: { espera: 0, atendendo: 0, finalizado: 0 }, messages_in: 0, messages_out: 0, connections: [],
              },
            ],
          },
        };
      return undefined;
    });
    renderApp(<OverviewPage />);
    const table = await screen.findByRole('table', { name: 'Visão geral' });
    const azul = within(table).getByText('Loja Azul').closest('tr')!;
    expect(within(azul).getByText('2 · 1 · 30')).toBeInTheDocument();
    expect(within(azul).getByText('120 · 98')).toBeInTheDocument();
    expect(within(azul).getByText('Vendas: Conectada')).toBeInTheDocument();
    expect(within(azul).getByText('Suporte: Desconectada').closest('[title]')).toHaveAttribute('title', 'sem sinal');
    const verde = within(table).getByText('Loja Verde').closest('tr')!;
    expect(within(verde).getByText('Inativo')).toBeInTheDocument();
    expect(within(verde).getByText('Nenhuma conexão')).toBeInTheDocument();
    expect(screen.getByText('Mensagens de 01/03/2025 a 07/03/2025')).toBeInTheDocument();
  });
});
