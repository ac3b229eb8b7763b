// Stickers (issue 15 items 1, 4 and 5) in Chromium against the real stack, with a real WebP
// (tests/fixtures/media/sticker-512.webp: 512x512 with alpha, as WhatsApp's static stickers are;
// a 1x1 one renders as a 1-pixel button nobody could click): a client's sticker (stickerMessage,
// its bytes fetched from the fake provider's media endpoint) shows inline as an image the browser
// decoded from the sticker's own bytes; an agent sends a WebP "como figurinha" and the fake provider
// receives it through sendSticker, byte for byte and without a caption.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Locator } from 'playwright-core';
import { connectWhatsApp, expectNoConsoleErrors, launch, login, makeTenant, openPage, phone, screenshot, unique, uniquePhone, type TenantSetup } from './support';

const STICKER = readFileSync(resolve(__dirname, '..', '..', 'tests', 'fixtures', 'media', 'sticker-512.webp'));

let browser: Browser;
let tenant: TenantSetup;
let instance: string;

beforeAll(async () => {
  browser = await launch();
  tenant = await makeTenant(1);
  instance = await connectWhatsApp(tenant, 'Loja Figurinhas', 'figurinha-');
});

afterAll(async () => {
  await browser?.close();
});

type Sent = { number: string; key_id: string; text?: string; media?: { kind: string; mimetype: string; size: number; sha256: string } };

async function sentMediaTo(number: string): Promise<Sent[]> {
  const response = await fetch(`${inject('evolutionUrl')}/_control/sent`);
  return ((await response.json()) as Sent[]).filter((s) => s.number === number && s.media);
}

/** A client writes in from a new number with a sticker only (no text, as WhatsApp sends one): the
 * webhook carries no bytes, so the backend fetches them from the provider's media endpoint. */
async function clientSendsSticker(): Promise<{ number: string; pushName: string }> {
  const number = uniquePhone();
  const pushName = unique('Cliente Figurinha ');
  await phone('inbound', { instance, phone: number, push_name: pushName, media: { type: 'sticker', base64: STICKER.toString('base64'), mimetype: 'image/webp', width: 512, height: 512 } });
  return { number, pushName };
}

type Decoded = { complete: boolean; width: number; height: number; face: number[]; corner: number[]; bytes: Buffer };

/** The image as Chromium decoded it (its size and two pixels of the fixture's drawing: the face's
 * yellow below the eyes, a transparent corner), and the bytes behind its blob: source. */
async function decoded(image: Locator): Promise<Decoded> {
  const seen = await image.evaluate(async (el: HTMLImageElement) => {
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [el.naturalWidth, el.naturalHeight];
    const context = canvas.getContext('2d');
    context?.drawImage(el, 0, 0);
    const pixel = (x: number, y: number) => Array.from(context?.getImageData(x, y, 1, 1).data ?? []);
    const body = await (await fetch(el.src)).arrayBuffer();
    return {
      complete: el.complete,
      width: el.naturalWidth,
      height: el.naturalHeight,
      face: pixel(256, 400),
      corner: pixel(5, 5),
      bytes: Array.from(new Uint8Array(body)),
    };
  });
  return { ...seen, bytes: Buffer.from(seen.bytes) };
}

function expectTheSticker(shown: Decoded): void {
  expect([shown.complete, shown.width, shown.height]).toEqual([true, 512, 512]);
  expect(shown.face).toEqual([255, 204, 0, 255]);
  expect(shown.corner[3]).toBe(0);
  expect(shown.bytes.equals(STICKER)).toBe(true);
}

describe('stickers', () => {
  it('a client\'s sticker renders inline, decoded from the sticker\'s own bytes, and opens full size', async () => {
    const { pushName } = await clientSendsSticker();
    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, tenant.agents[0].email, tenant.agents[0].password);
    await page.getByTestId('ticket-row').filter({ hasText: pushName }).click();
    const sticker = page.locator('[data-testid=message][data-direction=in]').getByTestId('sticker');
    await sticker.waitFor({ timeout: 20_000 });
    expect(await sticker.getAttribute('alt')).toBe('Figurinha');
    expect(await sticker.getAttribute('src')).toMatch(/^blob:/);
    // Decoded by the browser (a broken or non-image source has naturalWidth 0), from the fixture's bytes.
    await expect.poll(() => sticker.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth > 0)).toBe(true);
    expectTheSticker(await decoded(sticker));
    // Inline and small (a sticker's box is 140 px), not the fixture's 512.
    expect(await sticker.evaluate((el: HTMLImageElement) => el.getBoundingClientRect().width)).toBe(140);
    expect(await page.getByTestId('media-placeholder').count()).toBe(0); // not "[Figurinha]"
    await page.getByRole('button', { name: 'Ampliar imagem' }).click();
    await page.getByTestId('image-viewer').waitFor();
    await expect.poll(() => page.getByTestId('image-viewer').evaluate((el: HTMLImageElement) => el.naturalWidth)).toBe(512);
    await page.keyboard.press('Escape');
    await page.getByTestId('image-viewer').waitFor({ state: 'detached' });
    await screenshot(page, 'media-sticker-received');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });

  it('an agent answers with a WebP "como figurinha": it shows as a sticker and the provider gets it by sendSticker, byte-identical', async () => {
    const { number, pushName } = await clientSendsSticker();
    const watched = await openPage(browser);
    const { page } = watched;
    await login(page, tenant.agents[0].email, tenant.agents[0].password);
    await page.getByTestId('ticket-row').filter({ hasText: pushName }).click();
    await page.getByRole('button', { name: 'Assumir' }).click();
    await page.getByTestId('ticket-status').filter({ hasText: 'Atendendo' }).waitFor();
    await page.getByTestId('composer').locator('input[type=file]').setInputFiles({ name: 'joinha.webp', mimeType: 'image/webp', buffer: STICKER });
    const preview = page.getByTestId('attachment-preview').filter({ hasText: 'joinha.webp' });
    await preview.waitFor();
    await page.getByRole('checkbox', { name: 'Enviar como figurinha' }).check();
    await preview.filter({ hasText: 'Figurinhas vão sem legenda.' }).waitFor();
    await page.getByRole('button', { name: 'Enviar' }).click();
    await page.getByTestId('attachment-preview').waitFor({ state: 'detached' });
    // Our copy shows in the thread as a sticker, from the stored bytes.
    const mine = page.locator('[data-testid=message][data-direction=out]').getByTestId('sticker');
    await mine.waitFor({ timeout: 20_000 });
    await expect.poll(() => mine.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth > 0)).toBe(true);
    expectTheSticker(await decoded(mine));

    await expect.poll(async () => (await sentMediaTo(number)).length, { timeout: 20_000 }).toBe(1);
    const [sent] = await sentMediaTo(number);
    expect(sent.media?.kind).toBe('sticker'); // sendSticker, not sendMedia
    expect(sent.media?.mimetype).toBe('image/webp');
    expect(sent.text ?? '').toBe(''); // a sticker carries no caption (nor the agent's signature)
    const response = await fetch(`${inject('evolutionUrl')}/_control/sent_media/${sent.key_id}`);
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(STICKER)).toBe(true);
    await screenshot(page, 'media-sticker-sent');
    expectNoConsoleErrors(watched);
    await watched.context.close();
  });
});
