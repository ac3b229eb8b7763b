// Media in the thread (issue 15 items 4-6) in Chromium against the real stack, with real bytes
// (tests/fixtures/media): a client's image, voice note and PDF arrive through the fake provider's
// webhook and show, play and download; an agent's image and recorded voice note reach the fake
// provider byte for byte (the voice note as OGG/Opus, WhatsApp's voice note format).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { connectWhatsApp, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, screenshot, unique, uniquePhone, type TenantSetup } from './support';

const fixtures = resolve(__dirname, '..', '..', 'tests', 'fixtures', 'media');
const PHOTO = readFileSync(resolve(fixtures, 'photo.png'));
const VOICE = readFileSync(resolve(fixtures, 'voice.ogg'));
const BOLETO = readFileSync(resolve(fixtures, 'boleto.pdf'));

let browser: Browser;
let tenant: TenantSetup;
let instance: string;

beforeAll(async () => {
  // A fake microphone (a tone) that needs no permission prompt, for the recorded voice note.
  browser = await launch(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
  tenant = await makeTenant(1);
  instance = await connectWhatsApp(tenant, 'Loja Mídia', 'midia-');
});

afterAll(async () => {
  await browser?.close();
});

type Sent = { number: string; key_id: string; text?: string; media?: { kind: string; mimetype: string; fileName: string; size: number; sha256: string } };

async function sentTo(number: string): Promise<Sent[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  return ((await response.json()) as Sent[]).filter((s) => s.number === number);
}

async function sentBytes(keyId: string): Promise<Buffer> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent_media/${keyId}`);
  expect(response.status).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

/** A client writes from a new number with an attachment; the agent opens the ticket it started. */
async function clientSends(media: Record<string, unknown>, text = ''): Promise<{ number: string; pushName: string }> {
  const number = uniquePhone();
  const pushName = unique('Cliente Mídia ');
  await phone('inbound', { instance, phone: number, push_name: pushName, text, media });
  return { number, pushName };
}

async function openAsAgent(pushName: string) {
  const agent = tenant.agents[0];
  const watched = await openPage(browser);
  await login(watched.page, agent.email, agent.password);
  await watched.page.getByTestId('ticket-row').filter({ hasText: pushName }).click();
  return watched;
}

const attachmentOf = (page: Page, testId: string) => page.getByTestId('message').getByTestId(testId);

describe('received media', () => {
  it('a client\'s image (inline base64 in the webhook) renders, and opens full size until Escape', async () => {
    const { pushName } = await clientSends({ type: 'image', base64: PHOTO.toString('base64'), mimetype: 'image/png', inline: true }, 'olha o erro');
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    const image = attachmentOf(page, 'image');
    await image.waitFor({ timeout: 20_000 });
    // Decoded by the browser: the fixture's own dimensions (64x48), fetched with the token.
    await expect.poll(() => image.evaluate((el: HTMLImageElement) => [el.complete, el.naturalWidth, el.naturalHeight])).toEqual([true, 64, 48]);
    expect(await image.getAttribute('src')).toMatch(/^blob:/);
    await page.getByTestId('message').filter({ hasText: 'olha o erro' }).waitFor();
    await page.getByRole('button', { name: 'Ampliar imagem' }).click();
    await page.getByTestId('image-viewer').waitFor();
    await screenshot(page, 'media-image-viewer');
    await page.keyboard.press('Escape');
    await page.getByTestId('image-viewer').waitFor({ state: 'detached' });
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });

  it('a voice note (fetched from the provider\'s media endpoint) plays, with its duration', async () => {
    const { pushName } = await clientSends({ type: 'audio', base64: VOICE.toString('base64'), mimetype: 'audio/ogg; codecs=opus', ptt: true, seconds: 2 });
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    const player = attachmentOf(page, 'audio-player');
    await player.waitFor({ timeout: 20_000 });
    await expect.poll(() => player.evaluate((el: HTMLAudioElement) => el.readyState)).toBeGreaterThanOrEqual(1);
    const duration = await player.evaluate((el: HTMLAudioElement) => el.duration);
    expect(duration).toBeGreaterThan(1);
    expect(duration).toBeLessThan(2);
    await player.evaluate((el: HTMLAudioElement) => el.play());
    await expect.poll(() => player.evaluate((el: HTMLAudioElement) => el.currentTime)).toBeGreaterThan(0);
    expect(await player.evaluate((el: HTMLAudioElement) => el.error)).toBeNull();
    await page.getByTestId('audio-duration').filter({ hasText: /Duração 0:0[12]/ }).waitFor();
    await screenshot(page, 'media-voice-note');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });

  it('a PDF downloads under its original name, byte for byte', async () => {
    const { pushName } = await clientSends({ type: 'document', base64: BOLETO.toString('base64'), mimetype: 'application/pdf', fileName: 'boleto.pdf' });
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    const card = attachmentOf(page, 'document-card');
    await card.waitFor({ timeout: 20_000 });
    await card.getByTestId('document-name').filter({ hasText: 'boleto.pdf' }).waitFor();
    expect(await card.getByTestId('document-size').textContent()).toContain('PDF');
    const [download] = await Promise.all([page.waitForEvent('download'), card.getByRole('button', { name: 'Baixar boleto.pdf' }).click()]);
    expect(download.suggestedFilename()).toBe('boleto.pdf');
    const saved = await download.path();
    expect(readFileSync(saved).equals(BOLETO)).toBe(true);
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});

describe('sent media', () => {
  it('an agent sends an image with a caption that the provider receives byte-identical', async () => {
    const { number, pushName } = await clientSends({ type: 'image', base64: PHOTO.toString('base64'), mimetype: 'image/png', inline: true }, 'oi');
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await page.getByTestId('composer').locator('input[type=file]').setInputFiles({ name: 'print.png', mimeType: 'image/png', buffer: PHOTO });
    await page.getByTestId('attachment-preview').filter({ hasText: 'print.png' }).waitFor();
    await page.getByRole('textbox', { name: 'Mensagem' }).fill('Veja o print');
    await page.getByRole('button', { name: 'Enviar' }).click();
    await page.getByTestId('attachment-preview').waitFor({ state: 'detached' });
    // Our copy shows in the thread, from the stored bytes.
    const mine = page.locator('[data-testid=message][data-direction=out]').getByTestId('image');
    await mine.waitFor({ timeout: 20_000 });
    await expect.poll(() => mine.evaluate((el: HTMLImageElement) => el.naturalWidth)).toBe(64);

    await expect.poll(async () => (await sentTo(number)).filter((s) => s.media).length, { timeout: 20_000 }).toBe(1);
    const [sent] = (await sentTo(number)).filter((s) => s.media);
    expect(sent.media?.kind).toBe('image');
    expect(sent.media?.mimetype).toBe('image/png');
    expect(sent.text).toContain('Veja o print');
    expect((await sentBytes(sent.key_id)).equals(PHOTO)).toBe(true);
    await screenshot(page, 'media-sent-image');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });

  it('an image past WhatsApp\'s limit is refused with a clear message, and nothing is sent', async () => {
    const { number, pushName } = await clientSends({ type: 'image', base64: PHOTO.toString('base64'), mimetype: 'image/png', inline: true }, 'mande a foto');
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    // A PNG (by its first bytes) of 6 MB: images may have at most 5 MB.
    const big = Buffer.concat([PHOTO, Buffer.alloc(6 * 1024 * 1024)]);
    await page.getByTestId('composer').locator('input[type=file]').setInputFiles({ name: 'grande.png', mimeType: 'image/png', buffer: big });
    await page.getByRole('button', { name: 'Enviar' }).click();
    await page.getByTestId('attach-error').filter({ hasText: 'imagens podem ter no máximo 5 MB' }).waitFor({ timeout: 20_000 });
    await page.getByTestId('attachment-preview').filter({ hasText: 'grande.png' }).waitFor();
    await screenshot(page, 'media-too-large');
    expect(await page.locator('[data-testid=message][data-direction=out]').count()).toBe(0);
    expect(await sentTo(number)).toEqual([]);
    // The browser logs the refused request itself; nothing else went wrong.
    expect(watched.errors.filter((e) => !e.includes('413'))).toEqual([]);
    await watched.context.close();
  });

  it('a voice note recorded in Chromium goes out as an OGG/Opus voice note', async () => {
    const { number, pushName } = await clientSends({ type: 'image', base64: PHOTO.toString('base64'), mimetype: 'image/png', inline: true }, 'pode mandar áudio');
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    expect(await page.evaluate(() => [MediaRecorder.isTypeSupported('audio/ogg;codecs=opus'), MediaRecorder.isTypeSupported('audio/webm;codecs=opus')])).toEqual([false, true]);
    await page.getByRole('button', { name: 'Gravar mensagem de voz' }).click();
    await page.getByTestId('recording').waitFor();
    await page.getByTestId('recording').filter({ hasText: 'Gravando 0:02' }).waitFor();
    await page.getByRole('button', { name: 'Parar e enviar' }).click();
    await page.locator('[data-testid=message][data-direction=out]').getByTestId('audio-player').waitFor({ timeout: 20_000 });

    await expect.poll(async () => (await sentTo(number)).filter((s) => s.media).length, { timeout: 20_000 }).toBe(1);
    const [sent] = (await sentTo(number)).filter((s) => s.media);
    expect(sent.media?.kind).toBe('voice'); // sendWhatsAppAudio
    const bytes = await sentBytes(sent.key_id);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('OggS');
    expect(bytes.subarray(28, 36).toString('latin1')).toBe('OpusHead');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});

describe('quoted replies', () => {
  it('a client\'s quoting reply shows the quote; the agent answers quoting a message and the provider gets it', async () => {
    const number = uniquePhone();
    const pushName = unique('Cliente Cita ');
    const first = await phone<{ key_id: string }>('inbound', { instance, phone: number, push_name: pushName, text: 'Qual o valor do plano?' });
    await phone('inbound', { instance, phone: number, push_name: pushName, text: 'Esse aqui, do anúncio', quoted_key_id: first.key_id, quoted_text: 'Qual o valor do plano?' });
    const watched = await openAsAgent(pushName);
    const { page } = watched;
    const reply = page.getByTestId('message').filter({ hasText: 'Esse aqui, do anúncio' });
    await reply.getByTestId('quote').filter({ hasText: 'Qual o valor do plano?' }).waitFor();

    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    const question = page
      .getByTestId('message')
      .filter({ hasNot: page.getByTestId('quote') })
      .filter({ has: page.getByText('Qual o valor do plano?', { exact: true }) });
    await question.getByRole('button', { name: 'Responder citando esta mensagem' }).click();
    await page.getByTestId('composer-quote').filter({ hasText: 'Qual o valor do plano?' }).waitFor();
    await page.getByRole('textbox', { name: 'Mensagem' }).fill('R$ 49,90 por mês');
    await page.getByRole('button', { name: 'Enviar' }).click();
    await page.getByTestId('composer-quote').waitFor({ state: 'detached' });
    const answer = page.locator('[data-testid=message][data-direction=out]').filter({ hasText: 'R$ 49,90 por mês' });
    await answer.getByTestId('quote').filter({ hasText: 'Qual o valor do plano?' }).waitFor();

    await expect.poll(async () => (await sentTo(number)).length, { timeout: 20_000 }).toBe(1);
    const [sent] = (await sentTo(number)) as (Sent & { quoted?: { key?: { id?: string } } })[];
    expect(sent.text).toContain('R$ 49,90 por mês');
    expect(sent.quoted?.key?.id).toBe(first.key_id);
    await screenshot(page, 'media-quoted-reply');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
