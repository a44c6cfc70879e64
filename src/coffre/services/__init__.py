"""Use cases: orchestrate the domain's rules over the ports (storage,
keys, mail) inside one database transaction each. No HTTP here."""
