import { Badge, Button, Group, Modal, Table, Text, TextInput, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, fieldErrors, unwrap } from '../../api/client';
import { useQuickReplies } from '../../api/queries';
import type { QuickReply } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { FormActions, FormFrame, ListTable, RowActions, useSetActive } from '../../layout/Crud';
import { PageHeader } from '../../layout/PageHeader';
import { keys } from '../../realtime/cache';

function ReplyForm({ reply, onDone }: { reply: QuickReply | null; onDone: () => void }) {
  const client = useQueryClient();
  const [shortcut, setShortcut] = useState(reply?.shortcut ?? '');
  const [text, setText] = useState(reply?.text ?? '');
  const save = useMutation({
    mutationFn: () =>
      reply
        ? unwrap(api.PATCH('/api/v1/quick-replies/{reply_id}', { params: { path: { reply_id: reply.id } }, body: { shortcut, text } }))
        : unwrap(api.POST('/api/v1/quick-replies', { body: { shortcut, text } })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: keys.quickReplies });
      notifications.show({ color: 'teal', message: reply ? t.quickReplies.updated : t.quickReplies.created });
      onDone();
    },
  });
  const errors = fieldErrors(save.error);
  const taken = save.error instanceof ApiError && save.error.status === 409;
  return (
    <FormFrame onSubmit={() => save.mutate()}>
      <TextInput
        label={t.quickReplies.shortcut}
        description={t.quickReplies.shortcutHelp}
        required
        leftSection="/"
        value={shortcut}
        onChange={(e) => setShortcut(e.currentTarget.value.replace(/^\//, '').replace(/\s/g, ''))}
        error={errors.shortcut ?? (taken ? t.quickReplies.taken : undefined)}
        maxLength={32}
        data-autofocus
      />
      <Textarea
        label={t.quickReplies.text}
        description={t.quickReplies.textHelp}
        required
        autosize
        minRows={3}
        maxLength={4096}
        value={text}
        onChange={(e) => setText(e.currentTarget.value)}
        error={errors.text}
      />
      <FormActions mutation={save} fields={['shortcut', 'text']} shownOnField={taken} onCancel={onDone} disabled={!shortcut.trim() || !text.trim()} />
    </FormFrame>
  );
}

/** The reseller manages the company's replies; an agent manages its own and sees the company's. */
export function QuickRepliesPage() {
  const me = useMe();
  const replies = useQuickReplies();
  const [editing, setEditing] = useState<QuickReply | 'new' | null>(null);
  const setActive = useSetActive(
    (reply: QuickReply, active: boolean) =>
      unwrap(api.PATCH('/api/v1/quick-replies/{reply_id}', { params: { path: { reply_id: reply.id } }, body: { active } })),
    keys.quickReplies,
  );
  const mine = (reply: QuickReply) => (me.role === 'reseller' ? reply.scope === 'reseller' : reply.owner_id === me.id);
  const list = replies.data ?? [];
  return (
    <>
      <PageHeader title={t.quickReplies.title}>
        <Button onClick={() => setEditing('new')}>{t.quickReplies.new}</Button>
      </PageHeader>
      <ListTable
        query={replies}
        items={list}
        empty={t.quickReplies.empty}
        minWidth={640}
        headers={[t.quickReplies.shortcut, t.quickReplies.text, t.quickReplies.scope]}
        row={(r) => (
          <Table.Tr key={r.id} data-testid="quick-reply-row">
            <Table.Td>
              <Text fw={600}>/{r.shortcut}</Text>
            </Table.Td>
            <Table.Td>
              <Text size="sm" lineClamp={2} style={{ whiteSpace: 'pre-wrap' }}>
                {r.text}
              </Text>
            </Table.Td>
            <Table.Td>
              <Group gap={4}>
                <Badge variant="light">{r.scope === 'reseller' ? t.quickReplies.company : t.quickReplies.personal}</Badge>
                {!r.active && <Badge color="gray">{t.app.inactive}</Badge>}
              </Group>
            </Table.Td>
            <Table.Td>
              {mine(r) && (
                <RowActions onEdit={() => setEditing(r)}>
                  <ActiveToggle
                    active={r.active}
                    onDeactivate={() => setActive.mutate({ item: r, active: false })}
                    onReactivate={() => setActive.mutate({ item: r, active: true })}
                  />
                </RowActions>
              )}
            </Table.Td>
          </Table.Tr>
        )}
      />
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === 'new' ? t.quickReplies.new : t.app.edit}>
        {editing !== null && <ReplyForm reply={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
      </Modal>
    </>
  );
}
