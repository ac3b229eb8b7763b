import { fireEvent, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Ticket } from '../../api/types';
import { agentUser, mockApi, renderApp, signIn, stubWebSocket, ticketFixture } from '../../test/utils';
import { TicketTags } from './TicketTags';

const me = agentUser();
const ticket = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, tags: ['vip'] });
const TAGS = `/api/v1/tickets/${ticket.id}/tags`;

/** The field for a ticket with `tags`, its saves answered as stored unless `failing()`; `puts()`
 * are the bodies the saves sent. */
function renderTags({ tags = ticket.tags, failing = () => false }: { tags?: string[]; failing?: () => boolean } = {}) {
  const calls = mockApi(({ method, path, body }) => {
    if (path === '/api/v1/auth/me') return { body: me };
    if (path === '/api/v1/tags') return { body: { items: ['vip'] } };
    if (method === 'PUT' && path === TAGS) {
      if (failing()) return { status: 503, body: { detail: 'down' } };
      return { body: { ...ticket, tags: (body as { tags: string[] }).tags } satisfies Ticket };
    }
    return undefined;
  });
  renderApp(<TicketTags ticket={{ ...ticket, tags }} />);
  return {
    field: screen.getByRole('textbox', { name: 'Etiquetas' }),
    puts: () => calls.filter((c) => c.method === 'PUT').map((c) => c.body),
  };
}

beforeEach(() => {
  stubWebSocket();
  signIn(me);
});

describe('TicketTags', () => {
  it('puts a tag whose save failed back into the field, unsaved, and saves it on the next Enter', async () => {
    let failing = true;
    const { field, puts } = renderTags({ failing: () => failing });
    await userEvent.type(field, 'urgente{Enter}');

    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('urgente');
    // Nothing reads as saved that was not.
    expect(screen.getByText('vip', { selector: '.mantine-Pill-label' })).toBeInTheDocument();
    expect(screen.queryByText('urgente', { selector: '.mantine-Pill-label' })).not.toBeInTheDocument();

    failing = false;
    await userEvent.type(field, '{Enter}');
    await waitFor(() => expect(puts()).toEqual([{ tags: ['vip', 'urgente'] }, { tags: ['vip', 'urgente'] }]));
    expect(field).toHaveValue('');
  });

  it('puts the tags of a failed paste back comma-separated, and Enter saves each as its own tag', async () => {
    let failing = true;
    const { field, puts } = renderTags({ failing: () => failing });
    await userEvent.click(field);
    await userEvent.paste('urgente,retorno');

    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('urgente,retorno');

    failing = false;
    await userEvent.type(field, '{Enter}');
    await waitFor(() => expect(puts()).toEqual([{ tags: ['vip', 'urgente', 'retorno'] }, { tags: ['vip', 'urgente', 'retorno'] }]));
    expect(field).toHaveValue('');
  });

  it('on Enter splits text with commas into tags, dropping empty ones and ones already there', async () => {
    const { field, puts } = renderTags();
    // Typed, a "," would make a tag at once; text with commas comes from a failed save or a field edit.
    fireEvent.change(field, { target: { value: ' novo, VIP,,novo ,b ' } });
    fireEvent.keyDown(field, { key: 'Enter' });
    await waitFor(() => expect(puts()).toEqual([{ tags: ['vip', 'novo', 'b'] }]));
    expect(field).toHaveValue('');
  });

  it('on blur saves what is typed by the same rule as Enter', async () => {
    const { field, puts } = renderTags();
    fireEvent.focus(field);
    fireEvent.change(field, { target: { value: ' novo, VIP,,b ' } });
    fireEvent.blur(field);
    await waitFor(() => expect(puts()).toEqual([{ tags: ['vip', 'novo', 'b'] }]));
    expect(field).toHaveValue('');
  });

  it('on blur tries text left in the field by a failed save only once, until it is edited', async () => {
    let failing = true;
    const { field, puts } = renderTags({ failing: () => failing });
    await userEvent.click(field);
    await userEvent.keyboard('urgente');
    await userEvent.tab();
    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('urgente');

    // Blurred again with nothing typed: that try was answered; the text stays for the user to fix.
    for (let i = 0; i < 2; i++) {
      await userEvent.click(field);
      await userEvent.tab();
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(puts()).toEqual([{ tags: ['vip', 'urgente'] }]);
    expect(screen.getAllByText('Servidor indisponível no momento.')).toHaveLength(1);
    expect(field).toHaveValue('urgente');

    // Edited, it is a new try.
    failing = false;
    await userEvent.click(field);
    await userEvent.keyboard('2');
    await userEvent.tab();
    await waitFor(() => expect(puts()).toEqual([{ tags: ['vip', 'urgente'] }, { tags: ['vip', 'urgente2'] }]));
    await waitFor(() => expect(field).toHaveValue(''));
  });

  it('on blur says the limit once for text left in the field, and again once that text is edited', async () => {
    const twenty = Array.from({ length: 20 }, (_, i) => `t${i + 1}`);
    const tooMany = 'Um atendimento pode ter até 20 etiquetas. As que não couberam ficaram no campo.';
    const { field, puts } = renderTags({ tags: twenty });
    await userEvent.click(field);
    await userEvent.keyboard('urgente');
    await userEvent.tab();
    expect(await screen.findByText(tooMany)).toBeInTheDocument();
    await waitFor(() => expect(field).toHaveValue('urgente'));

    for (let i = 0; i < 2; i++) {
      await userEvent.click(field);
      await userEvent.tab();
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(screen.getAllByText(tooMany)).toHaveLength(1);
    expect(field).toHaveValue('urgente');

    await userEvent.click(field);
    await userEvent.keyboard('{Backspace}s');
    await userEvent.tab();
    await waitFor(() => expect(screen.getAllByText(tooMany)).toHaveLength(2));
    await waitFor(() => expect(field).toHaveValue('urgents'));
    expect(puts()).toEqual([]);
  });

  it('after a blur that left the text alone, Enter still tries it again', async () => {
    let failing = true;
    const { field, puts } = renderTags({ failing: () => failing });
    await userEvent.type(field, 'urgente{Enter}');
    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    await userEvent.tab();
    expect(field).toHaveValue('urgente');

    failing = false;
    await userEvent.type(field, '{Enter}');
    await waitFor(() => expect(puts()).toEqual([{ tags: ['vip', 'urgente'] }, { tags: ['vip', 'urgente'] }]));
    await waitFor(() => expect(field).toHaveValue(''));
  });

  it('saves the tags that fit under the limit of 20, says so, and leaves the others in the field', async () => {
    const eighteen = Array.from({ length: 18 }, (_, i) => `t${i + 1}`);
    const { field, puts } = renderTags({ tags: eighteen });
    await userEvent.click(field);
    await userEvent.paste('a,b,c,d');

    await waitFor(() => expect(puts()).toEqual([{ tags: [...eighteen, 'a', 'b'] }]));
    expect(await screen.findByText('Um atendimento pode ter até 20 etiquetas. As que não couberam ficaram no campo.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('c,d');
  });

  it('after a failed save of the tags that fit, the field holds them ahead of the ones that did not', async () => {
    const eighteen = Array.from({ length: 18 }, (_, i) => `t${i + 1}`);
    const { field } = renderTags({ tags: eighteen, failing: () => true });
    await userEvent.click(field);
    await userEvent.paste('a,b,c,d');

    expect(await screen.findByText('Servidor indisponível no momento.')).toBeInTheDocument();
    await waitFor(() => expect(field).toBeEnabled());
    expect(field).toHaveValue('a,b,c,d');
  });

  it('at the limit, keeps in the field a tag typed with Enter and says why', async () => {
    const twenty = Array.from({ length: 20 }, (_, i) => `t${i + 1}`);
    const { field, puts } = renderTags({ tags: twenty });
    await userEvent.type(field, 'urgente{Enter}');

    expect(await screen.findByText('Um atendimento pode ter até 20 etiquetas. As que não couberam ficaram no campo.')).toBeInTheDocument();
    expect(field).toHaveValue('urgente');
    expect(puts()).toEqual([]);
  });
});
