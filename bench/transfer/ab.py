"""A/B of Coffre variants: each variant is a directory holding a ``coffre``
package (a patched copy of ``src/coffre``), served side by side, measured in
alternating rounds with the same method as ``python -m bench.transfer``.

    cp -r src /tmp/v_base && cp -r src /tmp/v_try && $EDITOR /tmp/v_try/coffre/...
    .venv/bin/python -m bench.transfer.ab --size 1G --reps 5 base=/tmp/v_base try=/tmp/v_try

A variant may add ``+ENV=VALUE`` to set a variable for its server, e.g.
``try=/tmp/v_base+GLIBC_TUNABLES=glibc.malloc.trim_threshold=536870912``.
Prints a table; writes nothing outside the work directory.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.transfer import cli, servers

REPO = cli.REPO


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    source, *settings = rest.split("+")
    env = {"PYTHONPATH": f"{Path(source).resolve()}:{REPO}"}
    for item in settings:
        key, _, value = item.partition("=")
        env[key] = value
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer.ab", description=__doc__)
    parser.add_argument("--size", type=cli.parse_size, default=cli.parse_size("1G"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--mode", choices=["upload", "download", "both"], default="both")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work")
    parser.add_argument("variants", nargs="+", type=_variant, help="NAME=DIR[+ENV=VALUE...]")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.variants]
    args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ab-", dir=args.workdir))
    up: dict[str, cli.Series] = {n: cli.Series(f"{n} upload", args.size) for n in names}
    down: dict[str, cli.Series] = {n: cli.Series(f"{n} download", args.size) for n in names}
    try:
        data = work / "payload.bin"
        sha256 = cli.make_file(data, args.size)
        with contextlib.ExitStack() as stack:
            coffre = {
                name: stack.enter_context(servers.Coffre(work, name=f"ab-{i}", env=env))
                for i, (name, env) in enumerate(args.variants)
            }
            kept: dict[str, str] = {}
            upload_reps = args.reps if args.mode != "download" else 1
            for rep in range(upload_reps):
                shift = rep % len(names)
                for name in names[shift:] + names[:shift]:
                    cli.settle()
                    seconds, upload_id, usage = cli.coffre_upload(
                        coffre[name], data, args.size, work
                    )
                    if args.mode != "download":
                        up[name].add(seconds, usage)
                    if name in kept:
                        cli.coffre_delete_upload(coffre[name], upload_id, work)
                    else:
                        kept[name] = upload_id
            if args.mode != "upload":
                urls = {n: cli.coffre_link(coffre[n], kept[n], sha256) for n in names}
                for _ in range(args.reps):
                    for name in names:
                        cli.settle(cold=False)
                        seconds, usage = cli.download(urls[name], args.size, coffre[name].pid, work)
                        down[name].add(seconds, usage)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'variant':14s} {'upload MB/s (min-max)':>24s} {'CPU s':>6s} {'RSS MB':>7s}"
          f" | {'download MB/s (min-max)':>24s} {'CPU s':>6s} {'RSS MB':>7s}")  # fmt: skip
    for name in names:
        cells = []
        for series in (up[name], down[name]):
            if not series.seconds:
                cells.append(" " * 39)
                continue
            lo, hi = series.spread
            cpu = statistics.median(u.cpu_seconds for u in series.usage)
            peak = max(u.peak_mb for u in series.usage)
            cells.append(f"{series.mb_s:8.0f} ({lo:5.0f}-{hi:5.0f})    {cpu:6.2f} {peak:7.0f}")
        print(f"{name:14s} {cells[0]} | {cells[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
