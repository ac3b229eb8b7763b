import { Alert, Button, Group, Modal, Stack, Text, TextInput, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import type { ScheduledMessage } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDayTime } from '../../lib/format';
import { keys } from '../../realtime/cache';
import { applyEdit, defaultSendAt, localInputToIso, toLocalInput } from './scheduled';

/** "Agendar mensagem": the holder writes a reply and picks when the server sends it. Given
 * `schedule`, its author edits that one instead ("Editar mensagem agendada"): the same form, opened
 * with its text and time, sent to the replace endpoint. */
export function ScheduleMessageModal({
  ticketId,
  schedule,
  opened,
  initialText = '',
  onClose,
  onScheduled,
}: {
  /** Where a new one is scheduled (an edited one stays in its own ticket). */
  ticketId?: string;
  /** The waiting schedule to edit, when editing. */
  schedule?: ScheduledMessage | null;
  opened: boolean;
  /** The composer's text when the modal opened, offered as the message. */
  initialText?: string;
  onClose: () => void;
  /** The schedule made: the new one, or the edit that took the old one's place. */
  onScheduled?: (schedule: ScheduledMessage) => void;
}) {
  // The one last edited is kept while the modal fades out, so its title does not turn into the
  // create one as it closes (the opener lets go of the schedule at once).
  const [lastEdited, setLastEdited] = useState(schedule ?? null);
  if (opened && (schedule ?? null) !== lastEdited) setLastEdited(schedule ?? null);
  const editing = opened ? (schedule ?? null) : lastEdited;
  const ticket = editing?.ticket_id ?? ticketId;
  return (
    <Modal opened={opened} onClose={onClose} title={editing ? t.ticket.schedule.editTitle : t.ticket.schedule.title}>
      {/* Mounted per opening: each one starts from the composer's text (or the edited one's) and a fresh suggested time. */}
      {opened && ticket && (
        <ScheduleForm key={editing?.id ?? ''} ticketId={ticket} editing={editing} initialText={initialText} onClose={onClose} onScheduled={onScheduled} />
      )}
    </Modal>
  );
}

/** A datetime-local value for an existing schedule's time, with its seconds when it has any. */
function inputOf(sendAt: string): string {
  const at = new Date(sendAt);
  return toLocalInput(at, at.getSeconds() !== 0);
}

function ScheduleForm({
  ticketId,
  editing,
  initialText,
  onClose,
  onScheduled,
}: {
  ticketId: string;
  editing: ScheduledMessage | null;
  initialText: string;
  onClose: () => void;
  onScheduled?: (schedule: ScheduledMessage) => void;
}) {
  const client = useQueryClient();
  const [text, setText] = useState(editing ? editing.body : initialText);
  const [initialWhen] = useState(() => (editing ? inputOf(editing.send_at) : toLocalInput(defaultSendAt())));
  const [when, setWhen] = useState(initialWhen);
  // Only a hint for the picker, fixed at opening: the backend's clock decides what is early enough.
  const [min] = useState(() => toLocalInput(new Date(Date.now() + 60_000), true));
  const [invalidWhen, setInvalidWhen] = useState(false);
  const schedule = useMutation({
    mutationFn: (sending: { body: string; send_at: string }) =>
      editing
        ? unwrap(api.POST('/api/v1/scheduled-messages/{schedule_id}/replace', { params: { path: { schedule_id: editing.id } }, body: sending }))
        : unwrap(api.POST('/api/v1/tickets/{ticket_id}/scheduled-messages', { params: { path: { ticket_id: ticketId } }, body: sending })),
    onSuccess: (created) => {
      if (editing) applyEdit(client, editing, created);
      else void client.invalidateQueries({ queryKey: keys.scheduled(ticketId), exact: true });
      const when = formatDayTime(created.send_at);
      notifications.show({ color: 'teal', message: editing ? t.ticket.schedule.edited(when) : t.ticket.schedule.created(when) });
      onScheduled?.(created);
      onClose();
    },
    onError: (error) => {
      if (!(error instanceof ApiError && error.status === 409)) return;
      // Taken, finalized or unreachable meanwhile: the ticket as it is now says so on screen too.
      void client.invalidateQueries({ queryKey: keys.ticket(ticketId), exact: true });
      if (editing) {
        // Or the edited one was sent or canceled meanwhile: the lists show what became of it.
        void client.invalidateQueries({ queryKey: keys.scheduled(ticketId), exact: true });
        void client.invalidateQueries({ queryKey: keys.scheduledList });
      }
    },
  });
  const body = text.trim();
  // An edit that changes nothing would only replace the schedule with its copy.
  const unchanged = editing !== null && body === editing.body.trim() && when === initialWhen;
  const submit = () => {
    const sendAt = localInputToIso(when);
    setInvalidWhen(sendAt === null);
    if (!body || sendAt === null || unchanged || schedule.isPending) return;
    schedule.mutate({ body, send_at: sendAt });
  };

  return (
    <form
      // The browser's own check of `min` would refuse a time the backend accepts (its 30 s rule,
      // by its clock, not this machine's): the backend judges, and its answer is shown below.
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <Stack>
        <Text size="sm" c="dimmed">
          {editing ? t.ticket.schedule.editIntro : t.ticket.schedule.intro}
        </Text>
        <Textarea
          label={t.ticket.schedule.body}
          placeholder={t.ticket.schedule.bodyPlaceholder}
          value={text}
          onChange={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              submit();
            }
          }}
          autosize
          minRows={3}
          maxRows={8}
          maxLength={4096}
          required
          data-autofocus
        />
        <TextInput
          type="datetime-local"
          label={t.ticket.schedule.when}
          value={when}
          onChange={(e) => {
            setWhen(e.currentTarget.value);
            setInvalidWhen(false);
          }}
          min={min}
          // Seconds allowed: a time half a minute ahead is a valid choice for the backend.
          step={1}
          required
          error={invalidWhen ? t.ticket.schedule.whenMissing : undefined}
          data-testid="schedule-when"
        />
        {schedule.isError && (
          <Alert color="red" role="alert" data-testid="schedule-error">
            {errorMessage(schedule.error)}
          </Alert>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            {t.app.cancel}
          </Button>
          <Button type="submit" disabled={!body || !when || unchanged} loading={schedule.isPending} data-testid="confirm-schedule">
            {editing ? t.ticket.schedule.editSubmit : t.ticket.schedule.submit}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
