// A WhatsApp connection that drops (the phone logged out): no client's message arrives until it is
// connected again, and only the owner can do that. The fake Evolution posts the real
// CONNECTION_UPDATE webhook; the owner is warned above the inbox and by an alert, whose
// notification opens Conexões, and the warning goes away when the phone reconnects, no reload.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext } from 'playwright-core';
import { connectWhatsApp, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, raisedOn, recordNotifications, screenshot, unique, type TenantSetup, type Watched } from './support';

let browser: Browser;
let tenant: TenantSetup;
let owner: Watched & { context: BrowserContext };
let instance: string;
const name = unique('Loja Centro ');

const BASE_TITLE = 'IAZE Atendimento';
const raised = () => raisedOn(owner.page);

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1); // its department served: no other warning above the inbox
  instance = await connectWhatsApp(tenant, name);
  owner = await openPage(browser);
  await recordNotifications(owner);
  await login(owner.page, tenant.owner.email, tenant.owner.password);
  await owner.page.getByText('Ao vivo').waitFor();
});

afterAll(async () => {
  await browser?.close();
});

describe('a WhatsApp connection that drops', () => {
  it('warns the owner above the inbox and by an alert, until the phone is connected again', async () => {
    const { page } = owner;
    const banner = page.getByTestId('disconnected-connection');

    await page.getByRole('link', { name: 'Meu perfil' }).click();
    await page.getByRole('switch', { name: 'Alertas de conversas sem atendente' }).check();
    await page.getByRole('link', { name: 'Atendimento' }).click();
    await page.getByText('Nenhum atendimento aqui.').waitFor();
    expect(await banner.count()).toBe(0); // connected: nothing to say

    // The phone logs out: the provider reports the connection closed.
    await phone('state', { instance, state: 'close' });
    await banner.filter({ hasText: `O WhatsApp ${name} está desconectado: as mensagens dos clientes não chegam até ele ser conectado de novo.` }).waitFor();
    await expect.poll(raised).toContainEqual({
      title: `WhatsApp desconectado: ${name}`,
      body: 'As mensagens dos clientes não chegam até ele ser conectado de novo.',
    });
    // Not a ticket's alert: the tab title counts none.
    expect(await page.title()).toBe(BASE_TITLE);
    await screenshot(page, 'owner-whatsapp-disconnected');

    // Its notification opens Conexões, the connection shown down there too.
    await page.evaluate(() => {
      const all = (window as unknown as { __raised: { title: string; notification: Notification }[] }).__raised;
      const dropped = all.find((r) => r.title.startsWith('WhatsApp desconectado'));
      dropped?.notification.onclick?.(new Event('click'));
    });
    await page.waitForURL((url) => url.pathname === '/revenda/whatsapp');
    await page.getByRole('row').filter({ hasText: name }).getByTestId('connection-status').filter({ hasText: 'Desconectado' }).waitFor();

    // Back at the inbox, still warned; the phone reconnects: the warning goes, with no reload.
    await page.getByRole('link', { name: 'Atendimento' }).click();
    await banner.filter({ hasText: name }).waitFor();
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
    await phone('state', { instance, state: 'open' });
    await banner.waitFor({ state: 'detached' });
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
    // One drop, one alert: coming back raises nothing.
    expect((await raised()).filter((r) => r.title.startsWith('WhatsApp desconectado'))).toHaveLength(1);
    expectNoConsoleErrors(owner);
  });
});
