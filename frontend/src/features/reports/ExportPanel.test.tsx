import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../api/client';
import { agentUser, renderApp, signIn, stubWebSocket } from '../../test/utils';
import { ExportPanel } from './ExportPanel';

const encoder = new TextEncoder();

/** fetch answering a CSV whose chunks the test releases one by one; aborting errors the read. */
function streamedCsv(chunks: string[]) {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let i = 0;
  const urls: string[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init: RequestInit) => {
      if (!String(url).includes('/exports/')) return new Response('{}', { status: 200 }); // the session's own reads
      urls.push(url);
      const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
      init.signal?.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')));
      return new Response(stream, { status: 200 });
    }),
  );
  return {
    urls,
    next: () => (i < chunks.length ? controller.enqueue(encoder.encode(chunks[i++])) : controller.close()),
  };
}

beforeEach(() => {
  stubWebSocket();
  signIn(agentUser({ role: 'reseller' }));
  URL.createObjectURL = vi.fn(() => 'blob:csv');
  URL.revokeObjectURL = vi.fn();
});

afterEach(() => vi.restoreAllMocks());

/** The file the browser was handed (jsdom cannot navigate to a download). */
function savedAs(): string[] {
  const click = vi.spyOn(HTMLAnchorElement.prototype, 'click');
  const names: string[] = [];
  click.mockImplementation(function (this: HTMLAnchorElement) {
    names.push(this.download);
  });
  return names;
}

describe('ExportPanel', () => {
  it('shows rows and bytes while the file arrives, then saves it', async () => {
    const csv = streamedCsv(['\ufeffa;b\r\n1;2\r\n', '3;4\r\n5;6\r\n']);
    const saved = savedAs();
    renderApp(<ExportPanel from="2025-03-01" to="2025-03-07" />);
    await userEvent.click(screen.getByRole('button', { name: 'Exportar mensagens' }));
    await waitFor(() => expect(csv.urls).toHaveLength(1));
    expect(csv.urls[0]).toBe('/api/v1/exports/messages.csv?from=2025-03-01&to=2025-03-07');
    csv.next();
    expect(await screen.findByText('1 linha · 13 B recebidos')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Exportar tickets' })).toBeDisabled();
    csv.next();
    expect(await screen.findByText('3 linhas · 23 B recebidos')).toBeInTheDocument();
    csv.next();
    expect(await screen.findByText('Exportação concluída: 3 linhas.')).toBeInTheDocument();
    expect(URL.createObjectURL).toHaveBeenCalledTimes(1);
    expect(saved).toEqual(['mensagens_2025-03-01_2025-03-07.csv']);
  });

  it('cancels a running export, and says so when the server is busy', async () => {
    const csv = streamedCsv(['\ufeffa;b\r\n1;2\r\n']);
    const saved = savedAs();
    renderApp(<ExportPanel from="2025-03-01" to="2025-03-07" resellerId={'r'.repeat(24)} />);
    await userEvent.click(screen.getByRole('button', { name: 'Exportar tickets' }));
    await waitFor(() => expect(csv.urls).toHaveLength(1));
    expect(csv.urls[0]).toContain(`reseller_id=${'r'.repeat(24)}`);
    csv.next();
    await screen.findByText('1 linha · 13 B recebidos');
    await userEvent.click(screen.getByRole('button', { name: 'Cancelar exportação' }));
    expect(await screen.findByText('Exportação cancelada.')).toBeInTheDocument();
    expect(URL.createObjectURL).not.toHaveBeenCalled();
    expect(saved).toEqual([]);

    vi.stubGlobal('fetch', vi.fn(async () => new Response('{"detail":"busy"}', { status: 429 })));
    await userEvent.click(screen.getByRole('button', { name: 'Exportar tickets' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Muitas exportações em andamento');
  });

  it("shows the server's reason for a refusal, and offers a retry only where one may help", async () => {
    renderApp(<ExportPanel from="2024-01-01" to="2025-03-07" />);
    vi.stubGlobal('fetch', vi.fn(async () => new Response('{"detail":"a period of at most 366 days"}', { status: 422 })));
    await userEvent.click(screen.getByRole('button', { name: 'Exportar tickets' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent(ApiError.describe(422, 'a period of at most 366 days')); // as every page says it
    expect(alert).not.toHaveTextContent('Tente de novo');

    vi.stubGlobal('fetch', vi.fn(async () => new Response('oops', { status: 502 })));
    await userEvent.click(screen.getByRole('button', { name: 'Exportar tickets' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('A exportação falhou. Tente de novo.'));
  });

  it('sends the filters given and saves the file under the name the server gives', async () => {
    const urls: string[] = [];
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL) => {
        const url = input instanceof Request ? input.url : String(input);
        if (!url.includes('/exports/')) return new Response('{}', { status: 200 }); // the session's own reads
        urls.push(url);
        return new Response('\ufeffa;b\r\n', {
          status: 200,
          headers: { 'Content-Disposition': 'attachment; filename="tickets_2025-03-01_2025-03-07_departamento-d.csv"' },
        });
      }),
    );
    const saved = savedAs();
    renderApp(<ExportPanel from="2025-03-01" to="2025-03-07" filters={{ department_id: 'd', agent_id: null, connection_id: 'c' }} />);
    await userEvent.click(screen.getByRole('button', { name: 'Exportar tickets' }));
    expect(await screen.findByText('Exportação concluída: 0 linhas.')).toBeInTheDocument();
    expect(urls).toEqual([
      '/api/v1/exports/tickets.csv?from=2025-03-01&to=2025-03-07&department_id=d&connection_id=c',
    ]);
    expect(saved).toEqual(['tickets_2025-03-01_2025-03-07_departamento-d.csv']);
  });
});
