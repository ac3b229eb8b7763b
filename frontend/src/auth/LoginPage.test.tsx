import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, stubWebSocket } from '../test/utils';
import { loadSession } from './session';
import { LoginPage } from './LoginPage';
import { AppRoutes } from '../routes';

beforeEach(() => stubWebSocket());

describe('LoginPage', () => {
  it('says when the credentials are wrong and keeps no session', async () => {
    mockApi(({ path }) => (path === '/api/v1/auth/login' ? { status: 401, body: { detail: 'invalid credentials' } } : undefined));
    renderApp(<LoginPage />, { path: '/login', route: '/login' });
    await userEvent.type(screen.getByLabelText(/E-mail/), 'ana@example.com');
    await userEvent.type(screen.getByLabelText(/^Senha/), 'errada');
    await userEvent.click(screen.getByRole('button', { name: 'Entrar' }));
    expect((await screen.findByText('E-mail ou senha incorretos.')).closest('[role="alert"]')).not.toBeNull();
    expect(loadSession()).toBeNull();
  });

  it('keeps the session after a successful login and leaves the login page', async () => {
    const user = agentUser();
    const calls = mockApi(({ path, body }) =>
      path === '/api/v1/auth/login'
        ? { body: { access_token: 'jwt-1', token_type: 'bearer', expires_in: 3600, user, echo: body } }
        : undefined,
    );
    renderApp(<LoginPage />, { path: '/login', route: '/login' });
    await userEvent.type(screen.getByLabelText(/E-mail/), ' ana@example.com ');
    await userEvent.type(screen.getByLabelText(/^Senha/), 'senha-boa-1');
    await userEvent.click(screen.getByRole('button', { name: 'Entrar' }));
    expect(await screen.findByText('outra página')).toBeInTheDocument();
    expect(calls[0].body).toEqual({ email: 'ana@example.com', password: 'senha-boa-1' });
    expect(loadSession()?.token).toBe('jwt-1');
  });

  it('ends a kept session whose token the server no longer accepts', async () => {
    window.localStorage.setItem('iaze.session', JSON.stringify({ token: 'old', user: agentUser(), expiresAt: Date.now() + 60_000 }));
    mockApi(() => ({ status: 401, body: { detail: 'expired' } }));
    renderApp(<AppRoutes />, { path: '*', route: '/atendimento' });
    expect(await screen.findByText('Sua sessão expirou. Entre novamente.')).toBeInTheDocument();
    await waitFor(() => expect(loadSession()).toBeNull());
  });
});
