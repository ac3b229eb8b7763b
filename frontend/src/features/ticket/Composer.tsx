import { Button, Group, Text, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent, type KeyboardEvent } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { keys } from '../../realtime/cache';

function hint(ticket: Ticket): string {
  if (ticket.status === 'finalizado') return t.ticket.readOnly;
  if (ticket.status === 'atendendo' && ticket.agent_name) return t.ticket.heldByOther(ticket.agent_name);
  return t.ticket.assumeToReply;
}

export function Composer({ ticket, canReply }: { ticket: Ticket; canReply: boolean }) {
  const [body, setBody] = useState('');
  const client = useQueryClient();
  const send = useMutation({
    mutationFn: (text: string) =>
      unwrap(api.POST('/api/v1/tickets/{ticket_id}/messages', { params: { path: { ticket_id: ticket.id } }, body: { body: text } })),
    onSuccess: () => {
      setBody('');
      void client.invalidateQueries({ queryKey: keys.messages(ticket.id) });
      void client.invalidateQueries({ queryKey: ['tickets', 'list'] });
    },
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });

  if (!canReply) {
    return (
      <Text size="sm" c="dimmed" p="sm" style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }} data-testid="composer-hint">
        {hint(ticket)}
      </Text>
    );
  }

  const submit = (event?: FormEvent) => {
    event?.preventDefault();
    const text = body.trim();
    if (text && !send.isPending) send.mutate(text);
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) submit();
  };

  return (
    <form onSubmit={submit} style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }}>
      <Group p="sm" align="flex-end" wrap="nowrap" gap="xs">
        <Textarea
          aria-label={t.ticket.composer}
          placeholder={t.ticket.composerPlaceholder}
          autosize
          minRows={1}
          maxRows={6}
          maxLength={4096}
          value={body}
          onChange={(e) => setBody(e.currentTarget.value)}
          onKeyDown={onKeyDown}
          style={{ flex: 1 }}
        />
        <Button type="submit" loading={send.isPending} disabled={!body.trim()}>
          {t.ticket.send}
        </Button>
      </Group>
    </form>
  );
}
