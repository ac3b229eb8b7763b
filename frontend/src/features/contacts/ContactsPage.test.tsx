import { screen, waitFor, within } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { ContactsPage } from './ContactsPage';

const me = agentUser();

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('ContactsPage', () => {
  it('opens the new contact form filled in from a shared contact card ("Iniciar conversa")', async () => {
    const searched: (string | null)[] = [];
    mockApi(({ path, url }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/clients') {
        searched.push(url.searchParams.get('q'));
        return { body: { items: [], next_cursor: null } };
      }
      if (path === '/api/v1/tags') return { body: { items: [] } };
      return undefined;
    });
    renderApp(<ContactsPage />, { path: '/contatos', route: '/contatos?novo=5511987654321&nome=Jo%C3%A3o+Silva' });
    const dialog = await screen.findByRole('dialog', { name: 'Novo contato' });
    expect(dialog).toBeInTheDocument();
    expect(within(dialog).getByRole('textbox', { name: /^Nome/ })).toHaveValue('João Silva');
    expect(within(dialog).getByRole('textbox', { name: /^Telefone/ })).toHaveValue('5511987654321');
    // Behind it, the list is searched for that number (the contact may already exist).
    await waitFor(() => expect(searched).toContain('5511987654321'));
  });
});
