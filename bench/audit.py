"""``python -m bench.audit``: write events through ``record()`` into a fresh
SQLite data directory, sign checkpoints, then time ``verify`` (target:
100,000 events in under 10 s), the export with inclusion proofs and its
offline check. Writes its figures into docs/benchmarks.md between the
``<!-- audit:begin -->`` and ``<!-- audit:end -->`` markers (appended after
the hand-written notes of ``bench.transfer`` the first time, which that
benchmark keeps)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import write_block
from coffre.audit import trail
from coffre.audit.log import verify_export
from coffre.bootstrap import Coffre, build
from coffre.notify.memory import MemoryMailer
from coffre.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- audit:begin -->", "<!-- audit:end -->"
BATCH = 1000
TARGET_SECONDS = 10.0
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=int, default=10,
                        help="checkpoints signed while writing (evenly spaced)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.events < 1 or args.checkpoints < 1:
        parser.error("--events and --checkpoints must be positive")
    return args


def write_events(app: Coffre, count: int, checkpoints: int) -> tuple[float, float]:
    """Seconds spent recording, and spent signing checkpoints."""
    every = max(1, count // checkpoints)
    recording = signing = 0.0
    written = 0
    while written < count:
        n = min(BATCH, every - written % every, count - written)
        started = time.perf_counter()
        with app.db.session() as session:
            for i in range(written, written + n):
                trail.record(
                    session, "transfer.downloaded", actor=f"{i % 97:032x}",
                    organisation_id=f"{i % 7:032x}", object_type="transfer",
                    object_id=f"{i:032x}", context=trail.Context("192.0.2.10", USER_AGENT),
                    recipient=f"{i % 13:032x}", file=f"{i:032x}", bytes=1 << 30, complete=True,
                )
        recording += time.perf_counter() - started
        written += n
        if written % every == 0 or written == count:
            started = time.perf_counter()
            app.audit.checkpoint()
            signing += time.perf_counter() - started
    return recording, signing


def run(args: argparse.Namespace) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="coffre-bench-audit-") as tmp:
        app = build(Settings(data_dir=Path(tmp) / "data"), mailer=MemoryMailer())
        try:
            recording, signing = write_events(app, args.events, args.checkpoints)
            started = time.perf_counter()
            report = app.audit.verify()
            verify_s = time.perf_counter() - started
            if not report.intact:
                raise SystemExit(f"verify failed on an untouched trail: {report.problem}")
            export = Path(tmp) / "export.jsonl"
            started = time.perf_counter()
            with export.open("w") as f:
                for line in app.audit.export():
                    f.write(line)
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            with export.open() as f:
                check = verify_export(f, app.audit.public_key)
            check_s = time.perf_counter() - started
            if check.problem is not None:
                raise SystemExit(f"export check failed: {check.problem}")
            db_size = (Path(tmp) / "data" / "coffre.db").stat().st_size
            return {
                "events": args.events, "verified": report.events,
                "checkpoints": report.checkpoints, "record_s": recording,
                "sign_s": signing, "verify_s": verify_s, "export_s": export_s,
                "export_mb": export.stat().st_size / 1e6, "check_s": check_s,
                "db_mb": db_size / 1e6,
            }
        finally:
            app.close()


def render(r: dict[str, float | int | str]) -> str:
    ok = "yes" if float(r["verify_s"]) < TARGET_SECONDS else "**no**"
    events = int(r["events"])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    return "\n".join([
        BEGIN,
        "## Audit trail",
        "",
        f"Generated by `python -m bench.audit --events {events}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC (commit {commit or '?'}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}); fresh SQLite data "
        f"directory, events written through `record()` in transactions of {BATCH}.",
        "",
        "| step | seconds | rate |",
        "|---|---:|---:|",
        f"| record {events:,} events | {float(r['record_s']):.2f} | "
        f"{events / float(r['record_s']):,.0f} events/s |",
        f"| sign {r['checkpoints']} checkpoints (each re-reads every leaf hash) | "
        f"{float(r['sign_s']):.2f} | |",
        f"| `verify`: rows, chain, Merkle tree, every checkpoint and consistency proof | "
        f"**{float(r['verify_s']):.2f}** | {events / float(r['verify_s']):,.0f} events/s |",
        f"| `export` of every event with its inclusion proof ({float(r['export_mb']):.0f} MB) | "
        f"{float(r['export_s']):.2f} | {events / float(r['export_s']):,.0f} events/s |",
        f"| `verify-export` of that file, offline | {float(r['check_s']):.2f} | "
        f"{events / float(r['check_s']):,.0f} events/s |",
        "",
        f"Target: an untouched log of 100,000 events verifies in under "
        f"{TARGET_SECONDS:.0f} s — met: {ok}. Database size: {float(r['db_mb']):.0f} MB.",
        END,
    ])


def write(doc: Path, block: str) -> None:
    write_block(doc, block, BEGIN, END)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    result = run(args)
    block = render(result)
    print(block)
    if not args.no_write:
        write(args.output, block)
        print(f"written into {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
