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

describe('ContactsPage: a contact WhatsApp named without a number', () => {
  const hidden = { id: 'h'.repeat(24), name: 'Cliente LID', phone: '', tags: [], notes: '', email: null, active: true, created_at: '2025-01-01T00:00:00Z' };
  const known = { ...hidden, id: 'k'.repeat(24), name: 'Cliente Com Número', phone: '5511987654321' };
  const common = (path: string) => {
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/tags') return { body: { items: [] } };
    return undefined;
  };
  type Answer = { status?: number; body?: unknown };
  const mockContacts = (patch: (body: unknown) => Answer = (body) => ({ body: { ...hidden, ...(body as object) } })) =>
    mockApi(({ method, path, body }) => {
      if (path === '/api/v1/clients' && method === 'GET') return { body: { items: [hidden, known], next_cursor: null } };
      if ((path === `/api/v1/clients/${hidden.id}` || path === `/api/v1/clients/${known.id}`) && method === 'PATCH') return patch(body);
      return common(path);
    });
  const editDialog = async (name: string) => {
    const row = (await screen.findByText(name)).closest('tr') as HTMLElement;
    fireEvent.click(within(row).getByRole('button', { name: 'Editar' }));
    return screen.findByRole('dialog', { name: 'Editar' });
  };

  it('shows the hidden number label in the table, and the number of the others', async () => {
    mockContacts();
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const row = (await screen.findByText('Cliente LID')).closest('tr') as HTMLElement;
    expect(within(row).getByText('Número oculto pelo WhatsApp')).toBeInTheDocument();
    const other = screen.getByText('Cliente Com Número').closest('tr') as HTMLElement;
    expect(other).toHaveTextContent('+55 (11) 98765-4321');
    expect(other).not.toHaveTextContent('Número oculto pelo WhatsApp');
  });

  it('lets a number be given to a contact without one, sent in the PATCH', async () => {
    const calls = mockContacts();
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await editDialog('Cliente LID');
    const phone = within(dialog).getByRole('textbox', { name: /^Telefone/ });
    expect(phone).toBeEnabled();
    expect(phone).toHaveValue('');
    fireEvent.change(phone, { target: { value: ' 5511912345678 ' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    const patch = calls.find((c) => c.method === 'PATCH');
    expect(patch?.path).toBe(`/api/v1/clients/${hidden.id}`);
    expect(patch?.body).toMatchObject({ name: 'Cliente LID', phone: '5511912345678' });
  });

  it('sends no phone when a contact without one is saved with the field left empty', async () => {
    const calls = mockContacts();
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await editDialog('Cliente LID');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(calls.find((c) => c.method === 'PATCH')?.body).not.toHaveProperty('phone');
  });

  it('keeps the phone of a contact that has one read-only and out of the PATCH', async () => {
    const calls = mockContacts((body) => ({ body: { ...known, ...(body as object) } }));
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await editDialog('Cliente Com Número');
    const phone = within(dialog).getByRole('textbox', { name: /^Telefone/ });
    expect(phone).toBeDisabled();
    expect(phone).toHaveValue('+55 (11) 98765-4321');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    const patch = calls.find((c) => c.method === 'PATCH');
    expect(patch?.path).toBe(`/api/v1/clients/${known.id}`);
    expect(patch?.body).toMatchObject({ name: 'Cliente Com Número' });
    expect(patch?.body).not.toHaveProperty('phone');
  });

  it('shows a number another contact has (409) on the phone field', async () => {
    mockContacts(() => ({ status: 409, body: { detail: { message: 'a client with this phone already exists', client_id: known.id } } }));
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await editDialog('Cliente LID');
    const phone = within(dialog).getByRole('textbox', { name: /^Telefone/ });
    fireEvent.change(phone, { target: { value: '5511987654321' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(phone).toHaveAccessibleDescription('Já existe um contato com este telefone.'));
    expect(within(dialog).queryByRole('alert')).not.toBeInTheDocument(); // said once, on the field
    expect(dialog).toBeInTheDocument(); // the form stays open to correct it
  });

  it("shows the backend's refusal when the contact got a number meanwhile (422)", async () => {
    mockContacts(() => ({ status: 422, body: { detail: 'the phone of a client does not change' } }));
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await editDialog('Cliente LID');
    const phone = within(dialog).getByRole('textbox', { name: /^Telefone/ });
    fireEvent.change(phone, { target: { value: '5511912345678' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(phone).toHaveAccessibleDescription('O telefone de um cliente não muda depois de definido.'));
  });
});
