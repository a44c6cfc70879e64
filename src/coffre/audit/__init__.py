"""The audit trail: append-only, hash-chained events (SEC-29 to SEC-32)."""
