import type { components } from './schema';

type S = components['schemas'];
export type Ticket = S['TicketRead'];
export type TicketStatus = Ticket['status'];
export type TicketCounts = S['TicketCounts'];
export type Message = S['MessageRead'];
export type TicketEvent = S['TicketEventRead'];
export type User = S['UserRead'];
export type Department = S['DepartmentRead'];
export type Reseller = S['ResellerRead'];
export type ResellerConfig = S['ResellerConfigRead'];
export type ResellerConfigUpdate = S['ResellerConfigUpdate'];
export type BusinessHours = S['BusinessHours'];
export type TokenRead = S['TokenRead'];
export type QuickReply = S['QuickReplyRead'];
export type Client = S['ClientRead'];
export type ClientImportResult = S['ClientImportResult'];
export type ScheduledMessage = S['ScheduledMessageRead'];
export type Page<T> = { items: T[]; next_cursor?: string | null };

export const STATUSES = ['espera', 'atendendo', 'finalizado'] as const satisfies readonly TicketStatus[];

/** A status named in a URL (`?aba=`), checked. */
export function isStatus(value: string | null): value is TicketStatus {
  return !!value && (STATUSES as readonly string[]).includes(value);
}

export type WhatsAppConnection = S['ConnectionRead'];
export type WhatsAppConnectionUpdate = S['ConnectionUpdate'];
export type WhatsAppConnectionCreate = S['ConnectionCreate'];
export type ConnectionState = WhatsAppConnection['status'];
export type QrCodeRead = S['QrCodeRead'];

/** Frames of the realtime websocket /api/v1/ws. */
export type RealtimeEventName =
  | 'ticket.created'
  | 'ticket.assumed'
  | 'ticket.transferred'
  | 'ticket.finalized'
  | 'ticket.routed'
  | 'ticket.rated'
  | 'message.created'
  | 'message.status'
  | 'ticket.read'
  | 'connection.status'
  // A scheduled message was sent, canceled or failed (backend/scheduled/service.py `_announce`).
  | 'scheduled.settled';
/** A ticket in a frame: the unread count is per user, so only the reader's own `ticket.read` has one. */
export type EventTicket = Omit<Ticket, 'unread_count'> & { unread_count?: number };
export type RealtimeEvent = {
  type: 'event';
  seq: number;
  event: RealtimeEventName;
  at: string;
  ticket: EventTicket | null;
  message: Message | null;
  connection: Partial<WhatsAppConnection> & { id: string } | null;
  /** backend/realtime/hub.py FRAMED_DATA: `scheduled.settled` the schedule as settled;
   * `message.created` a client message's inbound number (backend/unread); the reader's own
   * `ticket.read` the inbound number its count covers. */
  data?: { schedule?: ScheduledMessage; inbound_n?: number; inbound_through?: number } | null;
};
export type ServerFrame =
  | { type: 'hello'; seq: number; heartbeat: number }
  | RealtimeEvent
  | { type: 'resync' }
  | { type: 'ping' };

export type ReportSummary = S['ReportSummary'];
export type AgentReport = S['AgentReport'];
export type AdminOverview = S['AdminOverview'];
export type ResellerOverview = S['ResellerOverview'];
