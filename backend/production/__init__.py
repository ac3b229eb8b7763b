"""Refusals that need the database to decide: with ENV=production the backend does not serve on
a local development store or on a server that cannot give journaled majority writes."""
