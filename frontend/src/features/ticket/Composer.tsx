import { Alert, Badge, Button, Combobox, Group, SegmentedControl, Stack, Text, Textarea, useCombobox } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import { useQuickReplies } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { formatPhone } from '../../lib/format';
import { applyMessage } from '../../realtime/cache';
import { fillTemplate, matchReplies, slashToken } from './quickReplies';

function hint(ticket: Ticket): string {
  if (ticket.status === 'finalizado') return t.ticket.readOnly;
  if (ticket.status === 'atendendo' && ticket.agent_name) return t.ticket.heldByOther(ticket.agent_name);
  return t.ticket.assumeToReply;
}

type Mode = 'reply' | 'note';

/** Replies go to the client (only the holding agent); internal notes stay with the staff who can
 * see the ticket, in any status. Typing "/" in a reply opens the quick replies. */
export function Composer({ ticket, canReply: mayReply, canNote }: { ticket: Ticket; canReply: boolean; canNote: boolean }) {
  const me = useMe();
  const [body, setBody] = useState('');
  const [chosen, setChosen] = useState<Mode>('reply');
  // The holder may answer, but nothing reaches the client (no connection, or it is off): replying
  // is disabled with the reason, so no message ever shows as sent that never left.
  const blocked = mayReply && ticket.reply_blocked ? ticket.reply_blocked : null;
  const canReply = mayReply && !blocked;
  const mode: Mode = canReply ? chosen : 'note';
  const note = mode === 'note';
  const [caret, setCaret] = useState(0);
  // The "/" token the agent closed with Escape: the list stays closed until another one is typed.
  const [dismissedAt, setDismissedAt] = useState<number | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const pendingCaret = useRef<number | null>(null);
  const client = useQueryClient();
  const replies = useQuickReplies(canReply);
  const combobox = useCombobox();
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

  const token = note ? null : slashToken(body, caret);
  const matches = token ? matchReplies(replies.data ?? [], token.query) : [];
  const open = !!token && token.start !== dismissedAt && (replies.data?.length ?? 0) > 0;

  useEffect(() => {
    if (open) {
      combobox.openDropdown();
      combobox.selectFirstOption();
    } else combobox.closeDropdown();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open, token?.query, matches.length]);

  useEffect(() => {
    // Puts the caret after an inserted reply once React has rendered the new text.
    if (pendingCaret.current !== null && area.current) {
      area.current.focus();
      area.current.setSelectionRange(pendingCaret.current, pendingCaret.current);
      pendingCaret.current = null;
    }
  }, [body]);

  const blockedHint = blocked ? (
    <Alert color="orange" p="xs" data-testid="reply-blocked" role="status">
      {t.ticket.replyBlocked[blocked] ?? blocked}
    </Alert>
  ) : null;

  if (!canReply && !canNote) {
    if (blockedHint) return <Stack p="sm">{blockedHint}</Stack>;
    return (
      <Text size="sm" c="dimmed" p="sm" style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }} data-testid="composer-hint">
        {hint(ticket)}
      </Text>
    );
  }

  const insert = (replyId: string) => {
    const reply = replies.data?.find((r) => r.id === replyId);
    if (!reply || !token) return;
    const text = fillTemplate(reply.text, {
      cliente: ticket.client_name || formatPhone(ticket.client_phone),
      agente: me.name,
      protocolo: String(ticket.number),
    });
    const next = body.slice(0, token.start) + text + body.slice(caret);
    pendingCaret.current = token.start + text.length;
    setCaret(token.start + text.length);
    setBody(next);
    combobox.closeDropdown();
  };

  const submit = (event?: FormEvent) => {
    event?.preventDefault();
    const text = body.trim();
    if (text && !send.isPending) send.mutate({ text, as: mode });
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Escape' && open) {
      setDismissedAt(token?.start ?? null);
      return;
    }
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) submit();
  };
  const track = (el: HTMLTextAreaElement) => setCaret(el.selectionStart ?? el.value.length);

  return (
    <form onSubmit={submit} style={{ borderTop: '1px solid var(--mantine-color-gray-3)' }}>
      <Stack gap={6} p="sm">
        {blockedHint}
        {!canReply && !blocked && (
          <Text size="sm" c="dimmed" data-testid="composer-hint">
            {hint(ticket)}
          </Text>
        )}
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
          <Combobox store={combobox} onOptionSubmit={insert} position="top-start" width="target" transitionProps={{ duration: 0 }}>
            <Combobox.Target>
              <Textarea
                ref={area}
                aria-label={note ? t.ticket.note : t.ticket.composer}
                placeholder={note ? t.ticket.notePlaceholder : t.ticket.composerPlaceholder}
                autosize
                minRows={1}
                maxRows={6}
                maxLength={4096}
                value={body}
                onChange={(e) => {
                  setBody(e.currentTarget.value);
                  track(e.currentTarget);
                }}
                onSelect={(e) => track(e.currentTarget)}
                onKeyDown={onKeyDown}
                style={{ flex: 1 }}
                styles={note ? { input: { background: 'var(--mantine-color-yellow-0)' } } : undefined}
              />
            </Combobox.Target>
            <Combobox.Dropdown aria-label={t.quickReplies.picker} data-testid="quick-reply-picker">
              <Combobox.Options mah={240} style={{ overflowY: 'auto' }}>
                {matches.length === 0 && <Combobox.Empty>{t.quickReplies.noMatch}</Combobox.Empty>}
                {matches.map((reply) => (
                  <Combobox.Option value={reply.id} key={reply.id} data-testid="quick-reply-option">
                    <Group gap="xs" wrap="nowrap">
                      <Text size="sm" fw={600}>
                        /{reply.shortcut}
                      </Text>
                      {reply.scope === 'personal' && (
                        <Badge size="xs" variant="light">
                          {t.quickReplies.personal}
                        </Badge>
                      )}
                    </Group>
                    <Text size="xs" opacity={0.8} lineClamp={2}>
                      {reply.text}
                    </Text>
                  </Combobox.Option>
                ))}
              </Combobox.Options>
            </Combobox.Dropdown>
          </Combobox>
          <Button type="submit" color={note ? 'yellow.8' : undefined} loading={send.isPending} disabled={!body.trim()}>
            {note ? t.ticket.saveNote : t.ticket.send}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
