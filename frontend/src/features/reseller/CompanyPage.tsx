import { ActionIcon, Badge, Button, Group, NumberInput, Paper, Select, SimpleGrid, Stack, Switch, Text, TextInput, Textarea, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useCallback, useEffect, useRef, useState, type ReactNode } from 'react';
import { errorMessage, fieldErrors } from '../../api/client';
import { useResellerConfig, useUpdateResellerConfig } from '../../api/queries';
import type { BusinessHours, ResellerConfig } from '../../api/types';
import { t } from '../../i18n/pt-BR';
import { formatDay } from '../../lib/format';
import { PageHeader } from '../../layout/PageHeader';
import { QueryState } from '../../layout/QueryState';
import { MessagePreview, VariablesHelp, renderTemplate, sampleValues } from './automation';

const FALLBACK_ZONES = ['America/Sao_Paulo', 'America/Manaus', 'America/Belem', 'America/Fortaleza', 'America/Recife', 'America/Cuiaba', 'America/Porto_Velho', 'America/Rio_Branco', 'America/Noronha'];
const MAX_RANGES = 21;
const CSAT_DEFAULT_HOURS = 24;
const CSAT_MAX_HOURS = 24 * 30; // backend/resellers/schemas.py

/** Every IANA zone the browser knows (the backend checks the name against the tz database). */
export function timezones(current: string | null): string[] {
  const known = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : FALLBACK_ZONES;
  return Array.from(new Set([...(current ? [current] : []), ...known]));
}

export function hoursFromConfig(config: ResellerConfig): BusinessHours[] {
  return (config.business_hours ?? []).map((h) => ({ weekday: Number(h.weekday), open: String(h.open), close: String(h.close) }));
}

/** The ranges that open and close at the same time, by index (the backend refuses those). A close
 * before the open is a range into the next day (a night shift; 00:00 is midnight). */
export function invalidRanges(hours: BusinessHours[]): Set<number> {
  return new Set(hours.flatMap((h, i) => (h.close === h.open ? [i] : [])));
}

/** A new range for a weekday: after its last range when there is room, else a working day. */
export function nextRange(hours: BusinessHours[], weekday: number): BusinessHours {
  const last = hours.filter((h) => h.weekday === weekday).sort((a, b) => a.close.localeCompare(b.close)).pop();
  if (last && last.close < '22:00') {
    const [hh, mm] = last.close.split(':').map(Number);
    const open = `${String(hh + 1).padStart(2, '0')}:${String(mm).padStart(2, '0')}`;
    return { weekday, open, close: open < '18:00' ? '18:00' : '23:00' };
  }
  return { weekday, open: '08:00', close: '18:00' };
}

function Section({ title, children, testId }: { title: string; children: ReactNode; testId?: string }) {
  return (
    <Paper withBorder p="sm" data-testid={testId}>
      <Stack gap="xs">
        <Title order={3} size="h5">
          {title}
        </Title>
        {children}
      </Stack>
    </Paper>
  );
}

function MessageField({
  label,
  hint,
  value,
  onChange,
  company,
  error,
  fallback,
}: {
  label: string;
  hint: string;
  value: string;
  onChange: (v: string) => void;
  company: string;
  error?: string;
  /** What the backend sends when this is left empty (nothing, when absent). */
  fallback?: string;
}) {
  return (
    <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="sm">
      <Textarea label={label} description={hint} placeholder={fallback} autosize minRows={3} maxLength={1000} value={value} onChange={(e) => onChange(e.currentTarget.value)} error={error} />
      <MessagePreview label={t.automation.previewOf(label)} text={renderTemplate(value.trim() ? value : fallback ?? '', sampleValues(company))} />
    </SimpleGrid>
  );
}

function HoursEditor({ hours, setHours }: { hours: BusinessHours[]; setHours: (update: (list: BusinessHours[]) => BusinessHours[]) => void }) {
  const bad = invalidRanges(hours);
  const setRange = (index: number, patch: Partial<BusinessHours>) => setHours((list) => list.map((h, i) => (i === index ? { ...h, ...patch } : h)));
  return (
    <Stack gap={6}>
      {hours.length === 0 && (
        <Text size="sm" c="blue.8" data-testid="no-hours">
          {t.company.noHours}
        </Text>
      )}
      {t.company.weekdays.map((day, weekday) => {
        const ranges = hours.map((h, index) => ({ h, index })).filter(({ h }) => h.weekday === weekday);
        return (
          <Group key={day} align="flex-start" gap="xs" wrap="nowrap" data-testid="hours-day" data-weekday={weekday}>
            <Text size="sm" fw={600} w={80} pt={6} style={{ flexShrink: 0 }}>
              {day}
            </Text>
            <Stack gap={4} style={{ flex: 1 }}>
              {ranges.length === 0 && (
                // With no range on any day, hours are not set: open all day (backend/automation/hours.py).
                <Text size="sm" c="dimmed" pt={6}>
                  {hours.length === 0 ? t.company.openAllDay : t.company.closedDay}
                </Text>
              )}
              {ranges.map(({ h, index }, n) => (
                <Group key={index} gap="xs" wrap="wrap" align="flex-start" data-testid="hours-row" role="group" aria-label={t.company.rangeLabel(day, n + 1)}>
                  <TextInput aria-label={`${t.company.rangeLabel(day, n + 1)}: ${t.company.open}`} placeholder={t.company.open} type="time" value={h.open} onChange={(e) => setRange(index, { open: e.currentTarget.value })} w={120} />
                  <TextInput
                    aria-label={`${t.company.rangeLabel(day, n + 1)}: ${t.company.close}`}
                    placeholder={t.company.close}
                    type="time"
                    value={h.close}
                    onChange={(e) => setRange(index, { close: e.currentTarget.value })}
                    w={120}
                    error={bad.has(index) ? t.company.closeAfterOpen : undefined}
                  />
                  <ActionIcon variant="subtle" color="red" size="lg" aria-label={`${t.company.removeRange}: ${t.company.rangeLabel(day, n + 1)}`} onClick={() => setHours((list) => list.filter((_, j) => j !== index))}>
                    ✕
                  </ActionIcon>
                </Group>
              ))}
            </Stack>
            <Button
              variant="subtle"
              size="compact-sm"
              mt={4}
              disabled={hours.length >= MAX_RANGES}
              aria-label={t.company.addRangeTo(day)}
              onClick={() => setHours((list) => [...list, nextRange(list, weekday)])}
            >
              +
            </Button>
          </Group>
        );
      })}
    </Stack>
  );
}

function ClosedDatesEditor({ dates, setDates }: { dates: string[]; setDates: (dates: string[]) => void }) {
  const [day, setDay] = useState('');
  const add = () => {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return;
    setDates(Array.from(new Set([...dates, day])).sort());
    setDay('');
  };
  return (
    <Stack gap="xs">
      <Group align="flex-end" gap="xs">
        <TextInput label={t.company.closedDate} type="date" value={day} onChange={(e) => setDay(e.currentTarget.value)} w={180} />
        <Button variant="light" onClick={add} disabled={!day || dates.includes(day)}>
          {t.company.addClosedDate}
        </Button>
      </Group>
      {dates.length === 0 ? (
        <Text size="sm" c="dimmed">
          {t.company.noClosedDates}
        </Text>
      ) : (
        <Group gap="xs" data-testid="closed-dates">
          {dates.map((d) => (
            <Badge
              key={d}
              variant="light"
              size="lg"
              data-testid="closed-date"
              rightSection={
                <ActionIcon size="xs" variant="transparent" aria-label={t.company.removeClosedDate(formatDay(d))} onClick={() => setDates(dates.filter((x) => x !== d))}>
                  ✕
                </ActionIcon>
              }
            >
              {formatDay(d)}
            </Badge>
          ))}
        </Group>
      )}
    </Stack>
  );
}

/** The form's fields for a stored config: what the form starts from, and what Save compares to. */
function formValues(config: ResellerConfig) {
  return {
    company_name: config.company_name,
    welcome_message: config.welcome_message ?? '',
    away_message: config.away_message ?? '',
    closing_message: config.closing_message ?? '',
    timezone: config.timezone ?? 'America/Sao_Paulo',
    business_hours: hoursFromConfig(config),
    closed_dates: [...(config.closed_dates ?? [])].sort(),
    signature_enabled: config.signature_enabled ?? true,
    read_receipts: config.read_receipts ?? true,
    csat_enabled: config.csat_enabled ?? false,
    csat_window_hours: config.csat_window_hours ?? CSAT_DEFAULT_HOURS,
    csat_message: config.csat_message ?? '',
  };
}

type FormValues = ReturnType<typeof formValues>;

function changedValues(values: FormValues, from: FormValues): Partial<FormValues> {
  return Object.fromEntries(Object.entries(values).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(from[k as keyof FormValues])));
}

function sameValues(a: FormValues, b: FormValues): boolean {
  return Object.keys(changedValues(a, b)).length === 0;
}

/** `config` seeds the fields, but for `edits` (the user's, kept over a save); `onSaved` gets the
 * config as stored by a save and the fields edited while it was under way. */
function CompanyForm({
  config,
  edits,
  onDirtyChange,
  onSaved,
}: {
  config: ResellerConfig;
  edits: Partial<FormValues>;
  onDirtyChange: (dirty: boolean) => void;
  onSaved: (saved: ResellerConfig, edits: Partial<FormValues>) => void;
}) {
  const save = useUpdateResellerConfig();
  const [initial] = useState(() => formValues(config));
  const [start] = useState(() => ({ ...initial, ...edits }));
  const [companyName, setCompanyName] = useState(start.company_name);
  const [welcome, setWelcome] = useState(start.welcome_message);
  const [away, setAway] = useState(start.away_message);
  const [closing, setClosing] = useState(start.closing_message);
  const [timezone, setTimezone] = useState<string | null>(start.timezone);
  const [hours, setHours] = useState<BusinessHours[]>(start.business_hours);
  const [closedDates, setClosedDates] = useState<string[]>(start.closed_dates);
  const [signature, setSignature] = useState(start.signature_enabled);
  const [readReceipts, setReadReceipts] = useState(start.read_receipts);
  const [csat, setCsat] = useState(start.csat_enabled);
  const [csatMessage, setCsatMessage] = useState(start.csat_message);
  const [csatHours, setCsatHours] = useState<number>(start.csat_window_hours);
  const bad = invalidRanges(hours);
  const errors = fieldErrors(save.error);
  const [zones] = useState(() => timezones(config.timezone ?? null));
  const values: FormValues = {
    company_name: companyName,
    welcome_message: welcome,
    away_message: away,
    closing_message: closing,
    timezone: timezone ?? initial.timezone,
    business_hours: hours,
    closed_dates: closedDates,
    signature_enabled: signature,
    read_receipts: readReceipts,
    csat_enabled: csat,
    csat_window_hours: csatHours,
    csat_message: csatMessage,
  };
  // By value rather than "touched": an edit undone lets a newer config in again. Against the
  // starting values only: the stored config is not what was sent (the backend trims text), so
  // comparing with it would keep a saved form dirty; a save seeds the form again instead.
  const dirty = !sameValues(values, initial);
  useEffect(() => onDirtyChange(dirty), [dirty, onDirtyChange]);
  // The fields as they are now, for a save that ends after more typing.
  const latest = useRef(values);
  useEffect(() => {
    latest.current = values;
  });

  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        // Only what this form changed: the config may have been saved elsewhere since the form was
        // seeded, and a field sent with its starting value would put back what the other save wrote.
        const sent = values;
        save.mutate(changedValues(values, initial), {
          onSuccess: (saved) => {
            notifications.show({ color: 'teal', message: t.app.saved });
            // A field edited while the save was under way keeps the user's text (still unsaved,
            // unless it is what was stored); the others are seeded from the saved config.
            const stored = formValues(saved);
            onSaved(saved, changedValues({ ...stored, ...changedValues(latest.current, sent) }, stored));
          },
          onError: (error) => notifications.show({ color: 'red', message: errorMessage(error) }),
        });
      }}
    >
      <Stack maw={960}>
        <TextInput label={t.company.companyName} required value={companyName} onChange={(e) => setCompanyName(e.currentTarget.value)} error={errors.company_name} maw={480} />
        <Switch label={t.company.signature} description={t.company.signatureHint} checked={signature} onChange={(e) => setSignature(e.currentTarget.checked)} />
        <Switch
          label={t.company.readReceipts}
          description={t.company.readReceiptsHint}
          checked={readReceipts}
          onChange={(e) => setReadReceipts(e.currentTarget.checked)}
        />
        <Section title={t.company.messagesTitle} testId="messages-section">
          <VariablesHelp />
          <MessageField label={t.company.welcome} hint={t.company.welcomeHint} value={welcome} onChange={setWelcome} company={companyName} error={errors.welcome_message} />
          <MessageField label={t.company.away} hint={t.company.awayHint} value={away} onChange={setAway} company={companyName} error={errors.away_message} />
          <MessageField label={t.company.closing} hint={t.company.closingHint} value={closing} onChange={setClosing} company={companyName} error={errors.closing_message} />
        </Section>
        <Section title={t.company.hours} testId="hours-section">
          <Select
            label={t.company.timezone}
            description={t.company.timezoneHint}
            data={zones}
            value={timezone}
            onChange={setTimezone}
            searchable
            allowDeselect={false}
            limit={60}
            maw={320}
            error={errors.timezone}
          />
          <Text size="xs" c="dimmed">
            {t.company.hoursHint}
          </Text>
          <HoursEditor hours={hours} setHours={setHours} />
        </Section>
        <Section title={t.company.closedDates} testId="closed-dates-section">
          <Text size="xs" c="dimmed">
            {t.company.closedDatesHint}
          </Text>
          <ClosedDatesEditor dates={closedDates} setDates={setClosedDates} />
        </Section>
        <Section title={t.company.csatTitle} testId="csat-section">
          <Switch label={t.company.csat} description={t.company.csatHint} checked={csat} onChange={(e) => setCsat(e.currentTarget.checked)} />
          <NumberInput
            label={t.company.csatWindow}
            min={1}
            max={CSAT_MAX_HOURS}
            allowDecimal={false}
            value={csatHours}
            onChange={(v) => setCsatHours(typeof v === 'number' ? v : Number(v) || CSAT_DEFAULT_HOURS)}
            disabled={!csat}
            maw={240}
            error={errors.csat_window_hours}
          />
          {csat && (
            <MessageField
              label={t.company.csatMessage}
              hint={t.company.csatMessageHint}
              value={csatMessage}
              onChange={setCsatMessage}
              company={companyName}
              error={errors.csat_message}
              fallback={t.automation.defaultSurveyText}
            />
          )}
        </Section>
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
  const [seed, setSeed] = useState<{ config: ResellerConfig; version: number; edits?: Partial<FormValues> } | null>(null);
  const [dirty, setDirty] = useState(false);
  // The config is read again when someone else saves, on an event or on window focus; taking it
  // then would wipe what the user is still editing, so only a form without unsaved edits follows.
  // By value: a save seeds the form from the config it returned, and the cache then holds an equal
  // copy of it (another object), which must not build the form a second time. Once seeded from
  // query.data, or equal to it, this no longer holds, so the update during render cannot loop.
  if (query.data && !dirty && (!seed || (query.data !== seed.config && !sameValues(formValues(query.data), formValues(seed.config))))) {
    setSeed({ config: query.data, version: (seed?.version ?? 0) + 1 });
  }
  const onSaved = useCallback((saved: ResellerConfig, edits: Partial<FormValues>) => {
    setSeed((s) => ({ config: saved, version: (s?.version ?? 0) + 1, edits }));
    setDirty(Object.keys(edits).length > 0);
  }, []);
  return (
    <>
      <PageHeader title={t.company.title} />
      <QueryState query={query} />
      {seed && <CompanyForm key={seed.version} config={seed.config} edits={seed.edits ?? {}} onDirtyChange={setDirty} onSaved={onSaved} />}
    </>
  );
}
