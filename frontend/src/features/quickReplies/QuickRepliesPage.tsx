import { Badge, Button, Group, Modal, Stack, Table, Text, TextInput, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError, api, errorMessage, fieldErrors, unwrap } from '../../api/client';
import { useQuickReplies } from '../../api/queries';
import type { QuickReply } from '../../api/types';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';
import { ActiveToggle } from '../../layout/ActiveToggle';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
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
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <Stack>
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
        {save.isError && !taken && !Object.keys(errors).length && (
          <Text c="red" size="sm" role="alert">
            {errorMessage(save.error)}
          </Text>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            {t.app.cancel}
          </Button>
          <Button type="submit" loading={save.isPending} disabled={!shortcut.trim() || !text.trim()}>
            {t.app.save}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

/** The reseller manages the company's replies; an agent manages its own and sees the company's. */
export function QuickRepliesPage() {
  const me = useMe();
  const replies = useQuickReplies();
  const client = useQueryClient();
  const [editing, setEditing] = useState<QuickReply | 'new' | null>(null);
  const setActive = useMutation({
    mutationFn: ({ reply, active }: { reply: QuickReply; active: boolean }) =>
      unwrap(api.PATCH('/api/v1/quick-replies/{reply_id}', { params: { path: { reply_id: reply.id } }, body: { active } })),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.quickReplies }),
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
  const mine = (reply: QuickReply) => (me.role === 'reseller' ? reply.scope === 'reseller' : reply.owner_id === me.id);
  const list = replies.data ?? [];
  return (
    <>
      <PageHeader title={t.quickReplies.title}>
        <Button onClick={() => setEditing('new')}>{t.quickReplies.new}</Button>
      </PageHeader>
      <QueryState query={replies} />
      {replies.data && list.length === 0 && <Text c="dimmed">{t.quickReplies.empty}</Text>}
      {list.length > 0 && (
        <Table.ScrollContainer minWidth={640}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t.quickReplies.shortcut}</Table.Th>
                <Table.Th>{t.quickReplies.text}</Table.Th>
                <Table.Th>{t.quickReplies.scope}</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {list.map((r) => (
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
                      <Group gap="xs" justify="flex-end" wrap="nowrap">
                        <Button size="compact-sm" variant="default" onClick={() => setEditing(r)}>
                          {t.app.edit}
                        </Button>
                        <ActiveToggle
                          active={r.active}
                          onDeactivate={() => setActive.mutate({ reply: r, active: false })}
                          onReactivate={() => setActive.mutate({ reply: r, active: true })}
                        />
                      </Group>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === 'new' ? t.quickReplies.new : t.app.edit}>
        {editing !== null && <ReplyForm reply={editing === 'new' ? null : editing} onDone={() => setEditing(null)} />}
      </Modal>
    </>
  );
}
