"""Notifications: mail over SMTP, the development mailbox, in-memory for tests."""
