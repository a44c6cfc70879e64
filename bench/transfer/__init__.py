"""Transfer throughput and memory: Coffre's tus upload and recipient
download against nginx (PUT/GET of plain files) and the reference tus
server (@tus/server with its file store), on loopback, in one run.

``python -m bench.transfer --help``; ``make bench`` runs it with defaults
and rewrites ``docs/benchmarks.md``.
"""
