import { screen, within } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Message } from '../../api/types';
import { formatWhen } from '../../lib/format';
import { agentUser, messageFixture, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { MessageBubble, MessageThread } from './MessageThread';

const me = agentUser();
const ticket = ticketFixture();

// Local times (the thread shows the reader's clock), written as the API sends them (ISO, UTC).
const local = (month: number, day: number, hour: number, minute: number, second = 0) =>
  new Date(2025, month - 1, day, hour, minute, second).toISOString();
const msg = (n: number, over: Partial<Message>): Message => messageFixture(ticket.id, n, over);
const bubbleOf = (body: string) => screen.getAllByTestId('message').find((el) => within(el).queryByText(body)) as HTMLElement;

const EXPLAIN = '(por exemplo, depois de uma queda da conexão)';

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('a message that reached IAZE late', () => {
  it('shows when the client wrote it, with a "recebida" note; on-time messages and those without written_at do not', async () => {
    const late = msg(1, { body: 'escrita às 10h', written_at: local(12, 5, 10, 2), created_at: local(12, 5, 14, 5) });
    const onTime = msg(2, { body: 'quase na hora', written_at: local(12, 5, 14, 5, 30), created_at: local(12, 5, 14, 6) });
    const atTwoMinutes = msg(3, { body: 'dois minutos', written_at: local(12, 5, 14, 5), created_at: local(12, 5, 14, 7) });
    const unknown = msg(4, { body: 'sem hora de escrita', written_at: null, created_at: local(12, 5, 14, 8) });
    const legacy = msg(5, { body: 'resposta antiga', created_at: local(12, 5, 14, 9) }); // no written_at at all
    mockApi(({ path }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === `/api/v1/tickets/${ticket.id}/messages`) {
        return { body: { items: [late, onTime, atTwoMinutes, unknown, legacy], next_cursor: null } };
      }
      return undefined;
    });
    renderApp(<MessageThread ticketId={ticket.id} showTimeline={false} />);
    await screen.findByText('resposta antiga');

    const lateBubble = bubbleOf('escrita às 10h');
    const time = within(lateBubble).getByRole('time');
    expect(time).toHaveAttribute('dateTime', late.written_at);
    expect(time).toHaveTextContent(formatWhen(late.written_at as string));
    expect(within(lateBubble).getByTestId('received-late')).toHaveTextContent(/^recebida às 14:05$/);
    expect(within(lateBubble).getByTestId('written-late')).toHaveAttribute(
      'title',
      `Escrita às 10:02 pelo cliente; chegou ao IAZE às 14:05 ${EXPLAIN}`,
    );

    for (const message of [onTime, atTwoMinutes, unknown, legacy]) {
      const bubble = bubbleOf(message.body);
      const usual = within(bubble).getByRole('time');
      expect(usual).toHaveAttribute('dateTime', message.created_at);
      expect(usual).toHaveTextContent(formatWhen(message.created_at));
      expect(within(bubble).queryByTestId('received-late')).not.toBeInTheDocument();
      expect(within(bubble).queryByTestId('written-late')).not.toBeInTheDocument();
      expect(bubble).not.toHaveTextContent('recebida');
    }
  });

  it('gives the day it arrived when that is another day; written on the connection\'s phone', () => {
    const synced = msg(1, {
      direction: 'out',
      sender_type: 'system',
      sender_name: '',
      status: 'sent',
      body: 'enviada pelo celular',
      written_at: local(12, 5, 10, 2),
      created_at: local(12, 6, 14, 5),
    });
    renderApp(<MessageBubble message={synced} />);
    const bubble = screen.getByTestId('message');
    expect(within(bubble).getByRole('time')).toHaveTextContent(formatWhen(synced.written_at as string));
    expect(within(bubble).getByTestId('received-late')).toHaveTextContent(/^recebida em 06\/12 às 14:05$/);
    expect(within(bubble).getByTestId('written-late')).toHaveAttribute(
      'title',
      `Escrita em 05/12 às 10:02 pelo celular da conexão; chegou ao IAZE em 06/12 às 14:05 ${EXPLAIN}`,
    );
    expect(within(bubble).getByTestId('ticks')).toHaveAttribute('data-status', 'sent');
  });
});
