"""The ``coffre`` command: thin wrappers over the HTTP API (client side)
and over the services (server side: serve, setup, purge)."""
