// An agent corrects its own WhatsApp reply, in Chromium against the real stack (the fake Evolution
// answering /chat/updateMessage as Evolution API 2.3.6 does and reporting the edit back as
// MESSAGES_EDITED): the provider is asked to edit the reply, the thread shows the edit beside the
// reply, which keeps its first words, and the provider's report of that same edit adds nothing.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
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

// What the fake provider was asked to send (reactions and deletions carry no text).
type Sent = { number: string; text?: string; key_id: string; edited?: string };

async function sent(): Promise<Sent[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  return (await response.json()) as Sent[];
}

/** The reply saying `text` as the provider got it (not an edit of it). */
async function replySaying(text: string): Promise<Sent[]> {
  return (await sent()).filter((s) => !s.edited && typeof s.text === 'string' && s.text.endsWith(`\n${text}`));
}

describe('an agent edits its own reply', () => {
  it('sends the edit to WhatsApp and shows it once beside the reply, which is marked edited', async () => {
    const ana = tenant.agents[0];
    const name = unique('Cliente Edita ');
    const ticket = await makeWhatsAppTicket(tenant, name, 'qual o prazo de entrega?');
    const first = `Chega em 3 dias ${unique('')}`;
    const corrected = `Chega em 2 dias ${unique('')}`;

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/atendimento/${ticket.id}`);
    await bubble(page, 'qual o prazo de entrega?').waitFor();
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await page.getByRole('textbox', { name: 'Mensagem' }).fill(first);
    await page.keyboard.press('Control+Enter');

    // The reply reaches the provider (signed as the tenant's replies are) and shows as sent.
    await expect.poll(async () => (await replySaying(first)).length, { timeout: 15_000 }).toBe(1);
    const [reply] = await replySaying(first);
    const signature = `*${ana.name}:*\n`; // the tenant's signature is on by default
    expect(reply.text).toBe(signature + first);
    await expect
      .poll(() => bubble(page, first).getByTestId('ticks').getAttribute('data-status'), { timeout: 15_000 })
      .toMatch(/^(sent|delivered|read)$/);

    // Editar, from the reply's menu: the text comes without the signature line.
    await bubble(page, first).getByTestId('react').click();
    await page.getByRole('menuitem', { name: 'Editar' }).click();
    const box = page.getByRole('textbox', { name: 'Novo texto' });
    expect(await box.inputValue()).toBe(first);
    await box.fill(corrected);
    await page.getByRole('button', { name: 'Salvar' }).click();
    await page.getByRole('dialog', { name: 'Editar mensagem' }).waitFor({ state: 'detached' });

    // The provider is asked to edit that reply, with the new text signed the same way.
    await expect
      .poll(async () => (await sent()).filter((s) => s.edited === reply.key_id).map((s) => s.text), { timeout: 15_000 })
      .toEqual([signature + corrected]);

    // The thread: the edit entry quoting the reply, the reply kept and marked.
    const edit = page.locator('[data-annotation="edit"]');
    await edit.filter({ hasText: corrected }).waitFor();
    expect(await edit.getByTestId('annotation-label').textContent()).toContain('✏️ Mensagem editada');
    expect(await edit.getByTestId('quote').textContent()).toContain(first);
    await bubble(page, first).getByTestId('annotation-marks').filter({ hasText: 'editada' }).waitFor();
    await expect
      .poll(() => edit.getByTestId('ticks').getAttribute('data-status'), { timeout: 15_000 })
      .toMatch(/^(sent|delivered|read)$/);

    // The provider's MESSAGES_EDITED report of this edit (posted just after its answer) is the
    // same edit: no second entry, on screen or stored.
    await page.waitForTimeout(1_500);
    expect(await edit.count()).toBe(1);
    const stored = await call<{ items: { type: string; annotates?: string | null }[] }>('GET', `/api/v1/tickets/${ticket.id}/messages`, ana.token);
    expect(stored.items.filter((m) => m.type === 'edit')).toHaveLength(1);
    expect((await sent()).filter((s) => s.edited === reply.key_id)).toHaveLength(1);
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
