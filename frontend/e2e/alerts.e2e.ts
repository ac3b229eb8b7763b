// Alerts and unread counts (issue 17 items 1-2) through the real websocket: a client writes over
// WhatsApp (the fake Evolution posts the real webhook) while the agent looks at another ticket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, openPage, phone, raisedOn, recordNotifications, screenshot, unique, uniquePhone, type TenantSetup, type Watched } from './support';

let browser: Browser;
let tenant: TenantSetup;
let ana: Watched & { context: BrowserContext };

const BASE_TITLE = 'IAZE Atendimento';
const row = (page: Page, text: string) => page.getByTestId('ticket-row').filter({ hasText: text });
const raised = raisedOn;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
  ana = await openPage(browser);
  await recordNotifications(ana);
  await login(ana.page, tenant.agents[0].email, tenant.agents[0].password);
  await ana.page.getByText('Ao vivo').waitFor();
});

afterAll(async () => {
  await browser?.close();
});

describe('alerts and unread', () => {
  it('a notification and an unread badge when a message arrives in another ticket', async () => {
    const { page } = ana;
    const instance = unique('alertas-');
    await call('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
      name: 'Loja Alertas',
      provider: 'evolution',
      instance_name: instance,
      default_department_id: tenant.department.id,
    });
    await phone('state', { instance, state: 'open' });
    const other = await makeTicket(tenant, unique('Outro Cliente '), 'Tenho outra dúvida');

    // Never asked on load: the agent turns alerts on in Meu perfil.
    const asked = () => page.evaluate(() => (window as unknown as { __asked: number }).__asked);
    expect(await asked()).toBe(0);
    await page.getByRole('link', { name: 'Meu perfil' }).click();
    await page.getByRole('switch', { name: /Alertas de novos atendimentos/ }).check();
    await expect.poll(asked).toBe(1);
    await page.getByRole('link', { name: 'Atendimento' }).click();
    // The ticket created meanwhile waits in the queue too: counted in the title until opened.
    await expect.poll(() => page.title()).toBe(`(1) ${BASE_TITLE}`);
    await row(page, other.client_name).click();
    await page.getByTestId('message').filter({ hasText: 'Tenho outra dúvida' }).waitFor();
    await expect.poll(() => page.title()).toBe(BASE_TITLE);

    // A new client on WhatsApp: a new espera ticket in Ana's department.
    const number = uniquePhone();
    const pushName = unique('Joana Zap ');
    await phone('inbound', { instance, phone: number, text: 'Oi, meu boleto venceu', push_name: pushName });
    await expect.poll(() => raised(page)).toContainEqual({ title: `Novo atendimento: ${pushName}`, body: expect.any(String) });
    await expect.poll(() => page.title()).toBe(`(1) ${BASE_TITLE}`);
    await row(page, pushName).getByTestId('unread-badge').filter({ hasText: '1' }).waitFor();

    // Ana opens and assumes it: its alert and its unread badge clear.
    await row(page, pushName).click();
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await expect.poll(() => page.title()).toBe(BASE_TITLE);
    const held = await call<{ items: { id: string; client_name: string; unread_count: number }[] }>(
      'GET', '/api/v1/tickets?status=atendendo', tenant.agents[0].token,
    );
    const mine = held.items.find((t) => t.client_name === pushName);
    expect(mine?.unread_count).toBe(0);

    // She moves on to another ticket; the client writes again in hers.
    await page.getByTestId('tab-espera').click();
    await row(page, other.client_name).click();
    await page.getByTestId('message').filter({ hasText: 'Tenho outra dúvida' }).waitFor();
    await phone('inbound', { instance, phone: number, text: 'Já paguei, pode conferir?', push_name: pushName });
    await expect.poll(() => raised(page)).toContainEqual({ title: `Nova mensagem de ${pushName}`, body: 'Já paguei, pode conferir?' });
    await expect.poll(() => page.title()).toBe(`(1) ${BASE_TITLE}`);
    await page.getByTestId('tab-atendendo').click();
    const badge = row(page, pushName).getByTestId('unread-badge');
    await badge.filter({ hasText: '1' }).waitFor();
    expect(await row(page, pushName).getAttribute('data-unread')).toBe('1');
    await screenshot(page, 'agent-unread-badge');

    // Clicking the notification opens the ticket: the badge and the title count clear.
    await page.evaluate(() => {
      const all = (window as unknown as { __raised: { notification: Notification }[] }).__raised;
      const last = all[all.length - 1].notification;
      last.onclick?.(new Event('click'));
    });
    await page.waitForURL((url) => url.pathname === `/atendimento/${mine?.id}`);
    await page.getByTestId('message').filter({ hasText: 'Já paguei' }).waitFor();
    await badge.waitFor({ state: 'detached' });
    await expect.poll(() => page.title()).toBe(BASE_TITLE);

    // Kept on the server: a reload (or another device) shows it read.
    await page.reload();
    await page.getByTestId('tab-atendendo').click();
    await row(page, pushName).waitFor();
    expect(await row(page, pushName).getByTestId('unread-badge').count()).toBe(0);
    const after = await call<{ unread_count: number }>('GET', `/api/v1/tickets/${mine?.id}`, tenant.agents[0].token);
    expect(after.unread_count).toBe(0);
    expect((await raised(page)).length).toBe(0); // a reload raises nothing by itself
    expectNoConsoleErrors(ana);
  });
});
