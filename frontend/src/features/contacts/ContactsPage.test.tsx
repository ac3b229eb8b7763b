import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
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
    expect(within(dialog).queryByRole('button', { name: 'Mesclar com esse contato' })).not.toBeInTheDocument(); // the owner's
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

describe('ContactsPage: merging a contact WhatsApp split in two', () => {
  const owner = agentUser({ role: 'reseller', department_ids: [] });
  const hidden = { id: 'h'.repeat(24), name: 'Cliente LID', phone: '', tags: [], notes: '', email: null, active: true, created_at: '2025-01-01T00:00:00Z' };
  const known = { ...hidden, id: 'k'.repeat(24), name: 'Cliente Com Número', phone: '5511987654321' };
  const knownOption = 'Cliente Com Número · +55 (11) 98765-4321';
  const mergeUrl = `/api/v1/clients/${hidden.id}/merge`;
  type Answer = { status?: number; body?: unknown };

  /** The tenant's contacts, `hidden` (or the `others` given) left out of the list once merged (as the backend does). */
  function serve(user = owner, merge: () => Answer = () => ({ body: { ...known, merged_into: null } }), patch?: () => Answer, others: object[] = [hidden]) {
    signIn(user);
    let merged = false;
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: user };
      if (path === '/api/v1/tags') return { body: { items: [] } };
      if (path === '/api/v1/clients' && method === 'GET') return { body: { items: merged ? [known] : [...others, known], next_cursor: null } };
      if (path === `/api/v1/clients/${known.id}` && method === 'GET') return { body: known };
      if (path === `/api/v1/clients/${hidden.id}` && method === 'PATCH' && patch) return patch();
      if (path === mergeUrl && method === 'POST') {
        const answer = merge();
        merged = (answer.status ?? 200) === 200;
        return answer;
      }
      return undefined;
    });
    return calls;
  }
  const rowOf = async (name: string) => (await screen.findByText(name)).closest('tr') as HTMLElement;
  const openMerge = async (name: string) => {
    fireEvent.click(within(await rowOf(name)).getByRole('button', { name: 'Mesclar contato' }));
    return screen.findByRole('dialog', { name: 'Mesclar contato' });
  };
  // The Select's dropdown sits in a portal beside the modal, which hides it from the a11y tree in jsdom.
  const pickKept = async (dialog: HTMLElement, option: string) => {
    await userEvent.click(within(dialog).getByRole('textbox', { name: /^Contato que fica/ }));
    await userEvent.click(await screen.findByRole('option', { name: option, hidden: true }));
  };

  it('offers "Mesclar…" on each contact to the owner', async () => {
    serve();
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const button = within(await rowOf('Cliente LID')).getByRole('button', { name: 'Mesclar contato' });
    expect(button).toHaveTextContent('Mesclar…');
    expect(within(await rowOf('Cliente Com Número')).getByRole('button', { name: 'Mesclar contato' })).toBeInTheDocument();
  });

  it('offers no merge to an agent', async () => {
    serve(agentUser());
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const row = await rowOf('Cliente LID');
    expect(within(row).getByRole('button', { name: 'Editar' })).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Mesclar contato' })).not.toBeInTheDocument();
  });

  it('merges into the contact picked, says what it does, and refreshes the list without the merged one', async () => {
    const calls = serve();
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await openMerge('Cliente LID');
    expect(dialog).toHaveTextContent('As próximas mensagens de WhatsApp deste contato passam a chegar nas conversas do contato que fica.');
    expect(dialog).toHaveTextContent('O histórico do contato que fica passa a mostrar as conversas anteriores dos dois.');
    expect(dialog).toHaveTextContent('A mesclagem não pode ser desfeita.');
    expect(dialog).toHaveTextContent('finalize-o antes de mesclar');
    const confirm = within(dialog).getByRole('button', { name: 'Mesclar' });
    expect(confirm).toBeDisabled(); // nothing picked yet

    await userEvent.click(within(dialog).getByRole('textbox', { name: /^Contato que fica/ }));
    await screen.findByRole('option', { name: knownOption, hidden: true });
    // The contact itself is not one to merge into.
    expect(screen.queryByRole('option', { name: /^Cliente LID/, hidden: true })).not.toBeInTheDocument();
    await pickKept(dialog, knownOption);
    const listsBefore = calls.filter((c) => c.method === 'GET' && c.path === '/api/v1/clients').length;
    fireEvent.click(confirm);

    await waitFor(() => expect(screen.queryByRole('dialog', { name: 'Mesclar contato' })).not.toBeInTheDocument());
    expect(calls.filter((c) => c.method === 'POST').map((c) => [c.path, c.body])).toEqual([[mergeUrl, { into_client_id: known.id }]]);
    expect(await screen.findByText('Contatos mesclados')).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByText('Cliente LID')).not.toBeInTheDocument());
    expect(calls.filter((c) => c.method === 'GET' && c.path === '/api/v1/clients').length).toBeGreaterThan(listsBefore);
    expect(screen.getByText('Cliente Com Número')).toBeInTheDocument();
  });

  it('says why a contact with an open conversation is not merged, with a link to it', async () => {
    const ticketId = 't'.repeat(24);
    serve(owner, () => ({ status: 409, body: { detail: { message: 'the client has an open ticket', ticket_id: ticketId } } }));
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await openMerge('Cliente LID');
    await pickKept(dialog, knownOption);
    fireEvent.click(within(dialog).getByRole('button', { name: 'Mesclar' }));
    const alert = await within(dialog).findByRole('alert');
    expect(alert).toHaveTextContent('Este contato tem um atendimento aberto: finalize-o antes de mesclar.');
    expect(within(alert).getByRole('link', { name: 'Abrir atendimento' })).toHaveAttribute('href', `/atendimento/${ticketId}`);
    expect(screen.getByText('Cliente LID')).toBeInTheDocument(); // nothing merged
  });

  it('shows the translated refusal of a target merged into another (409)', async () => {
    serve(owner, () => ({
      status: 409,
      body: { detail: { message: 'the target client was merged into another: merge into that one', client_id: 'c-elsewhere' } },
    }));
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    const dialog = await openMerge('Cliente LID');
    await pickKept(dialog, knownOption);
    fireEvent.click(within(dialog).getByRole('button', { name: 'Mesclar' }));
    const alert = await within(dialog).findByRole('alert');
    expect(alert).toHaveTextContent('O contato escolhido já foi mesclado em outro');
    expect(within(alert).queryByRole('link')).not.toBeInTheDocument();
  });

  it('lets the owner merge with the contact a phone edit finds has the number (409), preselected', async () => {
    const calls = serve(owner, undefined, () => ({
      status: 409,
      body: { detail: { message: 'a client with this phone already exists', client_id: known.id } },
    }));
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
    fireEvent.click(within(await rowOf('Cliente LID')).getByRole('button', { name: 'Editar' }));
    const edit = await screen.findByRole('dialog', { name: 'Editar' });
    const phone = within(edit).getByRole('textbox', { name: /^Telefone/ });
    fireEvent.change(phone, { target: { value: '5511987654321' } });
    fireEvent.click(within(edit).getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(phone).toHaveAccessibleDescription('Já existe um contato com este telefone.'));

    fireEvent.click(within(edit).getByRole('button', { name: 'Mesclar com esse contato' }));
    const dialog = await screen.findByRole('dialog', { name: 'Mesclar contato' });
    await waitFor(() => expect(screen.queryByRole('dialog', { name: 'Editar' })).not.toBeInTheDocument());
    const kept = within(dialog).getByRole('textbox', { name: /^Contato que fica/ });
    await waitFor(() => expect(kept).toHaveValue(knownOption));
    const confirm = within(dialog).getByRole('button', { name: 'Mesclar' });
    expect(confirm).toBeEnabled();
    fireEvent.click(confirm);
    await waitFor(() => expect(calls.some((c) => c.method === 'POST' && c.path === mergeUrl)).toBe(true));
    expect(calls.find((c) => c.path === mergeUrl)?.body).toEqual({ into_client_id: known.id });
  });

  describe('when WhatsApp said two contacts are one account (same_person_as)', () => {
    // The contact known by its privacy id only, once a delivery named it with `known`'s number.
    const suggested = { ...hidden, same_person_as: known.id, merged_into: null };
    const ownerHint = 'O WhatsApp identificou este contato como a mesma conta de outro contato, o que tem o número. Mesclar faz dos dois um só contato.';
    const badgeOf = (row: HTMLElement) => within(row).queryByTestId('same-person');

    it('marks the contact WhatsApp named as the same account, and no other', async () => {
      // A contact merged already is nothing to suggest (the backend lists none, it is said twice).
      const gone = { ...hidden, id: 'm'.repeat(24), name: 'Cliente Já Mesclado', same_person_as: known.id, merged_into: known.id };
      const plain = { ...hidden, id: 'p'.repeat(24), name: 'Outro Sem Número', same_person_as: null };
      serve(owner, undefined, undefined, [suggested, gone, plain]);
      renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
      const badge = badgeOf(await rowOf('Cliente LID'));
      expect(badge).toHaveTextContent('Mesmo WhatsApp de outro contato');
      expect(badge).toHaveAttribute('title', ownerHint);
      expect(badgeOf(await rowOf('Cliente Com Número'))).not.toBeInTheDocument();
      expect(badgeOf(await rowOf('Cliente Já Mesclado'))).not.toBeInTheDocument();
      expect(badgeOf(await rowOf('Outro Sem Número'))).not.toBeInTheDocument();
      expect(screen.getAllByRole('button', { name: 'Mesclar com o contato do mesmo WhatsApp' })).toHaveLength(1);
    });

    it("lets the owner merge from the badge, the other contact preselected as the one kept", async () => {
      const calls = serve(owner, undefined, undefined, [suggested]);
      renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
      const button = within(await rowOf('Cliente LID')).getByRole('button', { name: 'Mesclar com o contato do mesmo WhatsApp' });
      expect(button).toHaveTextContent(/^Mesclar$/);
      fireEvent.click(button);
      const dialog = await screen.findByRole('dialog', { name: 'Mesclar contato' });
      expect(dialog).toHaveTextContent('Mesclar Cliente LID · Número oculto pelo WhatsApp em outro contato');
      const kept = within(dialog).getByRole('textbox', { name: /^Contato que fica/ });
      await waitFor(() => expect(kept).toHaveValue(knownOption));
      const confirm = within(dialog).getByRole('button', { name: 'Mesclar' });
      expect(confirm).toBeEnabled();
      fireEvent.click(confirm);
      await waitFor(() => expect(screen.queryByRole('dialog', { name: 'Mesclar contato' })).not.toBeInTheDocument());
      expect(calls.filter((c) => c.method === 'POST').map((c) => [c.path, c.body])).toEqual([[mergeUrl, { into_client_id: known.id }]]);
      await waitFor(() => expect(screen.queryByText('Cliente LID')).not.toBeInTheDocument());
    });

    it('shows an agent the badge, saying the owner can merge, and no merge', async () => {
      serve(agentUser(), undefined, undefined, [suggested]);
      renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos' });
      const row = await rowOf('Cliente LID');
      const badge = badgeOf(row);
      expect(badge).toHaveTextContent('Mesmo WhatsApp de outro contato');
      expect(badge).toHaveAttribute('title', expect.stringContaining('O responsável pela empresa pode mesclar'));
      expect(within(row).queryByRole('button', { name: /Mesclar/ })).not.toBeInTheDocument();
    });
  });
});
