import { Paper, Stack, Text } from '@mantine/core';
import { t } from '../../i18n/pt-BR';

/** The variables the backend fills in automatic messages (issue 16: greeting, away, closing). */
export const VARIABLES = ['cliente', 'empresa', 'protocolo'] as const;
export type Variable = (typeof VARIABLES)[number];

/** A message as the client would read it: each known {{variable}} replaced; anything else, an
 * unknown or misspelt variable included, stays as written so the preview shows the mistake. */
export function renderTemplate(text: string, values: Record<Variable, string>): string {
  // Trimmed like the backend's render (backend/automation/texts.py).
  return text.trim().replace(/\{\{\s*(\w+)\s*\}\}/g, (whole, name: string) =>
    (VARIABLES as readonly string[]).includes(name) ? values[name as Variable] : whole,
  );
}

/** Sample values for the previews; the company name is the one being edited. */
export function sampleValues(company: string): Record<Variable, string> {
  return { cliente: t.automation.sample.client, empresa: company || t.automation.sample.company, protocolo: t.automation.sample.protocol };
}

/** The numbered list of a connection's menu, as the client receives it under the menu text. */
export function menuList(names: string[]): string {
  return names.map((name, i) => `${i + 1} - ${name}`).join('\n');
}

/** The menu message as backend/automation/texts.py `menu` writes it: the text (or the built-in
 * one when left empty) and the numbered list under it. */
export function menuMessage(text: string, names: string[]): string {
  return [text.trim() || t.automation.defaultMenuText, menuList(names)].filter(Boolean).join('\n');
}

/** One WhatsApp-like bubble with the text the client would receive. */
export function MessagePreview({ text, label, testId }: { text: string; label: string; testId?: string }) {
  return (
    <Stack gap={2}>
      <Text size="xs" c="dimmed">
        {label}
      </Text>
      {text.trim() ? (
        <Paper className="bubble" data-direction="out" data-testid={testId} aria-label={label} style={{ alignSelf: 'flex-start' }}>
          <Text size="sm">{text}</Text>
        </Paper>
      ) : (
        <Text size="sm" c="dimmed" fs="italic" data-testid={testId} aria-label={label}>
          {t.automation.emptyPreview}
        </Text>
      )}
    </Stack>
  );
}

export function VariablesHelp() {
  return (
    <Text size="xs" c="dimmed" data-testid="variables-help">
      {t.automation.variables}{' '}
      {VARIABLES.map((v, i) => (
        <span key={v}>
          {i > 0 && ', '}
          <code>{`{{${v}}}`}</code> ({t.automation.variableHelp[v]})
        </span>
      ))}
    </Text>
  );
}
