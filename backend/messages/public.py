"""What other domains read and move on `messages` apart from the messages service: the domains
that service builds on (tickets, outbound) cannot import it, and the repository is private."""

from backend.messages.repository import get as get
from backend.messages.repository import latest_per_ticket_since as latest_per_ticket_since
from backend.messages.repository import move_status as move_status
from backend.messages.repository import ticket_ids_with_text as ticket_ids_with_text
