import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useState } from 'react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Message } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { Composer } from './Composer';
import { TicketView } from './TicketView';
import { readDraft } from './drafts';
import { pickRecordingType, recordingFileName, toOggOpus } from './voice';

const me = agentUser({ name: 'Ana Agente' });
const held = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, version: 2 });

/** XMLHttpRequest as the composer uses it for uploads (fetch cannot report upload progress); the
 * test answers each request and reports its progress by hand. */
class FakeXhr {
  static sent: FakeXhr[] = [];
  method = '';
  url = '';
  headers: Record<string, string> = {};
  body: FormData | null = null;
  status = 0;
  responseText = '';
  upload: { onprogress: ((event: { lengthComputable: boolean; loaded: number; total: number }) => void) | null } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name.toLowerCase()] = value;
  }
  send(body: FormData) {
    this.body = body;
    FakeXhr.sent.push(this);
  }
  abort() {}
  progress(loaded: number, total: number) {
    act(() => this.upload.onprogress?.({ lengthComputable: true, loaded, total }));
  }
  answer(status: number, body: unknown) {
    this.status = status;
    this.responseText = JSON.stringify(body);
    act(() => this.onload?.());
  }
}

const sentMessage = (over: Partial<Message> = {}): Message => ({
  id: '9'.repeat(24),
  ticket_id: held.id,
  direction: 'out',
  sender_type: 'agent',
  sender_id: me.id,
  sender_name: me.name,
  type: 'image',
  body: '',
  status: 'pending',
  created_at: '2025-01-01T12:30:00Z',
  automatic: false,
  ...over,
});

function api(extra: (request: { method: string; path: string }) => { status?: number; body?: unknown } | undefined = () => undefined) {
  return mockApi((request) => {
    const { path } = request;
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/quick-replies') return { body: { items: [], next_cursor: null } };
    return extra(request);
  });
}

beforeEach(() => {
  stubWebSocket();
  signIn(me, 'token-da-ana');
  FakeXhr.sent = [];
  vi.stubGlobal('XMLHttpRequest', FakeXhr);
});

/** jsdom's File lacks .text(). */
const readText = (blob: Blob) =>
  new Promise<string>((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.readAsText(blob);
  });

const png = () => new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47])], 'print.png', { type: 'image/png' });

/** A browser recording with Firefox's MediaRecorder (OGG/Opus) from a microphone the user allowed;
 * returns the microphone's stop, called once the recording is released. */
class FakeRecorder {
  static isTypeSupported = (type: string) => type.startsWith('audio/ogg');
  static last: FakeRecorder;
  state = 'inactive';
  ondataavailable: ((event: { data: Blob }) => void) | null = null;
  onstop: (() => void) | null = null;
  constructor(
    readonly stream: unknown,
    readonly options: { mimeType: string },
  ) {
    FakeRecorder.last = this;
  }
  start() {
    this.state = 'recording';
  }
  stop() {
    this.state = 'inactive';
    this.ondataavailable?.({ data: new Blob(['opus-bytes'], { type: 'audio/ogg' }) });
    this.onstop?.();
  }
}

function microphone() {
  const stopped = vi.fn();
  const stream = { getTracks: () => [{ stop: stopped }] };
  vi.stubGlobal('MediaRecorder', FakeRecorder);
  Object.defineProperty(navigator, 'mediaDevices', { configurable: true, value: { getUserMedia: vi.fn(async () => stream) } });
  return stopped;
}

describe('Composer attachments', () => {
  it('attaches a file with the button, shows it, and sends it with its caption while showing the upload', async () => {
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    const pdf = new File(['%PDF-1.4 boleto'], 'boleto.pdf', { type: 'application/pdf' });
    await userEvent.upload(screen.getByLabelText('Anexar arquivo').parentElement?.querySelector('input[type=file]') as HTMLInputElement, pdf);
    const preview = await screen.findByTestId('attachment-preview');
    expect(preview).toHaveTextContent('boleto.pdf');
    expect(preview).toHaveTextContent('15 B');
    const box = screen.getByLabelText('Mensagem');
    expect(box).toHaveAttribute('placeholder', 'Legenda (opcional)');
    await userEvent.type(box, 'Segue o boleto');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));

    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    const xhr = FakeXhr.sent[0];
    expect(xhr.method).toBe('POST');
    expect(new URL(xhr.url).pathname).toBe(`/api/v1/tickets/${held.id}/messages`);
    expect(xhr.headers.authorization).toBe('Bearer token-da-ana');
    const sentFile = xhr.body?.get('file') as File;
    expect(sentFile.name).toBe('boleto.pdf');
    expect(await readText(sentFile)).toBe('%PDF-1.4 boleto');
    expect(xhr.body?.get('body')).toBe('Segue o boleto');
    expect(xhr.body?.get('quoted_message_id')).toBeNull();

    xhr.progress(40, 100);
    expect(await screen.findByTestId('upload-progress')).toHaveTextContent('Enviando… 40%');
    xhr.answer(201, sentMessage({ type: 'document', body: 'Segue o boleto' }));
    await waitFor(() => expect(screen.queryByTestId('attachment-preview')).not.toBeInTheDocument());
    expect(screen.queryByTestId('upload-progress')).not.toBeInTheDocument();
    expect(box).toHaveValue('');
  });

  it('offers a WebP as a sticker and sends the choice with the file', async () => {
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    const input = screen.getByLabelText('Anexar arquivo').parentElement?.querySelector('input[type=file]') as HTMLInputElement;
    await userEvent.upload(input, png());
    await screen.findByTestId('attachment-preview');
    expect(screen.queryByLabelText('Enviar como figurinha')).not.toBeInTheDocument(); // only a WebP may be one
    const webp = new File([new Uint8Array([0x52, 0x49, 0x46, 0x46])], 'fig.webp', { type: 'image/webp' });
    await userEvent.upload(input, webp);
    await userEvent.click(await screen.findByLabelText('Enviar como figurinha'));
    expect(screen.getByTestId('attachment-preview')).toHaveTextContent('Figurinhas vão sem legenda.');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    const xhr = FakeXhr.sent[0];
    expect((xhr.body?.get('file') as File).name).toBe('fig.webp');
    expect(xhr.body?.get('as_sticker')).toBe('true');
    xhr.answer(201, sentMessage({ type: 'sticker' }));
    await waitFor(() => expect(screen.queryByTestId('attachment-preview')).not.toBeInTheDocument());
  });

  it('shows the 413 message beside the file and keeps both to change', async () => {
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    fireEvent.paste(screen.getByLabelText('Mensagem'), { clipboardData: { files: [png()], types: ['Files'], getData: () => '' } });
    expect(await screen.findByTestId('attachment-preview')).toHaveTextContent('print.png');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    FakeXhr.sent[0].answer(413, { detail: 'Imagem grande demais: o WhatsApp aceita até 5 MB.' });
    expect(await screen.findByTestId('attach-error')).toHaveTextContent('Imagem grande demais: o WhatsApp aceita até 5 MB.');
    expect(screen.getByTestId('attachment-preview')).toHaveTextContent('print.png');
  });

  it('says so in a toast, naming the ticket, when the upload fails after the agent left the ticket', async () => {
    api();
    function Desk() {
      const [open, setOpen] = useState(true);
      return (
        <>
          <button type="button" onClick={() => setOpen(false)}>
            outro atendimento
          </button>
          {open && <Composer ticket={held} canReply canNote />}
        </>
      );
    }
    renderApp(<Desk />);
    fireEvent.paste(screen.getByLabelText('Mensagem'), { clipboardData: { files: [png()], types: ['Files'], getData: () => '' } });
    await screen.findByTestId('attachment-preview');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    await userEvent.click(screen.getByRole('button', { name: 'outro atendimento' }));
    FakeXhr.sent[0].answer(503, { detail: 'the database did not answer; retry' });
    expect(await screen.findByText(new RegExp(`O anexo do atendimento #${held.number} não foi enviado`))).toBeInTheDocument();
  });

  it('says the file is too large even when the answer has no text (a proxy refused it)', async () => {
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    fireEvent.paste(screen.getByLabelText('Mensagem'), { clipboardData: { files: [png()], types: ['Files'], getData: () => '' } });
    await userEvent.click(await screen.findByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    FakeXhr.sent[0].status = 413;
    FakeXhr.sent[0].responseText = '<html>413 Request Entity Too Large</html>';
    act(() => FakeXhr.sent[0].onload?.());
    expect(await screen.findByTestId('attach-error')).toHaveTextContent('Arquivo grande demais para o WhatsApp.');
  });

  it('takes a file dropped on the composer', async () => {
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    const form = screen.getByTestId('composer');
    const dataTransfer = { files: [png()], types: ['Files'], dropEffect: 'none' };
    fireEvent.dragOver(form, { dataTransfer });
    expect(screen.getByTestId('drop-zone')).toHaveTextContent('Solte o arquivo para anexar');
    fireEvent.drop(form, { dataTransfer });
    expect(await screen.findByTestId('attachment-preview')).toHaveTextContent('print.png');
    expect(screen.queryByTestId('drop-zone')).not.toBeInTheDocument();
  });

  it('offers no attachment where only a note can be written', () => {
    api();
    renderApp(<Composer ticket={ticketFixture()} canReply={false} canNote />);
    expect(screen.queryByLabelText('Anexar arquivo')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Gravar mensagem de voz')).not.toBeInTheDocument();
  });
});

describe('quoted replies', () => {
  it('"Responder" on a message shows it in the composer and the reply carries quoted_message_id', async () => {
    const question: Message = {
      id: '4'.repeat(24), ticket_id: held.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'Qual o prazo de entrega?', status: 'received', created_at: '2025-01-01T12:00:00Z', automatic: false,
    };
    const calls = api(({ method, path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: held };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'GET') return { body: { items: [question], next_cursor: null } };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'POST') {
        return { status: 201, body: sentMessage({ type: 'text', body: '3 dias úteis', quoted: { message_id: question.id, body: question.body, type: 'text' } } as Partial<Message>) };
      }
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('Qual o prazo de entrega?');
    await userEvent.click(screen.getByRole('button', { name: 'Responder citando esta mensagem' }));
    const quote = screen.getByTestId('composer-quote');
    expect(quote).toHaveTextContent('Respondendo a Maria');
    expect(quote).toHaveTextContent('Qual o prazo de entrega?');
    await userEvent.type(screen.getByLabelText('Mensagem'), '3 dias úteis');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true));
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ body: '3 dias úteis', quoted_message_id: question.id });
    await waitFor(() => expect(screen.queryByTestId('composer-quote')).not.toBeInTheDocument());
    // The sent reply shows its quote in the thread.
    const reply = (await screen.findAllByTestId('message')).find((el) => el.textContent?.includes('3 dias úteis'));
    expect(within(reply as HTMLElement).getByTestId('quote')).toHaveTextContent('Qual o prazo de entrega?');
  });
});

describe('a reply that failed', () => {
  const failed: Message = {
    ...sentMessage({}),
    id: '5'.repeat(24),
    type: 'text',
    body: `*${me.name}:*\nSeu boleto vence amanhã`,
    status: 'failed',
    failure_reason: 'connection not connected',
  };

  it('"Escrever de novo" puts its words back in the composer; sending makes a new reply and the failed one stays', async () => {
    const calls = api(({ method, path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: held };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'GET') return { body: { items: [failed], next_cursor: null } };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'POST') {
        return { status: 201, body: sentMessage({ id: '6'.repeat(24), type: 'text', body: `*${me.name}:*\nSeu boleto vence amanhã` }) };
      }
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    await userEvent.click(await screen.findByRole('button', { name: 'Escrever de novo' }));
    expect(screen.getByLabelText('Mensagem')).toHaveValue('Seu boleto vence amanhã'); // without the signature
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ body: 'Seu boleto vence amanhã' }));
    await waitFor(() => expect(screen.getAllByTestId('message')).toHaveLength(2));
    expect(screen.getAllByTestId('rewrite')).toHaveLength(1); // the failed one, still failed
  });

  it('"Escrever de novo" after an attempt of the same words whose answer never came sends a new reply, with a new key', async () => {
    let posts = 0;
    const calls = api(({ method, path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: held };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'GET') return { body: { items: [failed], next_cursor: null } };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'POST') {
        posts += 1;
        if (posts === 1) return { status: 503, body: { detail: 'the database did not answer; retry' } };
        return { status: 201, body: sentMessage({ id: '6'.repeat(24), type: 'text', body: `*${me.name}:*\nSeu boleto vence amanhã` }) };
      }
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    const box = await screen.findByLabelText('Mensagem');
    await userEvent.type(box, 'Seu boleto vence amanhã');
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts).toBe(1)); // its answer never came (it was stored, and failed)
    await waitFor(() => expect(readDraft(me.id, held.id)?.key).toMatch(/^[0-9a-f]{32}$/)); // kept for a reload
    await userEvent.click(await screen.findByRole('button', { name: 'Escrever de novo' }));
    expect(box).toHaveValue('Seu boleto vence amanhã');
    await waitFor(() => expect(readDraft(me.id, held.id)?.key).toBeUndefined()); // nor after a reload
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(posts).toBe(2));
    const keys = calls.filter((c) => c.method === 'POST').map((c) => c.headers.get('Idempotency-Key'));
    expect(keys[1]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).not.toBe(keys[0]); // the same key would be answered with the failed reply
  });

  it('is not offered where the viewer cannot reply, nor on a reply that was sent', async () => {
    const sent: Message = { ...sentMessage({}), type: 'text', body: 'ok', status: 'sent' };
    const failed: Message = { ...sent, id: '5'.repeat(24), status: 'failed' };
    const other = ticketFixture({ status: 'atendendo', agent_id: 'f'.repeat(24), agent_name: 'Bruno', version: 2 });
    api(({ path }) => {
      if (path === `/api/v1/tickets/${other.id}`) return { body: other };
      if (path === `/api/v1/tickets/${other.id}/messages`) return { body: { items: [sent, failed], next_cursor: null } };
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={other.id} />);
    await waitFor(() => expect(screen.getAllByTestId('message')).toHaveLength(2));
    expect(screen.queryByTestId('rewrite')).not.toBeInTheDocument();
  });
});

describe('reactions', () => {
  it('the holder reacts to a client message from its bubble; the reaction shows beside it', async () => {
    const question: Message = {
      id: '4'.repeat(24), ticket_id: held.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'Chegou!', status: 'received', created_at: '2025-01-01T12:00:00Z', automatic: false,
    };
    const pending: Message = { ...sentMessage({}), id: '7'.repeat(24), type: 'text', body: 'ainda indo', status: 'pending' };
    const calls = api(({ method, path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: held };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'GET') return { body: { items: [question, pending], next_cursor: null } };
      if (path === `/api/v1/tickets/${held.id}/messages/${question.id}/reaction`) {
        const reaction = { ...sentMessage({}), id: '8'.repeat(24), type: 'reaction', body: '👍', annotates: question.id, quoted: { message_id: question.id, body: 'Chegou!', type: 'text' } };
        return { status: 201, body: reaction };
      }
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('Chegou!');
    // Only WhatsApp messages that reached it: the client's, not a reply still on its way.
    expect(screen.getAllByTestId('react')).toHaveLength(1);
    await userEvent.click(screen.getByTestId('react'));
    await userEvent.click(await screen.findByRole('menuitem', { name: 'Reagir com 👍' }));
    await waitFor(() => expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ emoji: '👍' }));
    const entry = await waitFor(() => {
      const found = screen.getAllByTestId('message').find((el) => el.getAttribute('data-annotation') === 'reaction');
      if (!found) throw new Error('no reaction yet');
      return found;
    });
    expect(entry).toHaveTextContent('Reagiu com 👍 a');
  });
});

describe('deleting a sent reply for everyone', () => {
  it('is offered on what the connection sent, asks first, and records the deletion beside it', async () => {
    const question: Message = {
      id: '4'.repeat(24), ticket_id: held.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'Oi', status: 'received', created_at: '2025-01-01T12:00:00Z', automatic: false,
    };
    const mine: Message = { ...sentMessage({}), id: '7'.repeat(24), type: 'text', body: 'Cliente errado', status: 'delivered' };
    const calls = api(({ method, path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: held };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'GET') return { body: { items: [question, mine], next_cursor: null } };
      if (path === `/api/v1/tickets/${held.id}/messages/${mine.id}/revoke`) {
        const record = { ...sentMessage({}), id: '8'.repeat(24), type: 'revoke', body: '', annotates: mine.id, quoted: { message_id: mine.id, body: 'Cliente errado', type: 'text' } };
        return { status: 201, body: record };
      }
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('Cliente errado');
    const [, onMine] = screen.getAllByTestId('react');
    await userEvent.click(onMine);
    await userEvent.click(await screen.findByRole('menuitem', { name: 'Apagar para todos' }));
    expect(calls.some((c) => c.path.endsWith('/revoke'))).toBe(false); // asked first
    await userEvent.click(await screen.findByTestId('confirm-revoke'));
    await waitFor(() => expect(calls.filter((c) => c.path.endsWith('/revoke'))).toHaveLength(1));
    const entry = await waitFor(() => {
      const found = screen.getAllByTestId('message').find((el) => el.getAttribute('data-annotation') === 'revoke');
      if (!found) throw new Error('no record yet');
      return found;
    });
    expect(entry).toHaveTextContent('Apagou esta mensagem para todos');
    expect(screen.getAllByText('Cliente errado')).toHaveLength(2); // kept, and quoted by the record
  });

  it("is not offered on the client's message, which offers reactions only", async () => {
    const question: Message = {
      id: '4'.repeat(24), ticket_id: held.id, direction: 'in', sender_type: 'client', sender_name: 'Maria',
      type: 'text', body: 'Oi', status: 'received', created_at: '2025-01-01T12:00:00Z', automatic: false,
    };
    api(({ method, path }) => {
      if (path === `/api/v1/tickets/${held.id}`) return { body: held };
      if (path === `/api/v1/tickets/${held.id}/messages` && method === 'GET') return { body: { items: [question], next_cursor: null } };
      if (path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      if (path.endsWith('/events') || path.endsWith('/history')) return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    renderApp(<TicketView ticketId={held.id} />);
    await screen.findByText('Oi');
    await userEvent.click(screen.getByTestId('react'));
    await screen.findByRole('menuitem', { name: 'Reagir com 👍' });
    expect(screen.queryByRole('menuitem', { name: 'Apagar para todos' })).not.toBeInTheDocument();
  });
});

describe('voice notes', () => {
  it('prefers OGG/Opus and falls back to WebM/Opus (what Chromium records)', () => {
    expect(pickRecordingType(() => true)).toBe('audio/ogg;codecs=opus');
    expect(pickRecordingType((type) => type.startsWith('audio/webm'))).toBe('audio/webm;codecs=opus');
    expect(pickRecordingType(() => false)).toBeNull();
    expect(recordingFileName(new Date('2025-03-04T05:06:07Z'))).toBe('mensagem-de-voz-20250304-050607.ogg');
  });

  it('keeps an OGG recording as it is (Chromium\'s WebM is rewrapped: see e2e/media.e2e.ts)', async () => {
    const ogg = new Blob(['OggS'], { type: 'audio/ogg' });
    expect(await toOggOpus(ogg)).toBe(ogg);
  });

  it('records from the microphone, sends the recording as the file and releases the microphone', async () => {
    const stopped = microphone();
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    await userEvent.click(screen.getByRole('button', { name: 'Gravar mensagem de voz' }));
    expect(await screen.findByTestId('recording')).toHaveTextContent('Gravando 0:00');
    expect(FakeRecorder.last.options.mimeType).toBe('audio/ogg;codecs=opus');
    await userEvent.click(screen.getByRole('button', { name: 'Parar e enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    const file = FakeXhr.sent[0].body?.get('file') as File;
    expect(file.type).toBe('audio/ogg');
    expect(file.name).toMatch(/^mensagem-de-voz-\d{8}-\d{6}\.ogg$/);
    expect(await readText(file)).toBe('opus-bytes');
    expect(stopped).toHaveBeenCalled();
    expect(screen.queryByTestId('recording')).not.toBeInTheDocument();
  });

  it('brings a voice note that did not go back as the attachment, sent again with the same key', async () => {
    microphone();
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    await userEvent.click(screen.getByRole('button', { name: 'Gravar mensagem de voz' }));
    await screen.findByTestId('recording');
    await userEvent.click(screen.getByRole('button', { name: 'Parar e enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
    FakeXhr.sent[0].answer(503, { detail: 'the database did not answer; retry' });
    const preview = await screen.findByTestId('attachment-preview');
    expect(preview).toHaveTextContent(/mensagem-de-voz-\d{8}-\d{6}\.ogg/);
    await userEvent.click(screen.getByRole('button', { name: 'Enviar' }));
    await waitFor(() => expect(FakeXhr.sent).toHaveLength(2));
    const [first, again] = FakeXhr.sent;
    const [voice, resent] = [first.body?.get('file') as File, again.body?.get('file') as File];
    expect([resent.name, resent.type, await readText(resent)]).toEqual([voice.name, voice.type, 'opus-bytes']);
    expect(again.headers['idempotency-key']).toMatch(/^[0-9a-f]{32}$/);
    expect(again.headers['idempotency-key']).toBe(first.headers['idempotency-key']); // one note, however often tried
  });

  it('says so when the microphone is refused', async () => {
    vi.stubGlobal('MediaRecorder', { isTypeSupported: () => true });
    Object.defineProperty(navigator, 'mediaDevices', {
      configurable: true,
      value: { getUserMedia: vi.fn(async () => Promise.reject(new DOMException('denied', 'NotAllowedError'))) },
    });
    api();
    renderApp(<Composer ticket={held} canReply canNote />);
    await userEvent.click(screen.getByRole('button', { name: 'Gravar mensagem de voz' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('O navegador não liberou o microfone');
    expect(FakeXhr.sent).toHaveLength(0);
  });
});
