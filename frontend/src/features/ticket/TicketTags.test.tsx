import { fireEvent, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Ticket } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { TicketTags } from './TicketTags';

const me = agentUser();
const ticket = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, tags: ['vip'] });
const TAGS = `/api/v1/tickets/${ticket.id}/tags`;

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('TicketTags', () => {
  it('puts a tag whose save failed back into the field, unsaved, and saves it on the next Enter', async () => {
    let failing = true;
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tags') return { body: { items: ['vip'] } };
      if (method === 'PUT' && path === TAGS) {
        if (failing) return { status: 503, body: { detail: 'down' } };
        return { body: { ...ticket, tags: (body as { tags: string[] }).tags } satisfies Ticket };
      }
      return undefined;
    });
    renderApp(<TicketTags ticket={ticket} />);
    const field = screen.getByRole('textbox', { name: 'Etiquetas' });
    await userEvent.type(field, 'urgente{Enter}');

    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('urgente');
    // Nothing reads as saved that was not.
    expect(screen.getByText('vip', { selector: '.mantine-Pill-label' })).toBeInTheDocument();
    expect(screen.queryByText('urgente', { selector: '.mantine-Pill-label' })).not.toBeInTheDocument();

    failing = false;
    await userEvent.type(field, '{Enter}');
    await waitFor(() => expect(calls.filter((c) => c.method === 'PUT').map((c) => c.body)).toEqual([{ tags: ['vip', 'urgente'] }, { tags: ['vip', 'urgente'] }]));
    expect(field).toHaveValue('');
  });

  it('puts the tags of a failed paste back comma-separated, and Enter saves each as its own tag', async () => {
    let failing = true;
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tags') return { body: { items: ['vip'] } };
      if (method === 'PUT' && path === TAGS) {
        if (failing) return { status: 503, body: { detail: 'down' } };
        return { body: { ...ticket, tags: (body as { tags: string[] }).tags } satisfies Ticket };
      }
      return undefined;
    });
    renderApp(<TicketTags ticket={ticket} />);
    const field = screen.getByRole('textbox', { name: 'Etiquetas' });
    await userEvent.click(field);
    await userEvent.paste('urgente,retorno');

    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('urgente,retorno');

    failing = false;
    await userEvent.type(field, '{Enter}');
    await waitFor(() =>
      expect(calls.filter((c) => c.method === 'PUT').map((c) => c.body)).toEqual([{ tags: ['vip', 'urgente', 'retorno'] }, { tags: ['vip', 'urgente', 'retorno'] }]),
    );
    expect(field).toHaveValue('');
  });

  it('on Enter splits text with commas into tags, dropping empty ones and ones already there', async () => {
    const calls = mockApi(({ method, path, body }) => {
      if (path === '/api/v1/auth/me') return { body: me };
      if (path === '/api/v1/tags') return { body: { items: ['vip'] } };
      if (method === 'PUT' && path === TAGS) return { body: { ...ticket, tags: (body as { tags: string[] }).tags } satisfies Ticket };
      return undefined;
    });
    renderApp(<TicketTags ticket={ticket} />);
    const field = screen.getByRole('textbox', { name: 'Etiquetas' });
    // Typed, a "," would make a tag at once; text with commas comes from a failed save or a field edit.
    fireEvent.change(field, { target: { value: ' novo, VIP,,novo ,b ' } });
    fireEvent.keyDown(field, { key: 'Enter' });
    await waitFor(() => expect(calls.filter((c) => c.method === 'PUT').map((c) => c.body)).toEqual([{ tags: ['vip', 'novo', 'b'] }]));
    expect(field).toHaveValue('');
  });
});
