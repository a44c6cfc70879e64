"""``python -m bench.s3_transfer``: the distributed profile's throughput.

Starts a throwaway PostgreSQL cluster and SeaweedFS (``weed server -s3``,
the tests' fixtures, on loopback), then ``coffre serve`` on them, and
times in the same run, for one file of random data:

* **Coffre upload**: tus POST then one PATCH with the whole file (encrypted,
  hashed, stored as S3 pieces); the 204 comes once the pieces are stored;
* **consolidation**: the seconds from that 204 until the server, in the
  background, has stitched the pieces into one object (UploadPartCopy)
  and deleted them; the download waits for it, as a recipient's usually
  comes later;
* **Coffre download**: the owner's GET of the file (ranged GETs from S3,
  decrypted and verified);
* **direct S3 PUT / GET** of the same bytes with boto3 (the client library
  of the S3 store) straight to SeaweedFS's S3 endpoint: one PUT, and one GET
  read to the end (no encryption).

Target: Coffre >= 0.7x direct S3, each way. Writes its figures into
docs/benchmarks.md between ``<!-- s3:begin -->`` and ``<!-- s3:end -->``
(appended at the end the first time; ``bench.transfer`` keeps what follows
its notes marker).
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

from bench import write_block

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- s3:begin -->", "<!-- s3:end -->"
MIB = 1 << 20
TARGET = 0.7
TUS = {"Tus-Resumable": "1.0.0"}


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.s3_transfer", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (median shown)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.rounds < 1:
        parser.error("--size-mib and --rounds must be positive")
    return args


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def upload(c: Any, data: bytes) -> tuple[float, str]:
    """Seconds for a tus POST and one PATCH with ``data``; the upload's id."""
    started = time.perf_counter()
    made = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(len(data))})
    assert made.status_code == 201, made.text
    url = made.headers["location"]
    sent = c.patch(url, content=data, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert sent.status_code == 204, sent.text
    return time.perf_counter() - started, url.rsplit("/", 1)[-1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    import httpx
    from botocore.config import Config
    from tests.backends import WeedServer, postgres_cluster, storage_environ
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, login

    data = os.urandom(args.size_mib * MIB)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in ("coffre_up", "coffre_down",
                                                    "direct_put", "direct_get")}
    consolidation: list[float] = []
    weed = WeedServer(bucket="coffre-bench")
    with tempfile.TemporaryDirectory(prefix="coffre-bench-s3-") as tmp, \
            postgres_cluster() as database:
        weed.start()
        server = Server(Path(tmp) / "data", env={
            "COFFRE_DATABASE_URL": database, **storage_environ(weed.service),
        })
        try:
            password = Path(tmp) / "password"
            password.write_text(ADMIN_PASSWORD)
            done = server.coffre("setup", "--email", ADMIN_EMAIL, "--password-file",
                                 str(password), "--organisation", "Bench")
            if done.returncode != 0:
                raise SystemExit(done.stderr + done.stdout)
            server.start()
            token = login(server.url)
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

                for _ in range(args.rounds):
                    seconds, uploaded = upload(c, data)
                    times["coffre_up"].append(seconds)
                    answered = time.perf_counter()
                    while not consolidated():
                        if time.perf_counter() - answered > 600:
                            raise SystemExit("the upload was not consolidated in 10 minutes")
                        time.sleep(0.05)
                    consolidation.append(time.perf_counter() - answered)
                    made = c.post("/api/v1/transfers", json={
                        "files": [uploaded], "recipients": ["bench@exemple.fr"]})
                    assert made.status_code == 201, made.text
                    transfer = made.json()
                    path = (f"/api/v1/transfers/{transfer['id']}/files/"
                            f"{transfer['files'][0]['id']}")

                    def download(path: str = path) -> None:
                        got = 0
                        with c.stream("GET", path) as response:
                            assert response.status_code == 200, response.read()
                            for chunk in response.iter_raw():
                                got += len(chunk)
                        assert got == len(data)

                    times["coffre_down"].append(timed(download))
                    times["direct_put"].append(timed(lambda: direct.put_object(
                        Bucket=s.bucket, Key="bench/direct", Body=data)))

                    def direct_get() -> None:
                        body = direct.get_object(Bucket=s.bucket, Key="bench/direct")["Body"]
                        got = 0
                        for chunk in body.iter_chunks(1 * MIB):
                            got += len(chunk)
                        assert got == len(data)

                    times["direct_get"].append(timed(direct_get))
                    deleted = c.delete(f"/api/v1/transfers/{transfer['id']}")
                    assert deleted.status_code in (200, 204), deleted.text
        finally:
            server.stop()
            weed.close()
    return {"size": len(data), "rounds": args.rounds, "times": times,
            "consolidation": consolidation, "load": (load_before, os.getloadavg()[0])}


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

    def row(label: str, key: str) -> str:
        low, high = spread[key]
        return f"| {label} | **{rate[key]:.0f}** | {low:.0f}-{high:.0f} |"

    return "\n".join([
        BEGIN,
        "## Distributed profile: Coffre over SeaweedFS against direct S3",
        "",
        f"Generated by `python -m bench.s3_transfer --size-mib {size // MIB} --rounds "
        f"{r['rounds']}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (commit {commit or '?'}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}). One `coffre serve` "
        "on a throwaway PostgreSQL 15 cluster and a SeaweedFS `weed server -s3`, all on "
        "loopback; one file of random data, median of the rounds (MB = 10^6 bytes). "
        f"Load average (1 min) {r['load'][0]:.1f} before the run and {r['load'][1]:.1f} "
        "after it: other sessions' work on the same CPUs slows every path.",
        "",
        "- **Coffre upload**: tus POST then one PATCH with the whole file: encrypted "
        "(AES-256-GCM segments), hashed, stored as S3 pieces; the 204 comes once they "
        "are stored.",
        "- **Consolidation**: after the 204, the server stitches the pieces into one "
        "object (UploadPartCopy, inside SeaweedFS) and deletes them, in the background: "
        f"median **{statistics.median(r['consolidation']):.1f} s** from the 204 until no "
        "piece is left. The download below starts once it is done.",
        "- **Coffre download**: the owner's GET of the file, ranged GETs from S3, "
        "decrypted and verified.",
        "- **Direct S3**: boto3 (the S3 store's client library) PUT of the same bytes in "
        "one request, and one GET read to the end; no encryption.",
        "",
        "| path | median MB/s | min-max MB/s |",
        "|---|---:|---:|",
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
