"""Measuring: curl transfers (the same client for every server), memory and
CPU of a server process tree sampled from /proc, py-spy profiles."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

TUS = "Tus-Resumable: 1.0.0"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Curl:
    """What one curl run reported (``-w '%{json}'``) plus its response headers."""

    status: int
    seconds: float
    uploaded: int
    downloaded: int
    headers: dict[str, str]


def curl(args: list[str], url: str, workdir: Path, timeout: float = 3600) -> Curl:
    """Run curl once; ``args`` say what to send. The body read goes to /dev/null."""
    header_file = workdir / "curl-headers.txt"
    cmd = [
        "curl", "--silent", "--show-error", "--http1.1", "-H", "Expect:",
        "-D", str(header_file), "-o", "/dev/null", "-w", "%{json}", *args, url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    info = json.loads(done.stdout)
    headers: dict[str, str] = {}
    for line in header_file.read_text(errors="replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Curl(
        status=int(info["http_code"]),
        seconds=float(info["time_total"]),
        uploaded=int(info["size_upload"]),
        downloaded=int(info["size_download"]),
        headers=headers,
    )


def expect(result: Curl, status: int, what: str) -> Curl:
    if result.status != status:
        raise RuntimeError(f"{what}: HTTP {result.status}, expected {status}")
    return result


def tus_upload(
    endpoint: str, path: Path, size: int, workdir: Path, extra: list[str] | None = None
) -> tuple[float, str]:
    """tus creation (POST) then one PATCH of the whole file; (seconds, upload URL)."""
    extra = extra or []
    meta = "filename " + base64.b64encode(path.name.encode()).decode()
    created = expect(
        curl(
            [
                "-X",
                "POST",
                "-H",
                TUS,
                "-H",
                f"Upload-Length: {size}",
                "-H",
                f"Upload-Metadata: {meta}",
                *extra,
            ],
            endpoint,
            workdir,
        ),
        201,
        f"POST {endpoint}",
    )
    location = created.headers["location"]
    if location.startswith("/"):
        location = endpoint.split("/", 3)[0] + "//" + endpoint.split("/", 3)[2] + location
    patched = expect(
        curl(
            [
                "-X",
                "PATCH",
                "-T",
                str(path),
                "-H",
                TUS,
                "-H",
                "Upload-Offset: 0",
                "-H",
                "Content-Type: application/offset+octet-stream",
                *extra,
            ],
            location,
            workdir,
        ),
        204,
        f"PATCH {location}",
    )
    if patched.uploaded != size or patched.headers.get("upload-offset") != str(size):
        raise RuntimeError(f"PATCH {location}: offset {patched.headers.get('upload-offset')}")
    return created.seconds + patched.seconds, location


# -- process tree: memory and CPU ----------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    tree = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (curl)."""
    return _rusage_seconds(resource.RUSAGE_CHILDREN)


def own_and_children_cpu_seconds() -> float:
    """CPU time of this process (an in-process client such as boto3) and of
    its waited-for children (curl)."""
    return _rusage_seconds(resource.RUSAGE_SELF) + _rusage_seconds(resource.RUSAGE_CHILDREN)


def _rusage_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(threshold: float = 0.15, timeout: float = 60.0) -> float:
    """Wait until the machine's CPUs are mostly idle (other sessions may be
    running tests on it); returns the seconds waited."""
    start = time.monotonic()
    cores = os.cpu_count() or 1
    calm = 0
    while time.monotonic() - start < timeout:
        before = machine_busy_seconds()
        time.sleep(0.5)
        busy = (machine_busy_seconds() - before) / (0.5 * cores)
        calm = calm + 1 if busy < threshold else 0
        if calm >= 2:
            break
    return time.monotonic() - start


@dataclass
class Usage:
    peak_rss_mb: float = 0.0
    hwm_mb: float = 0.0
    baseline_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    #: CPU used on the machine by neither the server nor the client: noise.
    other_cpu_seconds: float = 0.0
    samples: int = 0

    @property
    def peak_mb(self) -> float:
        return max(self.peak_rss_mb, self.hwm_mb)


@dataclass
class Sampler:
    """Polls VmRSS of ``pid`` and its descendants every ``interval`` seconds,
    and resets then reads each process's VmHWM around the block (as root)."""

    pid: int
    interval: float = 0.05
    usage: Usage = field(default_factory=Usage)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cpu0: float = 0.0
    _machine0: float = 0.0
    _children0: float = 0.0
    _pids: list[int] = field(default_factory=list)

    def _rss(self) -> float:
        return sum(_status_kb(p, "VmRSS") for p in process_tree(self.pid)) / 1024

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.usage.peak_rss_mb = max(self.usage.peak_rss_mb, self._rss())
            self.usage.samples += 1

    def __enter__(self) -> Sampler:
        self._pids = process_tree(self.pid)
        for pid in self._pids:
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
        self.usage.baseline_rss_mb = self.usage.peak_rss_mb = self._rss()
        self._cpu0 = cpu_seconds(self._pids)
        self._machine0 = machine_busy_seconds()
        self._children0 = children_cpu_seconds()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.usage.peak_rss_mb = max(self.usage.peak_rss_mb, self._rss())
        pids = process_tree(self.pid)
        self.usage.hwm_mb = sum(_status_kb(p, "VmHWM") for p in pids) / 1024
        self.usage.cpu_seconds = cpu_seconds(pids) - self._cpu0
        client = children_cpu_seconds() - self._children0
        machine = machine_busy_seconds() - self._machine0
        self.usage.other_cpu_seconds = max(0.0, machine - self.usage.cpu_seconds - client)


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- py-spy ----------------------------------------------------------------


@dataclass
class Profile:
    """A py-spy recording summarised: samples per thread group (busy and
    idle) and the busiest activities, each named after the innermost Python
    frame and what the native code under it was doing."""

    what: str
    rate: int
    samples: int
    threads: dict[str, dict[str, int]]
    activities: list[tuple[str, str, int]]
    raw_path: Path


class PySpy:
    """``py-spy record --format raw`` on a running process for the length of
    a ``with`` block (stopped with SIGINT, so it writes its output)."""

    def __init__(self, binary: str, pid: int, output: Path, rate: int = 250) -> None:
        self.rate = rate
        self.cmd = [
            binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
            "--threads", "--native", "--output", str(output),
        ]  # fmt: skip
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self.log = output.with_suffix(".log")

    def __enter__(self) -> PySpy:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # let it attach
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


IDLE_PYTHON = ("Condition.wait", "Queue.get", "Event.wait", "Thread.join", "select")
NATIVE = [
    ("idle: event loop waiting (epoll)", ("epoll_wait", "epoll_pwait")),
    ("waiting for the GIL", ("take_gil", "PyEval_RestoreThread", "pthread_cond_timedwait")),
    ("SHA-256", ("SHA256", "sha256", "EVP_hash", "EVP_Digest")),
    ("AES-GCM", ("aes_gcm", "AesGcm", "gcm_", "aesni")),
    ("fsync", ("fsync", "fdatasync")),
    ("SQLite", ("sqlite3",)),
    ("write/send syscall", ("write (libc", "writev", "sendmsg", "send (libc", "pwrite")),
    ("read/recv syscall", ("read (libc", "recv", "pread", "uv__read")),
    ("libc (unnamed)", ("(libc.so.6)", "realloc", "malloc", "memcpy", "memmove")),
]


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (to/module.py:12)``; the line
    is kept for Coffre's own frames only."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file, _, line = where.rpartition(":")
    if not file:
        file, line = where, ""
    parts = file.split("/")
    short = "/".join(parts[-2:])
    if "coffre/" in file and line:
        short = f"{short}:{line}"
    return f"{name} ({short})" if where else name


def _is_python(frame: str) -> bool:
    return ".py:" in frame or ".py)" in frame or "<frozen" in frame


def _thread_group(head: str) -> str:
    name = head.split(":", 1)[1].strip() if ":" in head else head
    if "AnyIO worker" in name:
        return "AnyIO worker threads"
    if name == "MainThread":
        return "main thread (event loop)"
    return name or "?"


def _activity(frames: list[str]) -> tuple[str, str]:
    """(innermost Python frame, what native code below it was doing)."""
    python_at = max((i for i, f in enumerate(frames) if _is_python(f)), default=-1)
    where = _frame_name(frames[python_at]) if python_at >= 0 else "(native only)"
    if where.startswith(("Runner.run ", "asyncio_run ", "run_until_complete ")):
        where = "uvloop internals (Cython/libuv)"
    native = ";".join(frames[python_at + 1 :])
    if python_at >= 0 and frames[python_at].split(" (")[0] in IDLE_PYTHON:
        return where, "idle: thread waiting for work"
    for label, needles in NATIVE:
        if any(n in native for n in needles):
            if label == "waiting for the GIL" and "epoll" in native:
                continue
            return where, label
    return where, "Python code" if not native else "native: " + frames[-1].split(" (")[0]


def summarise(raw: Path, what: str, rate: int, top: int = 14) -> Profile | None:
    if not raw.exists():
        return None
    threads: dict[str, dict[str, int]] = {}
    activities: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        group = _thread_group(frames[0]) if frames[0].startswith("thread") else "?"
        frames = [f for f in frames if not f.startswith(("thread (", "process ("))]
        where, doing = _activity(frames)
        entry = threads.setdefault(group, {"busy": 0, "idle": 0})
        entry["idle" if doing.startswith("idle") else "busy"] += count
        total += count
        if not doing.startswith("idle"):
            activities[(where, doing)] += count
    return Profile(
        what=what,
        rate=rate,
        samples=total,
        threads=threads,
        activities=[(w, d, n) for (w, d), n in activities.most_common(top)],
        raw_path=raw,
    )
