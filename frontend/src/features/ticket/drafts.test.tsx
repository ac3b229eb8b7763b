import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Message, Ticket, User } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { TicketList } from '../inbox/TicketList';
import { Composer } from './Composer';
import { clearDraft, MAX_AGE_MS, MAX_DRAFTS, readDraft, saveDraft } from './drafts';

const me = agentUser({ name: 'Ana Agente' });
const other = agentUser({ id: 'b'.repeat(24), name: 'Bruno Agente', email: 'bruno@example.com' });
const held = (over: Partial<Ticket> = {}) => ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, version: 2, ...over });
const ticketA = held({ id: 'a1'.repeat(12), number: 1 });
const ticketB = held({ id: 'b2'.repeat(12), number: 2 });
const storeKey = (user: User) => `iaze.drafts.${user.id}`;

const sentMessage = (over: Partial<Message> = {}): Message => ({
  id: '9'.repeat(24),
  ticket_id: ticketA.id,
  direction: 'out',
  sender_type: 'agent',
  sender_id: me.id,
  sender_name: me.name,
  type: 'text',
  body: '',
  status: 'pending',
  created_at: '2025-01-01T12:30:00Z',
  automatic: false,
  ...over,
});

/** The backend for a composer: `post` answers what it is sent (messages and notes). */
function api(post: (request: { path: string; body: unknown }) => { status?: number; body?: unknown } = () => ({ status: 201, body: sentMessage() })) {
  return mockApi(({ method, path, body }) => {
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/quick-replies') return { body: { items: [], next_cursor: null } };
    if (method === 'POST') return post({ path, body });
    return undefined;
  });
}

const box = () => screen.getByRole('textbox');
const openComposer = (ticket: Ticket, props: { canReply?: boolean; canNote?: boolean } = {}) =>
  renderApp(<Composer ticket={ticket} canReply={props.canReply ?? true} canNote={props.canNote ?? true} />);

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('a draft per ticket', () => {
  it('comes back when the agent returns to the ticket, and another ticket starts empty', async () => {
    api();
    const first = openComposer(ticketA);
    await userEvent.type(box(), 'Seu pedido sai amanhã');
    first.unmount(); // another conversation opened: the last keystrokes are flushed

    const second = openComposer(ticketB);
    expect(box()).toHaveValue('');
    expect(screen.queryByTestId('draft-restored')).not.toBeInTheDocument();
    second.unmount();

    openComposer(ticketA);
    expect(screen.getByRole('textbox', { name: 'Mensagem' })).toHaveValue('Seu pedido sai amanhã');
    expect(screen.getByTestId('draft-restored')).toHaveTextContent('Rascunho recuperado');
    // Edited, it is the agent's text again, not the restored one.
    await userEvent.type(box(), '!');
    expect(screen.queryByTestId('draft-restored')).not.toBeInTheDocument();
  });

  it("is the writer's own: another user on the same browser does not see it", async () => {
    api();
    const first = openComposer(ticketA);
    await userEvent.type(box(), 'só da Ana');
    first.unmount();

    signIn(other);
    const second = openComposer(ticketA);
    expect(box()).toHaveValue('');
    second.unmount();
    expect(readDraft(other.id, ticketA.id)).toBeNull();
    expect(readDraft(me.id, ticketA.id)?.text).toBe('só da Ana');
  });

  it('is written shortly after typing, and at once when the page goes away', async () => {
    api();
    openComposer(ticketA);
    fireEvent.change(box(), { target: { value: 'quase pronto' } });
    // Not yet (debounced), until the page is hidden or closed.
    expect(readDraft(me.id, ticketA.id)).toBeNull();
    act(() => void window.dispatchEvent(new Event('pagehide')));
    expect(readDraft(me.id, ticketA.id)).toMatchObject({ text: 'quase pronto', mode: 'reply' });

    fireEvent.change(box(), { target: { value: 'pronto' } });
    await waitFor(() => expect(readDraft(me.id, ticketA.id)?.text).toBe('pronto'));
  });

  it('keeps the mode: a note comes back as a note', async () => {
    api();
    const first = openComposer(ticketA);
    await userEvent.click(screen.getByText('Nota interna'));
    await userEvent.type(screen.getByRole('textbox', { name: 'Nota interna' }), 'cliente pediu desconto');
    first.unmount();
    expect(readDraft(me.id, ticketA.id)?.mode).toBe('note');

    openComposer(ticketA);
    expect(screen.getByRole('textbox', { name: 'Nota interna' })).toHaveValue('cliente pediu desconto');
    expect(screen.getByRole('button', { name: 'Salvar nota' })).toBeInTheDocument();
  });

  it('falls back to a note, text kept, where replying is no longer allowed', async () => {
    api();
    saveDraft(me.id, ticketA.id, { text: 'ia responder isto', mode: 'reply' });
    const first = openComposer(ticketA, { canReply: false, canNote: true });
    expect(screen.getByRole('textbox', { name: 'Nota interna' })).toHaveValue('ia responder isto');
    first.unmount();
    // Only looked at, not edited: still the reply it was, for when the agent may reply again.
    expect(readDraft(me.id, ticketA.id)?.mode).toBe('reply');

    // A note draft never comes back as a reply, even where only replying is offered.
    saveDraft(me.id, ticketB.id, { text: 'nota', mode: 'note' });
    openComposer(ticketB, { canReply: true, canNote: false });
    expect(screen.getByRole('textbox', { name: 'Mensagem' })).toHaveValue('nota');
  });

  it('becomes the text of a failed reply put back with "Escrever de novo"', async () => {
    api();
    const first = renderApp(<Composer ticket={ticketA} canReply canNote rewrite={{ text: 'Seu boleto vence amanhã' }} />);
    expect(box()).toHaveValue('Seu boleto vence amanhã');
    first.unmount();
    expect(readDraft(me.id, ticketA.id)).toMatchObject({ text: 'Seu boleto vence amanhã', mode: 'reply' });
  });
});

describe('sending and drafts', () => {
  it('a reply sent is no longer a draft', async () => {
    const calls = api();
    const first = openComposer(ticketA);
    await userEvent.type(box(), 'Enviado!');
    act(() => void window.dispatchEvent(new Event('pagehide')));
    expect(readDraft(me.id, ticketA.id)?.text).toBe('Enviado!');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(box()).toHaveValue(''));
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.body)).toEqual([{ body: 'Enviado!' }]);
    // Cleared at once, not after the debounce: a crash now must not bring it back.
    expect(window.localStorage.getItem(storeKey(me))).toBeNull();
    first.unmount();
    openComposer(ticketA);
    expect(box()).toHaveValue('');
  });

  it('a reply that failed stays a draft', async () => {
    api(() => ({ status: 503, body: { detail: 'indisponível' } }));
    const first = openComposer(ticketA);
    await userEvent.type(box(), 'Tentando');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await screen.findByText('indisponível');
    expect(box()).toHaveValue('Tentando');
    first.unmount();
    openComposer(ticketA);
    expect(box()).toHaveValue('Tentando');
  });

  it('a reply whose answer never came is sent with the same key after a reload, and other words with a new one', async () => {
    let posts = 0;
    const calls = api(() => {
      posts += 1;
      return posts === 1 ? { status: 503, body: { detail: 'indisponível' } } : { status: 201, body: sentMessage() };
    });
    const first = openComposer(ticketA);
    await userEvent.type(box(), 'Chegou o boleto?');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await screen.findByText('indisponível'); // maybe stored: the answer is what never came
    first.unmount(); // a reload
    const second = openComposer(ticketA);
    expect(box()).toHaveValue('Chegou o boleto?');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(box()).toHaveValue(''));
    second.unmount();
    openComposer(ticketA);
    await userEvent.type(box(), 'Chegou o boleto?'); // the same words on purpose: a new message
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts).toBe(3));
    const keys = calls.filter((c) => c.method === 'POST').map((c) => c.headers.get('Idempotency-Key'));
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
  });

  it('keeps no key for words written on after the send whose answer never came', () => {
    saveDraft(me.id, ticketA.id, { text: 'Oi', mode: 'reply', key: 'k'.repeat(32) });
    saveDraft(me.id, ticketA.id, { text: 'Oi ', mode: 'reply' });
    expect(readDraft(me.id, ticketA.id)?.key).toBe('k'.repeat(32)); // the same words
    saveDraft(me.id, ticketA.id, { text: 'Oi, tudo bem?', mode: 'reply' });
    expect(readDraft(me.id, ticketA.id)?.key).toBeUndefined();
    saveDraft(me.id, ticketA.id, { text: 'Oi', mode: 'reply' });
    expect(readDraft(me.id, ticketA.id)?.key).toBeUndefined(); // gone with the words it was for
  });

  it('a reply answered after the agent left the ticket is cleared from its draft', async () => {
    api();
    // Answered only once the composer is gone (the agent opened another conversation).
    const answering = globalThis.fetch;
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    vi.stubGlobal('fetch', async (input: RequestInfo | URL, init?: RequestInit) => {
      const method = input instanceof Request ? input.method : (init?.method ?? 'GET');
      if (method === 'POST') await held;
      return answering(input, init);
    });
    const first = openComposer(ticketA);
    await userEvent.type(box(), 'Vai agora');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    first.unmount(); // flushed: the draft still holds the text being sent
    expect(readDraft(me.id, ticketA.id)?.text).toBe('Vai agora');
    await act(async () => release());
    await waitFor(() => expect(readDraft(me.id, ticketA.id)).toBeNull());
  });

  it('a voice note sent while text is being written keeps the text and its draft', async () => {
    const sent: { onload: (() => void) | null; status: number; responseText: string }[] = [];
    class FakeXhr {
      upload = { onprogress: null };
      onload: (() => void) | null = null;
      onerror = null;
      onabort = null;
      status = 0;
      responseText = '';
      open() {}
      setRequestHeader() {}
      abort() {}
      send() {
        sent.push(this);
      }
    }
    class FakeRecorder {
      static isTypeSupported = (type: string) => type.startsWith('audio/ogg');
      state = 'inactive';
      ondataavailable: ((event: { data: Blob }) => void) | null = null;
      onstop: (() => void) | null = null;
      constructor(readonly stream: { getTracks: () => { stop: () => void }[] }) {}
      start() {
        this.state = 'recording';
      }
      stop() {
        this.state = 'inactive';
        this.ondataavailable?.({ data: new Blob(['opus'], { type: 'audio/ogg' }) });
        this.onstop?.();
      }
    }
    vi.stubGlobal('XMLHttpRequest', FakeXhr);
    vi.stubGlobal('MediaRecorder', FakeRecorder);
    Object.defineProperty(navigator, 'mediaDevices', {
      configurable: true,
      value: { getUserMedia: vi.fn(async () => ({ getTracks: () => [{ stop: () => undefined }] })) },
    });
    api();
    const first = openComposer(ticketA);
    await userEvent.click(screen.getByRole('button', { name: 'Gravar mensagem de voz' }));
    await screen.findByTestId('recording');
    await userEvent.type(box(), 'e também por escrito');
    await userEvent.click(screen.getByRole('button', { name: 'Parar e enviar' }));
    await waitFor(() => expect(sent).toHaveLength(1));
    act(() => {
      sent[0].status = 201;
      sent[0].responseText = JSON.stringify(sentMessage({ type: 'audio' }));
      sent[0].onload?.();
    });
    await waitFor(() => expect(screen.queryByTestId('recording')).not.toBeInTheDocument());
    expect(box()).toHaveValue('e também por escrito');
    first.unmount();
    expect(readDraft(me.id, ticketA.id)?.text).toBe('e também por escrito');
  });
});

describe('drafts when storage misbehaves', () => {
  it('a corrupted store reads as no draft and is replaced; typing and sending work', async () => {
    window.localStorage.setItem(storeKey(me), '{"not json');
    const calls = api();
    openComposer(ticketA);
    expect(box()).toHaveValue('');
    await userEvent.type(box(), 'apesar de tudo');
    act(() => void window.dispatchEvent(new Event('pagehide')));
    expect(JSON.parse(window.localStorage.getItem(storeKey(me)) ?? '')).toMatchObject({ [ticketA.id]: { text: 'apesar de tudo' } });
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(box()).toHaveValue(''));
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1);

    // Entries of the wrong shape are dropped one by one, the good ones kept.
    window.localStorage.setItem(storeKey(me), JSON.stringify({ x: 'texto solto', y: { text: 1 }, [ticketB.id]: { text: 'ok', mode: 'note', at: Date.now() } }));
    expect(readDraft(me.id, ticketB.id)).toMatchObject({ text: 'ok', mode: 'note' });
    expect(Object.keys(JSON.parse(window.localStorage.getItem(storeKey(me)) ?? '{}'))).toEqual([ticketB.id]);
  });

  it('a store that refuses writes (quota, private mode) changes nothing for the agent', async () => {
    const setItem = Storage.prototype.setItem;
    const refused = vi.spyOn(Storage.prototype, 'setItem').mockImplementation(function (this: Storage, key: string, value: string) {
      if (key.startsWith('iaze.drafts.')) throw new DOMException('full', 'QuotaExceededError');
      setItem.call(this, key, value);
    });
    try {
      const calls = api();
      const first = openComposer(ticketA);
      await userEvent.type(box(), 'sem espaço');
      act(() => void window.dispatchEvent(new Event('pagehide')));
      expect(refused).toHaveBeenCalled();
      expect(box()).toHaveValue('sem espaço');
      await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
      await waitFor(() => expect(box()).toHaveValue(''));
      expect(calls.filter((c) => c.method === 'POST').map((c) => c.body)).toEqual([{ body: 'sem espaço' }]);
      first.unmount();
      openComposer(ticketA);
      expect(box()).toHaveValue('');
    } finally {
      refused.mockRestore();
    }
  });

  it('no storage at all reads and writes as no draft', () => {
    const getter = vi.spyOn(window, 'localStorage', 'get').mockImplementation(() => {
      throw new DOMException('denied', 'SecurityError');
    });
    try {
      expect(() => saveDraft(me.id, ticketA.id, { text: 'x', mode: 'reply' })).not.toThrow();
      expect(readDraft(me.id, ticketA.id)).toBeNull();
    } finally {
      getter.mockRestore();
    }
  });
});

describe('clearing a sent text', () => {
  it('leaves a draft that has become other text since (only what was sent goes)', () => {
    saveDraft(me.id, ticketA.id, { text: 'Vai agora e mais isto', mode: 'reply' });
    clearDraft(me.id, ticketA.id, 'Vai agora');
    expect(readDraft(me.id, ticketA.id)?.text).toBe('Vai agora e mais isto');
    clearDraft(me.id, ticketA.id, ' Vai agora e mais isto ');
    expect(readDraft(me.id, ticketA.id)).toBeNull();
  });
});

describe('draft store bounds', () => {
  it(`keeps at most ${MAX_DRAFTS} drafts per user, dropping the least recently written`, () => {
    const start = Date.now() - 1_000_000;
    const id = (n: number) => n.toString(16).padStart(24, '0');
    for (let n = 0; n < MAX_DRAFTS + 5; n += 1) saveDraft(me.id, id(n), { text: `rascunho ${n}`, mode: 'reply' }, start + n);
    saveDraft(other.id, id(0), { text: 'do Bruno', mode: 'reply' }, start);
    const kept = Object.keys(JSON.parse(window.localStorage.getItem(storeKey(me)) ?? '{}'));
    expect(kept).toHaveLength(MAX_DRAFTS);
    for (let n = 0; n < 5; n += 1) expect(readDraft(me.id, id(n))).toBeNull();
    expect(readDraft(me.id, id(5))?.text).toBe('rascunho 5');
    expect(readDraft(me.id, id(MAX_DRAFTS + 4))?.text).toBe(`rascunho ${MAX_DRAFTS + 4}`);
    // Bounded per user: another user's drafts are not pushed out.
    expect(readDraft(other.id, id(0))?.text).toBe('do Bruno');
  });

  it('ignores and removes a draft older than 30 days', async () => {
    const now = Date.now();
    saveDraft(me.id, ticketA.id, { text: 'antigo', mode: 'reply' }, now - MAX_AGE_MS - 1);
    saveDraft(me.id, ticketB.id, { text: 'recente', mode: 'reply' }, now - MAX_AGE_MS + 60_000);
    api();
    openComposer(ticketA);
    expect(box()).toHaveValue('');
    const stored = JSON.parse(window.localStorage.getItem(storeKey(me)) ?? '{}') as Record<string, unknown>;
    expect(Object.keys(stored)).toEqual([ticketB.id]);
    expect(readDraft(me.id, ticketB.id)?.text).toBe('recente');
  });
});

describe('the inbox list', () => {
  it('marks the tickets holding a draft of the signed-in user, as drafts come and go', async () => {
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tickets') return { body: { items: [ticketA, ticketB], next_cursor: null } };
      return undefined;
    });
    saveDraft(me.id, ticketA.id, { text: 'meu', mode: 'reply' });
    saveDraft(other.id, ticketB.id, { text: 'do Bruno', mode: 'reply' });
    renderApp(<TicketList status="atendendo" q="" />);
    const rows = await screen.findAllByTestId('ticket-row');
    expect(within(rows[0]).getByTestId('draft-marker')).toHaveTextContent('Rascunho');
    expect(within(rows[1]).queryByTestId('draft-marker')).not.toBeInTheDocument();

    act(() => {
      saveDraft(me.id, ticketB.id, { text: 'agora este', mode: 'note' });
      saveDraft(me.id, ticketA.id, { text: '', mode: 'reply' });
    });
    await waitFor(() => expect(within(rows[1]).getByTestId('draft-marker')).toBeInTheDocument());
    expect(within(rows[0]).queryByTestId('draft-marker')).not.toBeInTheDocument();
  });
});
