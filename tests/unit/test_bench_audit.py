"""bench/audit.py runs end to end on a small trail and rewrites only its own
block of docs/benchmarks.md (the transfer benchmark owns the rest)."""

from __future__ import annotations

from pathlib import Path

from bench import audit as bench

OTHER = "# Benchmarks\n\nwritten by bench.transfer\n\n<!-- Hand-written below -->\nnotes\n"


def test_bench_writes_its_block_and_keeps_the_rest(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(OTHER)
    bench.main(["--events", "60", "--checkpoints", "4", "--output", str(doc)])
    first = doc.read_text()
    assert first.startswith(OTHER)
    assert first.count(bench.BEGIN) == 1 and first.count(bench.END) == 1
    assert "record 60 events" in first and "met: yes" in first
    doc.write_text(first + "\nafter the block\n")
    bench.write(doc, f"{bench.BEGIN}\nnew figures\n{bench.END}")
    second = doc.read_text()
    assert second.startswith(OTHER) and second.endswith("after the block\n")
    assert "new figures" in second and "record 60 events" not in second
