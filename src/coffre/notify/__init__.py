"""Notifications: mail over SMTP, the development mailbox, in-memory for
tests; live events that wake Server-Sent Event streams (``live``)."""
