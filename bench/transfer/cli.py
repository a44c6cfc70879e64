"""``python -m bench.transfer``: run every path, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.transfer import install, measure, report, servers
from bench.transfer.install import log

REPO = Path(__file__).resolve().parents[2]
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
PIECE = 16 << 20


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in UNITS else ""
    number = text[: len(text) - len(unit)] if unit else text
    try:
        value = int(float(number) * UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return value


def human(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= UNITS[unit]:
            return f"{size / UNITS[unit]:.4g} {unit}iB"
    return f"{size} B"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.transfer",
        description="Coffre upload/download throughput and memory against nginx and the "
        "reference tus server, on loopback; writes docs/benchmarks.md.",
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=parse_size("2G"),
        help="test file size (default 2G; e.g. 512M for a quick run)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per path (median)")
    parser.add_argument(
        "--rss-size",
        type=parse_size,
        default=None,
        help="also upload and download a file this large (e.g. 10G) and check Coffre's peak RSS",
    )
    parser.add_argument(
        "--rss-limit-mb",
        type=float,
        default=200.0,
        help="peak RSS target for --rss-size (default 200 MB)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    parser.add_argument(
        "--granian",
        action="store_true",
        help="also run Coffre's app under granian (installs it into the venv)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "bench" / ".work",
        help="temp files go in a fresh directory under this one",
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--coffre-src",
        type=Path,
        default=None,
        help="import coffre from this directory instead (experiments on a copy)",
    )
    parser.add_argument("--label", default="", help="note on what was run (goes in the doc)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    return parser.parse_args(argv)  # fmt: skip


@dataclass
class Series:
    """Timings of one path (``name``) over its repetitions."""

    name: str
    size: int
    seconds: list[float] = field(default_factory=list)
    usage: list[measure.Usage] = field(default_factory=list)

    @property
    def mb_s(self) -> float:
        return self.size / measure.median(self.seconds) / 1e6 if self.seconds else 0.0

    @property
    def spread(self) -> tuple[float, float]:
        rates = [self.size / s / 1e6 for s in self.seconds]
        return (min(rates), max(rates)) if rates else (0.0, 0.0)

    def add(self, seconds: float, usage: measure.Usage) -> None:
        self.seconds.append(seconds)
        self.usage.append(usage)
        log(f"{self.name}: {self.size / seconds / 1e6:8.1f} MB/s  ({seconds:.2f} s, "
            f"server CPU {usage.cpu_seconds:.1f} s, peak RSS {usage.peak_mb:.0f} MB, "
            f"other CPU {usage.other_cpu_seconds:.1f} s)")  # fmt: skip


def make_file(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``; returns their SHA-256 (hex)."""
    log(f"writing {human(size)} of random data to {path}")
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(PIECE, left))
            digest.update(piece)
            out.write(piece)
            left -= len(piece)
    return digest.hexdigest()


#: Seconds for freed memory to go back to the hypervisor (see ``calibrate``).
COLD_SECONDS = 8.0


def settle(cold: bool = True) -> None:
    """Write back dirty pages, wait for a quiet machine and (``cold``) for
    freed pages to be handed back to the hypervisor, so that every timed
    upload starts from the same state."""
    os.sync()
    if cold:
        time.sleep(COLD_SECONDS)
    waited = measure.wait_quiet()
    if waited > 5:
        log(f"waited {waited:.0f} s for other work on the machine to calm down")


def _timed_write(path: Path, size: int, piece: bytes) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        left = size
        while left > 0:
            left -= os.write(fd, piece[: min(len(piece), left)])
        return time.perf_counter() - start
    finally:
        os.close(fd)


def calibrate(work: Path, size: int = 1 << 30) -> dict[str, float]:
    """Page-cache write speed into just-freed memory and into memory the VM
    has had time to return to the host (free page reporting): the second is
    what every server pays when it writes a file here."""
    piece = os.urandom(8 << 20)
    scratch = work / "calibrate.bin"
    os.sync()
    _timed_write(scratch, size, piece)
    scratch.unlink()
    warm = _timed_write(scratch, size, piece)
    scratch.unlink()
    os.sync()
    time.sleep(COLD_SECONDS)
    cold = _timed_write(scratch, size, piece)
    scratch.unlink()
    os.sync()
    result = {"warm_mb_s": size / warm / 1e6, "cold_mb_s": size / cold / 1e6}
    log(f"page-cache write: {result['warm_mb_s']:.0f} MB/s into just-freed memory, "
        f"{result['cold_mb_s']:.0f} MB/s after {COLD_SECONDS:.0f} s")  # fmt: skip
    return result


def check_space(workdir: Path, size: int, rss_size: int | None) -> tuple[bool, str]:
    free = shutil.disk_usage(workdir).free
    # test file + one stored copy per server + a margin
    needed = 4 * size + (1 << 30)
    if free < needed:
        raise SystemExit(
            f"not enough disk space in {workdir}: {free >> 20} MiB free, {needed >> 20} MiB needed"
        )
    if rss_size is None:
        return False, ""
    rss_needed = needed + 2 * rss_size + (1 << 30)
    if free < rss_needed:
        return False, (
            f"RSS variant skipped: {free >> 30} GiB free in {workdir}, "
            f"{rss_needed >> 30} GiB needed for {human(rss_size)}"
        )
    return True, ""


def _upload_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def coffre_upload(
    coffre: servers.Coffre, path: Path, size: int, work: Path
) -> tuple[float, str, measure.Usage]:
    auth = ["-H", f"Authorization: Bearer {coffre.token}"]
    with measure.Sampler(coffre.pid) as sampler:
        seconds, location = measure.tus_upload(
            f"{coffre.url}/api/v1/uploads/", path, size, work, auth
        )
    return seconds, _upload_id(location), sampler.usage


def coffre_delete_upload(coffre: servers.Coffre, upload_id: str, work: Path) -> None:
    measure.curl(
        ["-X", "DELETE", "-H", measure.TUS, "-H", f"Authorization: Bearer {coffre.token}"],
        f"{coffre.url}/api/v1/uploads/{upload_id}",
        work,
    )


def coffre_link(coffre: servers.Coffre, upload_id: str, sha256: str) -> str:
    """A transfer of ``upload_id`` to one recipient; returns the download URL."""
    transfer = coffre.api(
        "POST", "/api/v1/transfers", {"files": [upload_id], "recipients": ["dest@coffre.test"],
         "verify_recipients": False}
    )
    files = transfer["files"]
    assert isinstance(files, list)
    if files[0]["sha256"] != sha256:
        raise RuntimeError(f"Coffre computed SHA-256 {files[0]['sha256']}, file has {sha256}")
    links = transfer["links"]
    assert isinstance(links, dict)
    token = next(iter(links.values())).rstrip("/").rsplit("/", 1)[-1]
    return f"{coffre.url}/api/v1/links/{token}/files/{files[0]['id']}"


def download(url: str, size: int, pid: int, work: Path) -> tuple[float, measure.Usage]:
    with measure.Sampler(pid) as sampler:
        result = measure.expect(measure.curl([], url, work), 200, f"GET {url}")
    if result.downloaded != size:
        raise RuntimeError(f"GET {url}: {result.downloaded} bytes, expected {size}")
    return result.seconds, sampler.usage


def run_coffre_paths(
    coffre: servers.Coffre,
    data: Path,
    size: int,
    sha256: str,
    reps: int,
    work: Path,
    label: str,
) -> tuple[Series, Series, str]:
    """Uploads then downloads through a recipient link; returns the last upload's id too."""
    up = Series(f"{label} upload (tus POST + 1 PATCH)", size)
    down = Series(f"{label} download (recipient link)", size)
    kept = ""
    for rep in range(reps):
        settle()
        seconds, upload_id, usage = coffre_upload(coffre, data, size, work)
        up.add(seconds, usage)
        if rep < reps - 1:
            coffre_delete_upload(coffre, upload_id, work)
        else:
            kept = upload_id
    url = coffre_link(coffre, kept, sha256)
    for _ in range(reps):
        settle(cold=False)
        seconds, usage = download(url, size, coffre.pid, work)
        down.add(seconds, usage)
    return up, down, url


def profile(
    spy: str, coffre: servers.Coffre, data: Path, size: int, url: str, work: Path
) -> list[dict[str, object]]:
    """One upload and one download under py-spy (not timed with the others)."""
    results: list[dict[str, object]] = []
    target = coffre.pid
    # Under granian the app runs in a child process.
    tree = measure.process_tree(coffre.pid)
    if len(tree) > 1:
        target = tree[-1]
    settle()
    raw = work / "profile-upload.txt"
    with measure.PySpy(spy, target, raw) as recording:
        seconds, upload_id, _ = coffre_upload(coffre, data, size, work)
    coffre_delete_upload(coffre, upload_id, work)
    summary = measure.summarise(raw, "upload", recording.rate)
    if summary:
        results.append({"profile": summary, "mb_s": size / seconds / 1e6})
    settle(cold=False)
    raw = work / "profile-download.txt"
    with measure.PySpy(spy, target, raw) as recording:
        seconds, _ = download(url, size, coffre.pid, work)
    summary = measure.summarise(raw, "download", recording.rate)
    if summary:
        results.append({"profile": summary, "mb_s": size / seconds / 1e6})
    return results


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    do_rss, rss_note = check_space(args.workdir, args.size, args.rss_size)
    if rss_note:
        log(rss_note)
    nginx_bin = install.nginx()
    tus_script = install.tus_reference()
    spy = None if args.no_profile else install.py_spy()
    granian = install.granian() if args.granian else None
    work = Path(tempfile.mkdtemp(prefix="transfer-", dir=args.workdir))
    log(f"work directory: {work}")
    started = time.time()
    results: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        data = work / "payload.bin"
        sha256 = make_file(data, args.size)
        page_cache = calibrate(work)
        size = args.size
        nginx_put = Series("nginx PUT (dav, to disk)", size)
        nginx_get = Series("nginx GET (sendfile)", size)
        tus_ref = Series("tus reference upload (POST + 1 PATCH)", size)
        extra_env = {}
        if args.coffre_src:
            extra_env["PYTHONPATH"] = f"{args.coffre_src.resolve()}:{REPO}"
        with (
            servers.Nginx(nginx_bin, work) as nginx,
            servers.TusReference(tus_script, work) as tus,
            servers.Coffre(work, env=extra_env) as coffre,
        ):
            idle_rss = measure.Sampler(coffre.pid)
            with idle_rss:
                time.sleep(0.2)
            # Uploads, one round of each path at a time so disk drift hits all alike.
            coffre_up = Series("Coffre upload (tus POST + 1 PATCH)", size)
            kept = ""
            for rep in range(args.reps):
                settle()
                with measure.Sampler(nginx.pid) as s:
                    put = measure.curl(["-T", str(data)], nginx.url + "payload.bin", work)
                if put.status not in (201, 204):
                    raise RuntimeError(f"nginx PUT: HTTP {put.status}")
                nginx_put.add(put.seconds, s.usage)
                settle()
                with measure.Sampler(tus.pid) as s:
                    seconds, _ = measure.tus_upload(tus.url, data, size, work)
                tus_ref.add(seconds, s.usage)
                for stored in (tus.dir / "files").iterdir():
                    stored.unlink()
                settle()
                seconds, upload_id, usage = coffre_upload(coffre, data, size, work)
                coffre_up.add(seconds, usage)
                if rep < args.reps - 1:
                    coffre_delete_upload(coffre, upload_id, work)
                else:
                    kept = upload_id
            url = coffre_link(coffre, kept, sha256)
            settle()
            coffre_down = Series("Coffre download (recipient link)", size)
            for _ in range(args.reps):
                settle(cold=False)
                seconds, usage = download(nginx.url + "payload.bin", size, nginx.pid, work)
                nginx_get.add(seconds, usage)
                settle(cold=False)
                seconds, usage = download(url, size, coffre.pid, work)
                coffre_down.add(seconds, usage)
            (nginx.root / "payload.bin").unlink(missing_ok=True)
            profiles = profile(spy, coffre, data, size, url, work) if spy else []
            rss: dict[str, object] = {}
            if do_rss:
                rss = rss_variant(coffre, work, args.rss_size, args.rss_limit_mb)
        paths = [nginx_put, tus_ref, coffre_up, nginx_get, coffre_down]
        variants: list[Series] = []
        if granian:
            with servers.Coffre(work, name="coffre-granian", granian=granian, env=extra_env) as g:
                up, down, _ = run_coffre_paths(g, data, size, sha256, args.reps, work,
                                               "Coffre under granian")  # fmt: skip
            variants = [up, down]
        results.update(
            paths={p.name: asdict(p) for p in [*paths, *variants]},
            rss=rss,
            idle_rss_mb=idle_rss.usage.peak_mb,
            page_cache=page_cache,
        )
        doc = report.render(
            args=args,
            started=started,
            finished=time.time(),
            paths=paths,
            variants=variants,
            idle_rss_mb=idle_rss.usage.peak_mb,
            rss=rss,
            rss_note=rss_note,
            profiles=profiles,
            page_cache=page_cache,
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        previous = args.output.read_text() if args.output.exists() else ""
        args.output.write_text(report.keep_notes(doc, previous))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (args.workdir / f"results-{stamp}.json").write_text(
            json.dumps(results, indent=2, default=str)
        )
        log(f"wrote {args.output} and {args.workdir / f'results-{stamp}.json'}")
        print(report.summary(paths, variants, rss))
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def rss_variant(
    coffre: servers.Coffre, work: Path, size: int, limit_mb: float
) -> dict[str, object]:
    """Upload and download one large file, sampling Coffre's memory."""
    big = work / "payload-rss.bin"
    sha256 = make_file(big, size)
    try:
        settle()
        up_seconds, upload_id, up_usage = coffre_upload(coffre, big, size, work)
        log(f"RSS variant upload {size / up_seconds / 1e6:.0f} MB/s, "
            f"peak {up_usage.peak_mb:.0f} MB")  # fmt: skip
        url = coffre_link(coffre, upload_id, sha256)
        settle(cold=False)
        down_seconds, down_usage = download(url, size, coffre.pid, work)
        log(f"RSS variant download {size / down_seconds / 1e6:.0f} MB/s, "
            f"peak {down_usage.peak_mb:.0f} MB")  # fmt: skip
    finally:
        big.unlink(missing_ok=True)
    return {
        "size": size,
        "limit_mb": limit_mb,
        "upload_mb_s": size / up_seconds / 1e6,
        "download_mb_s": size / down_seconds / 1e6,
        "upload": asdict(up_usage),
        "download": asdict(down_usage),
        "upload_peak_mb": up_usage.peak_mb,
        "download_peak_mb": down_usage.peak_mb,
    }


if __name__ == "__main__":
    sys.exit(main())
