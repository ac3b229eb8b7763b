import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Message } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { formatClock, formatSize } from '../../lib/format';
import { previewText, type MediaInfo } from './media';
import { MessageBubble, MessageThread } from './MessageThread';
import { applyEvent } from '../../realtime/cache';
import { ContactsPage } from '../contacts/ContactsPage';
import { Route, Routes } from 'react-router';

const me = agentUser();
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const message = (over: Partial<Message> & Record<string, unknown> = {}): Message =>
  ({
    id: '5'.repeat(24),
    ticket_id: '1'.repeat(24),
    direction: 'in',
    sender_type: 'client',
    sender_name: 'Maria',
    type: 'text',
    body: '',
    status: 'received',
    created_at: '2025-01-01T12:00:00Z',
    ...over,
  }) as Message;

const media = (over: Partial<MediaInfo> = {}): MediaInfo => ({
  url: `/api/v1/messages/${'5'.repeat(24)}/media`,
  mime: 'image/png',
  size: 12_800,
  name: 'foto.png',
  sha256: 'a'.repeat(64),
  status: 'ready',
  voice: false,
  ...over,
});

beforeEach(() => {
  stubWebSocket();
  signIn(me, 'token-da-ana');
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Serves the attachment's bytes and records with which Authorization they were asked for (the
 * session's own check of /auth/me gets the signed-in user). */
function serveMedia(blob: Blob, status = 200) {
  const seen: string[] = [];
  const fetchSpy = vi.fn(async (input: RequestInfo | URL) => {
    const request = input as Request;
    if (new URL(request.url).pathname === '/api/v1/auth/me') return new Response(JSON.stringify(me), { headers: { 'Content-Type': 'application/json' } });
    seen.push(request.headers.get('Authorization') ?? '');
    return status === 200 ? new Response(blob, { headers: { 'Content-Type': blob.type } }) : new Response(JSON.stringify({ detail: 'Não encontrado.' }), { status });
  });
  vi.stubGlobal('fetch', fetchSpy);
  return seen;
}

describe('media in the thread', () => {
  it('shows a received image fetched with the bearer token, opens it full size and closes on Escape', async () => {
    const seen = serveMedia(new Blob([PNG], { type: 'image/png' }));
    const created = vi.spyOn(URL, 'createObjectURL');
    const revoked = vi.spyOn(URL, 'revokeObjectURL');
    const { unmount } = renderApp(<MessageBubble message={message({ type: 'image', media: media(), body: 'olha o erro' })} />);
    const image = await screen.findByTestId('image');
    expect(seen).toEqual(['Bearer token-da-ana']);
    const objectUrl = created.mock.results[0].value as string;
    expect(image).toHaveAttribute('src', objectUrl);
    expect(screen.getByText('olha o erro')).toBeInTheDocument();

    await userEvent.click(screen.getByRole('button', { name: 'Ampliar imagem' }));
    expect(await screen.findByTestId('image-viewer')).toHaveAttribute('src', objectUrl);
    await userEvent.keyboard('{Escape}');
    await waitFor(() => expect(screen.queryByTestId('image-viewer')).not.toBeInTheDocument());

    unmount();
    expect(revoked).toHaveBeenCalledWith(objectUrl);
  });

  it('shows a sticker inline, smaller, with the same viewer', async () => {
    serveMedia(new Blob([PNG], { type: 'image/webp' }));
    renderApp(<MessageBubble message={message({ type: 'sticker', media: media({ mime: 'image/webp', name: '' }) })} />);
    const sticker = await screen.findByTestId('sticker');
    expect(sticker).toHaveAttribute('alt', 'Figurinha');
    expect(sticker.style.maxWidth).toBe('140px');
    await userEvent.click(screen.getByRole('button', { name: 'Ampliar imagem' }));
    expect(await screen.findByTestId('image-viewer')).toBeInTheDocument();
  });

  it('gives a 1×1 image a box the click can hit, scaled without distortion', async () => {
    serveMedia(new Blob([PNG], { type: 'image/png' }));
    renderApp(<MessageBubble message={message({ type: 'image', media: media({ width: 1, height: 1 }) })} />);
    const image = await screen.findByTestId('image');
    expect(image.style.minWidth).toBe('48px');
    expect(image.style.minHeight).toBe('48px');
    expect(image.style.objectFit).toBe('contain');
  });

  it('says "carregando…" while the bytes are on their way, and never asks for them', () => {
    const seen = serveMedia(new Blob([PNG]));
    renderApp(<MessageBubble message={message({ type: 'image', media: media({ status: 'pending' }) })} />);
    expect(screen.getByTestId('media-pending')).toHaveTextContent('carregando…');
    expect(seen).toEqual([]);
  });

  it('shows why a fetch failed and retries it through the API', async () => {
    const failed = message({ type: 'document', media: media({ status: 'failed', error: 'O provedor não entregou o arquivo (HTTP 500).' }) });
    const calls = mockApi(({ method, path }) => {
      if (method === 'POST' && path === `/api/v1/messages/${failed.id}/media/retry`) {
        return { status: 202, body: { ...failed, media: media({ status: 'pending' }) } };
      }
      return undefined;
    });
    renderApp(<MessageBubble message={failed} />);
    expect(screen.getByTestId('media-failed')).toHaveTextContent('O provedor não entregou o arquivo (HTTP 500).');
    await userEvent.click(screen.getByRole('button', { name: 'Tentar novamente' }));
    await waitFor(() => expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1));
  });

  it('plays audio with its duration', async () => {
    serveMedia(new Blob([new Uint8Array([0x4f, 0x67, 0x67, 0x53])], { type: 'audio/ogg' }));
    renderApp(<MessageBubble message={message({ type: 'audio', media: media({ mime: 'audio/ogg', name: 'voice.ogg', duration: 75, voice: true }) })} />);
    const player = await screen.findByTestId('audio-player');
    expect(player.tagName).toBe('AUDIO');
    expect(player).toHaveAttribute('controls');
    expect(player).toHaveAccessibleName('Mensagem de voz');
    expect(screen.getByTestId('audio-duration')).toHaveTextContent('Duração 1:15');
  });

  it('loads a video only when asked', async () => {
    const seen = serveMedia(new Blob([new Uint8Array([0])], { type: 'video/mp4' }));
    renderApp(<MessageBubble message={message({ type: 'video', media: media({ mime: 'video/mp4', size: 3 * 1024 * 1024, name: 'v.mp4' }) })} />);
    const load = screen.getByTestId('video-load');
    expect(load).toHaveTextContent('3 MB');
    expect(seen).toEqual([]);
    await userEvent.click(load);
    expect((await screen.findByTestId('video-player')).tagName).toBe('VIDEO');
    expect(seen).toHaveLength(1);
  });

  it('shows a document with its name and pt-BR size, and downloads it under that name', async () => {
    const seen = serveMedia(new Blob(['%PDF-1.4'], { type: 'application/pdf' }));
    const clicks: { download: string; href: string }[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      clicks.push({ download: this.download, href: this.href });
    });
    renderApp(<MessageBubble message={message({ type: 'document', media: media({ mime: 'application/pdf', name: 'boleto.pdf', size: 1_536_000 }) })} />);
    const card = screen.getByTestId('document-card');
    expect(within(card).getByTestId('document-name')).toHaveTextContent('boleto.pdf');
    expect(within(card).getByTestId('document-size')).toHaveTextContent('PDF · 1,5 MB');
    expect(seen).toEqual([]); // nothing fetched until asked
    await userEvent.click(within(card).getByRole('button', { name: 'Baixar boleto.pdf' }));
    await waitFor(() => expect(clicks).toHaveLength(1));
    expect(clicks[0].download).toBe('boleto.pdf');
    expect(clicks[0].href).toMatch(/^blob:/);
    expect(seen).toEqual(['Bearer token-da-ana']);
  });

  it('never renders an HTML or SVG file as an image: it is a document to download', () => {
    serveMedia(new Blob(['<svg/>'], { type: 'image/svg+xml' }));
    renderApp(<MessageBubble message={message({ type: 'image', media: media({ mime: 'image/svg+xml', name: 'x.svg' }) })} />);
    expect(screen.getByTestId('document-card')).toHaveTextContent('x.svg');
    expect(screen.queryByTestId('image')).not.toBeInTheDocument();
  });

  it('shows a location with a map link', () => {
    renderApp(
      <MessageBubble
        message={message({ type: 'location', location: { latitude: -23.55052, longitude: -46.633308, name: 'Loja Centro', address: 'Praça da Sé, São Paulo' } })}
      />,
    );
    const card = screen.getByTestId('location');
    expect(card).toHaveTextContent('Loja Centro');
    expect(card).toHaveTextContent('Praça da Sé, São Paulo');
    const link = within(card).getByRole('link', { name: 'Abrir no mapa' });
    expect(link).toHaveAttribute('href', 'https://www.openstreetmap.org/?mlat=-23.550520&mlon=-46.633308#map=17/-23.550520/-46.633308');
    expect(link).toHaveAttribute('target', '_blank');
    expect(link).toHaveAttribute('rel', 'noopener noreferrer');
  });

  it('shows a contact card whose "Iniciar conversa" leads to the contacts page with its number', () => {
    renderApp(<MessageBubble message={message({ type: 'contact', contacts: [{ name: 'João Silva', phones: ['+55 11 98765-4321'] }, { name: 'Sem Fone', phones: [] }] })} />);
    const [joao, nobody] = screen.getAllByTestId('contact-card');
    expect(joao).toHaveTextContent('João Silva');
    expect(joao).toHaveTextContent('+55 (11) 98765-4321');
    expect(within(joao).getByRole('link', { name: 'Iniciar conversa' })).toHaveAttribute('href', '/contatos?novo=5511987654321&nome=Jo%C3%A3o+Silva');
    // No number: no button that would lead nowhere.
    expect(within(nobody).queryByRole('link')).not.toBeInTheDocument();
    expect(nobody).toHaveTextContent('Sem número');
  });

  it('opens the conversation flow for the card\'s number from the thread', async () => {
    const calls = mockApi(({ method, path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/clients' && method === 'POST') {
        return { status: 201, body: { id: 'n'.repeat(24), name: 'João Silva', phone: '5511987654321', tags: [], notes: '', email: null, created_at: '2025-01-01T00:00:00Z' } };
      }
      if (path === '/api/v1/clients') return { body: { items: [], next_cursor: null } };
      if (path === '/api/v1/tags') return { body: { items: [] } };
      if (path === '/api/v1/whatsapp-connections' || path === '/api/v1/departments') return { body: { items: [], next_cursor: null } };
      return undefined;
    });
    const card = message({ type: 'contact', contacts: [{ name: 'João Silva', phones: ['+55 11 98765-4321'] }] });
    renderApp(
      <Routes>
        <Route index element={<MessageBubble message={card} />} />
        <Route path="contatos" element={<ContactsPage />} />
      </Routes>,
      { path: '/*' },
    );
    await userEvent.click(within(screen.getByTestId('contact-card')).getByRole('link', { name: 'Iniciar conversa' }));
    const dialog = await screen.findByRole('dialog', { name: 'Iniciar conversa no WhatsApp' });
    expect(dialog).toHaveTextContent('João Silva');
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.body)).toEqual([{ name: 'João Silva', phone: '5511987654321', notes: '', tags: [] }]);
  });

  it('shows the quoted message above a reply', () => {
    renderApp(<MessageBubble message={message({ body: 'sim, esse mesmo', quoted: { message_id: '6'.repeat(24), body: 'É o boleto de março?', type: 'text' } })} />);
    const quote = screen.getByTestId('quote');
    expect(quote).toHaveTextContent('É o boleto de março?');
    const bubble = screen.getByTestId('message');
    expect(bubble.textContent?.indexOf('É o boleto')).toBeLessThan(bubble.textContent?.indexOf('sim, esse mesmo') ?? -1);
  });

  it('names the kind of a message that has nothing to show', () => {
    renderApp(<MessageBubble message={message({ type: 'location', location: { latitude: null, longitude: null, name: '', address: '' } })} />);
    expect(screen.getByTestId('media-placeholder')).toHaveTextContent('[Localização]');
  });

  it('says a kind it does not show is on the phone, and keeps its words', () => {
    renderApp(<MessageBubble message={message({ type: 'eventMessage', body: 'Visita técnica' })} />);
    expect(screen.getByTestId('media-placeholder')).toHaveTextContent('[Tipo de mensagem não exibido aqui: veja no celular]');
    expect(screen.getByTestId('message')).toHaveTextContent('Visita técnica');
  });

  it('says so when the bytes cannot be fetched, and fetches again on request', async () => {
    serveMedia(new Blob([PNG]), 404);
    renderApp(<MessageBubble message={message({ type: 'image', media: media() })} />);
    expect(await screen.findByTestId('media-fetch-error')).toHaveTextContent('Não encontrado.');
    const seen = serveMedia(new Blob([PNG], { type: 'image/png' }));
    fireEvent.click(screen.getByRole('button', { name: 'Tentar novamente' }));
    await screen.findByTestId('image');
    expect(seen).toHaveLength(1);
  });
});

describe('pending attachments in the thread', () => {
  it('shows an attachment once the realtime event says its bytes are in, without reading the thread again', async () => {
    const ticket = ticketFixture();
    const pending = message({ ticket_id: ticket.id, type: 'image', media: media({ status: 'pending' }) });
    let reads = 0;
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === `/api/v1/tickets/${ticket.id}/messages`) {
        reads += 1;
        return { body: { items: [pending], next_cursor: null } };
      }
      if (path === pending.media?.url) return { body: new Blob([PNG], { type: 'image/png' }) };
      return undefined;
    });
    const { client } = renderApp(<MessageThread ticketId={ticket.id} showTimeline={false} />);
    expect(await screen.findByTestId('media-pending')).toHaveTextContent('carregando…');
    const ready = { ...pending, media: media() } as Message;
    act(() => applyEvent(client, { type: 'event', seq: 2, event: 'message.status', at: ready.created_at, ticket: null, message: ready, connection: null }, me));
    expect(await screen.findByTestId('image')).toBeInTheDocument();
    expect(reads).toBe(1);
  });
});

describe('a client who called', () => {
  it('shows the call in the thread as what it was, with what to do about it', () => {
    renderApp(
      <>
        <MessageBubble message={message({ id: '6'.repeat(24), type: 'call' })} />
        <MessageBubble message={message({ type: 'video_call' })} />
      </>,
    );
    const [voice, video] = screen.getAllByTestId('call-notice');
    expect(voice).toHaveTextContent('📞 Ligou para o WhatsApp da empresa');
    expect(video).toHaveTextContent('📹 Ligou por vídeo');
    expect(screen.queryByTestId('media-placeholder')).not.toBeInTheDocument();
  });
});

describe('media formatting', () => {
  it('formats sizes and lengths the Brazilian way', () => {
    expect(formatSize(512)).toBe('512 B');
    expect(formatSize(12_800)).toBe('12,5 KB');
    expect(formatSize(1_536_000)).toBe('1,5 MB');
    expect(formatClock(7.4)).toBe('0:07');
    expect(formatClock(3723)).toBe('1:02:03');
  });
  it('names a preview without text in Portuguese', () => {
    expect(previewText('[document]')).toBe('[Documento]');
    expect(previewText('[audio]')).toBe('[Áudio]');
    expect(previewText('[revoke]')).toBe('[Mensagem apagada]');
    expect(previewText('[reaction]')).toBe('[Reação removida]');
    expect(previewText('[call]')).toBe('[Chamada de voz]');
    expect(previewText('[video_call]')).toBe('[Chamada de vídeo]');
    expect(previewText('[poll]')).toBe('[Anexo]');
    expect(previewText('[sic] texto do cliente')).toBe('[sic] texto do cliente');
  });
});
