import { Alert, Button, Center, Group, Loader, Stack, Text } from '@mantine/core';
import { useEffect, useRef } from 'react';
import { errorMessage } from '../../api/client';
import { useMessages } from '../../api/queries';
import type { Message } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatWhen } from '../../lib/format';

function TickIcon({ status }: { status: string }) {
  const common = { width: 16, height: 12, viewBox: '0 0 16 12', fill: 'none', stroke: 'currentColor', strokeWidth: 1.6, 'aria-hidden': true } as const;
  if (status === 'pending') {
    return (
      <svg {...common} viewBox="0 0 12 12" width={12}>
        <circle cx="6" cy="6" r="4.6" />
        <path d="M6 3.4V6l1.8 1.2" />
      </svg>
    );
  }
  if (status === 'failed') {
    return (
      <svg {...common} viewBox="0 0 12 12" width={12}>
        <circle cx="6" cy="6" r="4.6" />
        <path d="M6 3.2v3.4M6 8.4v.4" />
      </svg>
    );
  }
  if (status === 'sent') {
    return (
      <svg {...common}>
        <path d="M1.5 6.5l3 3 6-7" />
      </svg>
    );
  }
  if (status === 'delivered' || status === 'read') {
    return (
      <svg {...common}>
        <path d="M1 6.5l3 3 6-7M7 9.5l6-7" />
      </svg>
    );
  }
  return null;
}

export function DeliveryTicks({ status }: { status: string }) {
  const label = t.ticket.delivery[status] ?? status;
  return (
    <Text
      span
      c={status === 'read' ? 'blue.7' : status === 'failed' ? 'red.7' : 'dimmed'}
      role="img"
      aria-label={label}
      title={label}
      data-testid="ticks"
      data-status={status}
      style={{ display: 'inline-flex', alignItems: 'center' }}
    >
      <TickIcon status={status} />
    </Text>
  );
}

function MediaPlaceholder({ message }: { message: Message }) {
  const kind = message.type in t.ticket.media ? message.type : 'other';
  const name = typeof message.media?.file_name === 'string' ? ` · ${message.media.file_name}` : '';
  return (
    <Text size="sm" fs="italic" data-testid="media-placeholder">
      [{t.ticket.media[kind]}
      {name}]
    </Text>
  );
}

export function MessageBubble({ message }: { message: Message }) {
  const isMedia = message.type !== 'text' && message.type !== 'chat';
  return (
    <div
      className="bubble"
      data-direction={message.direction}
      data-testid="message"
      aria-label={message.direction === 'in' ? t.ticket.incoming : t.ticket.outgoing}
    >
      {message.direction === 'out' && message.sender_name && (
        <Text size="xs" c="dimmed">
          {message.sender_name}
        </Text>
      )}
      {isMedia && <MediaPlaceholder message={message} />}
      {message.body && <Text size="sm">{message.body}</Text>}
      <Group gap={4} justify="flex-end">
        <Text size="xs" c="dimmed">
          <time dateTime={message.created_at}>{formatWhen(message.created_at)}</time>
        </Text>
        {message.direction === 'out' && <DeliveryTicks status={message.status} />}
      </Group>
    </div>
  );
}

export function MessageThread({ ticketId }: { ticketId: string }) {
  const query = useMessages(ticketId);
  const bottom = useRef<HTMLDivElement>(null);
  const messages = query.data?.pages.flatMap((p) => p.items) ?? [];
  const lastId = messages[messages.length - 1]?.id;

  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: 'end' });
  }, [lastId]);

  return (
    <Stack gap="xs" p="sm" style={{ flex: 1, overflowY: 'auto', minHeight: 200 }} role="log" aria-label={t.ticket.thread} aria-live="polite" data-testid="thread">
      {query.isPending && (
        <Center>
          <Loader size="sm" aria-label={t.app.loading} />
        </Center>
      )}
      {query.isError && (
        <Alert color="red" role="alert">
          {errorMessage(query.error)}
        </Alert>
      )}
      {query.isSuccess && messages.length === 0 && <Text c="dimmed">{t.ticket.noMessages}</Text>}
      {messages.map((message) => (
        <MessageBubble key={message.id} message={message} />
      ))}
      {query.hasNextPage && (
        <Button variant="subtle" onClick={() => query.fetchNextPage()} loading={query.isFetchingNextPage}>
          {t.ticket.olderMessages}
        </Button>
      )}
      <div ref={bottom} />
    </Stack>
  );
}
