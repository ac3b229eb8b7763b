// Live behaviour through the real websocket: two agents in two browser contexts, a client writing
// over WhatsApp (the fake Evolution posts the real webhook), and the ticket's whole life.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, openPage, phone, screenshot, unique, uniquePhone, type TenantSetup, type Watched } from './support';

let browser: Browser;
let tenant: TenantSetup;
let ana: Watched & { context: import('playwright-core').BrowserContext };
let bruno: Watched & { context: import('playwright-core').BrowserContext };

const row = (page: Page, text: string) => page.getByTestId('ticket-row').filter({ hasText: text });
const count = (page: Page, status: string) => page.getByTestId(`count-${status}`);
const live = (page: Page) => page.getByText('Ao vivo').waitFor();

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(2);
  ana = await openPage(browser);
  bruno = await openPage(browser);
  await login(ana.page, tenant.agents[0].email, tenant.agents[0].password);
  await login(bruno.page, tenant.agents[1].email, tenant.agents[1].password);
  await Promise.all([live(ana.page), live(bruno.page)]);
});

afterAll(async () => {
  await browser?.close();
});

describe('two agents, live', () => {
  it('a new ticket appears for both; when one assumes it, it leaves the other\'s Espera live', async () => {
    const name = unique('Cliente Disputado ');
    // The client writes in on WhatsApp, so the ticket can be answered (a ticket without a
    // connection refuses replies: nothing would reach the client).
    const instance = unique('disputa-');
    await call('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
      name: 'Loja Disputa',
      provider: 'evolution',
      instance_name: instance,
      default_department_id: tenant.department.id,
    });
    await phone('state', { instance, state: 'open' });
    await phone('inbound', { instance, phone: uniquePhone(), text: 'Meu pedido não chegou', push_name: name });
    await Promise.all([row(ana.page, name).waitFor(), row(bruno.page, name).waitFor()]);
    await expect.poll(() => count(bruno.page, 'espera').textContent()).toBe('1');

    await row(ana.page, name).click();
    const assumed = ana.page.waitForResponse((r) => r.url().endsWith('/assume') && r.status() === 200);
    await ana.page.getByRole('button', { name: 'Assumir' }).click();
    await assumed;
    // Ticket lists never poll: only the websocket can take the row away without a reload. How
    // fast is measured in bench/realtime_bench.py, not asserted here (a loaded CI machine).
    await row(bruno.page, name).waitFor({ state: 'detached' });
    await expect.poll(() => count(bruno.page, 'espera').textContent()).toBe('0');

    // Ana now holds it: it sits in her Atendendo tab and she can answer.
    await ana.page.getByTestId('tab-atendendo').click();
    await row(ana.page, name).waitFor();
    await ana.page.getByRole('textbox', { name: 'Mensagem' }).fill('Olá! Vou verificar seu pedido.');
    await ana.page.keyboard.press('Control+Enter');
    await ana.page.getByTestId('message').filter({ hasText: 'Vou verificar seu pedido' }).waitFor();
    await screenshot(ana.page, 'agent-ticket');
    expectNoConsoleErrors(ana);
    expectNoConsoleErrors(bruno);
  });
});

describe('WhatsApp, live', () => {
  it('a client message arriving through the webhook appears live, in the list and in the open thread', async () => {
    const instance = unique('loja-');
    const connection = await call<{ id: string }>('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
      name: 'Loja Centro',
      provider: 'evolution',
      instance_name: instance,
      default_department_id: tenant.department.id,
    });
    expect(connection.id).toBeTruthy();
    await phone('state', { instance, state: 'open' });

    const number = uniquePhone();
    const pushName = unique('Maria WhatsApp ');
    const first = await phone<{ status_code: number }>('inbound', { instance, phone: number, text: 'Oi, vocês abrem sábado?', push_name: pushName });
    expect(first.status_code).toBe(200);
    await ana.page.getByTestId('tab-espera').click();
    await row(ana.page, pushName).waitFor();
    await row(bruno.page, pushName).waitFor();

    await row(ana.page, pushName).click();
    await ana.page.getByRole('button', { name: 'Assumir' }).click();
    await ana.page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await ana.page.getByTestId('message').filter({ hasText: 'vocês abrem sábado' }).waitFor();

    await phone('inbound', { instance, phone: number, text: 'E no domingo?', push_name: pushName });
    await ana.page.getByTestId('message').filter({ hasText: 'E no domingo?' }).waitFor();
    await phone('inbound', { instance, phone: number, text: 'Segue a foto', push_name: pushName, image: true });
    // An attachment shows at once, before its bytes are in (media.e2e.ts follows them).
    await ana.page.getByTestId('message').filter({ hasText: 'Segue a foto' }).waitFor();

    await ana.page.getByRole('textbox', { name: 'Mensagem' }).fill('Abrimos sábado das 8h às 12h.');
    await ana.page.getByRole('button', { name: 'Enviar' }).click();
    const reply = ana.page.getByTestId('message').filter({ hasText: 'Abrimos sábado' });
    await reply.waitFor();
    await screenshot(ana.page, 'agent-inbox-whatsapp');
    expectNoConsoleErrors(ana);
  });

  it('the connection screen shows the QR code and turns Conectado live when the phone scans it', async () => {
    const owner = await openPage(browser);
    await login(owner.page, tenant.owner.email, tenant.owner.password);
    await owner.page.getByRole('link', { name: 'WhatsApp' }).click();
    await owner.page.getByRole('button', { name: 'Nova conexão' }).click();
    const instance = unique('filial-');
    const dialog = owner.page.getByRole('dialog');
    await dialog.getByLabel('Nome').fill('Filial Norte');
    await dialog.getByLabel(/Instância/).fill(instance);
    await dialog.getByRole('textbox', { name: 'Departamento padrão' }).click();
    await owner.page.getByRole('option', { name: tenant.department.name }).click();
    await dialog.getByRole('button', { name: 'Criar' }).click();
    await owner.page.getByRole('img', { name: 'QR Code' }).waitFor();
    await screenshot(owner.page, 'reseller-whatsapp-qr');
    await phone('state', { instance, state: 'open' });
    // Live: the QR code's own refetch is 15 s away (api/queries.ts), the page's wait bound 10 s.
    await owner.page.getByText('Conectado! Você já pode receber mensagens.').waitFor();
    await owner.page.keyboard.press('Escape');
    await owner.page.getByTestId('connection-row').filter({ hasText: 'Filial Norte' }).getByText('Conectado').waitFor();
    await screenshot(owner.page, 'reseller-whatsapp');
    expectNoConsoleErrors(owner);
    await owner.context.close();
  });
});

describe('finalize, live', () => {
  it('Finalizar asks for confirmation and moves the ticket to Finalizado for everyone watching', async () => {
    const name = unique('Cliente Final ');
    await makeTicket(tenant, name, 'Pode encerrar, obrigado');
    await ana.page.getByTestId('tab-espera').click();
    await row(ana.page, name).click();
    await ana.page.getByRole('button', { name: 'Assumir' }).click();
    await ana.page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    const before = Number(await count(ana.page, 'finalizado').textContent());

    await ana.page.getByRole('button', { name: 'Finalizar' }).click();
    await ana.page.getByRole('dialog').getByText('Finalizar este atendimento?').waitFor();
    await ana.page.getByTestId('confirm-finalize').click();
    await ana.page.getByTestId('ticket-status').filter({ hasText: 'Finalizado' }).waitFor();
    await expect.poll(() => count(ana.page, 'finalizado').textContent()).toBe(String(before + 1));
    await ana.page.getByTestId('tab-finalizado').click();
    await row(ana.page, name).waitFor();
    await ana.page.getByTestId('composer-hint').filter({ hasText: 'somente leitura' }).waitFor();

    const stored = await call<{ items: { client_name: string; status: string }[] }>(
      'GET', `/api/v1/tickets?status=finalizado&q=${encodeURIComponent(name)}`, tenant.owner.token,
    );
    expect(stored.items.map((t) => t.status)).toEqual(['finalizado']);
    await screenshot(ana.page, 'agent-finalizado');
    expectNoConsoleErrors(ana);
  });

  it('searching by client name filters the list', async () => {
    const name = unique('Zacarias Busca ');
    await makeTicket(tenant, name);
    await ana.page.getByTestId('tab-espera').click();
    await ana.page.getByRole('searchbox', { name: 'Buscar cliente' }).fill(name.slice(0, 14).toLowerCase());
    await row(ana.page, name).waitFor();
    await expect.poll(() => ana.page.getByTestId('ticket-row').count()).toBe(1);
    await ana.page.getByRole('searchbox', { name: 'Buscar cliente' }).fill('');
    expectNoConsoleErrors(ana);
  });
});
