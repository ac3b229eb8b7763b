import { fireEvent, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { CompanyPage, invalidRanges } from './CompanyPage';

const owner = agentUser({ role: 'reseller', department_ids: [] });
const config = {
  id: 'c', reseller_id: 'r', company_name: 'Loja', welcome_message: 'Oi', away_message: '', timezone: 'America/Sao_Paulo',
  business_hours: [{ weekday: 0, open: '08:00', close: '18:00' }], updated_at: '2025-01-01T00:00:00Z',
};

beforeEach(() => {
  stubWebSocket();
  signIn(owner);
});

describe('CompanyPage', () => {
  it('refuses a range that closes before it opens, and saves the whole config otherwise', async () => {
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/reseller-config' && method === 'GET') return { body: config };
      if (path === '/api/v1/reseller-config' && method === 'PATCH') return { body: { ...config, ...(body as object), updated_at: '2025-01-02T00:00:00Z' } };
      return undefined;
    });
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    const close = await screen.findByLabelText('Fecha');
    fireEvent.change(close, { target: { value: '07:00' } });
    expect(await screen.findByText('O fechamento deve ser depois da abertura')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Salvar' })).toBeDisabled();

    fireEvent.change(close, { target: { value: '17:30' } });
    fireEvent.change(screen.getByLabelText(/Nome da empresa/), { target: { value: 'Loja Nova' } });
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(calls.find((c) => c.method === 'PATCH')?.body).toMatchObject({
      company_name: 'Loja Nova',
      business_hours: [{ weekday: 0, open: '08:00', close: '17:30' }],
    });
  });

  it('shows the signature setting on by default and saves it turned off', async () => {
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/reseller-config' && method === 'GET') return { body: { ...config, signature_enabled: true } };
      if (path === '/api/v1/reseller-config' && method === 'PATCH') return { body: { ...config, ...(body as object), updated_at: '2025-01-02T00:00:00Z' } };
      return undefined;
    });
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    await screen.findByLabelText('Fecha');
    const toggle = screen.getByRole('switch', { name: /Assinar as mensagens com o nome do agente/ });
    expect(toggle).toBeChecked();
    await userEvent.click(toggle);
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(calls.find((c) => c.method === 'PATCH')?.body).toMatchObject({ signature_enabled: false });
  });

  it('invalidRanges flags only ranges whose close is not after open', () => {
    expect([...invalidRanges([{ weekday: 0, open: '08:00', close: '08:00' }, { weekday: 1, open: '08:00', close: '12:00' }])]).toEqual([0]);
  });
});
