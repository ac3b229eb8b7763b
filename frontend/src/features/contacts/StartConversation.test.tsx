import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Client } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { StartConversation } from './StartConversation';

const me = agentUser();
const contact = { id: 'c'.repeat(24), name: 'Maria Cliente', phone: '5511987654321', tags: [], created_at: '2025-01-01T00:00:00Z' } as unknown as Client;
const connection = (over: Record<string, unknown>) => ({
  id: 'w'.repeat(24), reseller_id: 'r'.repeat(24), name: 'Loja', provider: 'evolution', instance_name: 'loja',
  default_department_id: 'd'.repeat(24), status: 'open', qr_code: null, active: true, last_error: null,
  created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-01T00:00:00Z', ...over,
});
const departments = [
  { id: 'd'.repeat(24), name: 'Suporte', active: true, reseller_id: 'r', description: '', created_at: '' },
  { id: 'e'.repeat(24), name: 'Financeiro', active: true, reseller_id: 'r', description: '', created_at: '' },
];

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('StartConversation', () => {
  it('sends the first message on the chosen connection, in its default department, and opens the ticket', async () => {
    const created = ticketFixture({ id: '5'.repeat(24), status: 'atendendo', agent_id: me.id, channel: 'w'.repeat(24) });
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/whatsapp-connections') {
        return { body: { items: [connection({}), connection({ id: 'x'.repeat(24), name: 'Filial', status: 'close' })], next_cursor: null } };
      }
      if (path === '/api/v1/departments') return { body: { items: departments, next_cursor: null } };
      if (path === '/api/v1/tickets' && method === 'POST') return { status: 201, body: created };
      return undefined;
    });
    const done = vi.fn();
    renderApp(<StartConversation contact={contact} onDone={done} />);
    // A disconnected connection is listed but cannot be chosen.
    expect(await screen.findByRole('option', { name: 'Filial (desconectada)' })).toBeDisabled();
    await userEvent.selectOptions(screen.getByRole('combobox', { name: 'Conexão de WhatsApp' }), 'Loja');
    await waitFor(() => expect(screen.getByRole('combobox', { name: 'Departamento' })).toHaveValue('d'.repeat(24)));
    await userEvent.type(screen.getByRole('textbox', { name: 'Primeira mensagem' }), 'Seu pedido chegou');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar e abrir atendimento' }));
    await waitFor(() => expect(done).toHaveBeenCalled());
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({
      client_id: contact.id, department_id: 'd'.repeat(24), message: 'Seu pedido chegou', connection_id: 'w'.repeat(24),
    });
    expect(await screen.findByText('outra página')).toBeInTheDocument(); // navigated to the ticket
  });

  it('says when the contact already has an open ticket on that connection', async () => {
    mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/whatsapp-connections') return { body: { items: [connection({})], next_cursor: null } };
      if (path === '/api/v1/departments') return { body: { items: departments, next_cursor: null } };
      if (path === '/api/v1/tickets' && method === 'POST') {
        return { status: 409, body: { detail: { message: 'client already has an open ticket', ticket_id: '6'.repeat(24) } } };
      }
      return undefined;
    });
    renderApp(<StartConversation contact={contact} onDone={() => undefined} />);
    await screen.findByRole('option', { name: 'Loja' });
    await userEvent.selectOptions(screen.getByRole('combobox', { name: 'Conexão de WhatsApp' }), 'Loja');
    await userEvent.type(screen.getByRole('textbox', { name: 'Primeira mensagem' }), 'Oi');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar e abrir atendimento' }));
    expect(await screen.findByText('Este contato já tem um atendimento aberto nesta conexão.')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Abrir atendimento' })).toBeInTheDocument();
  });

  it('warns when no connection can send', async () => {
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/whatsapp-connections') return { body: { items: [connection({ status: 'close' })], next_cursor: null } };
      if (path === '/api/v1/departments') return { body: { items: departments, next_cursor: null } };
      return undefined;
    });
    renderApp(<StartConversation contact={contact} onDone={() => undefined} />);
    expect(await screen.findByText(/Nenhuma conexão de WhatsApp conectada/)).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Enviar e abrir atendimento' })).toBeDisabled();
  });
  it("does not default to the connection's inactive default department: the user must choose one", async () => {
    const created = ticketFixture({ id: '5'.repeat(24), status: 'atendendo', agent_id: me.id, channel: 'w'.repeat(24) });
    const inactive = [{ ...departments[0], active: false }, departments[1]];
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/whatsapp-connections') return { body: { items: [connection({})], next_cursor: null } };
      if (path === '/api/v1/departments') return { body: { items: inactive, next_cursor: null } };
      if (path === '/api/v1/tickets' && method === 'POST') return { status: 201, body: created };
      return undefined;
    });
    renderApp(<StartConversation contact={contact} onDone={() => undefined} />);
    await screen.findByRole('option', { name: 'Financeiro' });
    expect(screen.queryByRole('option', { name: 'Suporte' })).not.toBeInTheDocument();
    await userEvent.selectOptions(screen.getByRole('combobox', { name: 'Conexão de WhatsApp' }), 'Loja');
    await userEvent.type(screen.getByRole('textbox', { name: 'Primeira mensagem' }), 'Oi');
    expect(screen.getByRole('combobox', { name: 'Departamento' })).toHaveValue('');
    const submit = screen.getByRole('button', { name: 'Enviar e abrir atendimento' });
    expect(submit).toBeDisabled();

    await userEvent.selectOptions(screen.getByRole('combobox', { name: 'Departamento' }), 'Financeiro');
    expect(submit).toBeEnabled();
    await userEvent.click(submit);
    await waitFor(() => expect(calls.find((c) => c.method === 'POST')?.body).toMatchObject({ department_id: 'e'.repeat(24) }));
  });
});
