"""The REST API under /api/ and signed outbound webhooks."""
