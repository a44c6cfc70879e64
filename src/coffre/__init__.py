"""Coffre: send, receive, share and back up health data, encrypted at rest."""

__version__ = "0.1.0"
