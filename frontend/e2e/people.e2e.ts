// The agent's tools around a conversation: quick replies typed with "/", contacts (a rename shows
// in the inbox, a CSV with a bad line imports nothing) and the user's own profile.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, makeWhatsAppTicket, openPage, screenshot, unique, uniquePhone, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
});

afterAll(async () => {
  await browser?.close();
});

describe('quick replies', () => {
  it('typing "/" in the composer lists them; the chosen one is inserted filled in, edited and sent', async () => {
    const shortcut = unique('saudacao').replace(/-/g, '');
    await call('POST', '/api/v1/quick-replies', tenant.owner.token, {
      shortcut,
      text: 'Olá {{cliente}}, aqui é {{agente}}. Seu protocolo é {{protocolo}}.',
    });
    const agent = tenant.agents[0];
    await call('POST', '/api/v1/quick-replies', agent.token, { shortcut: unique('pessoal').replace(/-/g, ''), text: 'Minha resposta' });
    const clientName = unique('Cliente Rápida ');
    const ticket = await makeWhatsAppTicket(tenant, clientName, 'Bom dia');
    await call('POST', `/api/v1/tickets/${ticket.id}/assume`, agent.token);

    const w = await openPage(browser);
    await login(w.page, agent.email, agent.password);
    await w.page.goto(`${inject('appUrl')}/atendimento/${ticket.id}`);
    const box = w.page.getByRole('textbox', { name: 'Mensagem' });
    await box.click();
    await box.pressSequentially('/');
    await expect.poll(() => w.page.getByTestId('quick-reply-option').count()).toBe(2);
    await box.pressSequentially(shortcut.slice(0, 6));
    await w.page.getByTestId('quick-reply-option').filter({ hasText: `/${shortcut}` }).waitFor();
    await screenshot(w.page, 'quick-reply-picker');
    await w.page.keyboard.press('Enter');
    const filled = `Olá ${clientName}, aqui é ${agent.name}. Seu protocolo é ${ticket.number}.`;
    await expect.poll(() => box.inputValue()).toBe(filled);
    await box.pressSequentially(' Como posso ajudar?');
    await w.page.keyboard.press('Control+Enter');
    await w.page.getByTestId('message').filter({ hasText: `${filled} Como posso ajudar?` }).waitFor();
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});

describe('contacts', () => {
  it('a rename on Contatos shows in the inbox; a CSV with a bad line lists it and imports nothing', async () => {
    const oldName = unique('Contato Antigo ');
    await makeTicket(tenant, oldName, 'Oi');
    const w = await openPage(browser);
    await login(w.page, tenant.owner.email, tenant.owner.password);
    await w.page.getByRole('link', { name: 'Contatos' }).click();
    await w.page.getByRole('searchbox', { name: 'Buscar por nome ou número' }).fill(oldName);
    const row = w.page.getByTestId('contact-row').filter({ hasText: oldName });
    await row.getByRole('button', { name: 'Editar' }).click();
    const newName = unique('Contato Novo ');
    const dialog = w.page.getByRole('dialog');
    await dialog.getByLabel('Nome').fill(newName);
    await dialog.getByRole('button', { name: 'Salvar' }).click();
    await dialog.waitFor({ state: 'detached' });
    await w.page.getByRole('link', { name: 'Atendimento' }).click();
    await w.page.getByTestId('ticket-row').filter({ hasText: newName }).waitFor();

    await w.page.getByRole('link', { name: 'Contatos' }).click();
    await w.page.getByRole('button', { name: 'Importar CSV' }).click();
    const good = uniquePhone();
    const csv = `nome;telefone\nBoa Pessoa;${good}\nSem Número;\n`;
    await w.page.getByRole('dialog').locator('input[type=file]').setInputFiles({ name: 'contatos.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    await w.page.getByRole('dialog').getByRole('button', { name: 'Conferir' }).click();
    await w.page.getByTestId('import-errors').getByText('phone').waitFor();
    await screenshot(w.page, 'contacts-import-errors');
    const found = await call<{ items: unknown[] }>('GET', `/api/v1/clients?phone=${good}`, tenant.owner.token);
    expect(found.items).toEqual([]);
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});

describe('profile', () => {
  it('a user renames itself and changes its password, staying signed in', async () => {
    const agent = tenant.agents[0];
    const w = await openPage(browser);
    await login(w.page, agent.email, agent.password);
    await w.page.getByRole('link', { name: 'Meu perfil' }).click();
    const name = unique('Agente Renomeada ');
    await w.page.getByLabel('Nome').fill(name);
    await w.page.getByRole('button', { name: 'Salvar nome' }).click();
    await w.page.getByText(name, { exact: false }).first().waitFor();
    await w.page.getByLabel('Senha atual').fill(agent.password);
    await w.page.getByLabel(/^Nova senha/).fill('senha-nova-456');
    await w.page.getByLabel('Confirme a nova senha').fill('senha-nova-456');
    await w.page.getByRole('button', { name: 'Trocar senha' }).click();
    await w.page.getByText('Senha alterada', { exact: false }).waitFor();
    await w.page.getByRole('link', { name: 'Contatos' }).click();
    await w.page.getByRole('heading', { name: 'Contatos' }).waitFor();
    expect(new URL(w.page.url()).pathname).toBe('/contatos');
    agent.password = 'senha-nova-456';
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});
