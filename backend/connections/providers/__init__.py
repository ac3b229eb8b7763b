"""Provider adapters. Everything provider-specific (REST shapes, webhook payloads) lives here."""
