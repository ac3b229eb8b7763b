import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { ProfilePage } from './ProfilePage';

const me = agentUser({ name: 'Ana Agente' });

beforeEach(() => {
  stubWebSocket();
  signIn(me, 'old-token');
});

describe('ProfilePage', () => {
  it('changes the password with the current one and keeps the fresh token the server answers', async () => {
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/auth/me/password' && method === 'POST')
        return { body: { access_token: 'new-token', token_type: 'bearer', expires_in: 3600, user: me } };
      return undefined;
    });
    renderApp(<ProfilePage />);
    await userEvent.type(screen.getByLabelText(/Senha atual/), 'senha-antiga-1');
    await userEvent.type(screen.getByLabelText(/^Nova senha/), 'senha-nova-12');
    await userEvent.type(screen.getByLabelText(/Confirme a nova senha/), 'senha-nova-1');
    expect(await screen.findByText('As senhas não conferem')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Trocar senha' })).toBeDisabled();
    await userEvent.clear(screen.getByLabelText(/Confirme a nova senha/));
    await userEvent.type(screen.getByLabelText(/Confirme a nova senha/), 'senha-nova-12');
    await userEvent.click(screen.getByRole('button', { name: 'Trocar senha' }));
    await waitFor(() => expect(JSON.parse(window.localStorage.getItem('iaze.session') ?? '{}').token).toBe('new-token'));
    expect(calls.find((c) => c.path === '/api/v1/auth/me/password')?.body).toEqual({
      current_password: 'senha-antiga-1',
      new_password: 'senha-nova-12',
    });
  });

  it('shows the server’s refusal of a wrong current password and keeps the session', async () => {
    mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/auth/me/password' && method === 'POST') return { status: 422, body: { detail: 'current password is incorrect' } };
      return undefined;
    });
    renderApp(<ProfilePage />);
    await userEvent.type(screen.getByLabelText(/Senha atual/), 'errada-123');
    await userEvent.type(screen.getByLabelText(/^Nova senha/), 'senha-nova-12');
    await userEvent.type(screen.getByLabelText(/Confirme a nova senha/), 'senha-nova-12');
    await userEvent.click(screen.getByRole('button', { name: 'Trocar senha' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Senha atual incorreta.');
    expect(JSON.parse(window.localStorage.getItem('iaze.session') ?? '{}').token).toBe('old-token');
  });
});

describe('ProfilePage · alerts', () => {
  it('offers the agent its alerts, and the owner its alerts of conversations nobody serves', async () => {
    mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: me } : undefined));
    const agentView = renderApp(<ProfilePage />);
    expect(screen.getByRole('switch', { name: /Alertas de novos atendimentos e mensagens/ })).toBeInTheDocument();
    agentView.unmount();

    const owner = agentUser({ role: 'reseller', department_ids: [] });
    signIn(owner);
    mockApi(({ path }) => (path === '/api/v1/auth/me' ? { body: owner } : undefined));
    renderApp(<ProfilePage />);
    expect(screen.getByRole('switch', { name: /Alertas de conversas sem atendente/ })).toBeInTheDocument();
    expect(screen.getByText(/departamento sem atendentes ativos/)).toBeInTheDocument();
  });
});
