// The dashboard and the exports against the real backend: the owner's cards and charts (the
// satisfaction of a client who rated through the survey on WhatsApp), a CSV export with its
// progress to the end, an agent's own figures, the admin's overview. No console errors.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, openPage, phone, screenshot, token, unique, uniquePhone, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;
const app = () => inject('appUrl');

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
  // A client writes in on WhatsApp, is answered, and rates the finalized ticket 5 (the survey).
  await call('PATCH', '/api/v1/reseller-config', tenant.owner.token, { csat_enabled: true, csat_message: 'De 1 a 5, que nota?' });
  const instance = unique('zap-');
  const number = uniquePhone();
  const clientName = unique('Cliente ');
  await call('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
    name: unique('Loja '),
    provider: 'evolution',
    instance_name: instance,
    default_department_id: tenant.department.id,
  });
  await phone('state', { instance, state: 'open' });
  await phone('inbound', { instance, phone: number, text: 'Olá, preciso de ajuda', push_name: clientName });
  const ticket = await until(async () => {
    const found = await call<{ items: { id: string }[] }>('GET', `/api/v1/tickets?q=${encodeURIComponent(clientName)}`, tenant.owner.token);
    return found.items[0];
  });
  const agent = tenant.agents[0];
  await call('POST', `/api/v1/tickets/${ticket.id}/assume`, agent.token);
  await call('POST', `/api/v1/tickets/${ticket.id}/messages`, agent.token, { body: 'Bom dia! Já vejo isso.' });
  await call('POST', `/api/v1/tickets/${ticket.id}/finalize`, agent.token);
  // The client answers the survey once it has it: a digit before the question left rates nothing.
  await until(async () => {
    const thread = await call<{ items: { body: string; status: string }[] }>('GET', `/api/v1/tickets/${ticket.id}/messages`, tenant.owner.token);
    return thread.items.some((m) => m.body === 'De 1 a 5, que nota?' && ['sent', 'delivered', 'read'].includes(m.status)) || undefined;
  });
  await phone('inbound', { instance, phone: number, text: '5', push_name: clientName });
  await until(async () => {
    const rated = await call<{ rating: number | null }>('GET', `/api/v1/tickets/${ticket.id}`, tenant.owner.token);
    return rated.rating === 5 || undefined;
  });
  await makeTicket(tenant);
});

/** Polls `probe` until it answers something (the webhook is processed asynchronously). */
async function until<T>(probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('gave up waiting');
}

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
    const rating = w.page.getByRole('group', { name: 'Satisfação' });
    await expect.poll(() => rating.textContent()).toContain('de 5 · 1 avaliação');
    expect(await rating.textContent()).toContain('5');
    const grades = w.page.getByRole('list', { name: 'Avaliações por nota' });
    expect(await grades.getByRole('listitem').allTextContents()).toEqual(['Nota 1: 0', 'Nota 2: 0', 'Nota 3: 0', 'Nota 4: 0', 'Nota 5: 1']);
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
    // Tickets: the API one waits, the WhatsApp one is finalized. Messages in: the client's first
    // and its rating (an API ticket's opening text is the staff's note); out: the reply and the survey question.
    await expect.poll(() => row.textContent()).toContain('1 · 0 · 1');
    expect(await row.textContent()).toContain('2 · 2');
    await screenshot(w.page, 'admin-overview');
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});
