import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Department, WhatsAppConnection } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { ConnectionsPage } from './ConnectionsPage';
import { move } from './MenuForm';

const owner = agentUser({ role: 'reseller', department_ids: [] });
const dept = (id: string, name: string, active = true): Department =>
  ({ id: id.repeat(24), name, description: '', active, reseller_id: 'r'.repeat(24), created_at: '2025-01-01T00:00:00Z' }) as Department;
const suporte = dept('1', 'Suporte');
const financeiro = dept('2', 'Financeiro');
const vendas = dept('3', 'Vendas');
const antigo = dept('4', 'Antigo', false);
const connection = {
  id: 'e'.repeat(24), reseller_id: 'r'.repeat(24), name: 'Loja Centro', provider: 'evolution', instance_name: 'loja',
  default_department_id: suporte.id, status: 'open', qr_code: null, active: true, last_error: null,
  created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-01T00:00:00Z',
  menu_enabled: false, menu_department_ids: [], menu_text: '', menu_max_invalid: 2,
} as WhatsAppConnection;

function serve(stored: WhatsAppConnection = connection) {
  return mockApi(({ method, path, body }) => {
    if (path === '/api/v1/auth/me') return { body: owner };
    if (path === '/api/v1/departments') return { body: { items: [suporte, financeiro, vendas, antigo], next_cursor: null } };
    if (path === '/api/v1/whatsapp-connections') return { body: { items: [stored], next_cursor: null } };
    if (path === `/api/v1/whatsapp-connections/${stored.id}` && method === 'PATCH') return { body: { ...stored, ...(body as object) } };
    return undefined;
  });
}

// The Select's dropdown sits in a portal beside the modal, which hides it from the a11y tree in jsdom.
async function pick(label: string, option: string) {
  await userEvent.click(screen.getByRole('textbox', { name: label }));
  await userEvent.click(await screen.findByRole('option', { name: option, hidden: true }));
}

beforeEach(() => {
  stubWebSocket();
  signIn(owner);
});

describe('ConnectionsPage · department menu', () => {
  it('turns the menu on with departments in the chosen order, previewing the numbered list the client gets', async () => {
    const calls = serve();
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    await userEvent.click(await screen.findByRole('button', { name: 'Menu de departamentos · Loja Centro' }));
    const dialog = await screen.findByRole('dialog');
    const save = within(dialog).getByRole('button', { name: 'Salvar' });
    await userEvent.click(within(dialog).getByRole('switch', { name: /Perguntar o departamento/ }));
    // On with no department would ask nothing: refused until one is in.
    expect(save).toBeDisabled();

    // Inactive departments are not offered.
    await userEvent.click(within(dialog).getByRole('textbox', { name: 'Adicionar departamento ao menu' }));
    await userEvent.click(await screen.findByRole('option', { name: 'Financeiro', hidden: true }));
    expect(screen.queryByRole('option', { name: 'Antigo', hidden: true })).not.toBeInTheDocument();
    await userEvent.click(within(dialog).getByRole('button', { name: 'Adicionar' }));
    await pick('Adicionar departamento ao menu', 'Suporte');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Adicionar' }));
    await pick('Adicionar departamento ao menu', 'Vendas');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Adicionar' }));
    await userEvent.click(within(dialog).getByRole('button', { name: 'Subir Suporte' }));
    await userEvent.click(within(dialog).getByRole('button', { name: 'Tirar Vendas do menu' }));
    await userEvent.type(within(dialog).getByRole('textbox', { name: 'Texto do menu' }), 'Escolha um número:');

    const tolerance = within(dialog).getByRole('textbox', { name: 'Respostas inválidas aceitas' });
    await userEvent.clear(tolerance);
    await userEvent.type(tolerance, '3');
    const preview = within(dialog).getByTestId('menu-preview');
    expect(preview.textContent).toBe('Escolha um número:\n1 - Suporte\n2 - Financeiro');
    expect(dialog).toHaveTextContent('espera em Suporte');

    await userEvent.click(save);
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(calls.find((c) => c.method === 'PATCH')?.body).toEqual({
      menu_enabled: true,
      menu_department_ids: [suporte.id, financeiro.id],
      menu_text: 'Escolha um número:',
      menu_max_invalid: 3,
    });
  });

  it('shows which connections have the menu on, and opens it with the stored order', async () => {
    serve({ ...connection, menu_enabled: true, menu_department_ids: [financeiro.id, suporte.id], menu_text: 'Oi!' });
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    expect(await screen.findByTestId('connection-menu')).toHaveTextContent('Menu ligado (2)');
    await userEvent.click(screen.getByRole('button', { name: 'Menu de departamentos · Loja Centro' }));
    const dialog = await screen.findByRole('dialog');
    expect(within(dialog).getAllByTestId('menu-department').map((li) => li.textContent)).toEqual(['1 - Financeiro↑↓✕', '2 - Suporte↑↓✕']);
    expect(within(dialog).getByTestId('menu-preview').textContent).toBe('Oi!\n1 - Financeiro\n2 - Suporte');
  });

  it('keeps an inactive department listed but out of the menu the client is sent', async () => {
    serve({ ...connection, menu_enabled: true, menu_department_ids: [antigo.id, financeiro.id], menu_text: '' });
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    await userEvent.click(await screen.findByRole('button', { name: 'Menu de departamentos · Loja Centro' }));
    const dialog = await screen.findByRole('dialog');
    expect(within(dialog).getAllByTestId('menu-department')[0]).toHaveTextContent('AntigoInativo');
    expect(within(dialog).getByTestId('menu-preview').textContent).toBe('Para agilizar seu atendimento, responda com o número do departamento:\n1 - Financeiro');
  });

  it('says why a connection is down when the backend recorded it, in Portuguese', async () => {
    const missing = 'instance not found at the provider: pair the phone again';
    serve({ ...connection, status: 'close', last_error: missing });
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    expect(await screen.findByTestId('connection-error')).toHaveTextContent('Este WhatsApp não existe mais no provedor');
  });

  it('shows no recorded error once the connection is open', async () => {
    serve({ ...connection, status: 'open', last_error: 'provider answered 500: boom' });
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    expect(await screen.findByTestId('connection-status')).toBeInTheDocument();
    expect(screen.queryByTestId('connection-error')).toBeNull();
  });

  it('shows a generic reason for a provider answer it has no words for', async () => {
    serve({ ...connection, status: 'close', last_error: 'provider answered 500: boom' });
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    expect(await screen.findByTestId('connection-error')).toHaveTextContent('O provedor do WhatsApp recusou ou não respondeu');
  });

  it('move swaps neighbours and ignores moves past either end', () => {
    expect(move(['a', 'b', 'c'], 2, -1)).toEqual(['a', 'c', 'b']);
    expect(move(['a', 'b'], 0, -1)).toEqual(['a', 'b']);
    expect(move(['a', 'b'], 1, 1)).toEqual(['a', 'b']);
  });
});

describe('ConnectionsPage · editing a connection', () => {
  it('changes where new conversations wait, offering active departments only, sending only what changed', async () => {
    const calls = serve();
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    await userEvent.click(await screen.findByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar conexão · Loja Centro' });
    const save = within(dialog).getByRole('button', { name: 'Salvar' });
    expect(save).toBeDisabled(); // nothing changed yet
    await userEvent.click(within(dialog).getByRole('textbox', { name: /Departamento padrão/ }));
    expect(screen.queryByRole('option', { name: /Antigo/, hidden: true })).not.toBeInTheDocument();
    await userEvent.click(await screen.findByRole('option', { name: 'Financeiro', hidden: true }));
    await userEvent.click(save);
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(calls.find((c) => c.method === 'PATCH')?.body).toEqual({ default_department_id: financeiro.id });
    expect(await screen.findByText('Conexão atualizada')).toBeInTheDocument();
  });

  it('shows an inactive current default as such, without offering it', async () => {
    serve({ ...connection, default_department_id: antigo.id });
    renderApp(<ConnectionsPage />, { path: '/', route: '/' });
    await userEvent.click(await screen.findByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar conexão · Loja Centro' });
    const select = within(dialog).getByRole('textbox', { name: /Departamento padrão/ });
    expect(select).toHaveValue('Antigo (Inativo)');
    await userEvent.click(select);
    const option = await screen.findByRole('option', { name: 'Antigo (Inativo)', hidden: true });
    expect(option).toHaveAttribute('data-combobox-disabled', 'true');
  });
});
