import { TagsInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import { useTags, useTicketUpdated } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { keys } from '../../realtime/cache';

/** The ticket's tags, saved as the agent adds or removes one. */
export function TicketTags({ ticket }: { ticket: Ticket }) {
  const tags = useTags();
  const updated = useTicketUpdated();
  const client = useQueryClient();
  // Held here rather than inside TagsInput, which empties it on Enter: a failed save puts it back.
  const [typed, setTyped] = useState('');
  const save = useMutation({
    mutationFn: (next: string[]) =>
      unwrap(api.PUT('/api/v1/tickets/{ticket_id}/tags', { params: { path: { ticket_id: ticket.id } }, body: { tags: next } })),
    onSuccess: (fresh) => {
      updated(fresh);
      void client.invalidateQueries({ queryKey: keys.tags });
    },
    onError: (error, next) => {
      notifications.show({ color: 'red', message: errorMessage(error) });
      // The field shows only saved tags, so an unsaved one would vanish and have to be typed again;
      // back in the input it is one Enter from a retry. A failed removal needs nothing: the tag
      // is still saved and still shown.
      const unsaved = next.filter((tag) => !(ticket.tags ?? []).includes(tag));
      if (unsaved.length) setTyped(unsaved.join(', '));
    },
  });
  return (
    <TagsInput
      size="xs"
      aria-label={t.tags.label}
      placeholder={t.tags.placeholder}
      data={tags.data ?? []}
      value={ticket.tags ?? []}
      onChange={(next) => save.mutate(next)}
      searchValue={typed}
      onSearchChange={setTyped}
      maxTags={20}
      maxLength={32}
      disabled={save.isPending}
      data-testid="ticket-tags"
    />
  );
}
