"""WhatsApp connections: a reseller's numbers, each bound to one provider instance."""
