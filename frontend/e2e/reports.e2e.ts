// The dashboard and the exports against the real backend: the owner's cards and charts, a CSV
// export with its progress to the end, an agent's own figures, the admin's overview. No console errors.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, openPage, screenshot, token, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;
const app = () => inject('appUrl');

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
  const ticket = await makeTicket(tenant);
  const agent = tenant.agents[0];
  await call('POST', `/api/v1/tickets/${ticket.id}/assume`, agent.token);
  await call('POST', `/api/v1/tickets/${ticket.id}/messages`, agent.token, { body: 'Bom dia! Já vejo isso.' });
  await makeTicket(tenant);
});

afterAll(async () => {
  await browser?.close();
});

describe('reports', () => {
  it("shows the owner's figures and charts, and exports the tickets with progress", async () => {
    const w = await openPage(browser);
    await login(w.page, tenant.owner.email, tenant.owner.password);
    await w.page.getByRole('link', { name: 'Relatórios' }).click();
    const opened = w.page.getByRole('group', { name: 'Abertos' });
    await expect.poll(() => opened.textContent()).toContain('2');
    await expect.poll(() => w.page.getByRole('group', { name: 'Em espera agora' }).textContent()).toContain('1');
    await w.page.getByRole('table', { name: 'Por agente' }).getByText(tenant.agents[0].name).waitFor();
    await w.page.locator('.recharts-surface').first().waitFor();
    await screenshot(w.page, 'reports-owner');

    const download = w.page.waitForEvent('download');
    await w.page.getByRole('button', { name: 'Exportar tickets' }).click();
    await w.page.getByText('Exportação concluída: 2 linhas.').waitFor();
    expect((await download).suggestedFilename()).toMatch(/^tickets_\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}\.csv$/);
    expectNoConsoleErrors(w);
    await w.context.close();
  });

  it('gives an agent its own figures only', async () => {
    const w = await openPage(browser);
    await login(w.page, tenant.agents[0].email, tenant.agents[0].password);
    await w.page.goto(`${app()}/relatorios`);
    await w.page.getByText('Seus números no período.').waitFor();
    await expect.poll(() => w.page.getByRole('group', { name: 'Assumidos' }).textContent()).toContain('1');
    expect(await w.page.getByRole('button', { name: 'Exportar tickets' }).count()).toBe(0);
    expectNoConsoleErrors(w);
    await w.context.close();
  });

  it("shows the admin every reseller's overview", async () => {
    const w = await openPage(browser);
    const admin = inject('admin');
    const reseller = await call<{ name: string }>('GET', `/api/v1/resellers/${tenant.id}`, await token(admin.email, admin.password));
    await login(w.page, admin.email, admin.password);
    await w.page.getByRole('link', { name: 'Visão geral' }).click();
    const row = w.page.getByRole('table', { name: 'Visão geral' }).getByRole('row').filter({ hasText: reseller.name });
    await expect.poll(() => row.textContent()).toContain('1 · 1 · 0');
    expect(await row.textContent()).toContain('2 · 1');
    await screenshot(w.page, 'admin-overview');
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});
