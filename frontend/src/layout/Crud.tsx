import { Badge, Button, Group, Stack, Table, Text } from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { type QueryKey, useMutation, useQueryClient } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { errorMessage, fieldErrors } from '../api/client';
import { t } from '../i18n/pt-BR';
import { QueryState } from './QueryState';

// The pieces every management page (departments, agents, quick replies, contacts, connections,
// resellers) is made of: one list table, one form frame, the same row actions.

type ListQuery = { isPending: boolean; isError: boolean; error: unknown; data?: unknown };
type Pager = { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown };

/** The query's state, the empty text once loaded, then a table with one row per item (`row`
 * renders a whole `Table.Tr`; the last column, unnamed, holds the row's actions); "load more"
 * when `pager` has another page. */
export function ListTable<T>({
  query,
  items,
  empty,
  minWidth,
  headers,
  row,
  pager,
}: {
  query: ListQuery;
  items: T[];
  empty: string;
  minWidth: number;
  headers: string[];
  row: (item: T) => ReactNode;
  pager?: Pager;
}) {
  return (
    <>
      <QueryState query={query} />
      {query.data !== undefined && items.length === 0 && <Text c="dimmed">{empty}</Text>}
      {items.length > 0 && (
        <Table.ScrollContainer minWidth={minWidth}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                {headers.map((header) => (
                  <Table.Th key={header}>{header}</Table.Th>
                ))}
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>{items.map(row)}</Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {pager?.hasNextPage && (
        <Button variant="subtle" mt="sm" onClick={() => pager.fetchNextPage()} loading={pager.isFetchingNextPage}>
          {t.app.loadMore}
        </Button>
      )}
    </>
  );
}

/** Ativo / Inativo. */
export function ActiveBadge({ active }: { active: boolean }) {
  return <Badge color={active ? 'teal' : 'gray'}>{active ? t.app.active : t.app.inactive}</Badge>;
}

/** A row's action buttons, right-aligned: Editar first when `onEdit` is given. */
export function RowActions({ onEdit, children }: { onEdit?: () => void; children?: ReactNode }) {
  return (
    <Group gap="xs" justify="flex-end" wrap="nowrap">
      {onEdit && (
        <Button size="compact-sm" variant="default" onClick={onEdit}>
          {t.app.edit}
        </Button>
      )}
      {children}
    </Group>
  );
}

/** A form in a modal: submitting runs `onSubmit` (no page reload); fields stacked. */
export function FormFrame({ onSubmit, children }: { onSubmit: () => void; children: ReactNode }) {
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit();
      }}
    >
      <Stack>{children}</Stack>
    </form>
  );
}

/** The save mutation's error, then Cancelar (with `onCancel`) and the submit button.
 *
 * `fields`: the body fields the form shows a 422's `fieldErrors` on, on their inputs. A 422 naming
 * any other field (one the form has no input for, or shows under another name) is shown here, or
 * the user would click Salvar and see nothing; a 422 naming no field shows its whole message.
 * `shownOnField`: the form shows this error (not a 422's field errors: a 409, say) on a field itself. */
export function FormActions({
  mutation,
  fields,
  shownOnField = false,
  onCancel,
  disabled,
  label = t.app.save,
}: {
  mutation: { isError: boolean; isPending: boolean; error: unknown };
  fields: readonly string[];
  shownOnField?: boolean;
  onCancel?: () => void;
  disabled: boolean;
  label?: string;
}) {
  const message = mutation.isError ? unshownError(mutation.error, fields, shownOnField) : '';
  return (
    <>
      {message && (
        <Text c="red" size="sm" role="alert">
          {message}
        </Text>
      )}
      <Group justify="flex-end">
        {onCancel && (
          <Button variant="default" onClick={onCancel}>
            {t.app.cancel}
          </Button>
        )}
        <Button type="submit" loading={mutation.isPending} disabled={disabled}>
          {label}
        </Button>
      </Group>
    </>
  );
}

/** What of `error` no input of the form shows: the field errors on fields not in `fields` (each
 * message once), or the whole message when the error names no field and no field shows it. */
function unshownError(error: unknown, fields: readonly string[], shownOnField: boolean): string {
  const errors = fieldErrors(error);
  const named = Object.keys(errors);
  if (!named.length) return shownOnField ? '' : errorMessage(error);
  return [...new Set(named.filter((field) => !fields.includes(field)).map((field) => errors[field]))].join(' ');
}

/** PATCH {active} on an item: refreshes `queryKey`, says `updated` when given, shows a refusal. */
export function useSetActive<T>(patch: (item: T, active: boolean) => Promise<unknown>, queryKey: QueryKey, updated?: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ item, active }: { item: T; active: boolean }) => patch(item, active),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey });
      if (updated) notifications.show({ color: 'teal', message: updated });
    },
    onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
  });
}

/** Asks before Desativar (what it means for that item in `message`). */
export function confirmDeactivate(message: string, onConfirm: () => void) {
  modals.openConfirmModal({
    title: t.app.deactivate,
    children: <Text size="sm">{message}</Text>,
    labels: { confirm: t.app.deactivate, cancel: t.app.cancel },
    confirmProps: { color: 'red' },
    onConfirm,
  });
}
