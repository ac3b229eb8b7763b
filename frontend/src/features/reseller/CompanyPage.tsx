import { ActionIcon, Button, Group, Paper, Select, Stack, Switch, Text, TextInput, Textarea, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useEffect, useState } from 'react';
import { errorMessage, fieldErrors } from '../../api/client';
import { useResellerConfig, useUpdateResellerConfig } from '../../api/queries';
import type { BusinessHours, ResellerConfig } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';

const TIMEZONES = ['America/Sao_Paulo', 'America/Manaus', 'America/Belem', 'America/Fortaleza', 'America/Recife', 'America/Cuiaba', 'America/Porto_Velho', 'America/Rio_Branco', 'America/Noronha'];

export function hoursFromConfig(config: ResellerConfig): BusinessHours[] {
  return (config.business_hours ?? []).map((h) => ({ weekday: Number(h.weekday), open: String(h.open), close: String(h.close) }));
}

/** The ranges whose close is not after open, by index (the backend refuses those). */
export function invalidRanges(hours: BusinessHours[]): Set<number> {
  return new Set(hours.flatMap((h, i) => (h.close <= h.open ? [i] : [])));
}

function CompanyForm({ config }: { config: ResellerConfig }) {
  const save = useUpdateResellerConfig();
  const [companyName, setCompanyName] = useState(config.company_name);
  const [welcome, setWelcome] = useState(config.welcome_message ?? '');
  const [away, setAway] = useState(config.away_message ?? '');
  const [timezone, setTimezone] = useState<string | null>(config.timezone ?? 'America/Sao_Paulo');
  const [hours, setHours] = useState<BusinessHours[]>(() => hoursFromConfig(config));
  const [signature, setSignature] = useState(config.signature_enabled ?? true);
  const bad = invalidRanges(hours);
  const errors = fieldErrors(save.error);
  const weekdays = t.company.weekdays.map((label, value) => ({ value: String(value), label }));

  const setRange = (index: number, patch: Partial<BusinessHours>) =>
    setHours((list) => list.map((h, i) => (i === index ? { ...h, ...patch } : h)));

  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate(
          { company_name: companyName, welcome_message: welcome, away_message: away, timezone: timezone ?? undefined, business_hours: hours, signature_enabled: signature },
          {
            onSuccess: () => notifications.show({ color: 'teal', message: t.app.saved }),
            onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
          },
        );
      }}
    >
      <Stack maw={720}>
        <TextInput label={t.company.companyName} required value={companyName} onChange={(e) => setCompanyName(e.currentTarget.value)} error={errors.company_name} />
        <Textarea label={t.company.welcome} autosize minRows={2} maxLength={1000} value={welcome} onChange={(e) => setWelcome(e.currentTarget.value)} />
        <Textarea label={t.company.away} autosize minRows={2} maxLength={1000} value={away} onChange={(e) => setAway(e.currentTarget.value)} />
        <Switch label={t.company.signature} description={t.company.signatureHint} checked={signature} onChange={(e) => setSignature(e.currentTarget.checked)} />
        <Select label={t.company.timezone} data={Array.from(new Set([...(timezone ? [timezone] : []), ...TIMEZONES]))} value={timezone} onChange={setTimezone} searchable />
        <Paper withBorder p="sm">
          <Stack gap="xs">
            <Title order={3} size="h5">
              {t.company.hours}
            </Title>
            {hours.map((h, i) => (
              <Group key={i} align="flex-end" gap="xs" wrap="wrap" data-testid="hours-row">
                <Select label={t.company.weekday} data={weekdays} value={String(h.weekday)} onChange={(v) => setRange(i, { weekday: Number(v ?? 0) })} w={140} allowDeselect={false} />
                <TextInput label={t.company.open} type="time" value={h.open} onChange={(e) => setRange(i, { open: e.currentTarget.value })} w={120} />
                <TextInput
                  label={t.company.close}
                  type="time"
                  value={h.close}
                  onChange={(e) => setRange(i, { close: e.currentTarget.value })}
                  w={120}
                  error={bad.has(i) ? t.company.closeAfterOpen : undefined}
                />
                <ActionIcon variant="subtle" color="red" size="lg" aria-label={t.company.removeRange} onClick={() => setHours((list) => list.filter((_, j) => j !== i))}>
                  ✕
                </ActionIcon>
              </Group>
            ))}
            <Group>
              <Button variant="light" size="compact-sm" disabled={hours.length >= 21} onClick={() => setHours((list) => [...list, { weekday: 0, open: '08:00', close: '18:00' }])}>
                {t.company.addRange}
              </Button>
            </Group>
          </Stack>
        </Paper>
        {save.isError && Object.keys(errors).length > 0 && (
          <Text c="red" size="sm" role="alert">
            {t.errors.validation}
          </Text>
        )}
        <Group>
          <Button type="submit" loading={save.isPending} disabled={bad.size > 0 || !companyName.trim()}>
            {t.app.save}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

export function CompanyPage() {
  const query = useResellerConfig();
  const [version, setVersion] = useState(0);
  // Re-seed the form when the stored config is replaced (e.g. after saving elsewhere).
  useEffect(() => setVersion((v) => v + 1), [query.data?.updated_at]);
  return (
    <>
      <PageHeader title={t.company.title} />
      <QueryState query={query} />
      {query.data && <CompanyForm key={version} config={query.data} />}
    </>
  );
}
