import { Button, Group, SegmentedControl, Stack, Text, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent, type KeyboardEvent } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { applyMessage } from '../../realtime/cache';

function hint(ticket: Ticket): string {
  if (ticket.status === 'finalizado') return t.ticket.readOnly;
  if (ticket.status === 'atendendo' && ticket.agent_name) return t.ticket.heldByOther(ticket.agent_name);
  return t.ticket.assumeToReply;
}

type Mode = 'reply' | 'note';

/** Replies go to the client (only the holding agent); internal notes stay with the staff who can
 * see the ticket, in any status. */
export function Composer({ ticket, canReply, canNote }: { ticket: Ticket; canReply: boolean; canNote: boolean }) {
  const [body, setBody] = useState('');
  const [chosen, setChosen] = useState<Mode>('reply');
  const mode: Mode = canReply ? chosen : 'note';
  const client = useQueryClient();
  const send = useMutation({
    mutationFn: ({ text, as }: { text: string; as: Mode }) => {
      const params = { path: { ticket_id: ticket.id } };
      return as === 'note'
        ? unwrap(api.POST('/api/v1/tickets/{ticket_id}/notes', { params, body: { body: text } }))
        : unwrap(api.POST('/api/v1/tickets/{ticket_id}/messages', { params, body: { body: text } }));
    },
    onSuccess: (message, { as }) => {
      setBody('');
      // Shown at once; the websocket's copy of it is applied by id, so it stays one.
      applyMessage(client, message);
      if (as === 'reply') void client.invalidateQueries({ queryKey: ['tickets', 'list'] });
    },
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });

  const hintLine = (
    <Text size="sm" c="dimmed" data-testid="composer-hint">
      {hint(ticket)}
    </Text>
  );
  if (!canReply && !canNote) {
    return (
      <Text size="sm" c="dimmed" p="sm" style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }} data-testid="composer-hint">
        {hint(ticket)}
      </Text>
    );
  }

  const submit = (event?: FormEvent) => {
    event?.preventDefault();
    const text = body.trim();
    if (text && !send.isPending) send.mutate({ text, as: mode });
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) submit();
  };
  const note = mode === 'note';

  return (
    <form onSubmit={submit} style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }}>
      <Stack gap={6} p="sm">
        {!canReply && hintLine}
        {canReply && canNote && (
          <SegmentedControl
            size="xs"
            w="fit-content"
            aria-label={t.ticket.composerMode}
            value={mode}
            onChange={(value) => setChosen(value as Mode)}
            data={[
              { value: 'reply', label: t.ticket.modeReply },
              { value: 'note', label: t.ticket.modeNote },
            ]}
          />
        )}
        <Group align="flex-end" wrap="nowrap" gap="xs">
          <Textarea
            aria-label={note ? t.ticket.note : t.ticket.composer}
            placeholder={note ? t.ticket.notePlaceholder : t.ticket.composerPlaceholder}
            autosize
            minRows={1}
            maxRows={6}
            maxLength={4096}
            value={body}
            onChange={(e) => setBody(e.currentTarget.value)}
            onKeyDown={onKeyDown}
            style={{ flex: 1 }}
            styles={note ? { input: { background: 'var(--mantine-color-yellow-0)' } } : undefined}
          />
          <Button type="submit" color={note ? 'yellow.8' : undefined} loading={send.isPending} disabled={!body.trim()}>
            {note ? t.ticket.saveNote : t.ticket.send}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
