"""Bulk documents in exactly the shape the services write, built in memory and stored with
insert_many. `bench.shapecheck` proves the shape against the live service path on every run.

Data model of a generated set of `n` tickets:
- clients = ceil(n/2); client c belongs to tenant c % T and opens two tickets (slot 0, slot 1),
  the first at global position c, the second at position c + ceil(n/2) (so half the span later);
- every ticket that is not a client's last is finalizado; a client's last ticket is espera (40%),
  atendendo (30%) or finalizado (30%);
- every ticket has `messages_per_ticket` (>= 2) messages, one a minute: client only while in espera,
  client/agent alternating once assumed; assume happens 30 s after the first message and
  finalize one minute after the last;
- ticket creation times are evenly spread over `span`, ending at `end`.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from backend.clients.service import PHONE_KEY
from backend.core import natural_keys
from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.messages.service import PREVIEW_CHARS
from backend.tickets import service as tickets_service
from backend.tickets.intake import API_CHANNEL
from backend.tickets.service import NUMBER_KEY, OPEN_SLOT_KEY
from backend.tickets.states import CREATED_EVENT, Action, Status

TICKETS_PER_CLIENT = 2
COLLECTIONS = ("users", "natural_keys", "tickets", "ticket_events", "messages")

_CLIENT_LINES = (
    "Olá, meu pedido ainda não chegou, podem verificar?",
    "Boa tarde! Preciso de ajuda com a minha assinatura.",
    "O aplicativo parou de funcionar depois da atualização de ontem.",
    "Gostaria de trocar o plano para o anual, é possível?",
    "Segue o comprovante do pagamento em anexo, obrigado.",
)
_AGENT_LINES = (
    "Olá! Já estou verificando o seu caso, um momento por favor.",
    "Entendi. Pode me informar o número do pedido ou o CPF do titular?",
    "Pronto, ajustei aqui no sistema. Consegue testar novamente?",
    "Perfeito, qualquer dúvida estamos à disposição.",
)


@dataclass(frozen=True)
class Tenant:
    reseller_id: str
    owner: Actor
    department_ids: tuple[str, ...]
    # agents[k] works in department_ids[k]
    agents: tuple[Actor, ...]


@dataclass
class Pools:
    """What the measurements pick from (all small tuples; ~100k entries at most)."""

    tickets: list[tuple[int, str]] = field(default_factory=list)  # (tenant index, ticket id)
    numbers: list[tuple[int, int]] = field(default_factory=list)  # (tenant index, ticket number)
    phones: list[tuple[int, str]] = field(default_factory=list)  # (tenant index, phone)
    espera: list[tuple[int, int, str]] = field(default_factory=list)  # (tenant, department index, ticket id)
    # clients whose last ticket is open, with the department it is in: (tenant, department index, client doc)
    open_clients: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    # tenant 0's finalizado tickets as (last_message_at, id): where its inbox cursor points
    home_finalized: list[tuple[datetime, str]] = field(default_factory=list)


def last_status(client_index: int) -> Status:
    bucket = (client_index * 2654435761 >> 7) % 10  # a fixed, well-mixed spread
    if bucket < 4:
        return Status.ESPERA
    if bucket < 7:
        return Status.ATENDENDO
    return Status.FINALIZADO


def _key(kind: str, *parts: str, target: str, at: datetime) -> dict[str, Any]:
    return {"_id": natural_keys.key_id(kind, *parts), "target": target, "created_at": at}


def _phone(tenant_index: int, local_index: int) -> str:
    return f"55{11 + tenant_index:02d}9{local_index:08d}"


class Generator:
    """Builds the documents of tickets [0, n) in creation order, chunk by chunk."""

    def __init__(
        self, tenants: list[Tenant], *, tickets: int, messages_per_ticket: int, end: datetime, span: timedelta
    ) -> None:
        if messages_per_ticket < 2:
            raise ValueError("messages_per_ticket must be at least 2 (the agent answers from the second on)")
        self.tenants = tenants
        self.n = tickets
        self.per_ticket = messages_per_ticket
        self.clients = (tickets + 1) // TICKETS_PER_CLIENT
        self.step = span / max(tickets, 1)
        self.start = end - span
        self.numbers = [0] * len(tenants)
        self.client_docs: dict[int, dict[str, Any]] = {}
        self.pools = Pools()

    def counters(self) -> list[dict[str, Any]]:
        """The ticket-number counters, as `tickets.repository.next_number` leaves them."""
        return [
            {"_id": f"ticket-number:{t.reseller_id}", "seq": self.numbers[i]}
            for i, t in enumerate(self.tenants)
            if self.numbers[i]
        ]

    def chunks(self, size: int) -> Iterator[tuple[int, int]]:
        for g0 in range(0, self.n, size):
            yield g0, min(self.n, g0 + size)

    def build(self, g0: int, g1: int) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {name: [] for name in COLLECTIONS}
        for g in range(g0, g1):
            self._ticket(g, out)
        return out

    def _has_second(self, c: int) -> bool:
        return c + self.clients < self.n

    def _client(self, c: int, at: datetime, out: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        ti = c % len(self.tenants)
        tenant = self.tenants[ti]
        local = c // len(self.tenants)
        phone = _phone(ti, local)
        # users.raise_ticket_slot leaves ticket_slots = {channel: (highest finalized slot) + 1}, or no field
        finalized_slots = [0] if self._has_second(c) else []
        last_slot = 1 if self._has_second(c) else 0
        if last_status(c) is Status.FINALIZADO:
            finalized_slots.append(last_slot)
        doc: dict[str, Any] = {
            "_id": new_id(),
            "role": "client",
            "reseller_id": tenant.reseller_id,
            "name": f"Cliente {ti:02d}-{local}",
            "phone": phone,
            "active": True,
            "created_at": at,
            "updated_at": at,
        }
        if finalized_slots:
            doc["ticket_slots"] = {API_CHANNEL: max(finalized_slots) + 1}
        out["users"].append(doc)
        out["natural_keys"].append(_key(PHONE_KEY, tenant.reseller_id, phone, target=doc["_id"], at=at))
        self.pools.phones.append((ti, phone))
        return doc

    def _ticket(self, g: int, out: dict[str, list[dict[str, Any]]]) -> None:
        slot, c = (0, g) if g < self.clients else (1, g - self.clients)
        ti = c % len(self.tenants)
        tenant = self.tenants[ti]
        di = (c // len(self.tenants)) % len(tenant.department_ids)
        agent = tenant.agents[di]
        created = self.start + self.step * g
        if slot == 1:
            client = self.client_docs.pop(c)
        else:
            client = self._client(c, created, out)
            if self._has_second(c):
                self.client_docs[c] = client  # the second ticket, half the span later, needs it again
        is_last = slot == 1 or not self._has_second(c)
        status = last_status(c) if is_last else Status.FINALIZADO

        self.numbers[ti] += 1
        number = self.numbers[ti]
        ticket_id = new_id()
        rid = tenant.reseller_id
        doc: dict[str, Any] = {
            "_id": ticket_id,
            "reseller_id": rid,
            "number": number,
            "status": Status.ESPERA.value,
            "client_id": client["_id"],
            "client_name": client["name"],
            "client_phone": client["phone"],
            "department_id": tenant.department_ids[di],
            "agent_id": None,
            "agent_name": None,
            "finalized_at": None,
            "finalized_by": None,
            "channel": API_CHANNEL,
            "open_slot": slot,
            "version": 1,
            "created_at": created,
            "updated_at": created,
            "last_message_at": created,
            "last_message_preview": "",
            "last_message_direction": None,
        }
        state = tickets_service._state(doc)
        events = [
            tickets_service._event(
                ticket_id,
                rid,
                version=1,
                type_=CREATED_EVENT,
                actor_id=None,
                actor_role=None,
                from_status=None,
                state=state,
                at=created,
                data={"ticket": doc},
            )
        ]
        out["natural_keys"].append(_key(NUMBER_KEY, rid, str(number), target=ticket_id, at=created))
        out["natural_keys"].append(
            _key(OPEN_SLOT_KEY, rid, client["_id"], API_CHANNEL, str(slot), target=ticket_id, at=created)
        )

        def transition(action: Action, event: str, at: datetime, changes: dict[str, Any]) -> None:
            nonlocal state
            previous = state["status"]
            state = {**state, **changes}
            events.append(
                tickets_service._event(
                    ticket_id,
                    rid,
                    version=len(events) + 1,
                    type_=event,
                    actor_id=agent.id,
                    actor_role=agent.role,
                    from_status=previous,
                    state=state,
                    at=at,
                    data={"action": action.value},
                )
            )

        assumed = status is not Status.ESPERA
        minute = timedelta(minutes=1)
        last_at, last_body, last_direction = created, "", "in"
        for m in range(self.per_ticket):
            if m == 1 and assumed:  # the agent assumes after the first message
                transition(
                    Action.ASSUME,
                    "assumed",
                    created + timedelta(seconds=30),
                    {"status": Status.ATENDENDO.value, "agent_id": agent.id, "agent_name": agent.name},
                )
            at = created + minute * m + timedelta(milliseconds=3)
            from_agent = assumed and m % 2 == 1
            body = (_AGENT_LINES if from_agent else _CLIENT_LINES)[(g + m) % 4]
            if from_agent:
                sender = ("out", "agent", agent.id, agent.name, "sent")
            else:
                sender = ("in", "client", client["_id"], client["name"], "received")
            out["messages"].append(
                {
                    "_id": new_id(),
                    "ticket_id": ticket_id,
                    "reseller_id": rid,
                    "direction": sender[0],
                    "sender_type": sender[1],
                    "sender_id": sender[2],
                    "sender_name": sender[3],
                    "type": "text",
                    "body": body,
                    "media": None,
                    "status": sender[4],
                    "created_at": at,
                }
            )
            last_at, last_body, last_direction = at, body, sender[0]
        if status is Status.FINALIZADO:
            fin_at = last_at + minute
            transition(
                Action.FINALIZE,
                "finalized",
                fin_at,
                {"status": Status.FINALIZADO.value, "finalized_at": fin_at, "finalized_by": agent.id},
            )
        final = {
            **doc,
            **state,
            "version": len(events),
            "updated_at": events[-1]["at"],
            "last_message_at": last_at,
            "last_message_preview": last_body[:PREVIEW_CHARS],
            "last_message_direction": last_direction,
        }
        out["tickets"].append(final)
        out["ticket_events"].extend(events)

        self.pools.tickets.append((ti, ticket_id))
        self.pools.numbers.append((ti, number))
        if status is Status.ESPERA:
            self.pools.espera.append((ti, di, ticket_id))
        if status is Status.FINALIZADO and ti == 0:
            self.pools.home_finalized.append((last_at, ticket_id))
        if is_last and status is not Status.FINALIZADO:
            self.pools.open_clients.append((ti, di, client))
