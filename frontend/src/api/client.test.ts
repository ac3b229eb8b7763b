import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, api, configureAuth, fetchBlob, unwrap } from './client';

/** A server that accepts only `valid`'s token, answering each request when the test releases it. */
function server(valid: () => string) {
  const held: (() => void)[] = [];
  const seen: { method: string; auth: string | null }[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: Request) => {
      seen.push({ method: input.method, auth: input.headers.get('Authorization') });
      const sent = input.headers.get('Authorization');
      await new Promise<void>((release) => held.push(release));
      if (sent !== `Bearer ${valid()}`) return new Response(JSON.stringify({ detail: 'expired' }), { status: 401 });
      return new Response(JSON.stringify({ id: 'u1', name: 'Ana' }), { status: 200, headers: { 'Content-Type': 'application/json' } });
    }),
  );
  /** Waits until a request is at the server, holding it there. */
  const arrived = async () => {
    for (let i = 0; i < 100 && !held.length; i++) await new Promise((r) => setTimeout(r, 0));
    expect(held.length).toBeGreaterThan(0);
  };
  const answer = async () => {
    await arrived();
    while (held.length) held.shift()!();
  };
  return { seen, arrived, answer };
}

afterEach(() => {
  vi.unstubAllGlobals();
  configureAuth({ token: () => null, onUnauthorized: () => undefined });
});

describe('a 401 for a token the session already replaced', () => {
  it('does not sign the user out, and a read is sent again with the new token', async () => {
    let token = 'old';
    const onUnauthorized = vi.fn();
    configureAuth({ token: () => token, onUnauthorized });
    const { seen, arrived, answer } = server(() => token);

    const read = unwrap(api.GET('/api/v1/auth/me'));
    await arrived(); // the request is in flight with the old token...
    // ...when a password change lands in between: the server ends the old token, the session keeps the new one.
    token = 'new';
    await answer();
    await answer(); // the read sent again

    expect(await read).toMatchObject({ name: 'Ana' });
    expect(onUnauthorized).not.toHaveBeenCalled();
    expect(seen.map((s) => s.auth)).toEqual(['Bearer old', 'Bearer new']);
  });

  it('a write is not sent again (it may not be safe to repeat) and still does not sign out', async () => {
    let token = 'old';
    const onUnauthorized = vi.fn();
    configureAuth({ token: () => token, onUnauthorized });
    const { seen, arrived, answer } = server(() => token);

    const write = unwrap(api.PATCH('/api/v1/auth/me', { body: { name: 'Bia' } }));
    await arrived();
    token = 'new';
    await answer();

    await expect(write).rejects.toBeInstanceOf(ApiError);
    expect(onUnauthorized).not.toHaveBeenCalled();
    expect(seen).toHaveLength(1);
  });

  it('media bytes fetched with the old token do not sign out either', async () => {
    let token = 'old';
    const onUnauthorized = vi.fn();
    configureAuth({ token: () => token, onUnauthorized });
    const { arrived, answer } = server(() => token);

    const bytes = fetchBlob('/api/v1/messages/m1/media');
    await arrived();
    token = 'new';
    await answer();

    await expect(bytes).rejects.toMatchObject({ status: 401 });
    expect(onUnauthorized).not.toHaveBeenCalled();
  });
});

describe('a 401 for the token the session holds', () => {
  it('ends the session', async () => {
    const onUnauthorized = vi.fn();
    configureAuth({ token: () => 'current', onUnauthorized });
    const { answer } = server(() => 'something-else');

    const read = unwrap(api.GET('/api/v1/auth/me'));
    await answer();

    await expect(read).rejects.toMatchObject({ status: 401 });
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });
});
