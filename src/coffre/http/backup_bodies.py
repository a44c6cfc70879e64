"""The bodies of backup objects this process holds in memory while it
receives them: who may send one, how much memory each may take, and for
how long it may keep quiet.

A backup object is held whole until its SHA-256 is checked (at most
160 MiB), so bodies share a memory budget per process. Four stalled
connections once reserved that budget up front and stopped every backup
on the server; the rules are now:

- a body holds memory as its bytes arrive, never its declared length up
  front (large buffers are anonymous mappings: a page is taken only when
  written), so a body that sends nothing holds nothing;
- a credential has at most ``per_credential`` bodies in flight (restic
  sends about five at once): more answer 429 with ``Retry-After``;
- the organisations receiving bodies share the budget: an organisation
  holds at most its share (the budget divided among the organisations
  that asked for memory in the last ``ACTIVE`` seconds); when the budget
  is full and another organisation is over its share, its bodies are
  dropped (503, which restic retries) so the others get theirs;
- a body that sends nothing for ``idle`` seconds is dropped (408), its
  memory released.

Used from the event loop only: no lock. Never holds more than
``budget`` bytes of bodies (plus up to ``Buffers.KEEP`` idle buffers).
"""

from __future__ import annotations

import mmap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from coffre.errors import RequestTimeout, StorageError, TooManyAttempts

#: An organisation that asked for memory this recently still has its share.
ACTIVE = 30.0
#: ``Retry-After`` of a credential over its count of bodies.
RETRY_SECONDS = 2


def _busy() -> StorageError:
    return StorageError("the server is receiving too many backup objects at once: "
                        "retry shortly", reason="busy")


@dataclass(eq=False)
class Body:
    """One body being received: its credential, organisation and the
    bytes it holds."""

    budget: BodyBudget
    credential_id: str
    organisation_id: str
    held: int = 0
    #: Dropped to make room for another organisation.
    preempted: bool = False
    _waiting: anyio.CancelScope | None = field(default=None, repr=False)

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes, or raise 503 (busy)."""
        self.budget._grow(self, size)

    async def chunks(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The body's chunks, each waited for at most ``idle`` seconds
        (408 after that); 503 if the body was dropped for another
        organisation meanwhile."""
        chunks = stream.__aiter__()
        while True:
            if self.preempted:
                raise _busy()
            with anyio.CancelScope(deadline=anyio.current_time() + self.budget.idle) as wait:
                self._waiting = wait
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    self._waiting = None
            if self.preempted:
                raise _busy()
            if wait.cancelled_caught:
                raise RequestTimeout(
                    f"the body sent nothing for {self.budget.idle:g} seconds",
                    reason="body_idle")
            yield chunk

    def preempt(self) -> None:
        self.preempted = True
        if self._waiting is not None:
            self._waiting.cancel()

    def close(self) -> None:
        self.budget._close(self)


class BodyBudget:
    """Admission of backup bodies and the memory they hold (see the module)."""

    def __init__(self, budget: int, per_credential: int, idle: float) -> None:
        self.budget = budget
        self.per_credential = per_credential
        self.idle = idle
        self.held = 0
        self._bodies: dict[str, list[Body]] = {}  # by credential
        self._by_organisation: dict[str, int] = {}  # bytes held
        self._asked: dict[str, float] = {}  # organisation -> last time it asked

    def admit(self, credential_id: str, organisation_id: str) -> Body:
        """A new body for this credential, holding nothing yet; 429 past
        ``per_credential`` bodies in flight."""
        mine = self._bodies.setdefault(credential_id, [])
        if len(mine) >= self.per_credential:
            raise TooManyAttempts(
                f"this credential is already sending {self.per_credential} objects: "
                "retry shortly", reason="too_many_bodies", retry_after=RETRY_SECONDS)
        body = Body(self, credential_id, organisation_id)
        mine.append(body)
        self._asked[organisation_id] = time.monotonic()
        return body

    def share(self, organisation_id: str) -> int:
        """Bytes ``organisation_id`` may hold: the budget divided among the
        organisations active lately (itself included)."""
        now = time.monotonic()
        for org, last in list(self._asked.items()):
            if now - last > ACTIVE and not self._by_organisation.get(org):
                del self._asked[org]
        active = set(self._asked) | {organisation_id}
        return self.budget // len(active)

    def _grow(self, body: Body, size: int) -> None:
        org = body.organisation_id
        self._asked[org] = time.monotonic()
        mine = self._by_organisation.get(org, 0)
        if mine + size > self.share(org):
            raise _busy()
        if self.held + size > self.budget:
            self._make_room()
            raise _busy()
        body.held += size
        self.held += size
        self._by_organisation[org] = mine + size

    def _make_room(self) -> None:
        """Drop the largest bodies of organisations over their share
        (they get 503 and retry within it)."""
        for org, held in list(self._by_organisation.items()):
            over = held - self.share(org)
            if over <= 0:
                continue
            theirs = sorted((b for bodies in self._bodies.values() for b in bodies
                             if b.organisation_id == org and not b.preempted),
                            key=lambda b: b.held, reverse=True)
            for body in theirs:
                if over <= 0:
                    break
                body.preempt()
                over -= body.held

    def _close(self, body: Body) -> None:
        mine = self._bodies.get(body.credential_id, [])
        if body in mine:
            mine.remove(body)
            if not mine:
                del self._bodies[body.credential_id]
        org = body.organisation_id
        self.held -= body.held
        left = self._by_organisation.get(org, 0) - body.held
        if left > 0:
            self._by_organisation[org] = left
        else:
            self._by_organisation.pop(org, None)
        body.held = 0


Buffer = bytearray | mmap.mmap


class Buffers:
    """Receive buffers for object bodies, kept by this process for the next
    requests (used from the event loop only).

    restic sends packs of about 16 MiB, several at once. A fresh buffer per
    pack means fresh pages from the kernel for every one (a page fault per
    4 KiB, and a trip to the hypervisor on a VM that hands freed memory back
    to its host), and growing it chunk by chunk copies it again: the body
    loop was the server's busiest line. Buffers are sized in steps of
    ``STEP`` so packs of slightly different sizes share them; at most
    ``KEEP`` of at most ``LARGEST`` bytes are kept idle. A large buffer is
    an anonymous mapping, whose pages the kernel gives only when written:
    a body holds the memory of the bytes it sent, not of its length.
    """

    STEP = 8 << 20
    LARGEST = 32 << 20
    KEEP = 4
    #: Smaller bodies (indexes, snapshots, keys) get a buffer of their own.
    SMALL = 1 << 20

    def __init__(self) -> None:
        self._idle: list[mmap.mmap] = []

    def take(self, size: int) -> Buffer:
        if size < self.SMALL:
            return bytearray(size)
        for i, buffer in enumerate(self._idle):
            if len(buffer) >= size:
                return self._idle.pop(i)
        return mmap.mmap(-1, -(-size // self.STEP) * self.STEP)

    def give(self, buffer: Buffer) -> None:
        """Keep ``buffer`` for a next body, or let it go (no view of it may
        remain)."""
        if (isinstance(buffer, mmap.mmap) and len(buffer) <= self.LARGEST
                and len(self._idle) < self.KEEP):
            self._idle.append(buffer)
