import { Alert, Badge, Button, Checkbox, FileInput, Group, Modal, Select, Stack, Switch, Table, TagsInput, Text, TextInput, Textarea } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { useSearchParams } from 'react-router';
import { ApiError, api, errorMessage, fieldErrors, unwrap } from '../../api/client';
import { useClients, useTags } from '../../api/queries';
import type { Client, ClientImportResult } from '../../api/types';
import { useMe } from '../../auth/session';
import { translateBackendMessage } from '../../i18n/backendMessages';
import { t } from '../../i18n/pt-BR';
import { formatDate, formatPhone } from '../../lib/format';
import { FormActions, FormFrame, ListTable, RowActions } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
import { keys } from '../../realtime/cache';
import { ClientPhone } from './ClientPhone';
import { MergeContact } from './MergeContact';
import { StartConversation } from './StartConversation';

/** A contact's name shows in its tickets and in the tag lists: refresh them all. */
function useContactsChanged() {
  const client = useQueryClient();
  return () => {
    for (const key of [keys.clients, keys.tags, keys.tickets, ['ticket']]) void client.invalidateQueries({ queryKey: key });
  };
}

type Prefill = { name: string; phone: string };

/** The contact a 409 names as the one holding the number given (`client_id`). */
function holderOf(error: unknown): string | null {
  const detail = error instanceof ApiError && error.status === 409 ? error.detail : null;
  return detail && typeof detail === 'object' && 'client_id' in detail && typeof detail.client_id === 'string' ? detail.client_id : null;
}

/** The contact a shared card names, found or created: the phone is a contact's key, so creating
 * it either makes it or answers 409 naming the one that already has the number. */
async function contactFor(card: Prefill): Promise<Client> {
  try {
    return await unwrap(api.POST('/api/v1/clients', { body: { name: card.name.trim() || card.phone, phone: card.phone, notes: '', tags: [] } }));
  } catch (error) {
    const holder = holderOf(error);
    if (!holder) throw error;
    return unwrap(api.GET('/api/v1/clients/{client_id}', { params: { path: { client_id: holder } } }));
  }
}

/** The 422 of a PATCH giving a number to a contact that has one already (a different one). */
function phoneFixed(error: unknown): boolean {
  return error instanceof ApiError && error.status === 422 && error.detail === 'the phone of a client does not change';
}

function ContactForm({
  contact,
  prefill,
  onDone,
  onMerge,
}: {
  contact: Client | null;
  prefill?: Prefill | null;
  onDone: () => void;
  onMerge: (contact: Client, intoId: string) => void;
}) {
  const changed = useContactsChanged();
  const tags = useTags();
  // "Removing" a contact deactivates it (the owner's decision): kept with its history, out of
  // the list and of new conversations; what it sends on WhatsApp still arrives.
  const owner = useMe().role === 'reseller';
  const [active, setActive] = useState(contact?.active ?? true);
  const [name, setName] = useState(contact?.name ?? prefill?.name ?? '');
  const [phone, setPhone] = useState(contact?.phone ?? prefill?.phone ?? '');
  const [email, setEmail] = useState(contact?.email ?? '');
  const [notes, setNotes] = useState(contact?.notes ?? '');
  const [tagList, setTagList] = useState<string[]>(contact?.tags ?? []);
  // The phone is a contact's key and does not change, except once for a contact WhatsApp named
  // only by its privacy id (no number): its number may be given then, and is sent only if typed.
  const phoneEditable = !contact || !contact.phone;
  const save = useMutation({
    mutationFn: () => {
      const common = { name, email: email.trim() || null, notes, tags: tagList };
      const activeChange = owner && contact && active !== (contact.active ?? true) ? { active } : {};
      const phoneGiven = phoneEditable && phone.trim() ? { phone: phone.trim() } : {};
      return contact
        ? unwrap(api.PATCH('/api/v1/clients/{client_id}', { params: { path: { client_id: contact.id } }, body: { ...common, ...activeChange, ...phoneGiven } }))
        : unwrap(api.POST('/api/v1/clients', { body: { ...common, phone } }));
    },
    onSuccess: () => {
      changed();
      notifications.show({ color: 'teal', message: contact ? t.contacts.updated : t.contacts.created });
      onDone();
    },
    // The contact got its number meanwhile (WhatsApp sent it): the list shows it once refreshed.
    onError: (error) => {
      if (phoneFixed(error)) changed();
    },
  });
  const errors = fieldErrors(save.error);
  const taken = save.error instanceof ApiError && save.error.status === 409;
  const fixed = phoneFixed(save.error);
  // A number given to a contact without one (WhatsApp hid it) that another contact has: most
  // likely the same person, split in two by WhatsApp. The owner can make them one from here.
  const holder = owner && contact && taken ? holderOf(save.error) : null;
  return (
    <FormFrame onSubmit={() => save.mutate()}>
      <TextInput label={t.contacts.name} required maxLength={120} value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-autofocus />
      <TextInput
        label={t.contacts.phone}
        required={!contact || !!contact.phone}
        disabled={!phoneEditable}
        value={phoneEditable ? phone : formatPhone(phone)}
        placeholder={contact && phoneEditable ? t.contacts.hiddenPhone : undefined}
        onChange={(e) => setPhone(e.currentTarget.value)}
        error={errors.phone ?? (taken ? t.contacts.phoneTaken : fixed ? errorMessage(save.error) : undefined)}
        inputMode="tel"
      />
      {contact && holder && (
        <Group justify="flex-end" mt={-8}>
          <Button size="compact-sm" variant="light" onClick={() => onMerge(contact, holder)}>
            {t.contacts.mergeWithIt}
          </Button>
        </Group>
      )}
      <TextInput label={t.contacts.email} type="email" value={email} onChange={(e) => setEmail(e.currentTarget.value)} error={errors.email} />
      <Textarea label={t.contacts.notes} autosize minRows={2} maxLength={2000} value={notes} onChange={(e) => setNotes(e.currentTarget.value)} error={errors.notes} />
      <TagsInput
        label={t.contacts.tags}
        description={t.contacts.tagsHelp}
        data={tags.data ?? []}
        value={tagList}
        onChange={setTagList}
        maxTags={20}
        maxLength={32}
        clearable
        error={errors.tags}
      />
      {owner && contact && (
        <Switch label={t.contacts.active} description={t.contacts.activeHelp} checked={active} onChange={(e) => setActive(e.currentTarget.checked)} />
      )}
      <FormActions
        mutation={save}
        fields={['name', 'phone', 'email', 'notes', 'tags']}
        shownOnField={taken || fixed}
        onCancel={onDone}
        disabled={!name.trim() || (!contact && !phone.trim())}
      />
    </FormFrame>
  );
}

function ImportForm({ onDone }: { onDone: () => void }) {
  const changed = useContactsChanged();
  const [csv, setCsv] = useState('');
  const [preview, setPreview] = useState<ClientImportResult | null>(null);
  const check = useMutation({
    mutationFn: (dryRun: boolean) => unwrap(api.POST('/api/v1/clients/import', { body: { csv, dry_run: dryRun } })),
    onSuccess: (result) => {
      if (result.dry_run) {
        setPreview(result);
        return;
      }
      changed();
      notifications.show({ color: 'teal', message: t.contacts.imported(result.created ?? 0, result.updated ?? 0) });
      onDone();
    },
  });
  const load = async (file: File | null) => {
    setPreview(null);
    setCsv(file ? await file.text() : '');
  };
  const ok = preview && preview.errors.length === 0 && preview.rows.length > 0;
  return (
    <Stack>
      <Text size="sm">{t.contacts.importHelp}</Text>
      <FileInput label={t.contacts.importFile} accept=".csv,text/csv" onChange={(file) => void load(file)} clearable />
      {check.isError && (
        <Alert color="red" role="alert">
          {errorMessage(check.error)}
        </Alert>
      )}
      {preview && preview.errors.length > 0 && (
        <>
          <Alert color="red" role="alert">
            {t.contacts.errorsFound(preview.errors.length)}
          </Alert>
          <Table data-testid="import-errors">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.contacts.line}</Table.Th>
                <Table.Th>{t.contacts.field}</Table.Th>
                <Table.Th>{t.contacts.problem}</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {preview.errors.map((e, i) => (
                <Table.Tr key={i}>
                  <Table.Td>{e.line}</Table.Td>
                  <Table.Td>{e.field}</Table.Td>
                  <Table.Td>{translateBackendMessage(e.message) ?? e.message}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </>
      )}
      {ok && (
        <Table.ScrollContainer minWidth={480} mah={280}>
          <Table data-testid="import-preview">
            <Table.Tbody>
              {preview.rows.map((row) => (
                <Table.Tr key={row.line}>
                  <Table.Td>{row.name}</Table.Td>
                  <Table.Td>{formatPhone(row.phone)}</Table.Td>
                  <Table.Td>
                    <Badge variant="light" color={row.exists ? 'gray' : 'teal'}>
                      {row.exists ? t.contacts.exists : t.contacts.isNew}
                    </Badge>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Group justify="flex-end">
        <Button variant="default" onClick={onDone}>
          {t.app.cancel}
        </Button>
        {ok ? (
          <Button onClick={() => check.mutate(false)} loading={check.isPending}>
            {t.contacts.confirmImport(preview.rows.length)}
          </Button>
        ) : (
          <Button onClick={() => check.mutate(true)} loading={check.isPending} disabled={!csv}>
            {t.contacts.preview}
          </Button>
        )}
      </Group>
    </Stack>
  );
}

async function downloadExport() {
  const result = await api.GET('/api/v1/clients/export.csv', { parseAs: 'blob' });
  if (!result.response.ok || !result.data) throw new ApiError(result.response.status, null);
  const url = URL.createObjectURL(result.data as Blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = 'contatos.csv';
  link.click();
  URL.revokeObjectURL(url);
}

export function ContactsPage() {
  // "Iniciar conversa" on a contact card shared in a chat (?novo=<number>&nome=<name>): the
  // conversation flow opens for that number's contact, created first when there is none; if the
  // number is refused, the new contact form comes filled in to correct it.
  const [params] = useSearchParams();
  const [prefill, setPrefill] = useState<Prefill | null>(() => {
    const phone = (params.get('novo') ?? '').replace(/\D/g, '');
    return phone ? { phone, name: params.get('nome') ?? '' } : null;
  });
  const [search, setSearch] = useState(prefill?.phone ?? '');
  const [tag, setTag] = useState<string | null>(null);
  const [withInactive, setWithInactive] = useState(false);
  const [q] = useDebouncedValue(search.trim(), 300);
  const clients = useClients(q, tag ?? '', withInactive);
  const tags = useTags('clients'); // the filter matches contacts' own tags
  const [editing, setEditing] = useState<Client | 'new' | null>(null);
  const [importing, setImporting] = useState(false);
  const [starting, setStarting] = useState<Client | null>(null);
  const [merging, setMerging] = useState<{ contact: Client; intoId?: string } | null>(null);
  const owner = useMe().role === 'reseller'; // merging contacts is the owner's (the backend answers 403 to agents)
  const changed = useContactsChanged();
  const fromCard = useMutation({
    mutationFn: contactFor,
    onSuccess: (contact) => {
      changed();
      setPrefill(null);
      setStarting(contact);
    },
    onError: (error) => {
      notifications.show({ color: 'red', message: errorMessage(error) });
      setEditing('new');
    },
  });
  const cardHandled = useRef(false); // once per visit, StrictMode's second effect run included
  useEffect(() => {
    if (!prefill || cardHandled.current) return;
    cardHandled.current = true;
    fromCard.mutate(prefill);
  }, [prefill, fromCard]);
  const exporting = useMutation({
    mutationFn: downloadExport,
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const list = clients.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <>
      <PageHeader title={t.contacts.title}>
        <Group gap="xs">
          <Button variant="default" onClick={() => exporting.mutate()} loading={exporting.isPending}>
            {t.contacts.export}
          </Button>
          <Button variant="default" onClick={() => setImporting(true)}>
            {t.contacts.import}
          </Button>
          <Button onClick={() => setEditing('new')}>{t.contacts.new}</Button>
        </Group>
      </PageHeader>
      <Group mb="md" gap="xs" align="flex-end">
        <TextInput type="search" aria-label={t.contacts.search} placeholder={t.contacts.search} value={search} onChange={(e) => setSearch(e.currentTarget.value)} style={{ flex: 1, minWidth: 200 }} />
        <Select aria-label={t.contacts.filterTag} placeholder={t.contacts.filterTag} data={tags.data ?? []} value={tag} onChange={setTag} clearable searchable w={220} />
        <Checkbox label={t.contacts.showInactive} checked={withInactive} onChange={(e) => setWithInactive(e.currentTarget.checked)} mb={8} />
      </Group>
      <ListTable
        query={clients}
        items={list}
        empty={t.contacts.empty}
        minWidth={720}
        headers={[t.contacts.name, t.contacts.phone, t.contacts.email, t.contacts.tags, t.contacts.since]}
        pager={clients}
        row={(c) => (
          <Table.Tr key={c.id} data-testid="contact-row">
            <Table.Td>
              {c.name}
              {c.active === false && (
                <Badge ml="xs" color="gray" variant="light" size="sm">
                  {t.contacts.inactive}
                </Badge>
              )}
              {c.same_person_as && !c.merged_into && (
                // WhatsApp named this contact's privacy id together with the number another one
                // has: one account, two contacts. Only a suggestion, the owner decides to merge;
                // the modal comes with the other one (the one known by the number) as the one kept.
                <>
                  <Badge ml="xs" color="yellow" variant="light" size="sm" data-testid="same-person" title={owner ? t.contacts.samePersonHint : t.contacts.samePersonHintAgent}>
                    {t.contacts.samePerson}
                  </Badge>
                  {owner && (
                    <Button
                      ml={4}
                      size="compact-xs"
                      variant="light"
                      color="yellow"
                      aria-label={t.contacts.samePersonMergeLabel}
                      onClick={() => setMerging({ contact: c, intoId: c.same_person_as ?? undefined })}
                    >
                      {t.contacts.samePersonMerge}
                    </Button>
                  )}
                </>
              )}
            </Table.Td>
            <Table.Td>
              <ClientPhone phone={c.phone} />
            </Table.Td>
            <Table.Td>{c.email}</Table.Td>
            <Table.Td>
              <Group gap={4}>
                {(c.tags ?? []).map((tagName) => (
                  <Badge key={tagName} variant="light" size="sm">
                    {tagName}
                  </Badge>
                ))}
              </Group>
            </Table.Td>
            <Table.Td>{formatDate(c.created_at)}</Table.Td>
            <Table.Td>
              <RowActions>
                {c.active !== false && (
                  <Button size="compact-sm" variant="light" onClick={() => setStarting(c)}>
                    {t.contacts.startConversation}
                  </Button>
                )}
                <Button size="compact-sm" variant="default" onClick={() => setEditing(c)}>
                  {t.app.edit}
                </Button>
                {owner && (
                  <Button size="compact-sm" variant="subtle" aria-label={t.contacts.mergeTitle} onClick={() => setMerging({ contact: c })}>
                    {t.contacts.merge}
                  </Button>
                )}
              </RowActions>
            </Table.Td>
          </Table.Tr>
        )}
      />
      <Modal opened={editing !== null} onClose={() => { setEditing(null); setPrefill(null); }} title={editing === 'new' ? t.contacts.new : t.app.edit}>
        {editing !== null && <ContactForm contact={editing === 'new' ? null : editing} prefill={prefill} onDone={() => {
          setEditing(null);
          setPrefill(null);
        }} onMerge={(contact, intoId) => {
          setEditing(null);
          setMerging({ contact, intoId });
        }} />}
      </Modal>
      <Modal opened={merging !== null} onClose={() => setMerging(null)} title={t.contacts.mergeTitle}>
        {merging !== null && (
          <MergeContact
            contact={merging.contact}
            intoId={merging.intoId}
            onMerged={() => {
              changed();
              setMerging(null);
            }}
            onCancel={() => setMerging(null)}
          />
        )}
      </Modal>
      <Modal opened={starting !== null} onClose={() => setStarting(null)} title={t.contacts.startTitle}>
        {starting !== null && <StartConversation contact={starting} onDone={() => setStarting(null)} />}
      </Modal>
      <Modal opened={importing} onClose={() => setImporting(false)} title={t.contacts.importTitle} size="lg">
        {importing && <ImportForm onDone={() => setImporting(false)} />}
      </Modal>
    </>
  );
}
