import type { Ticket, User } from '../../api/types';
import { ApiError } from '../../api/client';
import { t } from '../../i18n/pt-BR';

/** What the signed-in user may do with a ticket (the backend's state machine decides in the end). */
export function allowedActions(ticket: Ticket, me: User) {
  const holds = ticket.agent_id === me.id;
  const isAgent = me.role === 'agent';
  const isReseller = me.role === 'reseller';
  // The reseller owner may act as an agent when it chooses to: assume, answer, finalize.
  const staff = isAgent || isReseller;
  return {
    assume: staff && ticket.status === 'espera',
    // A waiting ticket is routed to another department's queue by its department's agents or
    // the owner; one being handled, by its holder or the owner.
    transfer: (ticket.status === 'espera' && staff) || (ticket.status === 'atendendo' && (isReseller || (isAgent && holds))),
    finalize:
      (ticket.status === 'espera' && staff) || (ticket.status === 'atendendo' && (isReseller || (isAgent && holds))),
    reply: staff && ticket.status === 'atendendo' && holds,
    // Internal notes: the tenant's staff who can see the ticket, whatever its status.
    note: staff,
    // "Reabrir": a new ticket for the same client and channel (finalizado stays terminal).
    reopen: staff && ticket.status === 'finalizado' && !ticket.reopened_as_ticket_id,
  };
}

/** From a 409 body {"detail": {"message", "status", "ticket"?: {...}}}: the ticket as it is now.
 * The backend includes the ticket only when the user may still see it. */
export function conflictTicket(error: unknown): Ticket | null {
  if (!(error instanceof ApiError) || error.status !== 409) return null;
  const detail = error.detail;
  if (detail && typeof detail === 'object' && 'ticket' in detail && detail.ticket && typeof detail.ticket === 'object') {
    return detail.ticket as Ticket;
  }
  return null;
}

/** The sentence for a lost Assumir race: who took the ticket, when the answer says so. */
export function assumeConflictMessage(error: unknown): string {
  const current = conflictTicket(error);
  if (current?.agent_name) return t.ticket.takenBy(current.agent_name);
  if (current) return t.ticket.takenBySomeone;
  // Taken by another agent: the answer names the status, not the ticket, which we may no longer see.
  if (error instanceof ApiError && error.status === 409 && conflictStatus(error.detail) === 'atendendo') {
    return t.ticket.takenBySomeone;
  }
  return t.ticket.conflict;
}

function conflictStatus(detail: unknown): unknown {
  return detail && typeof detail === 'object' && 'status' in detail ? detail.status : undefined;
}
