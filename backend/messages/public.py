"""What other domains read and move on `messages` apart from the messages service: the domains
that service builds on (tickets, outbound) cannot import it, and the repository is private."""

from backend.messages.repository import all_for_tenant_internal as all_for_tenant_internal
from backend.messages.repository import get_internal as get_internal
from backend.messages.repository import give_up_internal as give_up_internal
from backend.messages.repository import latest_per_ticket_since_internal as latest_per_ticket_since_internal
from backend.messages.repository import move_status_internal as move_status_internal
from backend.messages.repository import ticket_ids_with_text as ticket_ids_with_text
