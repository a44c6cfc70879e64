"""Metadata in SQL: tables, engine, unit of work and Alembic migrations.

SQLite (WAL) in the embedded profile, PostgreSQL in the distributed one,
with the same code. Sensitive metadata (file names, messages) arrives
here already sealed by ``crypto.envelope``.
"""
