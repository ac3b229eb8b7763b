"""CSV exports of a tenant's tickets and messages for a period (issue 18 item 3)."""
