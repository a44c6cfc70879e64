"""``python -m bench.backup``: restic backing up to Coffre against restic
backing up to a local directory repository, in the same run.

Generates a data set of random bytes once (so restic can neither compress
nor deduplicate it away): many small files, some medium ones and a few
large ones, about ``--size-mib`` in all, in a temp dir removed afterwards.
Starts one ``coffre serve`` on the embedded profile (SQLite and the local
blob store in a fresh data dir), logs in as its administrator and, for
each round:

* **local**: ``restic init`` of a fresh directory repository (untimed),
  then ``restic backup`` of the data set and ``restic restore latest`` to a
  fresh directory (both timed);
* **Coffre**: a device registered through the API (a fresh repository and
  its append-only credential), then the same ``init`` (untimed), ``backup``
  and ``restore`` with ``rest:http://ID:SECRET@127.0.0.1:PORT/backup/REPO/``,
  with the server's memory (VmRSS of its process tree sampled every 50 ms,
  and VmHWM) and CPU time measured around the backup and the restore.

Same restic, same flags (restic's defaults: its cache in a fresh directory
per run, default connections and pack size), medians of the rounds.
Target: Coffre >= 0.8x the local repository's speed for the backup.
Writes its figures into docs/benchmarks.md between ``<!-- backup:begin -->``
and ``<!-- backup:end -->`` (appended at the end the first time).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import write_block

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.transfer import measure  # noqa: E402

BEGIN, END = "<!-- backup:begin -->", "<!-- backup:end -->"
MIB = 1 << 20
TARGET = 0.8
PASSWORD = "mot de passe du dépôt de mesure"
#: Shares of the data set: small files (1-64 KiB), medium ones (1-8 MiB)
#: and large ones (the rest, in files of about LARGE_MIB).
SMALL_SHARE, MEDIUM_SHARE, LARGE_MIB = 0.25, 0.35, 160
#: Seconds to wait at most for the CPUs to calm down before a timed command.
QUIET_WAIT = 10


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048, help="data set size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (median shown)")
    parser.add_argument("--quick", action="store_true",
                        help="trial run: 256 MiB, 1 round, nothing written to the docs")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--save", type=Path, help="also write the raw figures (JSON) here")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="render figures saved by --save instead of measuring")
    parser.add_argument("--py-spy", action="store_true",
                        help="record the server under py-spy during one extra Coffre backup "
                             "(for diagnosis; its speed is not counted)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mib, args.rounds, args.no_write = 256, 1, True
    if args.size_mib < 16 or args.rounds < 1:
        parser.error("--size-mib must be at least 16 and --rounds positive")
    return args


# -- the data set -------------------------------------------------------------


def make_data(root: Path, total: int, seed: int = 7) -> dict[str, int]:
    """Random files filling about ``total`` bytes; counts per class."""
    rng = random.Random(seed)
    counts = {"small": 0, "medium": 0, "large": 0, "bytes": 0}

    def write(folder: str, name: str, size: int) -> None:
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        counts["bytes"] += size

    small, medium = int(total * SMALL_SHARE), int(total * MEDIUM_SHARE)
    written = 0
    while written < small:
        size = rng.randint(1 << 10, 64 << 10)
        n = counts["small"]
        write(f"patients/dossier-{n % 97:02d}", f"compte-rendu-{n:06d}.bin", size)
        counts["small"] += 1
        written += size
    written = 0
    while written < medium:
        size = rng.randint(1 * MIB, 8 * MIB)
        n = counts["medium"]
        write(f"imagerie/serie-{n % 11:02d}", f"cliche-{n:04d}.dcm", size)
        counts["medium"] += 1
        written += size
    rest = total - counts["bytes"]
    parts = max(1, round(rest / (LARGE_MIB * MIB)))
    for n in range(parts):
        size = rest // parts + (rest % parts if n == parts - 1 else 0)
        if size > 0:
            write("sauvegardes", f"base-{n:02d}.dump", size)
            counts["large"] += 1
    return counts


def tree_digest(root: Path) -> str:
    """One SHA-256 over every file's relative path and content."""
    total = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        total.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            total.update(hashlib.file_digest(f, "sha256").digest())
    return total.hexdigest()


# -- restic -----------------------------------------------------------------------


def _shown(repo: str) -> str:
    """A repository for messages: never the credential in a Coffre URL."""
    return repo.rpartition("@")[2]


def restic(repo: str, cache: Path, *args: str, timeout: float = 1800) -> tuple[float, float]:
    """Run restic once; (seconds it took, CPU seconds it used)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": repo,
           "RESTIC_CACHE_DIR": str(cache)}
    cpu = measure.children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(["restic", "--quiet", *args], env=env, capture_output=True,
                          timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    cpu = measure.children_cpu_seconds() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"restic {args[0]} on {_shown(repo)} failed ({done.returncode}):\n"
                           + done.stderr.decode(errors="replace")[-3000:])
    return seconds, cpu


def restic_round(repo: str, data: Path, work: Path, expected: str,
                 sampler_pid: int | None) -> dict[str, Any]:
    """init (untimed), backup and restore (timed) into one fresh repository."""
    cache = work / "cache"
    restic(repo, cache, "init")
    result: dict[str, Any] = {}
    for phase in ("backup", "restore"):
        target = work / "restored"
        args = (["backup", str(data)] if phase == "backup"
                else ["restore", "latest", "--target", str(target)])
        subprocess.run(["sync"], check=False)
        result[f"{phase}_wait"] = measure.wait_quiet(timeout=QUIET_WAIT)
        with measure.Sampler(sampler_pid or os.getpid()) as sampler:
            result[phase], result[f"{phase}_restic_cpu"] = restic(repo, cache, *args)
        if sampler_pid is None:
            result[f"{phase}_other_cpu"] = sampler.usage.other_cpu_seconds
        else:
            result[f"{phase}_usage"] = {**dataclasses.asdict(sampler.usage),
                                        "peak_mb": sampler.usage.peak_mb}
            result[f"{phase}_other_cpu"] = sampler.usage.other_cpu_seconds
        if phase == "restore":
            restored = target / data.relative_to("/")
            if tree_digest(restored) != expected:
                raise RuntimeError(f"restore from {_shown(repo)} differs from the data")
            shutil.rmtree(target)
    shutil.rmtree(cache, ignore_errors=True)
    return result


# -- the run ----------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, login

    os.environ["COFFRE_TEST_PROFILE"] = "embedded"
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="coffre-bench-backup-") as tmp:
        base = Path(tmp)
        data = base / "donnees"
        counts = make_data(data, args.size_mib * MIB)
        expected = tree_digest(data)
        server = Server(base / "coffre", env={"COFFRE_BACKUP_SESSION_IDLE_SECONDS": "5"})
        server.data_dir.mkdir()
        try:
            password = base / "password"
            password.write_text(ADMIN_PASSWORD)
            done = server.coffre("setup", "--email", ADMIN_EMAIL, "--password-file",
                                 str(password), "--organisation", "Cabinet de mesure")
            if done.returncode != 0:
                raise SystemExit(done.stderr + done.stdout)
            server.start()
            assert server.process is not None
            pid = server.process.pid
            token = login(server.url)
            idle = measure.Sampler(pid)
            with idle:
                time.sleep(0.5)
            with httpx.Client(base_url=server.url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"}) as api:

                def device(name: str) -> str:
                    made = api.post("/api/v1/backup/devices", json={"name": name})
                    if made.status_code != 201:
                        raise RuntimeError(f"device registration: {made.status_code}")
                    repo: str = made.json()["credential"]["restic_repository"]
                    return repo.replace("localhost", "127.0.0.1")

                for n in range(args.rounds):
                    work = base / f"round-{n}"
                    sides: dict[str, dict[str, Any]] = {}
                    # Alternate which side goes first, so drifting load on the
                    # shared machine does not always favour the same one.
                    for side in ("local", "coffre")[:: 1 if n % 2 == 0 else -1]:
                        if side == "local":
                            sides[side] = restic_round(str(work / "local-repo"), data,
                                                       work / "local", expected, None)
                            shutil.rmtree(work / "local-repo")
                        else:
                            sides[side] = restic_round(device(f"Poste de mesure {n + 1}"),
                                                       data, work / "coffre", expected, pid)
                    local, coffre = sides["local"], sides["coffre"]
                    rounds.append({"local": local, "coffre": coffre})
                    shutil.rmtree(work, ignore_errors=True)
                    print(f"round {n + 1}: backup local {local['backup']:.1f} s, "
                          f"Coffre {coffre['backup']:.1f} s; restore local "
                          f"{local['restore']:.1f} s, Coffre {coffre['restore']:.1f} s",
                          file=sys.stderr)
                if args.py_spy:
                    profile(server, device("Poste profilé"), data, base)
            stored = sum(p.stat().st_size for p in (server.data_dir).rglob("*")
                         if p.is_file())
        finally:
            server.stop()
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {"size": counts["bytes"], "counts": counts, "rounds": rounds,
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M}", "cpus": os.cpu_count(),
            "commit": _version(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
            "cpu_model": cpu_model, "kernel": platform.release(),
            "python": platform.python_version(),
            "restic": _version(["restic", "version"]).split(" compiled")[0],
            "size_mib": args.size_mib, "idle_rss": idle.usage.peak_mb, "stored": stored,
            "load": (load_before, os.getloadavg()[0]),
            "minutes": (time.monotonic() - started) / 60}


def profile(server: Any, repo: str, data: Path, base: Path) -> None:
    """One more backup with py-spy attached to the server (printed, not written)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output = base / "backup.pyspy.txt"
    cache = base / "cache-profile"
    restic(repo, cache, "init")
    assert server.process is not None
    with measure.PySpy(binary, server.process.pid, output, rate=100):
        restic(repo, cache, "backup", str(data))
    found = measure.summarise(output, "Coffre backup", 100, top=25)
    if found is None:
        print("py-spy wrote nothing", file=sys.stderr)
        return
    print(f"py-spy: {found.samples} samples; threads {found.threads}", file=sys.stderr)
    for where, doing, count in found.activities:
        print(f"{count:7d}  {where}  [{doing}]", file=sys.stderr)


# -- the report -------------------------------------------------------------------


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def render(r: dict[str, Any]) -> str:
    size = int(r["size"])
    counts = r["counts"]

    def series(side: str, key: str) -> list[float]:
        return [float(one[side][key]) for one in r["rounds"]]

    def rate(side: str, phase: str) -> float:
        return size / statistics.median(series(side, phase)) / 1e6

    def spread(side: str, phase: str) -> str:
        values = series(side, phase)
        return f"{size / max(values) / 1e6:.0f}-{size / min(values) / 1e6:.0f}"

    def usage(phase: str, attribute: str) -> list[float]:
        return [float(one["coffre"][f"{phase}_usage"][attribute]) for one in r["rounds"]]

    def other(side: str, phase: str) -> float:
        return max(series(side, f"{phase}_other_cpu"))

    def row(label: str, side: str, phase: str) -> str:
        server = "-"
        rss = "-"
        if side == "coffre":
            server = f"{statistics.median(usage(phase, 'cpu_seconds')):.1f}"
            rss = f"{max(usage(phase, 'peak_mb')):.0f}"
        client = statistics.median(series(side, f"{phase}_restic_cpu"))
        return (f"| {label} | **{rate(side, phase):.0f}** | {spread(side, phase)} | "
                f"{statistics.median(series(side, phase)):.1f} | {client:.1f} | {server} | "
                f"{rss} | {other(side, phase):.0f} |")

    def cpu(side: str, phase: str) -> float:
        """CPU seconds of restic, plus the server's for Coffre (medians)."""
        total = statistics.median(series(side, f"{phase}_restic_cpu"))
        if side == "coffre":
            total += statistics.median(usage(phase, "cpu_seconds"))
        return total

    backup = rate("coffre", "backup") / rate("local", "backup")
    backup_cpu = cpu("local", "backup") / cpu("coffre", "backup")
    paired = statistics.median(one["local"]["backup"] / one["coffre"]["backup"]
                               for one in r["rounds"])
    restore = rate("coffre", "restore") / rate("local", "restore")

    def verdict(ratio: float) -> str:
        return "PASS" if ratio >= TARGET else "MISS"

    return "\n".join([
        BEGIN,
        "## Backups (restic): Coffre's REST backend against a local repository",
        "",
        f"Generated by `python -m bench.backup --size-mib {r['size_mib']} --rounds "
        f"{len(r['rounds'])}` on {r['date']} UTC (commit {r['commit']}; "
        f"the run took {r['minutes']:.1f} min). Machine: {r['cpus']} CPUs "
        f"({r['cpu_model']}), kernel {r['kernel']}, Python {r['python']}, {r['restic']}. "
        f"Load average (1 min) {r['load'][0]:.1f} before the run and {r['load'][1]:.1f} "
        "after it (other sessions share the machine).",
        "",
        f"- **Data set**: {size / 1e9:.2f} GB ({size:,} bytes) of random data (restic can "
        f"neither compress nor deduplicate it) in {counts['small']:,} small files "
        f"(1-64 KiB, {SMALL_SHARE:.0%} of the bytes), {counts['medium']} medium ones "
        f"(1-8 MiB, {MEDIUM_SHARE:.0%}) and {counts['large']} large ones (about "
        f"{LARGE_MIB} MiB each), generated once into a temp dir on the same disk as both "
        "repositories, and read from the page cache by every backup.",
        "- **local**: `restic backup` to a directory repository on the same disk "
        "(restic writes each pack to a temp file, fsyncs and renames it).",
        "- **Coffre**: `coffre serve` on the embedded profile (SQLite, local blob store, "
        "uvicorn with httptools and uvloop, one process), a device registered through "
        "`POST /api/v1/backup/devices` and restic on its "
        "`rest:http://ID:SECRET@127.0.0.1:PORT/backup/REPO/` URL: each object's SHA-256 "
        "checked against its name, encrypted a second time (AES-256-GCM segments), "
        "written and fsynced, and recorded (quotas, aggregated audit session) before the "
        "200.",
        "- Each round: a fresh repository on each side (`restic init`, untimed; local "
        "first in odd rounds, Coffre first in even ones), then "
        "`restic backup` of the data set and `restic restore latest` into a fresh "
        "directory (checked file by file against the data set, then removed); restic's "
        "defaults on both sides (its cache in a fresh directory per repository, default "
        "connections and pack size). Before each timed command: `sync`, then a wait "
        f"(up to {QUIET_WAIT} s) for the CPUs to calm down. Median of the rounds (MB = 10^6 "
        "bytes).",
        "- Server memory: VmRSS of `coffre serve` sampled every 50 ms and its VmHWM; "
        f"{r['idle_rss']:.0f} MB when idle after start-up. The last column is CPU time "
        "used during the command by neither restic nor the server: a large value marks "
        "a run disturbed by other work.",
        "",
        "| path | median MB/s | min-max MB/s | median s | restic CPU s | server CPU s "
        "| server peak RSS MB | other CPU s (max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("restic backup → local repository", "local", "backup"),
        row("restic backup → Coffre", "coffre", "backup"),
        row("restic restore ← local repository", "local", "restore"),
        row("restic restore ← Coffre", "coffre", "restore"),
        "",
        "| ratio | measured | target | result |",
        "|---|---:|---:|---|",
        f"| Coffre backup / local backup | {backup:.2f} | ≥ {TARGET} | {verdict(backup)} |",
        f"| Coffre backup / local backup, median of the rounds' own ratios | {paired:.2f} "
        "| (none) | - |",
        f"| Coffre restore / local restore | {restore:.2f} | (none) | - |",
        f"| CPU for a local backup / CPU for a Coffre backup (restic + server) | "
        f"{backup_cpu:.2f} | (none) | - |",
        "",
        f"Coffre's data dir after the run: {r['stored'] / 1e9:.2f} GB for "
        f"{len(r['rounds'])} repositories of {size / 1e9:.2f} GB each (restic's own "
        "encryption plus Coffre's, with the database).",
        "",
        "Notes. restic, the server and (in the local case) the repository's file writes "
        f"share {r['cpus']} CPUs, and other sessions' work shares them too (last "
        "column): the wall-clock ratio depends on how busy the machine is. The CPU "
        f"figures do not: a Coffre backup costs the server "
        f"{statistics.median(usage('backup', 'cpu_seconds')) / size * 1e9:.1f} CPU s per "
        "GB (receiving over loopback, the SHA-256 check of every object, AES-256-GCM, "
        "writing the ciphertext into the page cache and fsyncing it, one SQLite commit "
        "per object), on top of restic's own "
        f"{cpu('coffre', 'backup') - statistics.median(usage('backup', 'cpu_seconds')):.1f}"
        f" s against {cpu('local', 'backup'):.1f} s for a local repository (where restic "
        "writes the pack files itself). When the CPUs are the bottleneck, the backup "
        "ratio tends to the CPU ratio above.",
        END,
    ])


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.render is not None:
        figures = json.loads(args.render.read_text())
    else:
        if shutil.which("restic") is None:
            raise SystemExit("restic is not installed (apt install restic)")
        # Stopped with SIGTERM: still stop the server and remove the data set.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        figures = run(args)
        if args.save is not None:
            args.save.write_text(json.dumps(figures, indent=1))
    block = render(figures)
    print(block)
    if not args.no_write:
        write_block(args.output, block, BEGIN, END)
        print(f"written into {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
