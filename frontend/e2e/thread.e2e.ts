// The ticket thread (issue 17 items 3, 5, 8, 10) in Chromium against the real stack: a long
// thread opening at its newest message, an internal note that never reaches WhatsApp, and a
// client's earlier ticket read from the current one by an agent who never handled it.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { bubble, call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, openPage, phone, screenshot, unique, uniquePhone, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(2);
});

afterAll(async () => {
  await browser?.close();
});


/** Where the thread is scrolled: distance from the bottom, and the thread box's top on screen. */
function scrollState(page: Page) {
  return page.getByTestId('thread').evaluate((el) => ({
    fromBottom: el.scrollHeight - el.scrollTop - el.clientHeight,
    top: el.getBoundingClientRect().top,
    scrollTop: el.scrollTop,
  }));
}

async function offsetInThread(page: Page, text: string): Promise<number> {
  const threadTop = (await scrollState(page)).top;
  const box = await bubble(page, text).first().boundingBox();
  if (!box) throw new Error(`no box for ${text}`);
  return box.y - threadTop;
}

describe('a long thread', () => {
  it('a 250-message ticket opens at its newest message; scrolling up loads older ones in place', async () => {
    const ana = tenant.agents[0];
    const ticket = await makeTicket(tenant, unique('Cliente Longo '), 'mensagem 0');
    await call('POST', `/api/v1/tickets/${ticket.id}/assume`, ana.token);
    // Notes: a ticket opened without a WhatsApp connection refuses replies (nothing reaches the client).
    for (let i = 1; i < 250; i += 1) {
      await call('POST', `/api/v1/tickets/${ticket.id}/notes`, ana.token, { body: `mensagem ${i}` });
    }
    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.goto(`${inject('appUrl')}/atendimento/${ticket.id}`);
    await bubble(page, 'mensagem 249').waitFor();
    await expect.poll(async () => (await scrollState(page)).fromBottom).toBeLessThan(4);
    expect(await bubble(page, 'mensagem 0').count()).toBe(0);
    expect(await page.getByTestId('message').count()).toBe(50);
    await screenshot(page, 'thread-newest');

    // Scroll to the top: the previous page comes in above and "mensagem 200" stays where it was
    // (its place with the thread at the top: its offset now plus how far the thread is scrolled).
    const before = (await offsetInThread(page, 'mensagem 200')) + (await scrollState(page)).scrollTop;
    await page.getByTestId('thread').evaluate((el) => {
      el.scrollTop = 0;
    });
    await bubble(page, 'mensagem 150').waitFor();
    await expect.poll(() => page.getByTestId('message').count()).toBe(100);
    expect(Math.abs((await offsetInThread(page, 'mensagem 200')) - before)).toBeLessThan(60);

    // Reading older messages: something new from someone else (the owner's note) does not pull
    // the reader down; a pill says it is there.
    await call('POST', `/api/v1/tickets/${ticket.id}/notes`, tenant.owner.token, { body: 'mensagem nova enquanto lia' });
    await page.getByTestId('new-messages').filter({ hasText: '1 nova mensagem' }).waitFor();
    expect((await scrollState(page)).fromBottom).toBeGreaterThan(100);
    await page.getByTestId('new-messages').click();
    await expect.poll(async () => (await scrollState(page)).fromBottom).toBeLessThan(4);
    await page.getByRole('note').filter({ hasText: 'mensagem nova enquanto lia' }).waitFor();

    // At the bottom, the next message is followed.
    await call('POST', `/api/v1/tickets/${ticket.id}/notes`, tenant.owner.token, { body: 'mais uma' });
    await page.getByRole('note').filter({ hasText: 'mais uma' }).waitFor();
    await expect.poll(async () => (await scrollState(page)).fromBottom).toBeLessThan(4);
    expect(await page.getByTestId('new-messages').count()).toBe(0);
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});

describe('internal notes', () => {
  it('a note is shown apart in the thread and never reaches the client on WhatsApp', async () => {
    const ana = tenant.agents[0];
    const instance = unique('notas-');
    await call('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
      name: 'Loja Notas',
      provider: 'evolution',
      instance_name: instance,
      default_department_id: tenant.department.id,
    });
    await phone('state', { instance, state: 'open' });
    const number = uniquePhone();
    const pushName = unique('Cliente Nota ');
    await phone('inbound', { instance, phone: number, text: 'Quero trocar um produto', push_name: pushName });

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, ana.email, ana.password);
    await page.getByTestId('ticket-row').filter({ hasText: pushName }).click();
    // In espera, before assuming: a note is already possible, a reply is not.
    await page.getByTestId('composer-hint').filter({ hasText: 'Assuma o atendimento' }).waitFor();
    await page.getByRole('textbox', { name: 'Nota interna' }).fill('Cliente já trocou em janeiro; verificar política');
    await page.getByRole('button', { name: 'Salvar nota' }).click();
    const note = page.getByRole('note', { name: 'Nota interna da equipe' }).filter({ hasText: 'verificar política' });
    await note.waitFor();
    expect(await note.evaluate((el) => getComputedStyle(el).backgroundColor)).not.toBe(
      await bubble(page, 'Quero trocar um produto').evaluate((el) => getComputedStyle(el).backgroundColor),
    );

    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await page.getByTestId('timeline-event').filter({ hasText: 'assumiu o atendimento' }).waitFor();
    await page.locator('label').filter({ hasText: /^Nota interna$/ }).click();
    await page.getByRole('textbox', { name: 'Nota interna' }).fill('Segunda nota: oferecer vale-troca');
    await page.keyboard.press('Control+Enter');
    await page.getByRole('note', { name: 'Nota interna da equipe' }).filter({ hasText: 'vale-troca' }).waitFor();
    await page.locator('label').filter({ hasText: /^Responder$/ }).click();
    await page.getByRole('textbox', { name: 'Mensagem' }).fill('Claro! Pode trazer o produto.');
    await page.getByRole('button', { name: 'Enviar' }).click();
    await bubble(page, 'Claro! Pode trazer o produto.').waitFor();
    await screenshot(page, 'thread-notes');

    // The reply was queued after both notes; once the fake phone got it, a queued note would have gone first.
    const sentTo = async () => {
      const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
      const sent = (await response.json()) as Record<string, unknown>[];
      return sent.filter((s) => s.number === number);
    };
    await expect.poll(async () => (await sentTo()).map((s) => s.text), { timeout: 15_000 }).toEqual([`*${ana.name}:*\nClaro! Pode trazer o produto.`]); // signed (reseller default)
    const everything = JSON.stringify(await (await fetch(`${inject('evolutionUrl')}/_control/sent`)).json());
    expect(everything).not.toContain('verificar política');
    expect(everything).not.toContain('vale-troca');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});

describe('client history', () => {
  it('an agent sees the client\'s earlier ticket, handled by someone else, from the current one', async () => {
    const [ana, bruno] = tenant.agents;
    const name = unique('Cliente Antigo ');
    const customer = await call<{ id: string }>('POST', '/api/v1/clients', tenant.owner.token, { name, phone: uniquePhone() });
    const first = await call<{ id: string; number: number }>('POST', '/api/v1/tickets', tenant.owner.token, {
      client_id: customer.id,
      department_id: tenant.department.id,
      message: 'Meu pedido 4471 veio errado',
    });
    await call('POST', `/api/v1/tickets/${first.id}/assume`, ana.token);
    await call('POST', `/api/v1/tickets/${first.id}/notes`, ana.token, { body: 'Vamos reenviar o pedido 4471' });
    await call('POST', `/api/v1/tickets/${first.id}/finalize`, ana.token);
    const current = await call<{ id: string }>('POST', '/api/v1/tickets', tenant.owner.token, {
      client_id: customer.id,
      department_id: tenant.department.id,
      message: 'O reenvio ainda não chegou',
    });
    await expect(call('GET', `/api/v1/tickets/${first.id}`, bruno.token)).rejects.toThrow(/404/);

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, bruno.email, bruno.password);
    await page.goto(`${inject('appUrl')}/atendimento/${current.id}`);
    await bubble(page, 'O reenvio ainda não chegou').waitFor();
    await page.getByRole('button', { name: 'Histórico do cliente (1)' }).click();
    const row = page.getByTestId('history-ticket').filter({ hasText: `#${first.number}` });
    await row.filter({ hasText: 'Finalizado' }).filter({ hasText: ana.name }).waitFor();
    await row.click();
    const thread = page.getByTestId('history-thread');
    await thread.getByText('Meu pedido 4471 veio errado').waitFor();
    await thread.getByText('Vamos reenviar o pedido 4471').waitFor();
    expect(await thread.getByRole('textbox').count()).toBe(0);
    await screenshot(page, 'thread-client-history');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
