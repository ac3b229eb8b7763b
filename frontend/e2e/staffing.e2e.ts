// A queue nobody serves (features/reseller/staffing.ts): a client writes in on WhatsApp to a
// department with no agent, which only the owner sees. The owner is warned above the inbox and by
// an alert, adds an agent there from the warning's link, and the warning goes away.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext } from 'playwright-core';
import { call, connectWhatsApp, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, raisedOn, recordNotifications, screenshot, unique, uniquePhone, type TenantSetup, type Watched } from './support';

let browser: Browser;
let tenant: TenantSetup;
let owner: Watched & { context: BrowserContext };

const raised = () => raisedOn(owner.page);

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(0); // its one department has no agent
  owner = await openPage(browser);
  await recordNotifications(owner);
  await login(owner.page, tenant.owner.email, tenant.owner.password);
  await owner.page.getByText('Ao vivo').waitFor();
});

afterAll(async () => {
  await browser?.close();
});

describe('a queue nobody serves', () => {
  it('warns the owner of a conversation waiting there, until an agent serves the queue', async () => {
    const { page } = owner;
    const queue = tenant.department.name;
    const banner = page.getByTestId('unstaffed-queue');
    const instance = await connectWhatsApp(tenant);

    // The owner's alerts, turned on in Meu perfil like an agent's.
    await page.getByRole('link', { name: 'Meu perfil' }).click();
    await page.getByRole('switch', { name: 'Alertas de conversas sem atendente' }).check();
    await page.getByRole('link', { name: 'Atendimento' }).click();
    await page.getByText('Nenhum atendimento aqui.').waitFor();
    expect(await banner.count()).toBe(0); // nothing waits there yet

    const pushName = unique('Cliente Sozinho ');
    await phone('inbound', { instance, phone: uniquePhone(), text: 'Alguém pode me ajudar?', push_name: pushName });
    await banner.filter({ hasText: `Ninguém atende a fila ${queue}: 1 conversa esperando.` }).waitFor();
    await page.getByTestId('ticket-row').filter({ hasText: pushName }).waitFor();
    await expect.poll(raised).toContainEqual({ title: `Conversa sem atendente: ${pushName}`, body: `A fila ${queue} não tem atendentes ativos` });
    await screenshot(page, 'owner-unstaffed-queue');

    // From the warning to Agentes: a new agent serving that department.
    await banner.getByRole('link', { name: 'Adicionar atendentes' }).click();
    await page.waitForURL((url) => url.pathname === '/revenda/agentes');
    await page.getByRole('button', { name: 'Novo agente' }).click();
    const dialog = page.getByRole('dialog');
    const agentName = unique('Agente Fila ');
    await dialog.getByLabel('Nome').fill(agentName);
    await dialog.getByLabel('E-mail').fill(`${unique('fila')}@e2e.iaze`);
    await dialog.getByLabel(/Senha inicial/).fill('senha-forte-123');
    await dialog.getByRole('textbox', { name: 'Departamentos do agente' }).click();
    await page.getByRole('option', { name: queue }).click();
    await page.keyboard.press('Escape');
    await dialog.getByRole('button', { name: 'Salvar' }).click();
    await page.getByRole('row').filter({ hasText: agentName }).getByText(queue).waitFor();

    // Served now: the conversation still waits, the warning is gone.
    await page.getByRole('link', { name: 'Atendimento' }).click();
    await page.getByTestId('ticket-row').filter({ hasText: pushName }).waitFor();
    await banner.waitFor({ state: 'detached' });
    await page.getByRole('link', { name: 'Departamentos' }).click();
    await page.getByRole('row').filter({ hasText: queue }).getByText('1 atendente', { exact: true }).waitFor();
    const departments = await call<{ items: { id: string; active_agents: number }[] }>('GET', '/api/v1/departments', tenant.owner.token);
    expect(departments.items.find((d) => d.id === tenant.department.id)?.active_agents).toBe(1);
    expectNoConsoleErrors(owner);
  });
});
