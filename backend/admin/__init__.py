"""The platform admin's view across resellers (issue 18 item 5)."""
