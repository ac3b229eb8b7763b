"""Automatic messages: the company settings that act (issue 16).

What reacts, and when (backend/automation/service.py):
- A client's WhatsApp message that opens a ticket: the welcome message (`welcome_message`), then
  the away message when the company is closed, then the department menu when the connection has
  one — each at most once per ticket.
- A later client message in a ticket still in espera: while the menu is pending, its answer; and
  the away message once per ticket per closed period (an espera ticket is waiting for someone; a
  ticket a person holds, or a finalized one, gets no automatic message from its client's words).
- Finalizar of a WhatsApp ticket (the finalize hook, backend/gates.py): the closing message
  (`closing_message`), then — with `csat_enabled`, for a ticket a person held at some point and
  the client wrote in (`service.attended_with_client`) — the survey question; neither is queued
  when the connection cannot send (`connections.blocked`). A lone digit 1-5 (texts.digit) from
  that chat within `csat_window_hours`, once the question left (sent or later), and before the
  client starts a new conversation, records the rating on the finalized ticket: the message is filed
  there (marked `rating`), a `rated` event is logged, the ticket stays finalizado, no ticket
  opens. Any other message opens a new ticket as it always did.
A client message that raced a Finalizar and moved on to a ticket opened for it
(messages.service) opens that ticket as any message does: born with the same markers, the message
as its opening one (`raced_opening`), greeted and offered the menu — by the webhook delivery when
it moved the message, by the finalize hook (after the closing message and the survey question,
whose pending rating the new ticket ends) when the finalize's refile moved it.
Messages marked `direction: "note"` (internal notes) and messages from the connection's own phone
never reach these reactions: only inbound client messages do. Nor do the messages of the history
sync after a pairing: their tickets open for the agents with no menu pending, and nothing answers
them (`history`). Messages IAZE itself caught up after an outage (webhooks.service.catch_up) were
live when written, and react as any.

A connection deactivated in IAZE (`PATCH {"active": false}`) sends nothing automatic: its clients'
messages are still filed as on any other connection (the number may still be connected at the
provider), but no greeting, away message, menu, menu repeat, closing message or survey question is
queued for them. The rule is asked of the store where every automatic message is queued
(`service._speaks`, from `service._send`), and where a ticket is born awaiting a menu (a ticket
opened on a deactivated connection is not: nothing asks its client to choose). A menu that can no
longer be sent or repeated (deactivated meanwhile) ends where the ticket waits, as when its
departments went away. After reactivation the reactions resume with the client's next messages.

Texts and their variables: texts.py; business hours: hours.py. The ticket still opens in espera
out of hours and is born with `out_of_hours: true` (the inbox marks it).

The department menu — where a ticket waits, decided: in espera of the connection's default
department, born with `menu_pending: true` (in its event v1, so no crash leaves it unmarked), so
nothing is hidden: that department's agents see it, marked in the inbox, and may assume it, which
ends the menu (every transition made by a person sets `menu_pending: false`; a reply typed on
the connection's own phone ends it too, `service._phone_answered`). The client's answer
moves it through the tickets state machine (`tickets.choose_department`: action menu_choice,
espera -> espera, a `routed` event with the client as actor and the chosen department), judged on
the ticket's log at that moment: a racing Assumir or Finalizar wins or comes after, never both.
The number maps to the list the client was shown last (stored on each menu message); a repeat
lists only the departments still active. An invalid answer
repeats the menu, up to the connection's `menu_max_invalid` (N) times; the next one ends the menu
with the ticket left where it waits (a `routed` event, `fallback: true`). Nothing else moves a
ticket: every other automatic message only sends.

Delivery and crashes: every automatic message is queued in the durable outbox before it is stored
(as an agent's reply), labelled `automatic: true` with its `automatic_purpose`, never signed, and
its `_id` derived from (ticket, purpose, period) — so it is stored, and sent, once. The reactions
to a client message run inside the webhook delivery's processing; a process killed anywhere in
them leaves the delivery unfinished, the processor retries it, finds the client message stored,
and runs the reactions again (each finds what is already stored). The finalize hook runs
in the request that finalized; a process killed anywhere between the finalize event and the end of
the finalize hooks leaves no `finalize-hooks` key for the ticket (tickets.after_finalize claims it
last), and the projection sweep, which visits every ticket with a recent event, runs the hooks
again until it exists (backend/tickets/sweep.py).
"""
