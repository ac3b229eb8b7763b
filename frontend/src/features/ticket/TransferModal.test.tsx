import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { TransferModal } from './TransferModal';

const me = agentUser();
const departments = [
  { id: 'd'.repeat(24), name: 'Suporte', active: true, reseller_id: 'r', description: '', created_at: '' },
  { id: 'e'.repeat(24), name: 'Financeiro', active: true, reseller_id: 'r', description: '', created_at: '' },
];

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('TransferModal for a waiting ticket', () => {
  it('only moves it to another department\'s queue', async () => {
    const waiting = ticketFixture({ department_id: 'd'.repeat(24) });
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/departments') return { body: { items: departments, next_cursor: null } };
      if (path === '/api/v1/users') return { body: { items: [], next_cursor: null } };
      if (path === `/api/v1/tickets/${waiting.id}/transfer` && method === 'POST') return { body: { ...waiting, department_id: 'e'.repeat(24), version: 2 } };
      if (path === '/api/v1/tickets') return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TransferModal ticket={waiting} opened onClose={() => undefined} onConflict={() => undefined} />);
    await screen.findByRole('textbox', { name: 'Departamento' });
    expect(screen.queryByText('Um agente')).not.toBeInTheDocument();
    await userEvent.click(screen.getByRole('textbox', { name: 'Departamento' }));
    // Its own department is not offered; the other one is.
    await waitFor(() => expect(screen.getByRole('option', { name: 'Financeiro', hidden: true })).toBeInTheDocument());
    expect(screen.queryByRole('option', { name: 'Suporte', hidden: true })).not.toBeInTheDocument();
    await userEvent.click(screen.getByRole('option', { name: 'Financeiro', hidden: true }));
    await userEvent.click(screen.getByRole('button', { name: 'Transferir' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true));
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ department_id: 'e'.repeat(24) });
  });
});

describe('TransferModal · queues nobody serves', () => {
  it('marks an active department with no active agent "(sem atendentes)"', async () => {
    const held = ticketFixture({ status: 'atendendo', agent_id: me.id, department_id: 'd'.repeat(24) });
    const staffed = [
      { ...departments[0], active_agents: 2 },
      { ...departments[1], active_agents: 0 },
      { id: 'f'.repeat(24), name: 'Antigo', active: false, reseller_id: 'r', description: '', created_at: '', active_agents: 0 },
    ];
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/departments') return { body: { items: staffed, next_cursor: null } };
      if (path === '/api/v1/users') return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TransferModal ticket={held} opened onClose={() => undefined} onConflict={() => undefined} />);
    await userEvent.click(await screen.findByText('Um departamento (volta para a espera)'));
    await userEvent.click(await screen.findByRole('textbox', { name: 'Departamento' }));
    await waitFor(() => expect(screen.getByRole('option', { name: 'Financeiro (sem atendentes)', hidden: true })).toBeInTheDocument());
    expect(screen.getByRole('option', { name: 'Suporte', hidden: true })).toBeInTheDocument();
    expect(screen.queryByRole('option', { name: /Antigo/, hidden: true })).not.toBeInTheDocument();
  });
});
