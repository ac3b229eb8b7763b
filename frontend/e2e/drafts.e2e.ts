// An agent's unsent reply survives leaving the conversation and reloading the page (drafts kept
// per user and ticket in localStorage: src/features/ticket/drafts.ts), in Chromium against the
// real stack; once sent, the fake Evolution gets it once and the draft is gone.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { bubble, call, expectNoConsoleErrors, launch, login, makeTenant, makeWhatsAppTicket, openPage, unique, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
});

afterAll(async () => {
  await browser?.close();
});

type Sent = { text?: string; edited?: string };

/** What the fake provider was asked to send saying `text` (after the signature line). */
async function sentSaying(text: string): Promise<Sent[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  return ((await response.json()) as Sent[]).filter((s) => !s.edited && typeof s.text === 'string' && s.text.endsWith(`\n${text}`));
}

const composer = (page: Page) => page.getByRole('textbox', { name: 'Mensagem' });
const row = (page: Page, ticketId: string) => page.locator(`[data-testid="ticket-row"][data-ticket-id="${ticketId}"]`);

describe('an unsent reply', () => {
  it('is kept across conversations and a reload, and sent once, after which it is gone', async () => {
    const ana = tenant.agents[0];
    const first = await makeWhatsAppTicket(tenant, unique('Cliente Rascunho '), 'meu pedido não chegou');
    const second = await makeWhatsAppTicket(tenant, unique('Cliente Outro '), 'qual o horário?');
    await call('POST', `/api/v1/tickets/${first.id}/assume`, ana.token);
    await call('POST', `/api/v1/tickets/${second.id}/assume`, ana.token);
    const start = `Vou verificar com a transportadora ${unique('')}`;
    const text = `${start} e já te retorno`;

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/atendimento/${first.id}?aba=atendendo`);
    await bubble(page, 'meu pedido não chegou').waitFor();
    await composer(page).pressSequentially(start);

    // Another conversation: its box is empty; the first one's row says it holds a draft.
    await row(page, second.id).click();
    await bubble(page, 'qual o horário?').waitFor();
    expect(await composer(page).inputValue()).toBe('');
    await row(page, first.id).getByTestId('draft-marker').waitFor();
    expect(await row(page, second.id).getByTestId('draft-marker').count()).toBe(0);

    // Back: the words are there, to be finished.
    await row(page, first.id).click();
    await bubble(page, 'meu pedido não chegou').waitFor();
    await expect.poll(() => composer(page).inputValue()).toBe(start);
    await page.getByTestId('draft-restored').waitFor();

    // The last keystrokes, then a reload at once (well inside the save delay): still there.
    await composer(page).press('End');
    await composer(page).pressSequentially(' e já te retorno');
    await page.reload();
    await bubble(page, 'meu pedido não chegou').waitFor();
    await expect.poll(() => composer(page).inputValue()).toBe(text);

    // Sent: the provider gets it once, the box empties, and stays empty after a reload.
    await page.getByRole('button', { name: 'Enviar' }).click();
    await expect.poll(async () => (await sentSaying(text)).length, { timeout: 15_000 }).toBe(1);
    await expect.poll(() => composer(page).inputValue()).toBe('');
    await bubble(page, text).waitFor();
    await page.reload();
    await bubble(page, text).waitFor();
    expect(await composer(page).inputValue()).toBe('');
    expect(await page.getByTestId('draft-restored').count()).toBe(0);
    await row(page, second.id).waitFor();
    expect(await row(page, first.id).getByTestId('draft-marker').count()).toBe(0);
    // Given time for any late retry: still one.
    await page.waitForTimeout(1_000);
    expect(await sentSaying(text)).toHaveLength(1);
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
