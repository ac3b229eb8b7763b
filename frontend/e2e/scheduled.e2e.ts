// Scheduled messages ("Agendar mensagem") in Chromium against the real stack: the agent holding a
// ticket schedules a reply half a minute ahead; the backend's due pass (SCHEDULED_MESSAGES_POLL_SECONDS,
// short in global-setup.ts) sends it to the client through the fake Evolution, it appears in the
// thread and the list says "Enviada". A second one, canceled before its time, never leaves.
// Meanwhile, in a second tab, the agent finds the waiting one in "Agendamentos" and follows it to the ticket.
// Another, edited by its author before its time, goes out as edited, and its first text never does.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { bubble, call, expectNoConsoleErrors, launch, login, makeTenant, makeWhatsAppTicket, openPage, screenshot, unique, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
});

afterAll(async () => {
  await browser?.close();
});

/** The texts the fake provider was asked to send to `number`. */
async function sentTo(number: string): Promise<string[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  const sent = (await response.json()) as { number: string; text?: string }[];
  return sent.filter((s) => s.number === number && typeof s.text === 'string').map((s) => s.text as string);
}

/** A datetime-local value `leadMs` from now by the page's clock and zone, with seconds. A value
 * with ":00" seconds is read back without them (and refused by fill), so that second is skipped. */
function localValue(page: Page, leadMs: number): Promise<string> {
  return page.evaluate((lead) => {
    let at = new Date(Date.now() + lead);
    if (at.getSeconds() === 0) at = new Date(at.getTime() + 1_000);
    const two = (n: number) => String(n).padStart(2, '0');
    return `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}T${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
  }, leadMs);
}

const composer = (page: Page) => page.getByRole('textbox', { name: 'Mensagem' });
const listed = (page: Page, text: string) => page.getByTestId('scheduled-message').filter({ hasText: text });
const chipOf = (page: Page, text: string) => listed(page, text).getByTestId('schedule-status');

/** Opens "Agendar mensagem", sets its text (unless the composer's is kept) and time, and confirms. */
async function schedule(page: Page, leadMs: number, text?: string): Promise<number> {
  await page.getByRole('button', { name: 'Agendar mensagem' }).click();
  const dialog = page.getByRole('dialog', { name: 'Agendar mensagem' });
  await dialog.waitFor();
  if (text !== undefined) await dialog.getByRole('textbox', { name: 'Mensagem' }).fill(text);
  const value = await localValue(page, leadMs);
  await dialog.getByLabel('Data e hora').fill(value);
  const due = await page.evaluate((v) => new Date(v).getTime(), value);
  await dialog.getByRole('button', { name: 'Agendar', exact: true }).click();
  await dialog.waitFor({ state: 'detached' });
  return due;
}

describe('a scheduled message', () => {
  it('is listed, sent at its time to the client and shown in the thread; one canceled before its time is never sent', async () => {
    const ana = tenant.agents[0];
    const opened = await makeWhatsAppTicket(tenant, unique('Cliente Agenda '), 'vocês me avisam amanhã?');
    await call('POST', `/api/v1/tickets/${opened.id}/assume`, ana.token);
    const { client_phone: number } = await call<{ client_phone: string }>('GET', `/api/v1/tickets/${opened.id}`, ana.token);
    const first = `Lembrete: seu pedido sai hoje ${unique('')}`;
    const second = `Este não deve sair ${unique('')}`;

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/atendimento/${opened.id}?aba=atendendo`);
    await bubble(page, 'vocês me avisam amanhã?').waitFor();
    // No schedule yet: no list.
    expect(await page.getByTestId('scheduled-messages').count()).toBe(0);

    // The composer's text goes into the schedule (the backend wants at least 30 s ahead).
    await composer(page).fill(first);
    const firstDue = await schedule(page, 35_000);
    await expect.poll(() => composer(page).inputValue()).toBe('');
    await expect.poll(() => chipOf(page, first).textContent()).toBe('Agendada');
    await screenshot(page, 'scheduled-waiting');

    // A second one, a little later, canceled at once.
    const secondDue = await schedule(page, 40_000, second);
    await expect.poll(() => chipOf(page, second).textContent()).toBe('Agendada');
    await listed(page, second).getByRole('button', { name: 'Cancelar agendamento' }).click();
    await expect.poll(() => chipOf(page, second).textContent()).toBe('Cancelada');
    expect(await listed(page, second).getByRole('button', { name: 'Cancelar agendamento' }).count()).toBe(0);
    expect(Date.now()).toBeLessThan(firstDue); // all of the above before the first was due

    // "Agendamentos", in another tab of the same session (this one keeps watching the ticket): the
    // waiting one is listed with its client and chip, the canceled one is not among the waiting.
    const tab = await watched.context.newPage();
    const tabErrors: string[] = [];
    tab.on('console', (msg) => {
      if (msg.type() === 'error') tabErrors.push(msg.text());
    });
    tab.on('pageerror', (err) => tabErrors.push(String(err)));
    await tab.goto(`${inject('appUrl')}/atendimento`);
    await tab.getByRole('navigation', { name: 'Menu' }).getByRole('link', { name: 'Agendamentos' }).click();
    await tab.getByRole('heading', { name: 'Agendamentos' }).waitFor();
    const row = tab.getByTestId('scheduled-row').filter({ hasText: opened.client_name });
    await row.waitFor();
    expect(await tab.getByTestId('scheduled-row').count()).toBe(1);
    expect(await row.getByTestId('schedule-status').textContent()).toBe('Agendada');
    expect(await row.textContent()).toContain(first);
    await screenshot(tab, 'scheduled-page');
    await row.getByRole('link', { name: `${opened.client_name} #${opened.number}` }).click();
    await tab.waitForURL((url) => url.pathname === `/atendimento/${opened.id}`);
    await bubble(tab, 'vocês me avisam amanhã?').waitFor();
    await expect.poll(() => chipOf(tab, first).textContent()).toBe('Agendada');
    await tab.close();
    expect(tabErrors, 'console errors in the second tab').toEqual([]);
    expect(Date.now()).toBeLessThan(firstDue);

    // At its time the first goes out: in the thread as the agent's reply, "Enviada" in the list.
    const sent = bubble(page, first);
    await sent.waitFor({ timeout: 40_000 });
    expect(Date.now()).toBeGreaterThanOrEqual(firstDue);
    expect(await sent.getAttribute('data-direction')).toBe('out');
    await expect.poll(() => chipOf(page, first).textContent(), { timeout: 15_000 }).toBe('Enviada');
    await expect.poll(async () => (await sentTo(number)).filter((text) => text.endsWith(first)), { timeout: 15_000 }).toEqual([`*${ana.name}:*\n${first}`]);
    await screenshot(page, 'scheduled-sent');

    // The canceled one's time passes too (plus a few due passes): it never reaches the provider.
    await page.waitForTimeout(Math.max(0, secondDue - Date.now()) + 3_000);
    expect((await sentTo(number)).filter((text) => text.includes(second))).toEqual([]);
    expect(await bubble(page, second).count()).toBe(0);
    expect(await chipOf(page, second).textContent()).toBe('Cancelada');
    const schedules = await call<{ items: { body: string; status: string; reason: string | null }[] }>(
      'GET',
      `/api/v1/tickets/${opened.id}/scheduled-messages`,
      ana.token,
    );
    expect(schedules.items.map(({ body, status, reason }) => ({ body, status, reason }))).toEqual([
      { body: first, status: 'sent', reason: null },
      { body: second, status: 'canceled', reason: 'canceled' },
    ]);
    expectNoConsoleErrors(watched);
    await watched.context.close();
  }, 120_000);

  it('edited by its author before its time: only the edited text and time go out', async () => {
    const ana = tenant.agents[0];
    const opened = await makeWhatsAppTicket(tenant, unique('Cliente Edita '), 'me lembra do boleto?');
    await call('POST', `/api/v1/tickets/${opened.id}/assume`, ana.token);
    const { client_phone: number } = await call<{ client_phone: string }>('GET', `/api/v1/tickets/${opened.id}`, ana.token);
    const original = `Texto antigo ${unique('')}`;
    const edited = `Texto corrigido ${unique('')}`;

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/atendimento/${opened.id}?aba=atendendo`);
    await bubble(page, 'me lembra do boleto?').waitFor();
    await schedule(page, 10 * 60_000, original); // far ahead: the edit brings it closer
    await expect.poll(() => chipOf(page, original).textContent()).toBe('Agendada');

    await listed(page, original).getByRole('button', { name: 'Editar agendamento' }).click();
    const dialog = page.getByRole('dialog', { name: 'Editar mensagem agendada' });
    await dialog.waitFor();
    expect(await dialog.getByRole('textbox', { name: 'Mensagem' }).inputValue()).toBe(original);
    await dialog.getByRole('textbox', { name: 'Mensagem' }).fill(edited);
    const value = await localValue(page, 35_000);
    await dialog.getByLabel('Data e hora').fill(value);
    const due = await page.evaluate((v) => new Date(v).getTime(), value);
    await dialog.getByRole('button', { name: 'Salvar alterações' }).click();
    await dialog.waitFor({ state: 'detached' });
    // The edit stands in the old one's place: the strip shows it waiting, and the old one no more.
    await expect.poll(() => chipOf(page, edited).textContent()).toBe('Agendada');
    expect(await listed(page, original).count()).toBe(0);
    expect(Date.now()).toBeLessThan(due);

    const sent = bubble(page, edited);
    await sent.waitFor({ timeout: 40_000 });
    expect(Date.now()).toBeGreaterThanOrEqual(due);
    await expect.poll(() => chipOf(page, edited).textContent(), { timeout: 15_000 }).toBe('Enviada');
    await expect.poll(async () => (await sentTo(number)).filter((text) => text.endsWith(edited)), { timeout: 15_000 }).toEqual([`*${ana.name}:*\n${edited}`]);
    expect((await sentTo(number)).filter((text) => text.includes(original))).toEqual([]);
    const schedules = await call<{ items: { body: string; status: string; reason: string | null }[] }>(
      'GET',
      `/api/v1/tickets/${opened.id}/scheduled-messages`,
      ana.token,
    );
    expect(schedules.items.map(({ body, status, reason }) => ({ body, status, reason }))).toEqual([
      { body: edited, status: 'sent', reason: null },
      { body: original, status: 'canceled', reason: 'edited' },
    ]);
    expectNoConsoleErrors(watched);
    await watched.context.close();
  }, 120_000);
});
