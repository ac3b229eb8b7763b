import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { ContactsPage } from './ContactsPage';

const me = agentUser();

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('ContactsPage', () => {
  const maria = { id: 'c'.repeat(24), name: 'Maria Já Cadastrada', phone: '5511987654321', tags: [], notes: '', email: null, created_at: '2025-01-01T00:00:00Z' };
  const common = (path: string) => {
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/clients') return { body: { items: [], next_cursor: null } };
    if (path === '/api/v1/tags') return { body: { items: [] } };
    if (path === '/api/v1/whatsapp-connections') return { body: { items: [], next_cursor: null } };
    if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
    return undefined;
  };

  it('opens "Iniciar conversa" for a shared card\'s number, creating the contact when there is none', async () => {
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/clients' && method === 'POST') {
        const sent = body as { name: string; phone: string };
        return { status: 201, body: { ...maria, id: 'n'.repeat(24), name: sent.name, phone: sent.phone } };
      }
      return common(path);
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos?novo=5511987654321&nome=Jo%C3%A3o+Silva' });
    const dialog = await screen.findByRole('dialog', { name: 'Iniciar conversa no WhatsApp' });
    expect(dialog).toHaveTextContent('João Silva');
    expect(within(dialog).getByRole('textbox', { name: 'Primeira mensagem' })).toBeInTheDocument();
    const posts = calls.filter((c) => c.method === 'POST' && c.path === '/api/v1/clients');
    expect(posts.map((c) => c.body)).toEqual([{ name: 'João Silva', phone: '5511987654321', notes: '', tags: [] }]);
  });

  it('opens the flow for the contact that already has the number', async () => {
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/clients' && method === 'POST') {
        return { status: 409, body: { detail: { message: 'a client with this phone already exists', client_id: maria.id } } };
      }
      if (path === `/api/v1/clients/${maria.id}`) return { body: maria };
      return common(path);
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos?novo=5511987654321&nome=Jo%C3%A3o' });
    const dialog = await screen.findByRole('dialog', { name: 'Iniciar conversa no WhatsApp' });
    expect(dialog).toHaveTextContent('Maria Já Cadastrada');
    expect(calls.filter((c) => c.method === 'PATCH')).toEqual([]); // the existing contact is left as it is
  });

  it('falls back to the new contact form filled in when the number is refused', async () => {
    const searched: (string | null)[] = [];
    mockApi(({ method, path, url }) => {
      if (path === '/api/v1/clients' && method === 'POST') {
        return { status: 422, body: { detail: [{ loc: ['body', 'phone'], msg: 'invalid phone', type: 'value_error' }] } };
      }
      if (path === '/api/v1/clients') searched.push(url.searchParams.get('q'));
      return common(path);
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos?novo=5511987654321&nome=Jo%C3%A3o+Silva' });
    const dialog = await screen.findByRole('dialog', { name: 'Novo contato' });
    expect(within(dialog).getByRole('textbox', { name: /^Nome/ })).toHaveValue('João Silva');
    expect(within(dialog).getByRole('textbox', { name: /^Telefone/ })).toHaveValue('5511987654321');
    await waitFor(() => expect(searched).toContain('5511987654321'));
  });

  it('lists active contacts, shows deactivated ones on request, and lets the owner deactivate one', async () => {
    const owner = agentUser({ role: 'reseller', department_ids: [] });
    signIn(owner);
    const gone = { ...maria, id: 'g'.repeat(24), name: 'Cliente Antigo', active: false };
    const active = { ...maria, active: true };
    const listed: (string | null)[] = [];
    const tagsAsked: (string | null)[] = [];
    const calls = mockApi(({ method, path, url }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/clients' && method === 'GET') {
        listed.push(url.searchParams.get('active'));
        return { body: { items: url.searchParams.get('active') === 'true' ? [active] : [active, gone], next_cursor: null } };
      }
      if (path === '/api/v1/tags') {
        tagsAsked.push(url.searchParams.get('on'));
        return { body: { items: [] } };
      }
      if (path === `/api/v1/clients/${maria.id}` && method === 'PATCH') return { body: { ...active, active: false } };
      return common(path);
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    await screen.findByText('Maria Já Cadastrada');
    expect(listed[0]).toBe('true');
    expect(screen.queryByText('Cliente Antigo')).not.toBeInTheDocument();
    expect(tagsAsked).toContain('clients'); // the filter offers the tags contacts carry

    fireEvent.click(screen.getByRole('checkbox', { name: 'Mostrar desativados' }));
    const row = (await screen.findByText('Cliente Antigo')).closest('tr') as HTMLElement;
    expect(row).toHaveTextContent('Desativado');
    expect(within(row).queryByRole('button', { name: 'Iniciar conversa' })).not.toBeInTheDocument();
    expect(listed).toContain(null);

    const mariaRow = screen.getByText('Maria Já Cadastrada').closest('tr') as HTMLElement;
    fireEvent.click(within(mariaRow).getByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar' });
    fireEvent.click(within(dialog).getByRole('switch', { name: /Contato ativo/ }));
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    const patch = calls.find((c) => c.method === 'PATCH');
    expect(patch?.body).toMatchObject({ active: false, name: 'Maria Já Cadastrada' });
  });

  it('shows a refusal of a field the form has no input for, and each field\'s own on its input', async () => {
    const owner = agentUser({ role: 'reseller', department_ids: [] });
    signIn(owner);
    mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/clients' && method === 'GET') return { body: { items: [{ ...maria, active: true }], next_cursor: null } };
      if (path === `/api/v1/clients/${maria.id}` && method === 'PATCH') {
        return {
          status: 422,
          body: {
            detail: [
              { type: 'string_too_long', loc: ['body', 'name'], msg: 'String should have at most 120 characters' },
              { type: 'bool_type', loc: ['body', 'active'], msg: 'Input should be a valid boolean' },
            ],
          },
        };
      }
      return common(path);
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    fireEvent.click(await screen.findByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar' });
    fireEvent.click(within(dialog).getByRole('switch', { name: /Contato ativo/ }));
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    // `active` has a switch, which shows no error: the form's message says what was refused.
    const alert = await within(dialog).findByRole('alert');
    expect(alert).toHaveTextContent('Valor inválido.');
    expect(alert).not.toHaveTextContent('Use no máximo 120 caracteres.');
    expect(within(dialog).getByRole('textbox', { name: /^Nome/ })).toHaveAccessibleDescription('Use no máximo 120 caracteres.');
  });

  it('offers no deactivation to an agent', async () => {
    mockApi(({ method, path }) => {
      if (path === '/api/v1/clients' && method === 'GET') return { body: { items: [{ ...maria, active: true }], next_cursor: null } };
      return common(path);
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    fireEvent.click(await screen.findByRole('button', { name: 'Editar' }));
    const dialog = await screen.findByRole('dialog', { name: 'Editar' });
    expect(within(dialog).queryByRole('switch')).not.toBeInTheDocument();
  });
});
