import type { QueryClient } from '@tanstack/react-query';
import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { keys } from '../../realtime/cache';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { menuMessage, renderTemplate } from './automation';
import { CompanyPage, invalidRanges, nextRange, timezones } from './CompanyPage';

const owner = agentUser({ role: 'reseller', department_ids: [] });
const config = {
  id: 'c', reseller_id: 'r', company_name: 'Loja', welcome_message: 'Oi', away_message: '', timezone: 'America/Sao_Paulo',
  business_hours: [{ weekday: 0, open: '08:00', close: '18:00' }], updated_at: '2025-01-01T00:00:00Z',
  closing_message: '', closed_dates: ['2025-12-25'], csat_enabled: false, csat_window_hours: 24,
};

function serve(stored: object = config) {
  return mockApi(({ method, path, body }) => {
    if (path === '/api/v1/auth/me') return { body: owner };
    if (path === '/api/v1/reseller-config' && method === 'GET') return { body: stored };
    if (path === '/api/v1/reseller-config' && method === 'PATCH') return { body: { ...stored, ...(body as object), updated_at: '2025-01-02T00:00:00Z' } };
    return undefined;
  });
}

const patched = (calls: { method: string; body: unknown }[]) => calls.find((c) => c.method === 'PATCH')?.body;

/** Someone else saved (an event or a window focus reads the config again). React Query tells its
 * observers on a later tick (notifyManager): wait for that render too. */
const readAgain = (client: QueryClient) =>
  act(async () => {
    await client.invalidateQueries({ queryKey: keys.config });
    await new Promise((resolve) => setTimeout(resolve, 10));
  });

beforeEach(() => {
  stubWebSocket();
  signIn(owner);
});

describe('CompanyPage', () => {
  it('refuses an empty range, takes one into the next day, and saves only what changed', async () => {
    const calls = serve();
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    const close = await screen.findByLabelText('Segunda, faixa 1: Fecha');
    fireEvent.change(close, { target: { value: '08:00' } });
    expect(await screen.findByText('A faixa não pode abrir e fechar no mesmo horário')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Salvar' })).toBeDisabled();
    fireEvent.change(close, { target: { value: '02:00' } }); // a night shift: closes the next day
    await waitFor(() => expect(screen.queryByText('A faixa não pode abrir e fechar no mesmo horário')).not.toBeInTheDocument());
    expect(screen.getByRole('button', { name: 'Salvar' })).toBeEnabled();

    fireEvent.change(close, { target: { value: '17:30' } });
    fireEvent.change(screen.getByLabelText(/Nome da empresa/), { target: { value: 'Loja Nova' } });
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(patched(calls)).toEqual({
      company_name: 'Loja Nova',
      business_hours: [{ weekday: 0, open: '08:00', close: '17:30' }],
    });
  });

  it('gives a weekday several ranges and removes one; a day without ranges reads Fechado', async () => {
    const calls = serve();
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    await screen.findByLabelText('Segunda, faixa 1: Fecha');
    const saturday = screen.getAllByTestId('hours-day')[5];
    expect(saturday).toHaveTextContent('Fechado');
    await userEvent.click(screen.getByRole('button', { name: 'Adicionar horário (Sábado)' }));
    await userEvent.click(screen.getByRole('button', { name: 'Adicionar horário (Segunda)' }));
    expect(screen.getByLabelText('Segunda, faixa 2: Abre')).toHaveValue('19:00');
    fireEvent.change(screen.getByLabelText('Segunda, faixa 1: Fecha'), { target: { value: '12:00' } });
    fireEvent.change(screen.getByLabelText('Segunda, faixa 2: Abre'), { target: { value: '13:00' } });
    fireEvent.change(screen.getByLabelText('Segunda, faixa 2: Fecha'), { target: { value: '18:00' } });
    await userEvent.click(screen.getByRole('button', { name: 'Remover horário: Sábado, faixa 1' }));
    expect(within(screen.getAllByTestId('hours-day')[5]).getByText('Fechado')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(patched(calls)).toBeDefined());
    expect(patched(calls)).toMatchObject({
      business_hours: [
        { weekday: 0, open: '08:00', close: '12:00' },
        { weekday: 0, open: '13:00', close: '18:00' },
      ],
    });
  });

  it('previews each message with sample values for the variables, as the client reads it', async () => {
    serve();
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    const welcome = await screen.findByRole('textbox', { name: 'Mensagem de boas-vindas' });
    fireEvent.change(welcome, { target: { value: 'Olá {{cliente}}! Aqui é a {{ empresa }}. Protocolo {{protocolo}}. {{outra}}' } });
    expect(screen.getByLabelText('Prévia: Mensagem de boas-vindas')).toHaveTextContent('Olá Maria Silva! Aqui é a Loja. Protocolo 1234. {{outra}}');
    fireEvent.change(screen.getByLabelText(/Nome da empresa/), { target: { value: 'Loja Centro' } });
    expect(screen.getByLabelText('Prévia: Mensagem de boas-vindas')).toHaveTextContent('Aqui é a Loja Centro.');
    fireEvent.change(screen.getByRole('textbox', { name: 'Mensagem de encerramento' }), { target: { value: 'Obrigado, {{cliente}}!' } });
    expect(screen.getByLabelText('Prévia: Mensagem de encerramento')).toHaveTextContent('Obrigado, Maria Silva!');
    // An empty away message sends nothing, and says so.
    expect(screen.getByLabelText('Prévia: Mensagem fora do horário')).toHaveTextContent('Nada será enviado.');
    const help = screen.getByTestId('variables-help');
    for (const v of ['{{cliente}}', '{{empresa}}', '{{protocolo}}']) expect(help).toHaveTextContent(v);
  });

  it('adds and removes closed dates, and saves the closing message and the survey with its window', async () => {
    const calls = serve();
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    await screen.findByText('25/12/2025');
    fireEvent.change(screen.getByLabelText('Data'), { target: { value: '2026-01-01' } });
    await userEvent.click(screen.getByRole('button', { name: 'Adicionar data' }));
    fireEvent.change(screen.getByLabelText('Data'), { target: { value: '2025-11-20' } });
    await userEvent.click(screen.getByRole('button', { name: 'Adicionar data' }));
    expect(screen.getAllByTestId('closed-date').map((b) => b.textContent?.replace('✕', ''))).toEqual(['20/11/2025', '25/12/2025', '01/01/2026']);
    await userEvent.click(screen.getByRole('button', { name: 'Remover 25/12/2025' }));

    const window = screen.getByLabelText('Prazo para responder (horas)');
    expect(window).toBeDisabled();
    await userEvent.click(screen.getByRole('switch', { name: /Pedir uma nota de 1 a 5/ }));
    expect(window).toBeEnabled();
    await userEvent.clear(window);
    await userEvent.type(window, '48');
    // The survey question: left empty, the preview shows the built-in one the backend sends.
    expect(screen.getByLabelText('Prévia: Pergunta da pesquisa')).toHaveTextContent('Como você avalia este atendimento?');
    fireEvent.change(screen.getByRole('textbox', { name: 'Pergunta da pesquisa' }), { target: { value: 'De 1 a 5, {{cliente}}?' } });
    expect(screen.getByLabelText('Prévia: Pergunta da pesquisa')).toHaveTextContent('De 1 a 5, Maria Silva?');
    fireEvent.change(screen.getByRole('textbox', { name: 'Mensagem de encerramento' }), { target: { value: 'Até logo!' } });
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(patched(calls)).toBeDefined());
    expect(patched(calls)).toMatchObject({
      closed_dates: ['2025-11-20', '2026-01-01'],
      csat_enabled: true,
      csat_window_hours: 48,
      csat_message: 'De 1 a 5, {{cliente}}?',
      closing_message: 'Até logo!',
    });
  });

  it('says that without any range the company is open all day, and that one range closes the other days', async () => {
    serve({ ...config, business_hours: [] });
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    expect(await screen.findByTestId('no-hours')).toHaveTextContent('24 horas');
    expect(screen.getAllByTestId('hours-day').map((d) => d.textContent)).toEqual(expect.arrayContaining([expect.stringContaining('Aberto o dia todo')]));
    await userEvent.click(screen.getByRole('button', { name: 'Adicionar horário (Segunda)' }));
    expect(screen.queryByTestId('no-hours')).not.toBeInTheDocument();
    expect(screen.getAllByTestId('hours-day')[1]).toHaveTextContent('Fechado');
  });

  it('keeps unsaved edits when the stored config is read again, and a form without edits takes the new values', async () => {
    let stored: object = config;
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/reseller-config' && method === 'GET') return { body: stored };
      if (path === '/api/v1/reseller-config' && method === 'PATCH') return { body: (stored = { ...stored, ...(body as object), updated_at: '2025-01-04T00:00:00Z' }) };
      return undefined;
    });
    const { client } = renderApp(<CompanyPage />, { path: '/', route: '/' });
    const reads = () => calls.filter((c) => c.method === 'GET' && c.path === '/api/v1/reseller-config').length;
    const welcome = await screen.findByRole('textbox', { name: 'Mensagem de boas-vindas' });
    fireEvent.change(welcome, { target: { value: 'Olá, em que posso ajudar?' } });

    // Someone else saves (an event or a window focus reads the config again).
    stored = { ...config, company_name: 'Loja Matriz', updated_at: '2025-01-02T00:00:00Z' };
    await readAgain(client);
    expect(reads()).toBe(2);
    expect(screen.getByRole('textbox', { name: 'Mensagem de boas-vindas' })).toHaveValue('Olá, em que posso ajudar?');
    expect(screen.getByLabelText(/Nome da empresa/)).toHaveValue('Loja');

    // Save sends only what this form changed: the name it never touched is not sent back stale,
    // so the other user's name survives, and the form, seeded again from the save, shows it.
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(patched(calls)).toEqual({ welcome_message: 'Olá, em que posso ajudar?' }));
    expect(await screen.findByText('Alterações salvas')).toBeInTheDocument();
    expect(stored).toMatchObject({ company_name: 'Loja Matriz', welcome_message: 'Olá, em que posso ajudar?' });
    await waitFor(() => expect(screen.getByLabelText(/Nome da empresa/)).toHaveValue('Loja Matriz'));
    // Saved, the form holds no edits again and follows the next change made elsewhere.
    stored = { ...stored, away_message: 'Voltamos às 8h', updated_at: '2025-01-05T00:00:00Z' };
    await readAgain(client);
    await waitFor(() => expect(screen.getByRole('textbox', { name: 'Mensagem fora do horário' })).toHaveValue('Voltamos às 8h'));
    expect(screen.getByRole('textbox', { name: 'Mensagem de boas-vindas' })).toHaveValue('Olá, em que posso ajudar?');
  });

  it('is clean again after a save whose text the backend trimmed, and follows later changes', async () => {
    let stored: object = config;
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/reseller-config' && method === 'GET') return { body: stored };
      if (path === '/api/v1/reseller-config' && method === 'PATCH') {
        // As the backend does: text fields are stored trimmed, so the saved config is not what was sent.
        const trimmed = Object.fromEntries(Object.entries(body as object).map(([k, v]) => [k, typeof v === 'string' ? v.trim() : v]));
        return { body: (stored = { ...stored, ...trimmed, updated_at: '2025-01-03T00:00:00Z' }) };
      }
      return undefined;
    });
    const { client } = renderApp(<CompanyPage />, { path: '/', route: '/' });
    fireEvent.change(await screen.findByRole('textbox', { name: 'Mensagem de boas-vindas' }), { target: { value: 'Olá! ' } });
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(patched(calls)).toMatchObject({ welcome_message: 'Olá! ' }));
    expect(await screen.findByText('Alterações salvas')).toBeInTheDocument();

    stored = { ...stored, away_message: 'Voltamos às 8h', updated_at: '2025-01-05T00:00:00Z' };
    await readAgain(client);
    await waitFor(() => expect(screen.getByRole('textbox', { name: 'Mensagem fora do horário' })).toHaveValue('Voltamos às 8h'));
    expect(screen.getByRole('textbox', { name: 'Mensagem de boas-vindas' })).toHaveValue('Olá!');
  });

  it('keeps what is typed while a save is under way, unsaved, and seeds only the fields left as sent', async () => {
    let stored: object = config;
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: owner };
      if (path === '/api/v1/reseller-config' && method === 'GET') return { body: stored };
      if (path === '/api/v1/reseller-config' && method === 'PATCH') {
        const trimmed = Object.fromEntries(Object.entries(body as object).map(([k, v]) => [k, typeof v === 'string' ? v.trim() : v]));
        return { body: (stored = { ...stored, ...trimmed, updated_at: '2025-01-03T00:00:00Z' }) };
      }
      return undefined;
    });
    // The save's answer is held back, as a slow server would.
    const answered = globalThis.fetch;
    let open = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    vi.stubGlobal('fetch', async (input: RequestInfo | URL, init?: RequestInit) => {
      const answer = answered(input, init);
      if ((input instanceof Request ? input.method : init?.method) === 'PATCH') await gate;
      return answer;
    });
    const { client } = renderApp(<CompanyPage />, { path: '/', route: '/' });
    const field = (name: string) => screen.getByRole('textbox', { name });
    fireEvent.change(await screen.findByLabelText(/Nome da empresa/), { target: { value: 'Loja Nova ' } });
    fireEvent.change(field('Mensagem de boas-vindas'), { target: { value: 'Olá! ' } });
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(patched(calls)).toEqual({ company_name: 'Loja Nova ', welcome_message: 'Olá! ' }));

    // Typed while the save is under way: a field it sent, and one it did not.
    fireEvent.change(field('Mensagem de boas-vindas'), { target: { value: 'Olá! Tudo bem?' } });
    fireEvent.change(field('Mensagem fora do horário'), { target: { value: 'Volto já' } });
    open();
    expect(await screen.findByText('Alterações salvas')).toBeInTheDocument();
    // Left as sent: seeded from what was stored (trimmed).
    await waitFor(() => expect(screen.getByLabelText(/Nome da empresa/)).toHaveValue('Loja Nova'));
    expect(field('Mensagem de boas-vindas')).toHaveValue('Olá! Tudo bem?');
    expect(field('Mensagem fora do horário')).toHaveValue('Volto já');

    // Still unsaved edits: a config read again does not replace them, and the next Save sends them.
    stored = { ...stored, closing_message: 'Até mais', updated_at: '2025-01-05T00:00:00Z' };
    await readAgain(client);
    expect(field('Mensagem de boas-vindas')).toHaveValue('Olá! Tudo bem?');
    expect(field('Mensagem de encerramento')).toHaveValue('');
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.filter((c) => c.method === 'PATCH').map((c) => c.body)).toHaveLength(2));
    expect(calls.filter((c) => c.method === 'PATCH')[1].body).toEqual({ welcome_message: 'Olá! Tudo bem?', away_message: 'Volto já' });
  });

  it('offers every IANA zone the browser knows, keeping a stored one first', () => {
    const zones = timezones('America/Sao_Paulo');
    expect(zones[0]).toBe('America/Sao_Paulo');
    expect(zones).toContain('Europe/Lisbon');
    expect(new Set(zones).size).toBe(zones.length);
  });

  it('shows the signature setting on by default and saves it turned off', async () => {
    const calls = serve({ ...config, signature_enabled: true });
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    await screen.findByLabelText('Segunda, faixa 1: Fecha');
    const toggle = screen.getByRole('switch', { name: /Assinar as mensagens com o nome do agente/ });
    expect(toggle).toBeChecked();
    await userEvent.click(toggle);
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(patched(calls)).toMatchObject({ signature_enabled: false });
  });

  it('shows read receipts on by default and saves them turned off', async () => {
    const calls = serve({ ...config, read_receipts: true });
    renderApp(<CompanyPage />, { path: '/', route: '/' });
    await screen.findByLabelText('Segunda, faixa 1: Fecha');
    const toggle = screen.getByRole('switch', { name: /Confirmação de leitura para o cliente/ });
    expect(toggle).toBeChecked();
    await userEvent.click(toggle);
    await userEvent.click(screen.getByRole('button', { name: 'Salvar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(patched(calls)).toEqual({ read_receipts: false });
  });

  it('invalidRanges flags only empty ranges: a close before the open runs into the next day', () => {
    const night = { weekday: 2, open: '22:00', close: '02:00' };
    expect([...invalidRanges([{ weekday: 0, open: '08:00', close: '08:00' }, { weekday: 1, open: '08:00', close: '12:00' }, night])]).toEqual([0]);
  });

  it('nextRange starts an empty day at 08:00 and a busy one an hour after its last close', () => {
    expect(nextRange([], 3)).toEqual({ weekday: 3, open: '08:00', close: '18:00' });
    expect(nextRange([{ weekday: 3, open: '08:00', close: '12:00' }], 3)).toEqual({ weekday: 3, open: '13:00', close: '18:00' });
    expect(nextRange([{ weekday: 3, open: '08:00', close: '22:30' }], 3)).toEqual({ weekday: 3, open: '08:00', close: '18:00' });
  });

  it('renderTemplate leaves unknown variables as written; menuMessage numbers the departments in order', () => {
    expect(renderTemplate('{{cliente}}/{{x}}/{{empresa}}', { cliente: 'A', empresa: 'B', protocolo: '1' })).toBe('A/{{x}}/B');
    expect(menuMessage('Escolha:', ['Suporte', 'Financeiro'])).toBe('Escolha:\n1 - Suporte\n2 - Financeiro');
    // Left empty, the backend's built-in line heads the list (backend/automation/texts.py).
    expect(menuMessage('  ', ['Suporte'])).toBe('Para agilizar seu atendimento, responda com o número do departamento:\n1 - Suporte');
  });
});
