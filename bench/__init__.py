"""Benchmarks run against references on the same machine (never from ``make test``)."""
