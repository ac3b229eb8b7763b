"""The ticket event log as other domains use it (tickets writes every transition here first). It
has no rules of its own: its service publishes the repository's operations, which stay private."""

from backend.audit.repository import event_id as event_id
from backend.audit.repository import get as get
from backend.audit.repository import insert as insert
from backend.audit.repository import list_for_ticket as list_for_ticket
from backend.audit.repository import versions_since as versions_since
