"""The pure core: entities' rules and policies. Imports nothing from the
adapters (HTTP, SQL, storage, mail); enforced by import-linter."""
