"""Deploy ledger: per-collection counts recorded at every start, and the guard that refuses to
serve when a count is smaller than a recorded start said it was (DOMAIN.md persistence rule 2)."""
