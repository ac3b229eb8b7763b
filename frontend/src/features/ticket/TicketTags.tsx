import { TagsInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type KeyboardEvent } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import { useTags, useTicketUpdated } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { keys } from '../../realtime/cache';

const MAX_TAGS = 20;

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
      // Joined by the split character alone: the Enter below makes them separate tags again.
      if (unsaved.length) setTyped(unsaved.join(','));
    },
  });
  const current = ticket.tags ?? [];
  // TagsInput splits on "," only as it is typed or pasted; on Enter it would take text holding
  // commas (the tags of a failed save) as one tag. Stopping propagation makes its handler return.
  const onKeyDown = (event: KeyboardEvent<HTMLInputElement>) => {
    if (event.key !== 'Enter' || event.nativeEvent.isComposing || !typed.includes(',')) return;
    event.preventDefault();
    event.stopPropagation();
    const next = [...current];
    for (const tag of typed.split(',').map((part) => part.trim())) {
      // Case-insensitive, as TagsInput itself tells duplicates.
      if (tag && !next.some((known) => known.toLowerCase() === tag.toLowerCase())) next.push(tag);
    }
    setTyped('');
    if (next.length > current.length && current.length < MAX_TAGS) save.mutate(next.slice(0, MAX_TAGS));
  };
  return (
    <TagsInput
      size="xs"
      aria-label={t.tags.label}
      placeholder={t.tags.placeholder}
      data={tags.data ?? []}
      value={current}
      onChange={(next) => save.mutate(next)}
      searchValue={typed}
      onSearchChange={setTyped}
      onKeyDown={onKeyDown}
      maxTags={MAX_TAGS}
      maxLength={32}
      disabled={save.isPending}
      data-testid="ticket-tags"
    />
  );
}
