// Issue 16 end to end: the company's automatic messages through the real webhook, the real outbox
// and the fake Evolution as its own process. A new client is greeted and offered the department
// menu; answering "2" puts the ticket in Financeiro's Espera, live in a Financeiro agent's inbox.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { call, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, screenshot, token, unique, uniquePhone, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(0);
});

afterAll(async () => {
  await browser?.close();
});

/** What the fake phone received for one number, in order. */
async function receivedBy(number: string): Promise<string[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  const sent = (await response.json()) as { number: string; text: string }[];
  return sent.filter((s) => s.number === number).map((s) => s.text);
}

const row = (page: Page, text: string) => page.getByTestId('ticket-row').filter({ hasText: text });
// The counts refetch at most once a second after tickets move (realtime/cache.ts COUNTS_REFRESH_MS).
const espera = (page: Page) => page.getByTestId('count-espera').textContent();

describe('greeting and department menu', () => {
  it("a new client is greeted, chooses '2' and lands in Financeiro's Espera", async () => {
    const owner = tenant.owner.token;
    const company = unique('Loja Automática ');
    await call('PATCH', '/api/v1/reseller-config', owner, {
      company_name: company,
      welcome_message: 'Olá {{cliente}}! Bem-vindo à {{empresa}}. Seu protocolo é {{protocolo}}.',
    });
    const suporte = await call<{ id: string }>('POST', '/api/v1/departments', owner, { name: 'Suporte' });
    const financeiro = await call<{ id: string }>('POST', '/api/v1/departments', owner, { name: 'Financeiro' });
    const password = 'senha-forte-123';
    const fin = { email: `${unique('financeiro')}@e2e.iaze`, name: unique('Agente Fábio ') };
    await call('POST', '/api/v1/users', owner, { name: fin.name, email: fin.email, password, role: 'agent', department_ids: [financeiro.id] });
    const sup = { email: `${unique('suporte')}@e2e.iaze`, name: unique('Agente Sara ') };
    await call('POST', '/api/v1/users', owner, { name: sup.name, email: sup.email, password, role: 'agent', department_ids: [suporte.id] });

    const instance = unique('menu-');
    const connection = await call<{ id: string }>('POST', '/api/v1/whatsapp-connections', owner, {
      name: 'Loja Menu',
      provider: 'evolution',
      instance_name: instance,
      default_department_id: suporte.id,
    });
    const configured = await call<{ menu_enabled: boolean; menu_department_ids: string[] }>(
      'PATCH', `/api/v1/whatsapp-connections/${connection.id}`, owner,
      { menu_enabled: true, menu_department_ids: [suporte.id, financeiro.id] },
    );
    expect(configured).toMatchObject({ menu_enabled: true, menu_department_ids: [suporte.id, financeiro.id] });
    await phone('state', { instance, state: 'open' });

    const fabio = await openPage(browser);
    const sara = await openPage(browser);
    const dona = await openPage(browser);
    await login(fabio.page, fin.email, password);
    await login(sara.page, sup.email, password);
    await login(dona.page, tenant.owner.email, tenant.owner.password);
    await Promise.all([fabio, sara, dona].map((w) => w.page.getByText('Ao vivo').waitFor()));

    const number = uniquePhone();
    const client = unique('Maria Menu ');
    await phone('inbound', { instance, phone: number, text: 'Oi, quero a segunda via do boleto', push_name: client });

    // The greeting, then the menu: the client's first answers, through the outbox.
    await expect.poll(() => receivedBy(number), { timeout: 20_000 }).toHaveLength(2);
    const [greeting, menu] = await receivedBy(number);
    expect(greeting).toMatch(new RegExp(`^Olá ${client}! Bem-vindo à ${company}\\. Seu protocolo é \\d+\\.$`));
    expect(menu).toBe('Para agilizar seu atendimento, responda com o número do departamento:\n1 - Suporte\n2 - Financeiro');

    // While the menu is pending the ticket waits in the connection's default department (Suporte),
    // marked; the owner sees the mark, Financeiro does not see the ticket yet.
    await row(dona.page, client).getByTestId('menu-pending').waitFor();
    await row(sara.page, client).getByTestId('menu-pending').waitFor();
    expect(await row(fabio.page, client).count()).toBe(0);
    await expect.poll(() => espera(dona.page), { timeout: 10_000 }).toBe('1');
    await expect.poll(() => espera(sara.page), { timeout: 10_000 }).toBe('1');
    expect(await espera(fabio.page)).toBe('0');
    await screenshot(dona.page, 'automation-menu-pending');

    await phone('inbound', { instance, phone: number, text: '2', push_name: client });

    // Live: into Financeiro's Espera, out of Suporte's, no longer marked.
    await row(fabio.page, client).waitFor({ timeout: 10_000 });
    await row(sara.page, client).waitFor({ state: 'detached', timeout: 10_000 });
    await row(dona.page, client).getByTestId('menu-pending').waitFor({ state: 'detached' });
    await expect.poll(() => espera(fabio.page), { timeout: 10_000 }).toBe('1');
    await expect.poll(() => espera(sara.page), { timeout: 10_000 }).toBe('0');
    expect(await row(fabio.page, client).getByTestId('menu-pending').count()).toBe(0);

    await row(fabio.page, client).click();
    const thread = fabio.page.getByTestId('thread');
    await thread.getByTestId('message').filter({ hasText: 'segunda via do boleto' }).waitFor();
    const automatic = thread.locator('[data-automatic="true"]');
    await expect.poll(() => automatic.count()).toBe(2);
    await expect.poll(() => automatic.getByTestId('automatic').allTextContents()).toEqual(['automática', 'automática']);
    await automatic.filter({ hasText: `Bem-vindo à ${company}` }).waitFor();
    await automatic.filter({ hasText: '2 - Financeiro' }).waitFor();
    await thread.getByTestId('timeline-event').filter({ hasText: 'escolheu Financeiro no menu' }).waitFor();
    await screenshot(fabio.page, 'automation-financeiro-espera');

    // Stored as the screens say: in Financeiro, in espera, the menu over.
    const fabioToken = await token(fin.email, password);
    const listed = await call<{ items: { client_name: string; department_id: string; status: string; menu_pending: boolean }[] }>(
      'GET', `/api/v1/tickets?status=espera&q=${encodeURIComponent(client)}`, fabioToken,
    );
    expect(listed.items).toEqual([expect.objectContaining({ department_id: financeiro.id, status: 'espera', menu_pending: false })]);
    // Sent once each: nothing more went to the client for the answer "2".
    expect(await receivedBy(number)).toHaveLength(2);

    for (const w of [fabio, sara, dona]) {
      expectNoConsoleErrors(w);
      await w.context.close();
    }
  });

  it('the owner sets the greeting, the closed dates, the survey and the menu on the pages; the client gets what the previews showed', async () => {
    const { owner } = await makeTenant(0);
    const vendas = await call<{ id: string }>('POST', '/api/v1/departments', owner.token, { name: 'Vendas' });
    for (const name of ['Financeiro', 'Suporte']) await call('POST', '/api/v1/departments', owner.token, { name });
    const instance = unique('paginas-');
    await call('POST', '/api/v1/whatsapp-connections', owner.token, {
      name: 'Loja Páginas', provider: 'evolution', instance_name: instance, default_department_id: vendas.id,
    });
    await phone('state', { instance, state: 'open' });
    const w = await openPage(browser);
    const { page } = w;
    await login(page, owner.email, owner.password);

    await page.getByRole('link', { name: 'Empresa' }).click();
    const company = unique('Loja Página ');
    await page.getByLabel(/Nome da empresa/).fill(company);
    await page.getByRole('textbox', { name: 'Mensagem de boas-vindas' }).fill('Oi {{cliente}}, aqui é a {{empresa}} (#{{protocolo}}).');
    await expect.poll(() => page.getByLabel('Prévia: Mensagem de boas-vindas').textContent()).toBe(`Oi Maria Silva, aqui é a ${company} (#1234).`);
    await screenshot(page, 'automation-empresa-messages');
    await page.getByLabel('Data').fill('2031-12-25');
    await page.getByRole('button', { name: 'Adicionar data' }).click();
    await page.getByRole('switch', { name: /Pedir uma nota de 1 a 5/ }).check({ force: true });
    await page.getByLabel('Prazo para responder (horas)').fill('48');
    await page.getByRole('button', { name: 'Salvar' }).click();
    await page.getByText('Alterações salvas').waitFor();
    await screenshot(page, 'automation-empresa');
    const config = await call<Record<string, unknown>>('GET', '/api/v1/reseller-config', owner.token);
    expect(config).toMatchObject({
      company_name: company,
      welcome_message: 'Oi {{cliente}}, aqui é a {{empresa}} (#{{protocolo}}).',
      closed_dates: ['2031-12-25'],
      csat_enabled: true,
      csat_window_hours: 48,
    });

    await page.getByRole('link', { name: 'WhatsApp' }).click();
    await page.getByRole('button', { name: 'Menu de departamentos · Loja Páginas' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('switch', { name: /Perguntar o departamento/ }).check({ force: true });
    for (const name of ['Financeiro', 'Suporte']) {
      await dialog.getByRole('textbox', { name: 'Adicionar departamento ao menu' }).click();
      await page.getByRole('option', { name, exact: true }).click();
      await dialog.getByRole('button', { name: 'Adicionar', exact: true }).click();
    }
    await dialog.getByRole('textbox', { name: 'Texto do menu' }).fill('Com quem quer falar?');
    await expect.poll(() => dialog.getByTestId('menu-preview').textContent()).toBe('Com quem quer falar?\n1 - Financeiro\n2 - Suporte');
    await screenshot(page, 'automation-menu');
    await dialog.getByRole('button', { name: 'Salvar' }).click();
    await page.getByTestId('connection-row').filter({ hasText: 'Loja Páginas' }).getByText('Menu ligado (2)').waitFor();

    const number = uniquePhone();
    await phone('inbound', { instance, phone: number, text: 'Bom dia', push_name: 'Joana Página' });
    await expect.poll(() => receivedBy(number), { timeout: 20_000 }).toHaveLength(2);
    const [greeting, menu] = await receivedBy(number);
    expect(greeting).toMatch(new RegExp(`^Oi Joana Página, aqui é a ${company} \\(#\\d+\\)\\.$`));
    expect(menu).toBe('Com quem quer falar?\n1 - Financeiro\n2 - Suporte');
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});

/** A fresh company with one agent and an open WhatsApp connection into its department. */
async function companyWithConnection(config: Record<string, unknown>) {
  const company = await makeTenant(1);
  await call('PATCH', '/api/v1/reseller-config', company.owner.token, config);
  const instance = unique('auto-');
  await call('POST', '/api/v1/whatsapp-connections', company.owner.token, {
    name: 'Loja', provider: 'evolution', instance_name: instance, default_department_id: company.department.id,
  });
  await phone('state', { instance, state: 'open' });
  return { company, instance };
}

/** A calendar day in São Paulo, `shift` days from today, as the backend stores closed dates. */
function spDay(shift: number): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'America/Sao_Paulo' }).format(new Date(Date.now() + shift * 86_400_000));
}

describe('closed dates, closing message and rating', () => {
  it('on a closed date the client gets the away message and the ticket is marked out of hours in the inbox', async () => {
    const { company, instance } = await companyWithConnection({
      timezone: 'America/Sao_Paulo',
      closed_dates: [spDay(-1), spDay(0), spDay(1)],
      away_message: 'Estamos fechados hoje, {{cliente}}. Responderemos no próximo dia útil.',
    });
    const number = uniquePhone();
    const client = unique('Rita Feriado ');
    await phone('inbound', { instance, phone: number, text: 'Vocês abrem hoje?', push_name: client });
    await expect.poll(() => receivedBy(number), { timeout: 20_000 }).toEqual([`Estamos fechados hoje, ${client}. Responderemos no próximo dia útil.`]);

    const w = await openPage(browser);
    await login(w.page, company.agents[0].email, company.agents[0].password);
    await row(w.page, client).getByTestId('out-of-hours').filter({ hasText: 'Fora do horário' }).waitFor();
    await row(w.page, client).click();
    await w.page.getByTestId('thread').locator('[data-automatic="true"]').filter({ hasText: 'Estamos fechados hoje' }).getByTestId('automatic').waitFor();
    await screenshot(w.page, 'automation-out-of-hours');
    expectNoConsoleErrors(w);
    await w.context.close();
  });

  it('Finalizar sends the closing message and the survey; the client\'s "5" shows as the rating of the finalized ticket', async () => {
    const { company, instance } = await companyWithConnection({
      closing_message: 'Obrigado pelo contato, {{cliente}}!',
      csat_enabled: true,
      csat_window_hours: 24,
    });
    const agent = company.agents[0];
    const number = uniquePhone();
    const client = unique('Paulo Nota ');
    await phone('inbound', { instance, phone: number, text: 'Preciso de ajuda', push_name: client });
    let ticketId = '';
    await expect.poll(async () => {
      const page = await call<{ items: { id: string }[] }>('GET', `/api/v1/tickets?status=espera&q=${encodeURIComponent(client)}`, agent.token);
      ticketId = page.items[0]?.id ?? '';
      return ticketId;
    }).not.toBe('');
    await call('POST', `/api/v1/tickets/${ticketId}/assume`, agent.token);
    await call('POST', `/api/v1/tickets/${ticketId}/finalize`, agent.token);
    await expect.poll(() => receivedBy(number), { timeout: 20_000 }).toEqual([
      `Obrigado pelo contato, ${client}!`,
      'Como você avalia este atendimento? Responda com uma nota de 1 (ruim) a 5 (ótimo).',
    ]);

    const w = await openPage(browser);
    await login(w.page, agent.email, agent.password);
    await w.page.goto(`${inject('appUrl')}/atendimento/${ticketId}`);
    await w.page.getByTestId('ticket-status').filter({ hasText: 'Finalizado' }).waitFor();
    // Received by the phone above; stored as sent once the provider's answer is recorded (a digit
    // before that rates nothing: backend/automation take_rating).
    await expect.poll(async () => {
      const thread = await call<{ items: { automatic_purpose?: string | null; status: string }[] }>('GET', `/api/v1/tickets/${ticketId}/messages`, agent.token);
      return thread.items.find((m) => m.automatic_purpose === 'survey')?.status;
    }, { timeout: 20_000 }).toMatch(/^(sent|delivered|read)$/);
    await phone('inbound', { instance, phone: number, text: '5', push_name: client });
    // Live: the rating lands on the open finalized ticket; no new ticket opens for the digit.
    await w.page.getByTestId('ticket-rating').filter({ hasText: '5 de 5' }).waitFor({ timeout: 10_000 });
    await w.page.getByTestId('timeline-event').filter({ hasText: 'avaliou o atendimento: 5 de 5' }).waitFor();
    await expect.poll(() => w.page.getByTestId('thread').locator('[data-automatic="true"]').count()).toBe(2);
    const open = await call<{ items: unknown[] }>('GET', `/api/v1/tickets?status=espera&q=${encodeURIComponent(client)}`, agent.token);
    expect(open.items).toEqual([]);
    await screenshot(w.page, 'automation-rating');
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});
