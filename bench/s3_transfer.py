"""``python -m bench.s3_transfer``: the distributed profile's throughput.

Starts a throwaway PostgreSQL cluster and SeaweedFS (``weed server -s3``,
the tests' fixtures, on loopback, with 1 GiB volumes), then ``coffre
serve`` on them, and times in the same run, for one file of random data:

* **Coffre upload**: curl (as ``bench.transfer`` uses for every server),
  tus POST then one PATCH with the whole file from the page cache
  (encrypted, hashed, stored as S3 pieces); the 204 comes once the pieces
  are stored;
* **consolidation**: the seconds from that 204 until the server, in the
  background, has stitched the pieces into one object (UploadPartCopy)
  and deleted them; nothing else runs meanwhile, and the download waits
  for it, as a recipient's usually comes later;
* **Coffre download**: the owner's GET of the file with curl (one
  streaming GET from S3, decrypted and verified);
* **direct S3 PUT / GET** of the same bytes with boto3 (the client library
  of the S3 store) straight to SeaweedFS's S3 endpoint: one PUT, and one GET
  read to the end (no encryption).

Each operation starts once the machine is quiet, with the CPU time of the
server, SeaweedFS and the client recorded. Coffre and the direct path take
turns going first; a warm-up round is not counted. Target: Coffre >= 0.7x
direct S3, each way. Writes its figures into docs/benchmarks.md between
``<!-- s3:begin -->`` and ``<!-- s3:end -->`` (appended at the end the
first time; ``bench.transfer`` keeps what follows its notes marker).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import write_block
from bench.transfer import measure

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- s3:begin -->", "<!-- s3:end -->"
MIB = 1 << 20
TARGET = 0.7


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.s3_transfer", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=6,
                        help="repetitions (median shown); each path goes first in half of them")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--size-mib and --rounds must be positive, --warmup not negative")
    return args


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


class CPU:
    """CPU seconds of the Coffre server, SeaweedFS and the client during each operation."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.spent: dict[str, list[float]] = {}

    def measure(self, label: str, work: Callable[[], float]) -> float:
        """Run ``work`` (which returns its seconds) once the machine is quiet."""
        measure.wait_quiet(timeout=15)
        trees = {name: measure.process_tree(pid) for name, pid in self.pids.items()}
        before = {name: measure.cpu_seconds(tree) for name, tree in trees.items()}
        client = measure.own_and_children_cpu_seconds()
        seconds = work()
        used = {name: measure.cpu_seconds(tree) - before[name] for name, tree in trees.items()}
        used["client"] = measure.own_and_children_cpu_seconds() - client
        for name, value in used.items():
            self.spent.setdefault(f"{label}.{name}", []).append(value)
        return seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from tests.backends import WeedServer, postgres_cluster, storage_environ
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, login

    data = os.urandom(args.size_mib * MIB)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in ("coffre_up", "coffre_down",
                                                    "direct_put", "direct_get")}
    consolidation: list[float] = []
    # 1 GiB volumes, closer to a real deployment (30 GB by default) than the tests' 64 MiB:
    # with small ones, SeaweedFS stalls writes at random while it grows new volumes.
    weed = WeedServer(bucket="coffre-bench", volume_size_mb=1024)
    with tempfile.TemporaryDirectory(prefix="coffre-bench-s3-") as tmp, \
            postgres_cluster() as database:
        work = Path(tmp)
        source = work / "payload.bin"
        source.write_bytes(data)
        weed.start()
        server = Server(work / "data", env={
            "COFFRE_DATABASE_URL": database, **storage_environ(weed.service),
        })
        try:
            password = work / "password"
            password.write_text(ADMIN_PASSWORD)
            done = server.coffre("setup", "--email", ADMIN_EMAIL, "--password-file",
                                 str(password), "--organisation", "Bench")
            if done.returncode != 0:
                raise SystemExit(done.stderr + done.stdout)
            server.start()
            assert server.process is not None and weed.process is not None
            cpu = CPU({"coffre": server.process.pid, "weed": weed.process.pid})
            token = login(server.url)
            bearer = ["-H", f"Authorization: Bearer {token}"]
            s = weed.service
            direct = boto3.client(
                "s3", endpoint_url=s.endpoint, region_name=s.region,
                aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key,
                config=Config(s3={"addressing_style": "path"},
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"),
            )
            with httpx.Client(base_url=server.url, timeout=600,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                def consolidated() -> bool:
                    pieces = direct.list_objects_v2(Bucket=s.bucket, Prefix=".tmp-append/",
                                                    MaxKeys=1)
                    return not pieces.get("KeyCount")

                def direct_put() -> float:
                    return timed(lambda: direct.put_object(Bucket=s.bucket, Key="bench/direct",
                                                           Body=data))

                def direct_get() -> float:
                    def read() -> None:
                        body = direct.get_object(Bucket=s.bucket, Key="bench/direct")["Body"]
                        got = 0
                        for chunk in body.iter_chunks(1 * MIB):
                            got += len(chunk)
                        assert got == len(data)

                    return timed(read)

                for number in range(args.warmup + args.rounds):
                    # Coffre and the direct path take turns going first: what one
                    # operation leaves SeaweedFS to do (its garbage collector, ...)
                    # falls on both alike.
                    coffre_first = number % 2 == 0
                    location = ""

                    def upload() -> float:
                        nonlocal location
                        seconds, location = measure.tus_upload(
                            f"{server.url}/api/v1/uploads/", source, len(data), work, bearer)
                        return seconds

                    if not coffre_first:
                        times["direct_put"].append(cpu.measure("direct_put", direct_put))
                    times["coffre_up"].append(cpu.measure("coffre_up", upload))
                    answered = time.perf_counter()
                    while not consolidated():  # not while another path is measured
                        if time.perf_counter() - answered > 600:
                            raise SystemExit("the upload was not consolidated in 10 minutes")
                        time.sleep(0.05)
                    consolidation.append(time.perf_counter() - answered)
                    if coffre_first:
                        times["direct_put"].append(cpu.measure("direct_put", direct_put))
                    made = c.post("/api/v1/transfers", json={
                        "files": [location.rsplit("/", 1)[-1]],
                        "recipients": ["bench@exemple.fr"]})
                    assert made.status_code == 201, made.text
                    transfer = made.json()
                    url = (f"{server.url}/api/v1/transfers/{transfer['id']}/files/"
                           f"{transfer['files'][0]['id']}")

                    def download(url: str = url) -> float:
                        got = measure.expect(measure.curl(bearer, url, work), 200, "GET")
                        assert got.downloaded == len(data), got.downloaded
                        return got.seconds

                    downloads = [("coffre_down", download), ("direct_get", direct_get)]
                    for name, work_ in downloads if coffre_first else downloads[::-1]:
                        times[name].append(cpu.measure(name, work_))
                    deleted = c.delete(f"/api/v1/transfers/{transfer['id']}")
                    assert deleted.status_code in (200, 204), deleted.text
        finally:
            server.stop()
            weed.close()
    # The warm-up rounds (first connections, first volumes) are not counted.
    times = {name: values[args.warmup:] for name, values in times.items()}
    spent = {name: values[args.warmup:] for name, values in cpu.spent.items()}
    return {"size": len(data), "rounds": args.rounds, "times": times, "cpu": spent,
            "consolidation": consolidation[args.warmup:],
            "load": (load_before, os.getloadavg()[0])}


def render(r: dict[str, Any]) -> str:
    size = int(r["size"])
    rate = {k: size / statistics.median(v) / 1e6 for k, v in r["times"].items()}
    spread = {k: (size / max(v) / 1e6, size / min(v) / 1e6) for k, v in r["times"].items()}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    up, down = rate["coffre_up"] / rate["direct_put"], rate["coffre_down"] / rate["direct_get"]

    def verdict(ratio: float) -> str:
        return "PASS" if ratio >= TARGET else "MISS"

    def cpu(key: str, who: str) -> str:
        spent = r["cpu"].get(f"{key}.{who}")
        return f"{statistics.median(spent):.2f}" if spent else "-"

    def row(label: str, key: str) -> str:
        low, high = spread[key]
        return (f"| {label} | **{rate[key]:.0f}** | {low:.0f}-{high:.0f} | "
                f"{cpu(key, 'coffre') if key.startswith('coffre') else '-'} | "
                f"{cpu(key, 'weed')} | {cpu(key, 'client')} |")

    return "\n".join([
        BEGIN,
        "## Distributed profile: Coffre over SeaweedFS against direct S3",
        "",
        f"Generated by `python -m bench.s3_transfer --size-mib {size // MIB} --rounds "
        f"{r['rounds']}` (after a warm-up round) on {datetime.now(UTC):%Y-%m-%d %H:%M} "
        f"UTC (commit {commit or '?'}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}). One `coffre serve` "
        "on a throwaway PostgreSQL 15 cluster and a SeaweedFS `weed server -s3` (1 GiB "
        "volumes), all on loopback; one file of random data, median of the rounds (MB = "
        "10^6 bytes). Coffre and the direct path take turns going first; each operation "
        "starts once the CPUs are quiet. "
        f"Load average (1 min) {r['load'][0]:.1f} before the run and {r['load'][1]:.1f} "
        "after it: other sessions' work on the same CPUs slows every path.",
        "",
        "- **Coffre upload**: curl, tus POST then one PATCH with the whole file: encrypted "
        "(AES-256-GCM segments), hashed, stored as S3 pieces; the 204 comes once they "
        "are stored.",
        "- **Consolidation**: after the 204, the server stitches the pieces into one "
        "object (UploadPartCopy, inside SeaweedFS) and deletes them, in the background: "
        f"median **{statistics.median(r['consolidation']):.1f} s** from the 204 until no "
        "piece is left. The download below starts once it is done.",
        "- **Coffre download**: curl, the owner's GET of the file: one streaming GET from "
        "S3, decrypted and verified.",
        "- **Direct S3**: boto3 (the S3 store's client library) PUT of the same bytes in "
        "one request, and one GET read to the end; no encryption.",
        "- **CPU s**: median CPU time of each process during the operation, from /proc "
        "(the client is curl for Coffre, this process's boto3 for direct S3).",
        "",
        "| path | median MB/s | min-max MB/s | Coffre CPU s | SeaweedFS CPU s | client CPU s |",
        "|---|---:|---:|---:|---:|---:|",
        row("Coffre upload (tus POST + 1 PATCH)", "coffre_up"),
        row("direct S3 PUT (boto3)", "direct_put"),
        row("Coffre download (owner GET)", "coffre_down"),
        row("direct S3 GET (boto3)", "direct_get"),
        "",
        "| ratio | measured | target | result |",
        "|---|---:|---:|---|",
        f"| Coffre upload / direct PUT | {up:.2f} | ≥ {TARGET} | {verdict(up)} |",
        f"| Coffre download / direct GET | {down:.2f} | ≥ {TARGET} | {verdict(down)} |",
        END,
    ])


def write(doc: Path, block: str) -> None:
    write_block(doc, block, BEGIN, END)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    block = render(run(args))
    print(block)
    if not args.no_write:
        write(args.output, block)
        print(f"written into {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
