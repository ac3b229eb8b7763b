import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { expect, inject } from 'vitest';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Debian's Chromium; playwright-core gives every launch a fresh temporary --user-data-dir.
 * `extraArgs`: e.g. a fake microphone for recording voice notes. */
export function launch(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...FLAGS, ...extraArgs] });
}

export type Watched = { page: Page; errors: string[] };

/** A page in its own context (its own storage: a separate person), recording console errors. */
export async function openPage(browser: Browser, viewport = { width: 1366, height: 768 }): Promise<Watched & { context: BrowserContext }> {
  const context = await browser.newContext({ viewport, locale: 'pt-BR', timezoneId: 'America/Sao_Paulo' });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(String(err)));
  return { context, page, errors };
}

/** What a page's app raised as system notifications (`recordNotifications`), oldest first. */
export type Raised = { title: string; body: string };

/** Headless Chromium shows no permission prompt: the context grants notifications, and every
 * Notification the app constructs is recorded on its way to the real constructor
 * (`window.__raised`, each with its `notification` for a test that clicks it;
 * `window.__asked` counts the app's permission requests). */
export async function recordNotifications(watched: { context: BrowserContext }): Promise<void> {
  await watched.context.grantPermissions(['notifications'], { origin: inject('appUrl') });
  await watched.context.addInitScript(() => {
    const w = window as unknown as { __raised: unknown[]; __asked: number; Notification: typeof Notification };
    w.__raised = [];
    w.__asked = 0;
    w.Notification = new Proxy(w.Notification, {
      get(target, key) {
        if (key !== 'requestPermission') return Reflect.get(target, key);
        return () => {
          w.__asked += 1;
          return target.requestPermission();
        };
      },
      construct(target, args: [string, NotificationOptions?]) {
        const notification = Reflect.construct(target, args) as Notification;
        w.__raised.push({ title: args[0], body: args[1]?.body ?? '', notification });
        return notification;
      },
    });
  });
}

/** The notifications `page` raised so far (`recordNotifications`): title and body. */
export function raisedOn(page: Page): Promise<Raised[]> {
  return page.evaluate(() => (window as unknown as { __raised: Raised[] }).__raised.map(({ title, body }) => ({ title, body })));
}

export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = inject('artifacts');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}

export async function login(page: Page, email: string, password: string): Promise<void> {
  await page.goto(`${inject('appUrl')}/login`);
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel(/^Senha/).fill(password);
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
}

export function expectNoConsoleErrors(watched: Watched): void {
  expect(watched.errors, 'console errors').toEqual([]);
}

// ---- data through the real API, as the other tests of the project do ----

let counter = 0;
export function unique(prefix: string): string {
  counter += 1;
  return `${prefix}${counter}-${Math.random().toString(36).slice(2, 7)}`;
}

export function uniquePhone(): string {
  return `55119${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;
}

export async function call<T = Record<string, unknown>>(
  method: string,
  path: string,
  token?: string,
  body?: unknown,
): Promise<T> {
  const response = await fetch(`${inject('apiUrl')}${path}`, {
    method,
    headers: {
      'Content-Type': 'application/json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} → ${response.status}: ${text}`);
  return (text ? JSON.parse(text) : null) as T;
}

export async function token(email: string, password: string): Promise<string> {
  const body = await call<{ access_token: string }>('POST', '/api/v1/auth/login', undefined, { email, password });
  return body.access_token;
}

export type Person = { id: string; name: string; email: string; password: string; token: string };
export type TenantSetup = {
  id: string;
  owner: Person;
  department: { id: string; name: string };
  agents: Person[];
};

export async function makeTenant(agentCount = 2): Promise<TenantSetup> {
  const admin = inject('admin');
  const adminToken = await token(admin.email, admin.password);
  const ownerEmail = `${unique('dono')}@e2e.iaze`;
  const password = 'senha-forte-123';
  const reseller = await call<{ id: string; owner_id: string }>('POST', '/api/v1/resellers', adminToken, {
    name: unique('Revenda '),
    email: ownerEmail,
    password,
    owner_name: 'Dona Revenda',
  });
  const ownerToken = await token(ownerEmail, password);
  const department = await call<{ id: string; name: string }>('POST', '/api/v1/departments', ownerToken, {
    name: unique('Suporte '),
  });
  const agents: Person[] = [];
  for (let i = 0; i < agentCount; i += 1) {
    const email = `${unique('agente')}@e2e.iaze`;
    const name = `Agente ${['Ana', 'Bruno', 'Carla'][i] ?? i} ${unique('')}`;
    const user = await call<{ id: string }>('POST', '/api/v1/users', ownerToken, {
      name,
      email,
      password,
      role: 'agent',
      department_ids: [department.id],
    });
    agents.push({ id: user.id, name, email, password, token: await token(email, password) });
  }
  return {
    id: reseller.id,
    owner: { id: reseller.owner_id, name: 'Dona Revenda', email: ownerEmail, password, token: ownerToken },
    department,
    agents,
  };
}

export type TicketInfo = { id: string; number: number; client_name: string; status: string };

export async function makeTicket(tenant: TenantSetup, clientName = unique('Cliente '), message = 'Olá, preciso de ajuda com meu pedido'): Promise<TicketInfo> {
  const client = await call<{ id: string }>('POST', '/api/v1/clients', tenant.owner.token, {
    name: clientName,
    phone: uniquePhone(),
  });
  return call<TicketInfo>('POST', '/api/v1/tickets', tenant.owner.token, {
    client_id: client.id,
    department_id: tenant.department.id,
    message,
  });
}

/** Makes the fake Evolution "phone" act: connect, send a message (it posts the real webhook). */
export async function phone<T = Record<string, unknown>>(path: string, body: unknown): Promise<T> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`fake Evolution ${path} → ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** A WhatsApp connection of the tenant on the fake Evolution, into its department, connected
 * (state open): clients can write in on it. Answers its instance name (`prefix` + a unique tail). */
export async function connectWhatsApp(tenant: TenantSetup, name = unique('Loja '), prefix = 'zap-'): Promise<string> {
  const instance = unique(prefix);
  await call('POST', '/api/v1/whatsapp-connections', tenant.owner.token, {
    name,
    provider: 'evolution',
    instance_name: instance,
    default_department_id: tenant.department.id,
  });
  await phone('state', { instance, state: 'open' });
  return instance;
}

/** A ticket the client opens by writing in on WhatsApp (through the fake Evolution and the real
 * webhook): one an agent can answer, unlike a ticket opened without a connection. */
export async function makeWhatsAppTicket(tenant: TenantSetup, clientName = unique('Cliente '), message = 'Olá, preciso de ajuda'): Promise<TicketInfo> {
  const instance = await connectWhatsApp(tenant);
  await phone('inbound', { instance, phone: uniquePhone(), text: message, push_name: clientName });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const found = await call<{ items: TicketInfo[] }>('GET', `/api/v1/tickets?q=${encodeURIComponent(clientName)}`, tenant.owner.token);
    if (found.items.length > 0) return found.items[0];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ticket for ${clientName}`);
}

/** A message bubble by its exact text (a bubble's textContent runs into its time, so no substring match). */
export const bubble = (page: Page, text: string) => page.getByTestId('message').filter({ has: page.getByText(text, { exact: true }) });
