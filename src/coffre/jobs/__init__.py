"""Scheduled work (purge, mail delivery). Jobs call services only."""
