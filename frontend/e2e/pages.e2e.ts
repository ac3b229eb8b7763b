// The main screens against the real backend: session handling, admin and reseller screens,
// without console errors, at laptop size and at phone width. Screenshots go to test-artifacts/e2e/.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { bubble, call, expectNoConsoleErrors, launch, login, makeTenant, makeTicket, makeWhatsAppTicket, openPage, screenshot, token, unique, type TenantSetup } from './support';

let browser: Browser;
let tenant: TenantSetup;
const app = () => inject('appUrl');
const path = (url: string) => new URL(url).pathname;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(2);
});

afterAll(async () => {
  await browser?.close();
});

describe('session', () => {
  it('sends a visitor to login, keeps the session across a reload, and logout ends it', async () => {
    const w = await openPage(browser);
    await w.page.goto(`${app()}/atendimento`);
    await expect.poll(() => path(w.page.url())).toBe('/login');
    await screenshot(w.page, 'login');
    await login(w.page, tenant.agents[0].email, tenant.agents[0].password);
    expect(path(w.page.url())).toBe('/atendimento');

    await w.page.reload();
    await w.page.getByRole('button', { name: 'Sair' }).waitFor();
    expect(path(w.page.url())).toBe('/atendimento');

    await w.page.getByRole('button', { name: 'Sair' }).click();
    await expect.poll(() => path(w.page.url())).toBe('/login');
    await w.page.goto(`${app()}/atendimento`);
    await expect.poll(() => path(w.page.url())).toBe('/login');
    expectNoConsoleErrors(w);
    await w.context.close();
  });

  it('says when the password is wrong', async () => {
    const w = await openPage(browser);
    await w.page.goto(`${app()}/login`);
    await w.page.getByLabel('E-mail').fill(tenant.agents[0].email);
    await w.page.getByLabel(/^Senha/).fill('senha-errada');
    await w.page.getByRole('button', { name: 'Entrar' }).click();
    await w.page.getByRole('alert').filter({ hasText: 'E-mail ou senha incorretos.' }).waitFor();
    // The only console line allowed is the browser's own note about the 401 response.
    expect(w.errors.filter((e) => !e.includes('401'))).toEqual([]);
    await w.context.close();
  });
});

describe('admin', () => {
  it('lists, creates and deactivates resellers', async () => {
    const w = await openPage(browser);
    const admin = inject('admin');
    await login(w.page, admin.email, admin.password);
    expect(path(w.page.url())).toBe('/admin/revendas');
    const name = unique('Revenda Nova ');
    await w.page.getByRole('button', { name: 'Nova revenda' }).click();
    const dialog = w.page.getByRole('dialog');
    await dialog.getByLabel('Nome da revenda').fill(name);
    await dialog.getByLabel('Nome do responsável').fill('Fulano');
    await dialog.getByLabel('E-mail do responsável').fill(`${unique('r')}@e2e.iaze`);
    await dialog.getByLabel(/Senha inicial/).fill('senha-forte-123');
    await dialog.getByRole('button', { name: 'Criar' }).click();
    const row = w.page.getByTestId('reseller-row').filter({ hasText: name });
    await row.waitFor();
    await screenshot(w.page, 'admin-resellers');
    await row.getByRole('button', { name: 'Desativar' }).click();
    await w.page.getByRole('dialog').getByRole('button', { name: 'Desativar' }).click();
    await row.getByText('Inativo').waitFor();
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});

describe("admin, a company's conversations", () => {
  it('picks the company, opens a conversation and reads it, with nothing to reply or act with', async () => {
    const tenant = await makeTenant(1);
    const name = unique('Cliente Admin ');
    const ticket = await makeWhatsAppTicket(tenant, name, 'o admin vai ler isto');
    await call('POST', `/api/v1/tickets/${ticket.id}/assume`, tenant.agents[0].token);
    await call('POST', `/api/v1/tickets/${ticket.id}/messages`, tenant.agents[0].token, { body: 'resposta da equipe' });
    const companies = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/resellers', await token(inject('admin').email, inject('admin').password));
    const company = companies.items.find((r) => r.id === tenant.id);
    expect(company).toBeDefined();

    const w = await openPage(browser);
    const sockets: string[] = [];
    w.page.on('websocket', (ws) => sockets.push(ws.url()));
    const writes: string[] = [];
    w.page.on('request', (r) => {
      if (r.method() !== 'GET' && new URL(r.url()).pathname.startsWith('/api/v1/') && !r.url().includes('/auth/')) writes.push(`${r.method()} ${r.url()}`);
    });
    const admin = inject('admin');
    await login(w.page, admin.email, admin.password);
    await w.page.getByRole('navigation', { name: 'Menu' }).getByRole('link', { name: 'Conversas' }).click();
    await w.page.getByText('Escolha uma revenda para ver as conversas.').waitFor();
    await w.page.getByRole('textbox', { name: 'Revenda' }).fill(company!.name);
    await w.page.getByRole('option', { name: company!.name }).click();
    await w.page.getByRole('tab', { name: 'Atendendo' }).click();
    const row = w.page.getByTestId('ticket-row').filter({ hasText: name });
    await row.waitFor();
    expect(await w.page.getByTestId('ticket-row').count()).toBe(1); // that company's only
    await row.getByRole('link', { name }).click();
    await bubble(w.page, 'o admin vai ler isto').waitFor();
    await bubble(w.page, `*${tenant.agents[0].name}:*\nresposta da equipe`).or(w.page.getByTestId('message').filter({ hasText: 'resposta da equipe' })).first().waitFor();
    await w.page.getByTestId('read-only').waitFor();
    await screenshot(w.page, 'admin-conversation');
    expect(await w.page.getByRole('textbox', { name: 'Mensagem' }).count()).toBe(0);
    for (const action of ['Assumir', 'Transferir', 'Finalizar', 'Enviar']) {
      expect(await w.page.getByRole('button', { name: action }).count()).toBe(0);
    }
    expect(sockets).toEqual([]);
    expect(writes).toEqual([]);
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});

describe('reseller', () => {
  it('manages departments, agents and company settings', async () => {
    const w = await openPage(browser);
    await login(w.page, tenant.owner.email, tenant.owner.password);
    expect(path(w.page.url())).toBe('/atendimento');

    await w.page.getByRole('link', { name: 'Departamentos' }).click();
    await w.page.getByRole('button', { name: 'Novo departamento' }).click();
    const deptName = unique('Financeiro ');
    await w.page.getByRole('dialog').getByLabel('Nome').fill(deptName);
    await w.page.getByRole('dialog').getByRole('button', { name: 'Salvar' }).click();
    await w.page.getByRole('cell', { name: deptName }).waitFor();
    await screenshot(w.page, 'reseller-departments');

    await w.page.getByRole('link', { name: 'Agentes' }).click();
    await w.page.getByRole('button', { name: 'Novo agente' }).click();
    const dialog = w.page.getByRole('dialog');
    const agentName = unique('Agente Novo ');
    await dialog.getByLabel('Nome').fill(agentName);
    await dialog.getByLabel('E-mail').fill(`${unique('novo')}@e2e.iaze`);
    await dialog.getByLabel(/Senha inicial/).fill('senha-forte-123');
    await dialog.getByRole('textbox', { name: 'Departamentos do agente' }).click();
    await w.page.getByRole('option', { name: deptName }).click();
    await w.page.keyboard.press('Escape');
    await dialog.getByRole('button', { name: 'Salvar' }).click();
    const row = w.page.getByRole('row').filter({ hasText: agentName });
    await row.getByText(deptName).waitFor();
    await screenshot(w.page, 'reseller-agents');
    await row.getByRole('button', { name: 'Desativar' }).click();
    await w.page.getByRole('dialog').getByRole('button', { name: 'Desativar' }).click();
    await row.getByText('Inativo').waitFor();

    await w.page.getByRole('link', { name: 'Empresa' }).click();
    const company = w.page.getByLabel('Nome da empresa');
    await company.waitFor();
    await company.fill('Loja Exemplo LTDA');
    await w.page.getByRole('textbox', { name: 'Mensagem de boas-vindas', exact: true }).fill('Olá! Em que podemos ajudar?');
    await w.page.getByRole('button', { name: 'Adicionar horário (Segunda)' }).click();
    await w.page.getByRole('button', { name: 'Salvar' }).click();
    await w.page.getByText('Alterações salvas').waitFor();
    const config = await call<{ company_name: string; business_hours: unknown[] }>('GET', '/api/v1/reseller-config', tenant.owner.token);
    expect(config.company_name).toBe('Loja Exemplo LTDA');
    expect(config.business_hours).toEqual([{ weekday: 0, open: '08:00', close: '18:00' }]);
    await screenshot(w.page, 'reseller-company');

    await w.page.getByRole('link', { name: 'WhatsApp' }).click();
    await w.page.getByRole('heading', { name: 'Conexões WhatsApp' }).waitFor();
    await screenshot(w.page, 'reseller-whatsapp');
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});

describe('phone width', () => {
  it('shows the list, then the ticket with a way back', async () => {
    const ticket = await makeTicket(tenant, unique('Cliente Celular '));
    const w = await openPage(browser, { width: 390, height: 844 });
    await login(w.page, tenant.agents[1].email, tenant.agents[1].password);
    await w.page.getByTestId('ticket-row').filter({ hasText: ticket.client_name }).click();
    await w.page.getByRole('button', { name: 'Assumir' }).waitFor();
    await screenshot(w.page, 'phone-ticket');
    await w.page.getByRole('link', { name: /Voltar à lista/ }).click();
    await w.page.getByTestId('ticket-row').first().waitFor();
    await screenshot(w.page, 'phone-inbox');
    expectNoConsoleErrors(w);
    await w.context.close();
  });
});
