import { Alert, Badge, Button, Center, Drawer, Group, Loader, Paper, Stack, Text, UnstyledButton } from '@mantine/core';
import { useState } from 'react';
import { errorMessage } from '../../api/client';
import { useClientHistory, useHistoryMessages } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatWhen } from '../../lib/format';
import { previewText } from './media';
import { annotationMarks, MessageBubble } from './MessageThread';

const STATUS_COLOR: Record<string, string> = { espera: 'yellow', atendendo: 'teal', finalizado: 'gray' };

/** The client's other tickets, read through the ticket in view (the API authorizes them by it):
 * a button in the ticket header that opens the list, and each ticket's thread, read-only. */
export function ClientHistory({ ticket }: { ticket: Ticket }) {
  const [opened, setOpened] = useState(false);
  const [selected, setSelected] = useState<Ticket | null>(null);
  const history = useClientHistory(ticket.id);
  const others = history.data?.pages.flatMap((p) => p.items) ?? [];
  const label = history.isSuccess && others.length > 0
    ? t.ticket.history.openCount(history.hasNextPage ? `${others.length}+` : String(others.length))
    : t.ticket.history.open;

  return (
    <>
      <Button variant="default" onClick={() => setOpened(true)} data-testid="client-history">
        {label}
      </Button>
      <Drawer
        opened={opened}
        onClose={() => {
          setOpened(false);
          setSelected(null);
        }}
        position="right"
        size="lg"
        title={selected ? `${t.inbox.ticketNumber(selected.number)} · ${t.ticket.history.readOnly}` : t.ticket.history.title}
      >
        {selected ? (
          <Stack gap="sm">
            <Button variant="subtle" size="compact-sm" w="fit-content" onClick={() => setSelected(null)}>
              ← {t.ticket.history.back}
            </Button>
            <HistoryThread ticketId={ticket.id} other={selected} />
          </Stack>
        ) : (
          <Stack gap="xs">
            {history.isPending && (
              <Center>
                <Loader size="sm" aria-label={t.app.loading} />
              </Center>
            )}
            {history.isError && (
              <Alert color="red" role="alert">
                {errorMessage(history.error)}
              </Alert>
            )}
            {history.isSuccess && others.length === 0 && <Text c="dimmed">{t.ticket.history.empty}</Text>}
            {others.map((other) => (
              <UnstyledButton key={other.id} onClick={() => setSelected(other)} data-testid="history-ticket">
                <Paper withBorder p="xs">
                  <Group justify="space-between" wrap="nowrap">
                    <Text fw={600}>{t.inbox.ticketNumber(other.number)}</Text>
                    <Badge color={STATUS_COLOR[other.status]}>{t.status[other.status]}</Badge>
                  </Group>
                  <Text size="xs" c="dimmed">
                    {t.ticket.opened} {formatWhen(other.created_at)}
                    {other.finalized_at ? ` · ${t.ticket.history.finalizedAt} ${formatWhen(other.finalized_at)}` : ''} ·{' '}
                    {t.ticket.agent}: {other.agent_name ?? t.ticket.noAgent}
                  </Text>
                  {other.last_message_preview && (
                    <Text size="sm" lineClamp={1}>
                      {previewText(other.last_message_preview)}
                    </Text>
                  )}
                </Paper>
              </UnstyledButton>
            ))}
            {history.hasNextPage && (
              <Button variant="subtle" onClick={() => history.fetchNextPage()} loading={history.isFetchingNextPage}>
                {t.ticket.history.more}
              </Button>
            )}
          </Stack>
        )}
      </Drawer>
    </>
  );
}

function HistoryThread({ ticketId, other }: { ticketId: string; other: Ticket }) {
  const query = useHistoryMessages(ticketId, other.id);
  const messages = [...(query.data?.pages ?? [])].reverse().flatMap((p) => p.items);
  const marks = annotationMarks(messages);
  return (
    <Stack gap="xs" role="log" aria-label={t.ticket.thread} data-testid="history-thread">
      <Text size="xs" c="dimmed">
        {t.ticket.agent}: {other.agent_name ?? t.ticket.noAgent} · {t.status[other.status]}
      </Text>
      {query.hasNextPage && (
        <Button variant="subtle" onClick={() => query.fetchNextPage()} loading={query.isFetchingNextPage}>
          {t.ticket.olderMessages}
        </Button>
      )}
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
        <MessageBubble key={message.id} message={message} marks={marks.get(message.id)} />
      ))}
    </Stack>
  );
}
