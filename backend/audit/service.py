"""The ticket event log as other domains use it (tickets writes every transition here first). It
has no rules of its own: its service publishes the repository's operations, which stay private."""

from backend.audit.repository import all_for_tenant_internal as all_for_tenant_internal
from backend.audit.repository import event_id as event_id
from backend.audit.repository import get_internal as get_internal
from backend.audit.repository import insert as insert
from backend.audit.repository import list_for_ticket as list_for_ticket
from backend.audit.repository import state_before_internal as state_before_internal
from backend.audit.repository import versions_since_internal as versions_since_internal
