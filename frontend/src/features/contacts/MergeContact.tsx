import { Alert, Anchor, Button, Group, List, Select, Text } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { Link } from 'react-router';
import { ApiError, api, errorMessage, unwrap } from '../../api/client';
import { useClients } from '../../api/queries';
import type { Client } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatPhone } from '../../lib/format';
import { keys } from '../../realtime/cache';
import { FormFrame } from '../../layout/Crud';
import { mergeClient } from './merge';

// WhatsApp may name one person in two ways (its privacy id, LID, and its number): they become two
// contacts, each with its own conversations. The owner merges the one into the other: the one kept
// receives what the merged one sends from then on, and its history shows both pasts.

/** "Nome · +55 (11) 9…", the hidden number label when WhatsApp gave none: two halves of a split
 * often share the name, the number tells them apart. */
function optionLabel(c: Client): string {
  const label = `${c.name} · ${c.phone ? formatPhone(c.phone) : t.contacts.hiddenPhone}`;
  return c.active === false ? `${label} (${t.contacts.inactive})` : label;
}

/** The open ticket a 409 names: the contact merged must have none. */
function openTicketOf(error: unknown): string | null {
  if (!(error instanceof ApiError) || error.status !== 409) return null;
  const detail = error.detail;
  if (detail && typeof detail === 'object' && 'ticket_id' in detail && typeof detail.ticket_id === 'string') return detail.ticket_id;
  return null;
}

/** Merges `contact` into the contact picked (`intoId` preselected: the one a phone edit found). */
export function MergeContact({ contact, intoId, onMerged, onCancel }: { contact: Client; intoId?: string; onMerged: () => void; onCancel: () => void }) {
  // The preselected contact may not be on the first page of the search: read by its id.
  const preselected = useQuery({
    queryKey: [...keys.clients, 'one', intoId],
    queryFn: () => unwrap(api.GET('/api/v1/clients/{client_id}', { params: { path: { client_id: intoId ?? '' } } })),
    enabled: !!intoId,
  });
  const [picked, setPicked] = useState<Client | null | undefined>(undefined); // undefined: nothing picked yet
  const target = picked === undefined ? (preselected.data ?? null) : picked;
  const [search, setSearch] = useState('');
  // Once a contact is picked the select shows its label as the search: not something to look up.
  const [q] = useDebouncedValue(target && search === optionLabel(target) ? '' : search.trim(), 300);
  const found = useClients(q, '', true);
  const candidates = (found.data?.pages.flatMap((p) => p.items) ?? []).filter((c) => c.id !== contact.id);
  const options = target && !candidates.some((c) => c.id === target.id) ? [target, ...candidates] : candidates;
  const merge = useMutation({
    mutationFn: (into: Client) => mergeClient(contact.id, into.id),
    onSuccess: () => {
      notifications.show({ color: 'teal', message: t.contacts.merged });
      onMerged();
    },
  });
  const ticketId = openTicketOf(merge.error);
  return (
    <FormFrame onSubmit={() => target && merge.mutate(target)}>
      <Text size="sm">{t.contacts.mergeWhich(optionLabel(contact))}</Text>
      <Select
        label={t.contacts.mergeInto}
        placeholder={t.contacts.mergeSearch}
        required
        searchable
        data={options.map((c) => ({ value: c.id, label: optionLabel(c) }))}
        value={target?.id ?? null}
        onChange={(id) => setPicked(options.find((c) => c.id === id) ?? null)}
        searchValue={search}
        onSearchChange={setSearch}
        filter={({ options: listed }) => listed} // the server searched already (name or number)
        nothingFoundMessage={found.isFetching ? t.app.loading : t.contacts.mergeNothing}
        // Focus opens the list: wanted to search, not over the explanation of a contact already picked.
        data-autofocus={intoId ? undefined : true}
      />
      <List size="sm" spacing={4}>
        <List.Item>{t.contacts.mergeFuture}</List.Item>
        <List.Item>{t.contacts.mergeHistory}</List.Item>
        <List.Item>{t.contacts.mergeFinal}</List.Item>
        <List.Item>{t.contacts.mergeOpen}</List.Item>
      </List>
      {merge.isError && (
        <Alert color="red" role="alert">
          {errorMessage(merge.error)}
          {ticketId && (
            <Anchor component={Link} to={`/atendimento/${ticketId}`} ml="xs" size="sm">
              {t.contacts.openExisting}
            </Anchor>
          )}
        </Alert>
      )}
      <Group justify="flex-end">
        <Button variant="default" onClick={onCancel}>
          {t.app.cancel}
        </Button>
        <Button type="submit" color="red" loading={merge.isPending} disabled={!target}>
          {t.contacts.mergeConfirm}
        </Button>
      </Group>
    </FormFrame>
  );
}
