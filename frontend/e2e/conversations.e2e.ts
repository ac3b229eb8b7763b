// Conversations agents start (issue 16 item 5) and Reabrir (item 7) in Chromium against the real
// stack: an agent starts a conversation from a contact, the fake Evolution receives it as the
// agent's signed message, and the client's answer appears in the same ticket.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { bubble, call, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, screenshot, unique, uniquePhone, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
});

afterAll(async () => {
  await browser?.close();
});


async function sentTo(number: string): Promise<string[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  const sent = (await response.json()) as { number: string; text: string }[];
  return sent.filter((s) => s.number === number).map((s) => s.text);
}

describe('a conversation an agent starts', () => {
  it('reaches the fake provider as the agent\'s message, and the answer appears in the same ticket', async () => {
    const ana = tenant.agents[0];
    const instance = unique('ativo-');
    await call('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
      name: 'Loja Ativa',
      provider: 'evolution',
      instance_name: instance,
      default_department_id: tenant.department.id,
    });
    await phone('state', { instance, state: 'open' });
    const number = uniquePhone();
    const name = unique('Cliente Ativo ');
    await call('POST', '/api/v1/clients', tenant.owner.token, { name, phone: number });

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/contatos`);
    await page.getByRole('searchbox', { name: 'Buscar por nome ou número' }).fill(name);
    const row = page.getByTestId('contact-row').filter({ hasText: name });
    await row.getByRole('button', { name: 'Iniciar conversa' }).click();
    await page.getByRole('combobox', { name: 'Conexão de WhatsApp' }).selectOption({ label: 'Loja Ativa' });
    await page.getByRole('textbox', { name: 'Primeira mensagem' }).fill('Olá! Seu pedido 5120 foi enviado hoje.');
    await page.getByRole('button', { name: 'Enviar e abrir atendimento' }).click();

    // The ticket opens, held by the agent, with the message as the agent's (never the client's).
    await page.waitForURL(/\/atendimento\/[0-9a-f]{24}$/);
    const ticketId = new URL(page.url()).pathname.split('/').pop() ?? '';
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    const first = bubble(page, 'Olá! Seu pedido 5120 foi enviado hoje.');
    await first.waitFor();
    expect(await first.getAttribute('data-direction')).toBe('out');
    await expect.poll(() => sentTo(number), { timeout: 15_000 }).toEqual([`*${ana.name}:*\nOlá! Seu pedido 5120 foi enviado hoje.`]);
    await first.getByTestId('ticks').and(page.locator('[data-status="sent"]')).waitFor();

    // The client answers on WhatsApp: the answer lands in this very ticket, live.
    await phone('inbound', { instance, phone: number, text: 'Oba, obrigado!', push_name: name });
    const answer = bubble(page, 'Oba, obrigado!');
    await answer.waitFor();
    expect(await answer.getAttribute('data-direction')).toBe('in');
    expect(new URL(page.url()).pathname).toBe(`/atendimento/${ticketId}`);
    const found = await call<{ items: { id: string }[] }>('GET', `/api/v1/tickets?q=${encodeURIComponent(name)}`, tenant.owner.token);
    expect(found.items.map((t) => t.id)).toEqual([ticketId]);
    await screenshot(page, 'conversation-started');

    // Finalize, then Reabrir: a new ticket with the same client, linked back to this one.
    await page.getByRole('button', { name: 'Finalizar' }).click();
    await page.getByTestId('confirm-finalize').click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Finalizado' }).waitFor();
    await page.getByRole('button', { name: 'Reabrir' }).click();
    await page.getByTestId('reopened-from').waitFor();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    expect(new URL(page.url()).pathname).not.toBe(`/atendimento/${ticketId}`);
    await page.getByRole('link', { name: 'Ver atendimento anterior' }).click();
    await page.getByTestId('reopened-as').waitFor();
    await screenshot(page, 'conversation-reopened');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
