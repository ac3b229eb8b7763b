// WhatsApp's privacy addressing and message changes, in Chromium against the real stack (the fake
// Evolution posting Evolution API 2.3.6's shapes to the real webhook): a client WhatsApp names
// only by its LID reaches the agent, who answers it; the client edits a message, deletes one for
// everyone and reacts to the agent's reply, and each shows live beside the message it changes,
// which keeps what it said.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { bubble, call, connectWhatsApp, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, screenshot, unique, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
});

afterAll(async () => {
  await browser?.close();
});


function lidUpsert(lid: string, id: string, text: string, pushName: string) {
  return {
    key: { remoteJid: `${lid}@lid`, fromMe: false, id, addressingMode: 'lid' },
    pushName,
    message: { conversation: text },
    messageType: 'conversation',
    messageTimestamp: Math.floor(Date.now() / 1000),
    source: 'android',
  };
}

async function sentTo(number: string): Promise<{ text: string; key_id: string }[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  const sent = (await response.json()) as { number: string; text: string; key_id: string }[];
  return sent.filter((s) => s.number === number);
}

describe('a client WhatsApp names only by its LID', () => {
  it('is answered; its edit, deletion and reaction show beside the messages they change; the agent reacts back and deletes its reply', async () => {
    const ana = tenant.agents[0];
    const instance = await connectWhatsApp(tenant);
    const lid = `2${Date.now()}${Math.floor(Math.random() * 10)}`.slice(0, 15);
    const name = unique('Cliente LID ');
    const first = `3A${Date.now()}`;
    const second = `3B${Date.now()}`;
    await phone('post', { instance, event: 'MESSAGES_UPSERT', data: lidUpsert(lid, first, 'quero 2 pizzas', name) });
    let ticketId = '';
    await expect
      .poll(async () => {
        const found = await call<{ items: { id: string }[] }>('GET', `/api/v1/tickets?q=${encodeURIComponent(name)}`, tenant.owner.token);
        ticketId = found.items[0]?.id ?? '';
        return ticketId;
      }, { timeout: 15_000 })
      .not.toBe('');

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/atendimento/${ticketId}`);
    await bubble(page, 'quero 2 pizzas').waitFor();
    await page.getByTestId('hidden-phone').first().waitFor(); // no number: WhatsApp hid it
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await page.getByRole('textbox', { name: 'Mensagem' }).fill('Anotado, já separo');
    await page.keyboard.press('Control+Enter');
    // The reply goes to the chat's LID, as Evolution sends to it.
    await expect.poll(async () => (await sentTo(`${lid}@lid`)).length, { timeout: 15_000 }).toBe(1);
    const reply = (await sentTo(`${lid}@lid`))[0];

    // The client writes again, edits the first message, deletes the second and reacts to the reply.
    await phone('post', { instance, event: 'MESSAGES_UPSERT', data: lidUpsert(lid, second, 'meu cartão 4111', name) });
    await bubble(page, 'meu cartão 4111').waitFor();
    const owner = '5511900000000@s.whatsapp.net'; // the fake instance's own number
    await phone('post', {
      instance,
      event: 'MESSAGES_EDITED',
      data: { key: { remoteJid: owner, fromMe: true, id: first }, type: 'MESSAGE_EDIT', editedMessage: { conversation: 'quero 3 pizzas' }, timestampMs: String(Date.now()) },
    });
    await phone('post', { instance, event: 'MESSAGES_DELETE', data: { remoteJid: `${lid}@lid`, fromMe: false, id: second } });
    await phone('post', {
      instance,
      event: 'MESSAGES_UPSERT',
      data: {
        key: { remoteJid: `${lid}@lid`, fromMe: false, id: `3C${Date.now()}` },
        pushName: name,
        message: { reactionMessage: { key: { remoteJid: `${lid}@lid`, fromMe: true, id: reply.key_id }, text: '👍' } },
        messageType: 'reactionMessage',
        messageTimestamp: Math.floor(Date.now() / 1000),
      },
    });

    const edit = page.locator('[data-annotation="edit"]');
    await edit.filter({ hasText: 'quero 3 pizzas' }).waitFor();
    expect(await edit.textContent()).toContain('✏️ Mensagem editada');
    expect(await edit.textContent()).toContain('quero 2 pizzas'); // the quote of what it said
    await page.locator('[data-annotation="revoke"]').filter({ hasText: 'meu cartão 4111' }).waitFor();
    await page.locator('[data-annotation="reaction"]').filter({ hasText: 'Reagiu com 👍 a' }).waitFor();
    // The originals stay, marked.
    await bubble(page, 'quero 2 pizzas').getByTestId('annotation-marks').filter({ hasText: 'editada' }).waitFor();
    await bubble(page, 'meu cartão 4111').getByTestId('annotation-marks').filter({ hasText: 'apagada pelo cliente' }).waitFor();
    // The agent reacts to the client's first message: the fake provider gets the reaction for it.
    await bubble(page, 'quero 2 pizzas').getByTestId('react').click();
    await page.getByRole('menuitem', { name: 'Reagir com ❤️' }).click();
    await expect
      .poll(async () => {
        const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
        const sent = (await response.json()) as { reaction?: string; reacted_to?: string }[];
        return sent.filter((s) => s.reacted_to === first).map((s) => s.reaction);
      }, { timeout: 15_000 })
      .toEqual(['❤️']);
    await page.locator('[data-annotation="reaction"][data-direction="out"]').waitFor();
    // And deletes its own reply for everyone: the provider is asked to, the reply stays, marked.
    await bubble(page, 'Anotado, já separo').getByTestId('react').click();
    await page.getByRole('menuitem', { name: 'Apagar para todos' }).click();
    await page.getByTestId('confirm-revoke').click();
    await expect
      .poll(async () => {
        const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
        const sent = (await response.json()) as { deleted?: string }[];
        return sent.filter((s) => s.deleted === reply.key_id).length;
      }, { timeout: 15_000 })
      .toBe(1);
    await page.locator('[data-annotation="revoke"][data-direction="out"]').waitFor();
    await bubble(page, 'Anotado, já separo').getByTestId('annotation-marks').filter({ hasText: 'apagada' }).waitFor();
    await screenshot(page, 'lid-changes');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
