import { Alert, Button, Group, Paper, Progress, Stack, Text, Title } from '@mantine/core';
import { useRef, useState } from 'react';
import { ApiError } from '../../api/client';
import { t } from '../../i18n/pt-BR';
import { ExportError, type ExportProgress, formatBytes, saveBlob, streamExport } from './exportStream';

type Kind = 'tickets' | 'messages';
type State =
  | { phase: 'idle' }
  | { phase: 'running'; kind: Kind; progress: ExportProgress }
  | { phase: 'done'; rows: number }
  | { phase: 'cancelled' }
  | { phase: 'error'; message: string };

/** The dashboard's filters (the backend's ReportFilters): both files honour each one. */
export type ExportFilters = { department_id?: string | null; agent_id?: string | null; connection_id?: string | null };

/** Why an export failed, for the user: the server's own reason when it refused the request (4xx:
 * a period too long, a filter it rejects…), "try again" only where trying again may help. */
function failure(error: unknown): string {
  if (!(error instanceof ExportError)) return t.exports.failed;
  if (error.status === 429) return t.exports.busy;
  if (error.status >= 400 && error.status < 500) return ApiError.describe(error.status, error.detail);
  return t.exports.failed;
}

/** The two CSV exports of the period and filters, each streamed with bytes and rows shown as they
 * arrive, saved under the name the server gives (it says which period and filters the file covers). */
export function ExportPanel({
  from,
  to,
  resellerId,
  filters = {},
}: {
  from: string;
  to: string;
  resellerId?: string;
  filters?: ExportFilters;
}) {
  const [state, setState] = useState<State>({ phase: 'idle' });
  const abort = useRef<AbortController | null>(null);

  async function run(kind: Kind) {
    const controller = new AbortController();
    abort.current = controller;
    setState({ phase: 'running', kind, progress: { bytes: 0, rows: 0 } });
    const query = new URLSearchParams({ from, to, ...(resellerId ? { reseller_id: resellerId } : {}) });
    for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
    try {
      const { blob, progress, filename } = await streamExport(`/api/v1/exports/${kind}.csv?${query}`, {
        signal: controller.signal,
        onProgress: (p) => setState({ phase: 'running', kind, progress: p }),
      });
      saveBlob(blob, filename ?? `${kind === 'tickets' ? 'tickets' : 'mensagens'}_${from}_${to}.csv`);
      setState({ phase: 'done', rows: progress.rows });
    } catch (error) {
      if (controller.signal.aborted) setState({ phase: 'cancelled' });
      else setState({ phase: 'error', message: failure(error) });
    } finally {
      abort.current = null;
    }
  }

  const running = state.phase === 'running';
  return (
    <Paper withBorder p="md">
      <Stack gap="sm">
        <Title order={3} size="h5">
          {t.exports.title}
        </Title>
        <Group>
          <Button onClick={() => void run('tickets')} disabled={running || !from || !to} loading={running && state.kind === 'tickets'}>
            {t.exports.tickets}
          </Button>
          <Button onClick={() => void run('messages')} disabled={running || !from || !to} loading={running && state.kind === 'messages'} variant="light">
            {t.exports.messages}
          </Button>
          {running && (
            <Button color="red" variant="subtle" onClick={() => abort.current?.abort()}>
              {t.exports.cancel}
            </Button>
          )}
        </Group>
        {running && (
          <Stack gap={4} role="status">
            <Progress value={100} animated striped aria-hidden />
            <Text size="sm">{t.exports.progress(state.progress.rows, formatBytes(state.progress.bytes))}</Text>
          </Stack>
        )}
        {state.phase === 'done' && (
          <Text size="sm" c="teal" role="status">
            {t.exports.done(state.rows)}
          </Text>
        )}
        {state.phase === 'cancelled' && (
          <Text size="sm" role="status">
            {t.exports.cancelled}
          </Text>
        )}
        {state.phase === 'error' && (
          <Alert color="red" role="alert">
            {state.message}
          </Alert>
        )}
      </Stack>
    </Paper>
  );
}
