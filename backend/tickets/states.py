"""The ticket state machine: the one table that says what may move a ticket, and who may."""

from dataclasses import dataclass
from enum import StrEnum

from backend.core.errors import Conflict, Forbidden


class Status(StrEnum):
    ESPERA = "espera"
    ATENDENDO = "atendendo"
    FINALIZADO = "finalizado"


class Action(StrEnum):
    ASSUME = "assume"
    TRANSFER_TO_AGENT = "transfer_to_agent"
    TRANSFER_TO_DEPARTMENT = "transfer_to_department"
    FINALIZE = "finalize"
    # The client's own moves, through the automatic messages (backend/automation): its answer to
    # the department menu, and its 1-5 rating of a finalized ticket (a fact recorded on it; the
    # ticket stays finalizado).
    MENU_CHOICE = "menu_choice"
    RATE = "rate"
    # A deactivated person's tickets handed back to their queues (tickets.service.release_held_by).
    RELEASE = "release"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    roles: frozenset[str]
    event: str
    # An agent acting on a ticket in atendendo must be the one holding it.
    agent_must_hold: bool


OPEN_STATES = frozenset({Status.ESPERA, Status.ATENDENDO})
STAFF, CLIENT = frozenset({"agent", "reseller"}), frozenset({"client"})
MANAGERS = frozenset({"reseller", "admin"})  # who deactivates a person: its reseller's owner, the admin
_ESPERA, _ATENDENDO = frozenset({Status.ESPERA}), frozenset({Status.ATENDENDO})  # one-state sources
_FINALIZADO = frozenset({Status.FINALIZADO})

TRANSITIONS: dict[Action, Transition] = {
    # action: Transition(sources, target, roles, event, agent_must_hold)
    # The reseller owner may act as an agent when it chooses to (issue 16 item 6).
    Action.ASSUME: Transition(_ESPERA, Status.ATENDENDO, STAFF, "assumed", False),
    Action.TRANSFER_TO_AGENT: Transition(_ATENDENDO, Status.ATENDENDO, STAFF, "transferred", True),
    # From espera too: routing a waiting ticket to the right queue (an agent of its department,
    # or the owner), no assume first.
    Action.TRANSFER_TO_DEPARTMENT: Transition(OPEN_STATES, Status.ESPERA, STAFF, "transferred", True),
    Action.FINALIZE: Transition(OPEN_STATES, Status.FINALIZADO, STAFF, "finalized", True),
    Action.MENU_CHOICE: Transition(_ESPERA, Status.ESPERA, CLIENT, "routed", False),
    Action.RATE: Transition(_FINALIZADO, Status.FINALIZADO, CLIENT, "rated", False),
    # Deactivating a person hands back what it holds: each of its tickets in atendendo waits again
    # in its own department, recorded as a transfer by whoever deactivated it. Not a transfer's
    # permission: the admin transfers nothing, and the owner releases only its own agents' tickets
    # (release_held_by checks the actor may manage that person).
    Action.RELEASE: Transition(_ATENDENDO, Status.ESPERA, MANAGERS, "transferred", False),
}
CREATED_EVENT = "created"
# Finalized ticket -> the ticket "Reabrir" opened for it (a natural key, claimed once:
# tickets.service.reopen; tickets.links completes it from the new ticket's back link after a crash).
REOPENED_KEY = "reopened-as"


def is_open(status: str) -> bool:
    return Status(status) in OPEN_STATES


def authorize(action: Action, *, status: str, role: str, actor_id: str, holder_id: str | None) -> Transition:
    """Raises Forbidden for a role that may never do this, Conflict for a state that forbids it now."""
    transition = TRANSITIONS[action]
    if role not in transition.roles:
        raise Forbidden(f"role {role} cannot {action.value}")
    current = Status(status)
    if current not in transition.sources:
        raise Conflict({"message": f"cannot {action.value} a ticket in {current.value}", "status": current.value})
    if role == "agent" and transition.agent_must_hold and current is Status.ATENDENDO and holder_id != actor_id:
        raise Conflict({"message": "ticket is held by another agent", "status": current.value})
    return transition
