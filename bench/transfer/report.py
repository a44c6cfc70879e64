"""docs/benchmarks.md: machine facts, throughput table, ratios against the
targets, peak RSS, and where the time goes (py-spy). Text below the
NOTES marker of an existing doc is kept, so hand-written analysis survives
a new run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.transfer.cli import Series

NOTES = "<!-- Hand-written below this line; kept by `python -m bench.transfer`. -->"
BENCH = Path(__file__).resolve().parent.parent

#: (name, numerator, denominator, target): ratio = numerator MB/s / denominator MB/s.
TARGETS = [
    ("Coffre upload / nginx PUT", "Coffre upload", "nginx PUT", 0.8),
    ("Coffre upload / tus reference", "Coffre upload", "tus reference", 1.5),
    ("Coffre download / nginx GET", "Coffre download", "nginx GET", 0.5),
]


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _npm_version(name: str) -> str:
    try:
        data = json.loads((BENCH / "node_modules" / name / "package.json").read_text())
    except OSError:
        return "?"
    return str(data.get("version", "?"))


def machine(workdir: Path) -> list[tuple[str, str]]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    device = (
        subprocess.run(
            ["df", "--output=source,fstype", str(workdir)],
            capture_output=True,
            text=True,
            check=False,
        )
        .stdout.strip()
        .splitlines()[-1:]
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return [
        ("Coffre commit", _first_line(["git", "-C", str(BENCH.parent), "describe", "--always",
                                        "--dirty"])),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("disk (work dir)", " ".join(device[0].split()) if device else "?"),
        ("Python", sys.version.split()[0]),
        ("uvicorn / httptools / uvloop",
         f"{_version('uvicorn')} / {_version('httptools')} / {_version('uvloop')}"),
        ("starlette / fastapi", f"{_version('starlette')} / {_version('fastapi')}"),
        ("cryptography", _version("cryptography")),
        ("nginx", _first_line([nginx, "-v"]).replace("nginx version: ", "")),
        ("node / @tus/server / @tus/file-store",
         f"{_first_line(['node', '--version'])} / {_npm_version('@tus/server')} / "
         f"{_npm_version('@tus/file-store')}"),
        ("curl", " ".join(_first_line(["curl", "--version"]).split()[:2])),
    ]  # fmt: skip


def _find(paths: list[Series], prefix: str) -> Series | None:
    for series in paths:
        if series.name.startswith(prefix):
            return series
    return None


def ratios(paths: list[Series]) -> list[tuple[str, float, float, bool]]:
    found = []
    for name, top, bottom, target in TARGETS:
        a, b = _find(paths, top), _find(paths, bottom)
        if a and b and b.mb_s:
            value = a.mb_s / b.mb_s
            found.append((name, value, target, value >= target))
    return found


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= factor:
            return f"{n / factor:.4g} {unit} ({n:,} bytes)"
    return f"{n} bytes"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _throughput_rows(paths: list[Series]) -> list[str]:
    rows = [
        "| path | median MB/s | min-max MB/s | median s | server CPU s (median) | "
        "server peak RSS MB (max) | other CPU s on the machine (max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in paths:
        lo, hi = p.spread
        cpu = _median([u.cpu_seconds for u in p.usage]) if p.usage else 0.0
        peak = max((u.peak_mb for u in p.usage), default=0.0)
        other = max((u.other_cpu_seconds for u in p.usage), default=0.0)
        rows.append(
            f"| {p.name} | **{p.mb_s:.0f}** | {lo:.0f}-{hi:.0f} | {_median(p.seconds):.2f} | "
            f"{cpu:.2f} | {peak:.0f} | {other:.1f} |"
        )
    return rows


def render(
    *,
    args: argparse.Namespace,
    started: float,
    finished: float,
    paths: list[Series],
    variants: list[Series],
    idle_rss_mb: float,
    rss: dict[str, Any],
    rss_note: str,
    profiles: list[dict[str, Any]],
    page_cache: dict[str, float],
) -> str:
    size = paths[0].size
    lines = [
        "# Benchmarks: transfer throughput and memory",
        "",
        "Generated by `python -m bench.transfer` (`make bench`); "
        f"command line: `{' '.join(['python -m bench.transfer', *sys.argv[1:]])}`.",
        "Everything above the notes marker is rewritten by each run.",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))} "
        f"(run took {(finished - started) / 60:.1f} min)",
        f"- Test file: {_size(size)} of random data, on the same disk as every server's storage",
        f"- Repetitions: {args.reps} per path; the table shows the median (MB = 10^6 bytes)",
    ]
    if args.label:
        lines.append(f"- Note: {args.label}")
    if args.coffre_src:
        lines.append(f"- Coffre imported from `{args.coffre_src}` (an experiment, not `src/`)")
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine(args.workdir)]
    lines += [
        f"| page-cache write, 8 MiB `write()`s | {page_cache['warm_mb_s']:.0f} MB/s into "
        f"just-freed memory, {page_cache['cold_mb_s']:.0f} MB/s into memory returned to the "
        "host |",
        "",
        "This machine is a VM whose balloon driver hands freed memory back to the host "
        "(free page reporting) within seconds; the first touch of such a page costs a trip "
        "to the hypervisor, so writing a file into fresh page cache costs several times more "
        "kernel CPU than rewriting just-freed pages. Every upload path below writes into "
        "returned memory (each timed upload starts after a `sync` and an 8 s pause), which "
        "is what a server that has been idle for a while sees; without the pause, results "
        "swing by up to 10x depending on what ran just before.",
    ]
    lines += [
        "",
        "## Method",
        "",
        "All on loopback (127.0.0.1), one client at a time, the same client for every "
        "server: curl (HTTP/1.1) with `-T file` (streams the file, no `Expect: 100-continue`) for "
        "uploads and `-o /dev/null` for downloads; times are curl's `time_total`.",
        "",
        "- **nginx PUT**: Debian nginx with the dav module (`dav_methods PUT`, "
        "`client_max_body_size 0`, body temp path on the same file system, so the body is "
        "written once and renamed). nginx does not fsync.",
        "- **nginx GET**: the file just PUT, `sendfile on` (page cache to socket).",
        "- **tus reference**: `@tus/server` + `@tus/file-store` (bench/tus-reference.mjs), "
        "one POST then one PATCH with the whole file; the time is POST + PATCH. "
        "It does not fsync.",
        "- **Coffre upload**: `coffre serve` (uvicorn, httptools, uvloop) on a fresh data dir "
        "(SQLite + local blob store), tus POST then one PATCH with the whole file; encrypts "
        "(AES-256-GCM segments), hashes (SHA-256) and fsyncs before answering 204.",
        "- **Coffre download**: a transfer to one recipient, then GET "
        "`/api/v1/links/{token}/files/{id}` (decrypts and verifies every segment); "
        "the blob was just written, so it comes from the page cache, like nginx's GET.",
        "- Uploads run in rounds (nginx, tus, Coffre, then again), so drift in the disk's "
        "write-back speed hits every path alike.",
        "- Before each timed run: `sync` (and, before an upload, an 8 s pause, see above), "
        "then wait (up to 60 s) until the machine's CPUs are under 15 % busy, since other "
        "sessions may run test suites on the same machine. "
        "The last column shows the CPU time used during the run by anything other than the "
        "server and curl: a large value marks a run disturbed by other work.",
        "- Memory: VmRSS of the server process and its children sampled every 50 ms, and "
        "VmHWM (reset through /proc/PID/clear_refs before each run); the larger is shown. "
        "CPU: utime + stime of the server's processes over the run.",
        "",
        f"## Throughput, {_size(size)} file",
        "",
        *_throughput_rows(paths),
        "",
        "## Ratios against the targets",
        "",
        "| ratio | measured | target | result |",
        "|---|---:|---:|---|",
    ]
    for name, value, target, ok in ratios(paths):
        lines.append(f"| {name} | {value:.2f} | ≥ {target} | {'PASS' if ok else 'MISS'} |")
    lines += ["", "## Coffre's peak memory (RSS)", ""]
    up, down = _find(paths, "Coffre upload"), _find(paths, "Coffre download")
    lines.append(f"- Idle after start-up: {idle_rss_mb:.0f} MB")
    if up:
        lines.append(
            f"- During the {_size(size)} uploads: {max(u.peak_mb for u in up.usage):.0f} MB"
        )
    if down:
        lines.append(
            f"- During the {_size(size)} downloads: {max(u.peak_mb for u in down.usage):.0f} MB"
        )
    if rss:
        limit = rss["limit_mb"]
        worst = max(rss["upload_peak_mb"], rss["download_peak_mb"])
        verdict = "PASS" if worst < limit else "MISS"
        lines += [
            "",
            f"Acceptance check: peak RSS under {limit:.0f} MB while uploading and downloading "
            f"a {_size(rss['size'])} file (same server, one upload, one download):",
            "",
            "| phase | MB/s | peak RSS MB | server CPU s |",
            "|---|---:|---:|---:|",
            f"| upload | {rss['upload_mb_s']:.0f} | {rss['upload_peak_mb']:.0f} | "
            f"{rss['upload']['cpu_seconds']:.1f} |",
            f"| download | {rss['download_mb_s']:.0f} | {rss['download_peak_mb']:.0f} | "
            f"{rss['download']['cpu_seconds']:.1f} |",
            "",
            f"**{verdict}** (worst {worst:.0f} MB against {limit:.0f} MB"
            + (
                "; less than 10 % below the limit: fragile)."
                if verdict == "PASS" and worst > 0.9 * limit
                else ")."
            ),
        ]
    elif rss_note:
        lines += ["", rss_note + "."]
    else:
        lines += ["", "Large-file RSS check not run this time (pass `--rss-size 10G`)."]
    lines += ["", "## Where the time goes (py-spy)", ""]
    if not profiles:
        lines.append("Not profiled this time (`--no-profile`, or py-spy unavailable).")
    else:
        lines += [
            "One extra upload and one extra download, each under `py-spy record --native "
            "--threads` (not part of the timings above: sampling slows the server). "
            "Each sample is attributed to the innermost Python frame and to what the native "
            "code under it was doing; idle samples (a worker waiting for work, the event "
            'loop in epoll) are counted apart. "libc (unnamed)" is time in libc functions '
            "without symbols under that line, in practice `memcpy` (copying bytes, bytearray "
            "growth) and `malloc`; kernel time inside a system call is counted on the call.",
            "",
        ]
        for item in profiles:
            lines += _profile_section(item["profile"], item["mb_s"])
    lines += ["", "## Other servers for the same app", ""]
    if variants:
        lines += [
            f"The same app (`bench/transfer/asgi.py`) under granian {_version('granian')} "
            "(`--interface asgi --workers 1 --loop uvloop`), same method, same file:",
            "",
            *_throughput_rows(variants),
            "",
        ]
        cu, cd = _find(paths, "Coffre upload"), _find(paths, "Coffre download")
        gu, gd = (
            _find(variants, "Coffre under granian upload"),
            _find(variants, "Coffre under granian download"),
        )
        if cu and gu and cd and gd:
            lines.append(
                f"granian / uvicorn: upload {gu.mb_s / cu.mb_s:.2f}x, "
                f"download {gd.mb_s / cd.mb_s:.2f}x."
            )
    else:
        lines.append("granian not measured this time (pass `--granian`).")
    lines.append("")
    return "\n".join(lines)


def _profile_section(profile: Any, mb_s: float) -> list[str]:
    lines = [
        f"### {profile.what.capitalize()} ({mb_s:.0f} MB/s while profiled)",
        "",
        "| thread | busy | idle |",
        "|---|---:|---:|",
    ]
    for group, counts in sorted(profile.threads.items(), key=lambda kv: -kv[1]["busy"]):
        lines.append(
            f"| {group} | {counts['busy'] / profile.rate:.2f} s | "
            f"{counts['idle'] / profile.rate:.2f} s |"
        )
    busy = sum(c["busy"] for c in profile.threads.values()) or 1
    idle = sum(c["idle"] for c in profile.threads.values())
    lines += [
        "",
        f"Busiest activities ({busy / profile.rate:.2f} thread-seconds busy and "
        f"{idle / profile.rate:.2f} idle over the transfer, at {profile.rate} samples/s "
        "per thread):",
        "",
        "| innermost Python frame | native activity | share of busy samples |",
        "|---|---|---:|",
    ]
    for where, doing, count in profile.activities:
        lines.append(f"| `{where}` | {doing} | {100 * count / busy:.1f} % |")
    lines.append("")
    return lines


def keep_notes(doc: str, previous: str) -> str:
    _, marker, notes = previous.partition(NOTES)
    if not marker:
        notes = "\n\n## Analysis and suggestions\n\n(Nothing written yet.)\n"
    return doc.rstrip("\n") + "\n\n" + NOTES + notes


def summary(paths: list[Series], variants: list[Series], rss: dict[str, Any]) -> str:
    out = [f"{p.name:50s} {p.mb_s:8.0f} MB/s" for p in [*paths, *variants]]
    out += [
        f"{name:50s} {value:8.2f}  (target ≥ {target}: {'PASS' if ok else 'MISS'})"
        for name, value, target, ok in ratios(paths)
    ]
    if rss:
        out.append(
            f"RSS variant: upload peak {rss['upload_peak_mb']:.0f} MB, "
            f"download peak {rss['download_peak_mb']:.0f} MB (limit {rss['limit_mb']:.0f} MB)"
        )
    return "\n".join(out)
