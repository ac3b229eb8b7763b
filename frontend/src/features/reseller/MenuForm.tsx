import { ActionIcon, Alert, Badge, Button, Group, NumberInput, Select, SimpleGrid, Stack, Switch, Text, Textarea } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useState } from 'react';
import { errorMessage, fieldErrors } from '../../api/client';
import { useUpdateConnection } from '../../api/queries';
import type { Department, WhatsAppConnection } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { MessagePreview, menuMessage } from './automation';

// The client answers with one digit (backend/connections/schemas.py MAX_MENU_OPTIONS).
export const MAX_MENU_OPTIONS = 9;

/** Moves the item at `index` one place up (-1) or down (+1); out-of-range moves change nothing. */
export function move<T>(list: T[], index: number, step: -1 | 1): T[] {
  const to = index + step;
  if (to < 0 || to >= list.length) return list;
  const next = [...list];
  [next[index], next[to]] = [next[to], next[index]];
  return next;
}

/** A connection's department menu: on/off, which departments in which order, the text above the
 * numbered list, and the message the client would receive. */
export function MenuForm({ connection, departments, onDone }: { connection: WhatsAppConnection; departments: Department[]; onDone: () => void }) {
  const update = useUpdateConnection();
  const [enabled, setEnabled] = useState(connection.menu_enabled ?? false);
  const [ids, setIds] = useState<string[]>(() => connection.menu_department_ids ?? []);
  const [text, setText] = useState(connection.menu_text ?? '');
  const [maxInvalid, setMaxInvalid] = useState<number>(connection.menu_max_invalid ?? 2);
  const [adding, setAdding] = useState<string | null>(null);
  const full = ids.length >= MAX_MENU_OPTIONS;
  const byId = new Map(departments.map((d) => [d.id, d]));
  const name = (id: string) => byId.get(id)?.name ?? '—';
  // What the client is shown: the listed departments that are active, in order.
  const sent = ids.filter((id) => byId.get(id)?.active !== false);
  const addable = departments.filter((d) => d.active && !ids.includes(d.id)).map((d) => ({ value: d.id, label: d.name }));
  const errors = fieldErrors(update.error);
  const fallback = name(connection.default_department_id);

  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        update.mutate(
          { id: connection.id, menu_enabled: enabled, menu_department_ids: ids, menu_text: text, menu_max_invalid: maxInvalid },
          {
            onSuccess: () => {
              notifications.show({ color: 'teal', message: t.connections.updated });
              onDone();
            },
          },
        );
      }}
    >
      <Stack>
        <Switch label={t.connections.menuEnabled} description={t.connections.menuEnabledHint} checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
        <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="md">
          <Stack gap="xs">
            <Textarea
              label={t.connections.menuText}
              placeholder={t.automation.defaultMenuText}
              description={t.connections.menuTextHint}
              autosize
              minRows={2}
              maxLength={1000}
              value={text}
              onChange={(e) => setText(e.currentTarget.value)}
              error={errors.menu_text}
            />
            <Text size="sm" fw={500}>
              {t.connections.menuDepartments}
            </Text>
            {ids.length === 0 && (
              <Text size="sm" c="dimmed">
                {t.connections.menuNone}
              </Text>
            )}
            <Stack gap={4} component="ol" style={{ margin: 0, paddingLeft: 0, listStyle: 'none' }} data-testid="menu-departments">
              {ids.map((id, i) => (
                <Group key={id} component="li" gap="xs" wrap="nowrap" data-testid="menu-department">
                  <Text size="sm" style={{ flex: 1 }}>
                    {/* Numbered as the client sees them: an inactive department is left out of the menu sent, so it has no number. */}
                    {sent.includes(id) ? `${sent.indexOf(id) + 1} - ` : ''}
                    {name(id)}
                    {byId.get(id)?.active === false && (
                      // backend/automation leaves inactive departments out of the menu it sends.
                      <Badge size="xs" color="gray" ml={6} title={t.connections.menuInactive}>
                        {t.app.inactive}
                      </Badge>
                    )}
                  </Text>
                  <ActionIcon variant="subtle" aria-label={t.connections.menuUp(name(id))} disabled={i === 0} onClick={() => setIds((list) => move(list, i, -1))}>
                    ↑
                  </ActionIcon>
                  <ActionIcon variant="subtle" aria-label={t.connections.menuDown(name(id))} disabled={i === ids.length - 1} onClick={() => setIds((list) => move(list, i, 1))}>
                    ↓
                  </ActionIcon>
                  <ActionIcon variant="subtle" color="red" aria-label={t.connections.menuRemove(name(id))} onClick={() => setIds((list) => list.filter((x) => x !== id))}>
                    ✕
                  </ActionIcon>
                </Group>
              ))}
            </Stack>
            <Group align="flex-end" gap="xs">
              <Select
                label={t.connections.menuAdd}
                data={addable}
                value={adding}
                onChange={setAdding}
                style={{ flex: 1 }}
                disabled={full}
                description={full ? t.connections.menuFull(MAX_MENU_OPTIONS) : undefined}
                error={errors.menu_department_ids}
              />
              <Button
                variant="light"
                disabled={!adding || full}
                onClick={() => {
                  if (adding) setIds((list) => [...list, adding]);
                  setAdding(null);
                }}
              >
                {t.app.add}
              </Button>
            </Group>
            <NumberInput
              label={t.connections.menuMaxInvalid}
              description={t.connections.menuMaxInvalidHint}
              min={0}
              max={10}
              allowDecimal={false}
              value={maxInvalid}
              onChange={(v) => setMaxInvalid(typeof v === 'number' ? v : Number(v) || 0)}
              error={errors.menu_max_invalid}
            />
          </Stack>
          <Stack gap="xs">
            <MessagePreview label={t.connections.menuPreview} text={sent.length ? menuMessage(text, sent.map(name)) : ''} testId="menu-preview" />
            <Text size="xs" c="dimmed">
              {t.connections.menuWaiting(fallback)}
            </Text>
          </Stack>
        </SimpleGrid>
        {enabled && ids.length === 0 && (
          <Alert color="yellow" p="xs">
            {t.connections.menuNeedsDepartments}
          </Alert>
        )}
        {update.isError && (
          <Text c="red" size="sm" role="alert">
            {Object.keys(errors).length ? t.errors.validation : errorMessage(update.error)}
          </Text>
        )}
        <Group justify="flex-end">
          <Button type="submit" loading={update.isPending} disabled={enabled && ids.length === 0}>
            {t.app.save}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
