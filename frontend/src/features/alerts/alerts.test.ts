import { describe, expect, it } from 'vitest';
import type { Message, RealtimeEvent, ScheduledMessage, WhatsAppConnection } from '../../api/types';
import { agentUser, ticketFixture } from '../../test/utils';
import { alertFor, alertsEnabled, pendingCount, scheduleFailureFor, setAlertsEnabled, titleWith, withAlert, withoutTicket } from './alerts';

const me = agentUser();
const ev = (event: RealtimeEvent['event'], over: Partial<RealtimeEvent>): RealtimeEvent => ({
  type: 'event', seq: 1, event, at: '2025-01-01T12:00:00Z', ticket: null, message: null, connection: null, ...over,
});
const message = (over: Partial<Message> = {}): Message => ({
  id: 'm'.repeat(24), ticket_id: '1'.repeat(24), direction: 'in', sender_type: 'client', sender_name: 'Maria', type: 'text', automatic: false,
  body: 'Ainda não chegou', status: 'received', created_at: '2025-01-01T12:00:00Z', ...over,
});
const held = ticketFixture({ status: 'atendendo', agent_id: me.id, agent_name: me.name, version: 2 });

describe('alertFor', () => {
  it('alerts an agent of a new espera ticket in its departments, and of nothing elsewhere', () => {
    const fresh = ticketFixture({ number: 12 });
    expect(alertFor(ev('ticket.created', { ticket: fresh }), me)).toMatchObject({
      ticketId: fresh.id,
      title: 'Novo atendimento: Maria Cliente',
      body: 'Oi',
    });
    // A ticket a call opened: its preview in Portuguese.
    const called = ticketFixture({ last_message_preview: '[call]' });
    expect(alertFor(ev('ticket.created', { ticket: called }), me)?.body).toBe('[Chamada de voz]');
    const elsewhere = ticketFixture({ department_id: 'e'.repeat(24) });
    expect(alertFor(ev('ticket.created', { ticket: elsewhere }), me)).toBeNull();
    // Sent back to the queue of its department: waiting again.
    const back = ticketFixture({ version: 3 });
    expect(alertFor(ev('ticket.transferred', { ticket: back }), me)?.key).toBe(`queued:${back.id}:3`);
    // A reseller has no queue of its own: alerted only of queues nobody serves (below).
    expect(alertFor(ev('ticket.created', { ticket: fresh }), agentUser({ role: 'reseller', department_ids: [] }))).toBeNull();
  });

  it('names a client by its number when it has no name, and by the hidden number label when it has neither', () => {
    const byNumber = ticketFixture({ client_name: '' });
    expect(alertFor(ev('ticket.created', { ticket: byNumber }), me)?.title).toBe('Novo atendimento: +55 (11) 98765-4321');
    const neither = ticketFixture({ client_name: '', client_phone: '' });
    expect(alertFor(ev('ticket.created', { ticket: neither }), me)?.title).toBe('Novo atendimento: Número oculto pelo WhatsApp');
  });

  it('alerts the holder of a client message, never of its own replies, notes or others\' tickets', () => {
    expect(alertFor(ev('message.created', { ticket: held, message: message() }), me)).toMatchObject({
      key: `message:${'m'.repeat(24)}`,
      title: 'Nova mensagem de Maria Cliente',
      body: 'Ainda não chegou',
    });
    const reply = message({ direction: 'out', sender_type: 'agent' });
    expect(alertFor(ev('message.created', { ticket: held, message: reply }), me)).toBeNull();
    const note = message({ direction: 'note', sender_type: 'agent', type: 'note' });
    expect(alertFor(ev('message.created', { ticket: held, message: note }), me)).toBeNull();
    const theirs = { ...held, agent_id: 'b'.repeat(24) };
    expect(alertFor(ev('message.created', { ticket: theirs, message: message() }), me)).toBeNull();
    const queued = ticketFixture();
    expect(alertFor(ev('message.created', { ticket: queued, message: message() }), me)).toBeNull();
    const photo = message({ body: '', type: 'image' });
    expect(alertFor(ev('message.created', { ticket: held, message: photo }), me)?.body).toBe('[Imagem]');
    const call = message({ body: '', type: 'call' });
    expect(alertFor(ev('message.created', { ticket: held, message: call }), me)?.body).toBe('[Chamada de voz]');
  });
});

describe('alertFor · the owner, of queues nobody serves', () => {
  const owner = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });
  const unstaffed = new Map([['d'.repeat(24), 'Suporte']]);

  it('alerts the owner of a ticket queued in a department with no active agent, naming the queue', () => {
    const fresh = ticketFixture({ number: 12, version: 1 });
    expect(alertFor(ev('ticket.created', { ticket: fresh }), owner, unstaffed)).toEqual({
      key: `unstaffed:${fresh.id}:1`,
      ticketId: fresh.id,
      title: 'Conversa sem atendente: Maria Cliente',
      body: 'A fila Suporte não tem atendentes ativos',
    });
    // Sent back there, or routed there by the client's menu choice: waiting there again.
    const back = ticketFixture({ version: 3 });
    expect(alertFor(ev('ticket.transferred', { ticket: back }), owner, unstaffed)?.key).toBe(`unstaffed:${back.id}:3`);
    expect(alertFor(ev('ticket.routed', { ticket: back }), owner, unstaffed)?.title).toBe('Conversa sem atendente: Maria Cliente');
  });

  it('stays quiet for a staffed queue, a ticket no longer waiting and the clients\' messages in tickets it does not hold', () => {
    const fresh = ticketFixture();
    expect(alertFor(ev('ticket.created', { ticket: fresh }), owner, new Map())).toBeNull();
    expect(alertFor(ev('ticket.created', { ticket: ticketFixture({ department_id: 'e'.repeat(24) }) }), owner, unstaffed)).toBeNull();
    const assumed = ticketFixture({ status: 'atendendo', agent_id: owner.id, version: 2 });
    expect(alertFor(ev('ticket.assumed', { ticket: assumed }), owner, unstaffed)).toBeNull();
    // Taken on by an agent there: waiting no more.
    const taken = ticketFixture({ status: 'atendendo', agent_id: me.id, version: 2 });
    expect(alertFor(ev('ticket.transferred', { ticket: taken }), owner, unstaffed)).toBeNull();
    // A client writing in a ticket the owner does not hold (waiting, or an agent's): nothing.
    expect(alertFor(ev('message.created', { ticket: fresh, message: message() }), owner, unstaffed)).toBeNull();
    expect(alertFor(ev('message.created', { ticket: held, message: message() }), owner, unstaffed)).toBeNull();
  });

  it('leaves the agents\' alerts as they were, whatever the unstaffed queues', () => {
    const fresh = ticketFixture({ number: 12 });
    expect(alertFor(ev('ticket.created', { ticket: fresh }), me, unstaffed)).toEqual(alertFor(ev('ticket.created', { ticket: fresh }), me));
    expect(alertFor(ev('ticket.created', { ticket: fresh }), me, unstaffed)?.title).toBe('Novo atendimento: Maria Cliente');
    const elsewhere = ticketFixture({ department_id: 'e'.repeat(24) });
    expect(alertFor(ev('ticket.created', { ticket: elsewhere }), me, new Map([['e'.repeat(24), 'Financeiro']]))).toBeNull();
    expect(alertFor(ev('message.created', { ticket: held, message: message() }), me, unstaffed)?.title).toBe('Nova mensagem de Maria Cliente');
    // An admin has no inbox: nothing.
    expect(alertFor(ev('ticket.created', { ticket: fresh }), agentUser({ role: 'admin', department_ids: [] }), unstaffed)).toBeNull();
  });
});

describe('alertFor · a ticket transferred to the user', () => {
  const owner = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });

  it('alerts the agent a ticket is transferred to, naming the client, once per transfer', () => {
    const mine = ticketFixture({ number: 12, status: 'atendendo', agent_id: me.id, agent_name: me.name, version: 4, last_message_preview: 'Pode me ajudar?' });
    expect(alertFor(ev('ticket.transferred', { ticket: mine }), me)).toEqual({
      key: `transferred:${mine.id}:4`,
      ticketId: mine.id,
      title: 'Conversa transferida para você: Maria Cliente',
      body: 'Pode me ajudar?',
    });
    expect(alertFor(ev('ticket.transferred', { ticket: { ...mine, last_message_preview: '' } }), me)?.body).toBe('#12 agora está com você');
    // In another department than the agent's own: it holds it now all the same.
    expect(alertFor(ev('ticket.transferred', { ticket: { ...mine, department_id: 'e'.repeat(24) } }), me)?.title).toBe('Conversa transferida para você: Maria Cliente');
    // The owner (which an agent may not transfer to, but may hold) the same way.
    const owners = { ...mine, agent_id: owner.id };
    expect(alertFor(ev('ticket.transferred', { ticket: owners }), owner)?.title).toBe('Conversa transferida para você: Maria Cliente');
  });

  it('says nothing of a transfer to someone else, nor of the ticket being assumed', () => {
    const theirs = ticketFixture({ status: 'atendendo', agent_id: 'b'.repeat(24), version: 4 });
    expect(alertFor(ev('ticket.transferred', { ticket: theirs }), me)).toBeNull();
    expect(alertFor(ev('ticket.transferred', { ticket: theirs }), owner, new Map([['d'.repeat(24), 'Suporte']]))).toBeNull();
    const assumed = ticketFixture({ status: 'atendendo', agent_id: me.id, version: 2 });
    expect(alertFor(ev('ticket.assumed', { ticket: assumed }), me)).toBeNull();
  });
});

describe('alertFor · the owner holding a ticket', () => {
  const owner = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });
  const owners = ticketFixture({ status: 'atendendo', agent_id: owner.id, agent_name: owner.name, version: 2 });

  it('alerts the owner of a client message in a ticket it holds, as an agent is', () => {
    expect(alertFor(ev('message.created', { ticket: owners, message: message() }), owner)).toEqual({
      key: `message:${'m'.repeat(24)}`,
      ticketId: owners.id,
      title: 'Nova mensagem de Maria Cliente',
      body: 'Ainda não chegou',
    });
    // Its department unstaffed or not: a message, not a queued ticket.
    expect(alertFor(ev('message.created', { ticket: owners, message: message() }), owner, new Map([['d'.repeat(24), 'Suporte']]))?.key).toBe(`message:${'m'.repeat(24)}`);
    expect(alertFor(ev('message.created', { ticket: owners, message: message({ body: '', type: 'image' }) }), owner)?.body).toBe('[Imagem]');
  });

  it('never of its own replies or notes', () => {
    const reply = message({ direction: 'out', sender_type: 'agent' });
    expect(alertFor(ev('message.created', { ticket: owners, message: reply }), owner)).toBeNull();
    const note = message({ direction: 'note', sender_type: 'agent', type: 'note' });
    expect(alertFor(ev('message.created', { ticket: owners, message: note }), owner)).toBeNull();
  });
});

describe('alertFor · a WhatsApp connection going down (the owner\'s)', () => {
  const owner = agentUser({ id: 'o'.repeat(24), role: 'reseller', department_ids: [] });
  const id = 'w'.repeat(24);
  const loja = (over: Partial<WhatsAppConnection> = {}): WhatsAppConnection => ({
    id, reseller_id: 'r'.repeat(24), name: 'Loja Centro', provider: 'evolution', instance_name: 'loja-centro', default_department_id: 'd'.repeat(24),
    status: 'open', qr_code: null, active: true, last_error: null, menu_enabled: false, menu_department_ids: [], menu_text: '', menu_max_invalid: 2,
    created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-01T12:00:00Z', ...over,
  });
  const status = (over: Partial<WhatsAppConnection>) => ev('connection.status', { connection: loja(over) });
  const wasOpen = new Map([[id, 'open' as const]]);

  it('alerts the owner once an active connection that was open closes, pointing at Conexões', () => {
    expect(alertFor(status({ status: 'close', updated_at: '2025-01-01T12:05:00Z' }), owner, new Map(), wasOpen)).toEqual({
      key: `connection:${id}:2025-01-01T12:05:00Z`,
      href: '/revenda/whatsapp',
      title: 'WhatsApp desconectado: Loja Centro',
      body: 'As mensagens dos clientes não chegam até ele ser conectado de novo.',
    });
    // Closed after reconnecting for a while: down all the same.
    const after = alertFor(status({ status: 'close', updated_at: '2025-01-01T12:06:00Z' }), owner, new Map(), new Map([[id, 'connecting' as const]]));
    expect(after).toMatchObject({ title: 'WhatsApp desconectado: Loja Centro', href: '/revenda/whatsapp' });
    expect(after?.ticketId).toBeUndefined();
    // The same drop announced again (a webhook delivery retried): the same key, alerted once.
    expect(alertFor(status({ status: 'close', updated_at: '2025-01-01T12:05:00Z' }), owner, new Map(), wasOpen)?.key).toBe(`connection:${id}:2025-01-01T12:05:00Z`);
  });

  it('stays quiet when it comes back, was down already, is unknown or deactivated', () => {
    expect(alertFor(status({ status: 'open' }), owner, new Map(), new Map([[id, 'close' as const]]))).toBeNull();
    expect(alertFor(status({ status: 'open' }), owner, new Map(), wasOpen)).toBeNull();
    // Only reconnecting (a network blip says so for seconds): the banner shows it, no alert.
    expect(alertFor(status({ status: 'connecting' }), owner, new Map(), wasOpen)).toBeNull();
    // Down before: a new QR code, or closed again.
    expect(alertFor(status({ status: 'connecting' }), owner, new Map(), new Map([[id, 'close' as const]]))).toBeNull();
    expect(alertFor(status({ status: 'close' }), owner, new Map(), new Map([[id, 'close' as const]]))).toBeNull();
    // A connection not known before (just created): nothing to have dropped from.
    expect(alertFor(status({ status: 'close' }), owner)).toBeNull();
    // Deactivated in IAZE: not in use, whatever the phone says.
    expect(alertFor(status({ status: 'close', active: false }), owner, new Map(), wasOpen)).toBeNull();
  });

  it('alerts nobody else: an agent\'s replies there already say they are blocked', () => {
    expect(alertFor(status({ status: 'close' }), me, new Map(), wasOpen)).toBeNull();
    expect(alertFor(status({ status: 'close' }), agentUser({ role: 'admin', department_ids: [] }), new Map(), wasOpen)).toBeNull();
  });
});

describe('pending alerts and the tab title', () => {
  it('counts alerts per ticket and clears a ticket when it is opened', () => {
    let pending = withAlert(withAlert(withAlert(new Map(), 'a'), 'a'), 'b');
    expect(pendingCount(pending)).toBe(3);
    expect(titleWith('IAZE', pendingCount(pending))).toBe('(3) IAZE');
    pending = withoutTicket(pending, 'a');
    expect(pendingCount(pending)).toBe(1);
    const same = withoutTicket(pending, 'zzz');
    expect(same).toBe(pending);
    expect(titleWith('IAZE', pendingCount(withoutTicket(pending, 'b')))).toBe('IAZE');
  });

  it('keeps the toggle per user, off until the user turns it on', () => {
    localStorage.clear();
    expect(alertsEnabled('u1')).toBe(false);
    setAlertsEnabled('u1', true);
    expect(alertsEnabled('u1')).toBe(true);
    expect(alertsEnabled('u2')).toBe(false);
    setAlertsEnabled('u1', false);
    expect(alertsEnabled('u1')).toBe(false);
  });
});

describe('scheduleFailureFor', () => {
  const failed = (over: Partial<ScheduledMessage> = {}): ScheduledMessage => ({
    id: 's'.repeat(24), ticket_id: held.id, ticket_number: held.number, client_id: held.client_id, client_name: held.client_name,
    body: 'lembrete', send_at: '2025-01-01T12:30:00Z', status: 'failed', reason: 'no_connection', author_id: me.id,
    author_name: me.name, message_id: null, created_at: '2025-01-01T12:00:00Z', settled_at: '2025-01-01T12:30:01Z', ...over,
  });
  const settled = (schedule: ScheduledMessage) => ev('scheduled.settled', { ticket: held, data: { schedule } });

  it('tells the author of a failed schedule, naming the client, the ticket and why', () => {
    expect(scheduleFailureFor(settled(failed()), me)).toEqual({
      key: `schedule-failed:${'s'.repeat(24)}`,
      ticketId: held.id,
      message: 'Mensagem agendada não enviada para Maria Cliente (#7): sem conexão',
    });
    expect(scheduleFailureFor(settled(failed({ reason: 'connection_inactive' })), me)?.message).toMatch(/: conexão desativada$/);
    // A reason this UI does not know yet: the sentence without it.
    expect(scheduleFailureFor(settled(failed({ reason: 'other' })), me)?.message).toBe('Mensagem agendada não enviada para Maria Cliente (#7)');
    // A client with no name: its number.
    const unnamed = ev('scheduled.settled', { ticket: { ...held, client_name: '' }, data: { schedule: failed({ client_name: '' }) } });
    expect(scheduleFailureFor(unnamed, me)?.message).toContain('para +55 (11) 98765-4321 (#7)');
  });

  it('says nothing to anyone else, nor of a schedule sent or canceled, nor for other events', () => {
    expect(scheduleFailureFor(settled(failed()), agentUser({ id: 'b'.repeat(24) }))).toBeNull();
    expect(scheduleFailureFor(settled(failed({ status: 'sent', reason: null })), me)).toBeNull();
    expect(scheduleFailureFor(settled(failed({ status: 'canceled', reason: 'finalized' })), me)).toBeNull();
    expect(scheduleFailureFor(ev('ticket.finalized', { ticket: held, data: { schedule: failed() } }), me)).toBeNull();
    // Not an alert of the toggle's kind (sound, desktop, the tab's count).
    expect(alertFor(settled(failed()), me)).toBeNull();
  });

  it('tells the author when WhatsApp refuses the reply a schedule sent at its time, and nobody else', () => {
    const reply = (over: Partial<Message> = {}) =>
      message({
        direction: 'out', sender_type: 'agent', sender_id: me.id, sender_name: me.name, body: 'lembrete', status: 'failed',
        failure_reason: 'número sem WhatsApp', scheduled_id: 's'.repeat(24), ...over,
      });
    const moved = (m: Message) => ev('message.status', { ticket: held, message: m });
    expect(scheduleFailureFor(moved(reply()), me)).toEqual({
      key: `schedule-failed:${'s'.repeat(24)}`,
      ticketId: held.id,
      message: 'Mensagem agendada não enviada para Maria Cliente (#7): número sem WhatsApp',
    });
    expect(scheduleFailureFor(moved(reply({ status: 'sent', failure_reason: null })), me)).toBeNull();
    expect(scheduleFailureFor(moved(reply({ scheduled_id: null })), me)).toBeNull(); // an ordinary reply: its thread shows it
    expect(scheduleFailureFor(moved(reply()), agentUser({ id: 'b'.repeat(24) }))).toBeNull();
  });
});
