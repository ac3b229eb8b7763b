import { act, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Message } from '../../api/types';
import { applyEvent } from '../../realtime/cache';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture, messageFixture, minuteAt } from '../../test/utils';
import { previewText } from './media';
import { annotationMarks, MessageBubble, MessageThread } from './MessageThread';

const me = agentUser();
const ticket = ticketFixture();
const original = 'a1'.padStart(24, '0');

const at = minuteAt;
const msg = (n: number, over: Partial<Message> = {}): Message => messageFixture(ticket.id, n, over);
const quoteOf = (body: string) => ({ message_id: original, body, type: 'text' });
const annotation = (n: number, type: string, body: string, over: Partial<Message> = {}) =>
  msg(n, { type, body, annotates: original, quoted: quoteOf('Quero cancelar o plano'), ...over });

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('what someone did to an earlier message', () => {
  it('an edit: labelled, quoting the original text, then the new text', () => {
    renderApp(<MessageBubble message={annotation(5, 'edit', 'Quero mudar o plano')} onReply={vi.fn()} />);
    const bubble = screen.getByTestId('message');
    expect(bubble).toHaveAttribute('data-annotation', 'edit');
    expect(bubble).toHaveAttribute('data-direction', 'in');
    expect(within(bubble).getByTestId('annotation-label')).toHaveTextContent('✏️ Mensagem editada');
    expect(within(bubble).getByTestId('quote')).toHaveTextContent('Quero cancelar o plano');
    expect(within(bubble).getByTestId('annotation-body')).toHaveTextContent('Quero mudar o plano');
    const text = bubble.textContent ?? '';
    expect(text.indexOf('Quero cancelar')).toBeLessThan(text.indexOf('Quero mudar'));
    // Not an ordinary message: no "kind not shown" placeholder, no reply to the entry itself.
    expect(screen.queryByTestId('media-placeholder')).not.toBeInTheDocument();
    expect(screen.queryByTestId('reply-to')).not.toBeInTheDocument();
    expect(within(bubble).getByRole('time')).toHaveAttribute('dateTime', at(5));
  });

  it('a deletion for everyone: labelled and quoting what was said', () => {
    renderApp(<MessageBubble message={annotation(5, 'revoke', '')} />);
    const bubble = screen.getByTestId('message');
    expect(bubble).toHaveAttribute('data-annotation', 'revoke');
    expect(within(bubble).getByTestId('annotation-label')).toHaveTextContent('🚫 Apagou esta mensagem para todos');
    expect(within(bubble).getByTestId('quote')).toHaveTextContent('Quero cancelar o plano');
    expect(within(bubble).queryByTestId('annotation-body')).not.toBeInTheDocument();
  });

  it('a reaction: the emoji in the label, quoting the message; on the side of who reacted, with its ticks', () => {
    renderApp(<MessageBubble message={annotation(5, 'reaction', '👍', { direction: 'out', sender_type: 'system', sender_name: '', status: 'sent' })} />);
    const bubble = screen.getByTestId('message');
    expect(bubble).toHaveAttribute('data-direction', 'out');
    expect(within(bubble).getByTestId('annotation-label')).toHaveTextContent('Reagiu com 👍 a');
    expect(within(bubble).getByTestId('quote')).toHaveTextContent('Quero cancelar o plano');
    expect(within(bubble).getByTestId('ticks')).toHaveAttribute('data-status', 'sent');
  });

  it("quotes an agent's signed reply by its words, without the signature", () => {
    const quoted = { message_id: original, body: '*Ana Souza:*\nSeu pedido saiu hoje', type: 'text' };
    renderApp(<MessageBubble message={annotation(6, 'reaction', '👍', { quoted })} />);
    expect(screen.getByTestId('quote')).toHaveTextContent(/^Seu pedido saiu hoje$/);
  });

  it('a reaction taken back says so', () => {
    renderApp(<MessageBubble message={annotation(5, 'reaction', '')} />);
    expect(screen.getByTestId('annotation-label')).toHaveTextContent('Removeu a reação a');
    expect(screen.getByTestId('quote')).toHaveTextContent('Quero cancelar o plano');
  });

  it('quotes a message without text by its kind, and one it does not have as unavailable', () => {
    const { unmount } = renderApp(<MessageBubble message={annotation(5, 'revoke', '', { quoted: { message_id: original, body: '', type: 'image' } })} />);
    expect(screen.getByTestId('quote')).toHaveTextContent('[Imagem]');
    unmount();
    renderApp(<MessageBubble message={annotation(6, 'reaction', '❤️', { quoted: null })} />);
    expect(screen.getByTestId('quote')).toHaveTextContent('Mensagem original indisponível');
  });

  it('names the previews of a deletion and of a reaction taken back in Portuguese', () => {
    expect(previewText('[revoke]')).toBe('[Mensagem apagada]');
    expect(previewText('[reaction]')).toBe('[Reação removida]');
    expect(previewText('👍')).toBe('👍');
  });
});

describe('marks on the earlier message', () => {
  it('keeps the latest reaction of each side, and none once taken back', () => {
    const marks = annotationMarks([
      msg(0x20, { id: original }),
      annotation(0x21, 'reaction', '👍'),
      annotation(0x22, 'reaction', '❤️'),
      annotation(0x23, 'reaction', '🙏', { direction: 'out', sender_type: 'system' }),
      annotation(0x24, 'reaction', '', { direction: 'out', sender_type: 'system' }),
      annotation(0x25, 'edit', 'Quero mudar o plano'),
    ].map((m, i) => ({ ...m, created_at: at(i) })));
    expect(marks.get(original)).toEqual({ edited: true, editedTo: 'Quero mudar o plano', revoked: null, reactions: { in: '❤️' } });
    expect(marks.size).toBe(1);
  });

  it('leaves no mark for a change WhatsApp refused: the client still has the message as it was', () => {
    const out = { direction: 'out', sender_type: 'agent', status: 'failed' } as const;
    const marks = annotationMarks([
      msg(0x20, { id: original }),
      annotation(0x21, 'reaction', '👍', { direction: 'out', sender_type: 'agent', status: 'sent' }),
      annotation(0x22, 'reaction', '❤️', out),
      annotation(0x23, 'edit', 'Quero mudar o plano', out),
      annotation(0x24, 'revoke', '', out),
    ].map((m, i) => ({ ...m, created_at: at(i) })));
    expect(marks.get(original)).toEqual({ edited: false, revoked: null, reactions: { out: '👍' } });
  });

  it('the thread marks the original as edited, deleted by the client and reacted to, and shows the entries', async () => {
    const first = msg(1, { id: original, body: 'Quero cancelar o plano' });
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === `/api/v1/tickets/${ticket.id}/messages`) {
        return { body: { items: [first, annotation(2, 'edit', 'Quero mudar o plano'), annotation(3, 'reaction', '👍', { direction: 'out', sender_type: 'system', sender_name: '' })], next_cursor: null } };
      }
      return undefined;
    });
    const onReply = vi.fn();
    const { client } = renderApp(<MessageThread ticketId={ticket.id} showTimeline={false} onReply={onReply} />);
    const bubbles = await screen.findAllByTestId('message');
    expect(bubbles).toHaveLength(3);
    const marks = within(bubbles[0]).getByTestId('annotation-marks');
    expect(marks).toHaveTextContent('editada · 👍');
    expect(within(marks).getByLabelText('Reação pelo celular da conexão: 👍')).toBeInTheDocument();
    // The original keeps its words; only it can be replied to.
    expect(bubbles[0]).toHaveTextContent('Quero cancelar o plano');
    expect(screen.getAllByTestId('reply-to')).toHaveLength(1);
    await userEvent.click(screen.getByTestId('reply-to'));
    expect(onReply).toHaveBeenCalledWith(first);

    const revoke = annotation(4, 'revoke', '');
    act(() => applyEvent(client, { type: 'event', seq: 2, event: 'message.created', at: revoke.created_at, ticket: null, message: revoke, connection: null }, me));
    expect(await screen.findByText('🚫 Apagou esta mensagem para todos')).toBeInTheDocument();
    const after = screen.getAllByTestId('message');
    expect(after).toHaveLength(4);
    expect(after[0]).toHaveTextContent('Quero cancelar o plano');
    expect(within(after[0]).getByTestId('annotation-marks')).toHaveTextContent('editada · apagada pelo cliente · 👍');
  });
});
