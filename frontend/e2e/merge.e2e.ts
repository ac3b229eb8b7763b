// A person WhatsApp named two ways — by number, then by LID alone — is two contacts and two
// conversations. When WhatsApp later names the LID with the number, Contatos offers to merge them;
// in Chromium against the real stack, the owner does, from that offer; the LID contact leaves the
// list, and the person's next message on the LID chat arrives in the known contact's open conversation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { call, connectWhatsApp, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, screenshot, unique, uniquePhone, type TenantSetup, type TicketInfo } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
});

afterAll(async () => {
  await browser?.close();
});

type Ticket = TicketInfo & { client_id: string; client_phone: string };

/** The tenant's tickets of one client name, any status, once there are `count` of them. */
async function ticketsOf(name: string, count: number): Promise<Ticket[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found: Ticket[] = [];
    for (const status of ['espera', 'atendendo', 'finalizado']) {
      const page = await call<{ items: Ticket[] }>('GET', `/api/v1/tickets?status=${status}&q=${encodeURIComponent(name)}`, tenant.owner.token);
      found.push(...page.items);
    }
    if (found.length >= count || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function thread(ticketId: string): Promise<string[]> {
  const page = await call<{ items: { body: string }[] }>('GET', `/api/v1/tickets/${ticketId}/messages`, tenant.owner.token);
  return page.items.map((m) => m.body);
}

describe('merging contacts', () => {
  it('the LID contact merged into the known one: out of the list, and its chat arrives in the known conversation', async () => {
    const instance = await connectWhatsApp(tenant);
    const name = unique('Maria Merge ');
    const number = uniquePhone();
    const lid = `2${uniquePhone().slice(-14)}`;
    await phone('inbound', { instance, phone: number, text: 'oi, pelo número', push_name: name });
    const [known] = await ticketsOf(name, 1);
    await call('POST', `/api/v1/tickets/${known.id}/assume`, tenant.agents[0].token);
    // The same person's phone now writes on a LID chat that carries no number: a second contact.
    await phone('inbound', { instance, phone: '', lid, text: 'oi, pelo outro chat', push_name: name });
    const both = await ticketsOf(name, 2);
    const split = both.find((t) => t.id !== known.id) as Ticket;
    expect(split.client_id).not.toBe(known.client_id);
    expect(split.client_phone).toBe('');
    // Later WhatsApp names the LID chat with the number beside it: the same account, it says.
    await phone('inbound', { instance, phone: number, lid, text: 'agora com o número', push_name: name });
    await expect.poll(async () => (await thread(split.id)).at(-1), { timeout: 15_000 }).toBe('agora com o número');
    await call('POST', `/api/v1/tickets/${split.id}/finalize`, tenant.owner.token); // a merge wants it closed

    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, tenant.owner.email, tenant.owner.password);
    await page.getByRole('link', { name: 'Contatos' }).click();
    await page.getByRole('searchbox', { name: 'Buscar por nome ou número' }).fill(name);
    const rows = page.getByTestId('contact-row').filter({ hasText: name });
    await expect.poll(() => rows.count()).toBe(2);
    const lidRow = rows.filter({ hasNotText: number.slice(-4) });
    await lidRow.getByTestId('same-person').waitFor(); // offered, not done
    await lidRow.getByRole('button', { name: 'Mesclar com o contato do mesmo WhatsApp' }).click();
    const dialog = page.getByRole('dialog', { name: 'Mesclar contato' });
    await dialog.waitFor();
    // The contact known by the number comes picked as the one kept.
    await expect.poll(() => dialog.getByRole('textbox', { name: 'Contato que fica' }).inputValue()).toContain(name);
    await screenshot(page, 'merge-contact');
    await dialog.getByRole('button', { name: 'Mesclar', exact: true }).click();
    await dialog.waitFor({ state: 'detached' });
    await page.getByText('Contatos mesclados').waitFor();
    await expect.poll(() => rows.count()).toBe(1); // the LID contact left the list
    expect(await rows.first().textContent()).toContain(name);

    // The LID chat writes again: the known contact's open conversation gets it, no new ticket.
    await phone('inbound', { instance, phone: '', lid, text: 'e agora, chegou?', push_name: name });
    await expect.poll(async () => (await thread(known.id)).at(-1), { timeout: 15_000 }).toBe('e agora, chegou?');
    expect((await ticketsOf(name, 2)).map((t) => t.id).sort()).toEqual([known.id, split.id].sort());
    expectNoConsoleErrors(watched);
    await watched.context.close();
  }, 90_000);
});
