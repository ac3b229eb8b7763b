import { Button, Group, Select, SimpleGrid, TextInput } from '@mantine/core';
import { useAgents, useConnections, useDepartments, useTags, type TicketFilters } from '../../api/queries';
import { useMe } from '../../auth/session';
import { t } from '../../i18n/pt-BR';

/** URL search params ↔ filters: the inbox's state lives in its address (shareable, survives reloads). */
export const FILTER_PARAMS: Record<keyof TicketFilters, string> = {
  department_id: 'depto',
  agent_id: 'agente',
  connection_id: 'conexao',
  tag: 'etiqueta',
  from: 'de',
  to: 'ate',
};

export function filtersFrom(params: URLSearchParams): TicketFilters {
  const out: TicketFilters = {};
  for (const [field, param] of Object.entries(FILTER_PARAMS) as [keyof TicketFilters, string][]) {
    const value = params.get(param);
    if (value) out[field] = value;
  }
  return out;
}

export function InboxFilters({ value, onChange }: { value: TicketFilters; onChange: (next: TicketFilters) => void }) {
  const me = useMe();
  const departments = useDepartments();
  const agents = useAgents();
  const connections = useConnections(me.role === 'reseller');
  const tags = useTags();
  const set = (field: keyof TicketFilters) => (v: string | null) => onChange({ ...value, [field]: v || undefined });
  return (
    <>
      <SimpleGrid cols={2} spacing="xs" verticalSpacing="xs" data-testid="inbox-filters">
        <Select
          size="xs"
          label={t.inbox.filterDepartment}
          data={(departments.data ?? []).map((d) => ({ value: d.id, label: d.name }))}
          value={value.department_id ?? null}
          onChange={set('department_id')}
          clearable
          searchable
        />
        <Select
          size="xs"
          label={t.inbox.filterAgent}
          data={(agents.data ?? []).filter((u) => u.role === 'agent').map((u) => ({ value: u.id, label: u.name }))}
          value={value.agent_id ?? null}
          onChange={set('agent_id')}
          clearable
          searchable
        />
        {me.role === 'reseller' && (
          <Select
            size="xs"
            label={t.inbox.filterConnection}
            data={(connections.data ?? []).map((c) => ({ value: c.id, label: c.name }))}
            value={value.connection_id ?? null}
            onChange={set('connection_id')}
            clearable
          />
        )}
        <Select size="xs" label={t.inbox.filterTag} data={tags.data ?? []} value={value.tag ?? null} onChange={set('tag')} clearable searchable />
        <TextInput size="xs" type="date" label={t.inbox.filterFrom} value={value.from ?? ''} onChange={(e) => set('from')(e.currentTarget.value)} />
        <TextInput size="xs" type="date" label={t.inbox.filterTo} value={value.to ?? ''} onChange={(e) => set('to')(e.currentTarget.value)} />
      </SimpleGrid>
      <Group justify="flex-end" mt={4}>
        <Button size="compact-xs" variant="subtle" onClick={() => onChange({})} disabled={Object.keys(value).length === 0}>
          {t.inbox.clearFilters}
        </Button>
      </Group>
    </>
  );
}
