import { Alert, Button, Group, Modal, Stack, Text, TextInput, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import type { ScheduledMessage } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDayTime } from '../../lib/format';
import { keys } from '../../realtime/cache';
import { defaultSendAt, localInputToIso, toLocalInput } from './scheduled';

/** "Agendar mensagem": the holder writes a reply and picks when the server sends it. */
export function ScheduleMessageModal({
  ticketId,
  opened,
  initialText = '',
  onClose,
  onScheduled,
}: {
  ticketId: string;
  opened: boolean;
  /** The composer's text when the modal opened, offered as the message. */
  initialText?: string;
  onClose: () => void;
  onScheduled?: (schedule: ScheduledMessage) => void;
}) {
  return (
    <Modal opened={opened} onClose={onClose} title={t.ticket.schedule.title}>
      {/* Mounted per opening: each one starts from the composer's text and a fresh suggested time. */}
      {opened && <ScheduleForm ticketId={ticketId} initialText={initialText} onClose={onClose} onScheduled={onScheduled} />}
    </Modal>
  );
}

function ScheduleForm({
  ticketId,
  initialText,
  onClose,
  onScheduled,
}: {
  ticketId: string;
  initialText: string;
  onClose: () => void;
  onScheduled?: (schedule: ScheduledMessage) => void;
}) {
  const client = useQueryClient();
  const [text, setText] = useState(initialText);
  const [when, setWhen] = useState(() => toLocalInput(defaultSendAt()));
  // Only a hint for the picker, fixed at opening: the backend's clock decides what is early enough.
  const [min] = useState(() => toLocalInput(new Date(Date.now() + 60_000), true));
  const [invalidWhen, setInvalidWhen] = useState(false);
  const schedule = useMutation({
    mutationFn: (sending: { body: string; send_at: string }) =>
      unwrap(api.POST('/api/v1/tickets/{ticket_id}/scheduled-messages', { params: { path: { ticket_id: ticketId } }, body: sending })),
    onSuccess: (created) => {
      void client.invalidateQueries({ queryKey: keys.scheduled(ticketId), exact: true });
      notifications.show({ color: 'teal', message: t.ticket.schedule.created(formatDayTime(created.send_at)) });
      onScheduled?.(created);
      onClose();
    },
    onError: (error) => {
      // Taken, finalized or unreachable meanwhile: the ticket as it is now says so on screen too.
      if (error instanceof ApiError && error.status === 409) void client.invalidateQueries({ queryKey: keys.ticket(ticketId), exact: true });
    },
  });
  const body = text.trim();
  const submit = () => {
    const sendAt = localInputToIso(when);
    setInvalidWhen(sendAt === null);
    if (!body || sendAt === null || schedule.isPending) return;
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
          {t.ticket.schedule.intro}
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
          <Button type="submit" disabled={!body || !when} loading={schedule.isPending} data-testid="confirm-schedule">
            {t.ticket.schedule.submit}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
