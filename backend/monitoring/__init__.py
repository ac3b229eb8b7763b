"""Business metrics read from the database when /metrics is scraped (README, Metrics)."""
