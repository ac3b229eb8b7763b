import { Alert, Button, Group, Modal, Stack, Text, Textarea } from '@mantine/core';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { notifications } from '@mantine/notifications';
import { useState } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import type { Message } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { applyMessage } from '../../realtime/cache';
import { useMounted } from '../../lib/useMounted';

/** What "Editar" opened: the reply, and its text as the chat shows it now, without the signature
 * (the backend signs the new text again, as it signs replies). */
export type Editing = { message: Message; text: string };

/** Correcting a text reply of one's own: the new text goes to WhatsApp as an edit of it. The
 * backend answers the edit's own record (type "edit", `annotates` the reply), shown at once beside
 * the reply; its realtime copy is applied by id (realtime/cache.ts), so it is one entry. */
export function EditMessageModal({ ticketId, editing, onClose }: { ticketId: string; editing: Editing | null; onClose: () => void }) {
  return (
    <Modal opened={editing !== null} onClose={onClose} title={t.ticket.editTitle}>
      {editing && <EditForm key={editing.message.id} ticketId={ticketId} editing={editing} onClose={onClose} />}
    </Modal>
  );
}

function EditForm({ ticketId, editing, onClose }: { ticketId: string; editing: Editing; onClose: () => void }) {
  const client = useQueryClient();
  const [text, setText] = useState(editing.text);
  const open = useMounted();
  const edit = useMutation({
    mutationFn: (body: string) =>
      unwrap(
        api.POST('/api/v1/tickets/{ticket_id}/messages/{message_id}/edit', {
          params: { path: { ticket_id: ticketId, message_id: editing.message.id } },
          body: { body },
        }),
      ),
    onSuccess: (record) => {
      applyMessage(client, record);
      if (open.current) onClose(); // closed meanwhile, another edit may be open: left alone
    },
    // Shown in the form while it is open; closed meanwhile, the agent must still learn the
    // client never got the correction, with the words it was.
    onError: (error, body) => {
      if (!open.current) notifications.show({ color: 'red', message: t.ticket.editFailed(body, errorMessage(error)) });
    },
  });
  // Nothing to send: an empty text (the backend refuses it) or the same words.
  const unchanged = text.trim() === '' || text === editing.text;
  const save = () => {
    if (!unchanged && !edit.isPending) edit.mutate(text);
  };

  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save();
      }}
    >
      <Stack>
        <Text size="sm" c="dimmed">
          {t.ticket.editBody}
        </Text>
        <Textarea
          label={t.ticket.editLabel}
          value={text}
          onChange={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              save();
            }
          }}
          autosize
          minRows={2}
          maxRows={8}
          data-autofocus
        />
        {edit.isError && (
          <Alert color="red" role="alert" data-testid="edit-error">
            {errorMessage(edit.error)}
          </Alert>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            {t.app.cancel}
          </Button>
          <Button type="submit" disabled={unchanged} loading={edit.isPending} data-testid="confirm-edit">
            {t.app.save}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
