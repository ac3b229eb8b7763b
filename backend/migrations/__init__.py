"""Versioned schema migrations: run by one instance at a time under a lease lock in the database,
each recorded with its outcome, each only adding or reshaping (never removing) data."""
