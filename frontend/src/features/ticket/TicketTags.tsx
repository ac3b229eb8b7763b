import { TagsInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useRef, useState } from 'react';
import { api, errorMessage, unwrap } from '../../api/client';
import { useTags, useTicketUpdated } from '../../api/queries';
import type { Ticket } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { keys } from '../../realtime/cache';

const MAX_TAGS = 20; // backend/tags/schemas.py

/** The ticket's tags, saved as the agent adds or removes one. */
export function TicketTags({ ticket }: { ticket: Ticket }) {
  const tags = useTags();
  const updated = useTicketUpdated();
  const client = useQueryClient();
  // Held here rather than inside TagsInput, which empties it on Enter: tags that were not saved
  // (a failed save, or more than fit) are put back in it.
  const [typed, setTyped] = useState('');
  // Whether the text in the field is what a try put back (tags over the limit, a failed save) and
  // the user has not edited it since: that try was answered already, so a blur leaves it alone
  // rather than saying the same thing again at every blur. Enter still tries it again.
  const putBack = useRef(false);
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
      // Joined by the split character alone: add() makes them separate tags again. Any that did
      // not fit stay after them.
      if (unsaved.length) {
        putBack.current = true;
        setTyped((rest) => [...unsaved, rest].filter(Boolean).join(','));
      }
    },
  });
  const current = ticket.tags ?? [];
  // Every way text is added (Enter, blur, a typed or pasted ",", a picked suggestion) comes here,
  // with one rule: split on ",", trimmed, empty ones and ones already there (case-insensitive, as
  // TagsInput tells duplicates) dropped. On Enter TagsInput takes text holding commas (the tags of a
  // failed save) as one tag; blur is handled below and hands the text over as typed.
  const add = (text: string) => {
    const next = [...current];
    for (const tag of text.split(',').map((part) => part.trim())) {
      if (tag && !next.some((known) => known.toLowerCase() === tag.toLowerCase())) next.push(tag);
    }
    const fit = next.slice(0, MAX_TAGS);
    const over = next.slice(MAX_TAGS);
    if (over.length) {
      notifications.show({ color: 'orange', message: t.tags.tooMany(MAX_TAGS) });
      // Left in the field, as after a failed save; after TagsInput empties it, which on a paste or
      // a typed "," it does once it has handed the tags over.
      queueMicrotask(() => {
        putBack.current = true;
        setTyped(over.join(','));
      });
    }
    if (fit.length > current.length) save.mutate(fit);
  };
  return (
    <TagsInput
      size="xs"
      aria-label={t.tags.label}
      placeholder={t.tags.placeholder}
      data={tags.data ?? []}
      value={current}
      onChange={(next) => {
        const added = next.filter((tag) => !current.includes(tag));
        if (added.length) add(added.join(','));
        else save.mutate(next);
      }}
      searchValue={typed}
      onSearchChange={(text) => {
        putBack.current = false; // edited, or emptied as TagsInput hands text over
        setTyped(text);
      }}
      // Blur as TagsInput would do it (the text handed to add(), the field emptied), except for text
      // put back and not edited since, which stays for the user to fix.
      acceptValueOnBlur={false}
      onBlur={() => {
        if (putBack.current) return;
        setTyped('');
        if (typed.trim()) add(typed);
      }}
      // No maxTags: TagsInput would drop what is over it without a word; add() keeps it.
      maxLength={32}
      disabled={save.isPending}
      data-testid="ticket-tags"
    />
  );
}
