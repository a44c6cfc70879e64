"""What recipients' links deliver, shared by every instance (in the
database): the bytes each response sent per (recipient, file), the
downloads they add up to (``domain.deliveries``), and claims on a limit
while responses stream.

Bytes count once they have gone out (the HTTP layer says how many did,
an aborted response included), so a limited response first claims the
bytes it may send: parallel responses of a one-time link cannot together
pass its limit, on any instance. Claims and accounts of one recipient are
written under a lock on its row (SQLite: the write lock every transaction
takes up front).

A claim lives ``CLAIM_LIFETIME`` past its response's last sign of life,
so that one left by a dead instance stops counting. A response that
stalls (its client stops reading) must therefore never outlive its
claim: it renews the claim only while it is still live, and stops
(``ClaimLost``) once it has lapsed, before sending another piece;
otherwise a paused download, resumed after a new one took the freed
limit, would deliver the file once more.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from coffre.crypto import stream
from coffre.db.engine import Database
from coffre.db.tables import Download, DownloadClaim, FileRead, Recipient, new_id
from coffre.domain.deliveries import Delivered, check_delivery, completes_download
from coffre.domain.transfers import add_interval
from coffre.errors import Gone
from coffre.ports import Clock

#: A claim left by a dead instance stops counting after this long (the
#: default; ``download_claim_seconds``)...
CLAIM_LIFETIME = timedelta(minutes=10)
#: ...and a live download renews its claims when this share of it has passed.
RENEWAL_SHARE = 10


class ClaimLost(Gone):
    """A response's claim lapsed (it stalled past its lifetime) or was
    removed: it must not send another byte."""

    def __init__(self) -> None:
        super().__init__("the claim of this download on the link's limit has lapsed",
                         reason="exhausted")


@dataclass(frozen=True)
class Span:
    """Bytes ``[start, end)`` of a file of ``size``: what a response may
    send (a claim), or what it did send."""

    file_id: str
    size: int
    start: int
    end: int


def lock_recipient(session: Session, recipient_id: str) -> None:
    # NO KEY UPDATE: serialises a recipient's claims and accounts without
    # blocking rows that merely refer to it (downloads, events).
    session.execute(select(Recipient.id).where(Recipient.id == recipient_id)
                    .with_for_update(key_share=True))


def delivered_so_far(session: Session, recipient_id: str, sizes: dict[str, int],
                     now: datetime) -> dict[str, Delivered]:
    """The account of each file of ``sizes`` (id -> size) for
    ``recipient_id``: downloads counted, bytes sent, and what live claims
    hold (a claim of the whole file is a download under way)."""
    completed = Counter(session.execute(
        select(Download.file_id).where(Download.recipient_id == recipient_id)).scalars())
    sent = {file_id: total for file_id, total in session.execute(
        select(FileRead.file_id, FileRead.sent_total)
        .where(FileRead.recipient_id == recipient_id)).all()}
    in_flight: Counter[str] = Counter()
    reserved: Counter[str] = Counter()
    for file_id, claimed in session.execute(
        select(DownloadClaim.file_id, DownloadClaim.bytes).where(
            DownloadClaim.recipient_id == recipient_id, DownloadClaim.expires_at > now)
    ).all():
        reserved[file_id] += claimed
        if file_id in sizes and claimed == sizes[file_id]:
            in_flight[file_id] += 1
    return {
        file_id: Delivered(completed=completed[file_id], sent=int(sent.get(file_id) or 0),
                           in_flight=in_flight[file_id], reserved=reserved[file_id])
        for file_id in sizes
    }


def add_sent(session: Session, recipient_id: str, spans: list[Span]) -> list[str]:
    """Account for bytes a response sent (call under ``lock_recipient``);
    returns the files whose download they complete (every byte since the
    last counted one, or as many bytes as the file holds), whose account
    then starts again."""
    completed: list[str] = []
    for span in spans:
        read = session.get(FileRead, (recipient_id, span.file_id))
        if read is None:
            read = FileRead(recipient_id=recipient_id, file_id=span.file_id, delivered="[]",
                            sent_since=0, sent_total=0)
            session.add(read)
        sent = max(span.end - span.start, 0)
        ranges = add_interval([(lo, hi) for lo, hi in json.loads(read.delivered)],
                              span.start, span.end)
        since = (read.sent_since or 0) + sent
        read.sent_total = (read.sent_total or 0) + sent
        if completes_download(ranges, since, span.size) or (
            span.size == 0 and span.start == span.end == 0
        ):
            completed.append(span.file_id)
            ranges, since = [], 0
        read.delivered = json.dumps(ranges)
        read.sent_since = since
    return completed


class DownloadClaims:
    """Bytes that responses of limited links under way may send, per
    (recipient, file), in the database."""

    def __init__(self, db: Database, clock: Clock,
                 lifetime: timedelta = CLAIM_LIFETIME) -> None:
        self.db = db
        self.clock = clock
        self.lifetime = lifetime

    def claim(self, recipient_id: str, limit: int, spans: list[Span]) -> Claim:
        """Reserve ``spans``; raises ``Gone`` if the limit would be passed."""
        now = self.clock.now()
        sizes = {s.file_id: s.size for s in spans}
        with self.db.session() as session:
            lock_recipient(session, recipient_id)
            session.execute(delete(DownloadClaim).where(
                DownloadClaim.recipient_id == recipient_id, DownloadClaim.expires_at <= now))
            so_far = delivered_so_far(session, recipient_id, sizes, now)
            for span in spans:
                check_delivery(limit, span.size, so_far[span.file_id], span.start, span.end)
            claims = [DownloadClaim(id=new_id(), recipient_id=recipient_id, file_id=s.file_id,
                                    bytes=s.end - s.start, expires_at=now + self.lifetime)
                      for s in spans]
            session.add_all(claims)
        return Claim(self, [c.id for c in claims], now)


class Claim:
    """Claims taken together: kept alive while a body streams, then released."""

    def __init__(self, claims: DownloadClaims, ids: list[str], taken: datetime) -> None:
        self._claims = claims
        self._ids = ids
        self._renewed = taken  # when the claims were last known live
        self._renewed_tick = time.monotonic()  # the same, immune to wall-clock jumps
        self._lost = False
        self._released = False
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether the claims must be renewed (and so checked) before the
        next piece goes out: a share of their lifetime has passed since
        they were last known live (always so once they may have lapsed).
        Cheap: no database access."""
        share = self._claims.lifetime / RENEWAL_SHARE
        return (self._lost or self._claims.clock.now() - self._renewed >= share
                or time.monotonic() - self._renewed_tick >= share.total_seconds())

    def keep(self) -> None:
        """Renew the claims if due; raises ``ClaimLost`` if any of them is
        no longer live (expired, or removed by a newer claim): a lapsed
        claim is never revived."""
        if not self.due():
            return
        if self._lost:
            raise ClaimLost()
        now = self._claims.clock.now()
        with self._claims.db.session() as session:
            renewed = session.execute(
                update(DownloadClaim)
                .where(DownloadClaim.id.in_(self._ids), DownloadClaim.expires_at > now)
                .values(expires_at=now + self._claims.lifetime)
            )
            assert isinstance(renewed, CursorResult)
        if renewed.rowcount != len(self._ids):
            self._lost = True
            raise ClaimLost()
        self._renewed = now
        self._renewed_tick = time.monotonic()

    def release(self, session: Session | None = None) -> None:
        """Drop the claims, in ``session`` (the one that accounts for the
        bytes sent, so they are never counted twice nor not at all) or in
        a transaction of their own."""
        with self._lock:
            if self._released:
                return
            self._released = True
        if session is not None:
            session.execute(delete(DownloadClaim).where(DownloadClaim.id.in_(self._ids)))
            return
        with self._claims.db.session() as own:
            own.execute(delete(DownloadClaim).where(DownloadClaim.id.in_(self._ids)))


class ClaimedBody(Iterator[stream.Chunk]):
    """A body holding claims on a download limit, renewed while it is read
    and sent (the HTTP layer calls ``due()``/``keep()`` after each piece
    it sends) and released by ``release()`` (when the response ends) or,
    if the body is dropped unread, when it is garbage-collected."""

    def __init__(self, chunks: Iterator[stream.Chunk], claim: Claim | None) -> None:
        self._chunks = chunks
        self.claim = claim

    def __next__(self) -> stream.Chunk:
        if self.claim is not None:
            self.claim.keep()
        return next(self._chunks)

    def due(self) -> bool:
        return self.claim is not None and self.claim.due()

    def keep(self) -> None:
        """Renew the claims if due; ``ClaimLost`` if they lapsed."""
        if self.claim is not None:
            self.claim.keep()

    def close(self) -> None:
        """Close the chunks (a generator may hold a storage connection)."""
        closing = getattr(self._chunks, "close", None)
        if closing is not None:
            closing()

    def release(self, session: Session | None = None) -> None:
        claim, self.claim = self.claim, None
        if claim is not None:
            claim.release(session)

    def __del__(self) -> None:
        with suppress(Exception):  # never raise from a finaliser; the claim then expires
            self.release()


class ArchiveTally:
    """Which bytes of each file a ZIP built on the fly has sent.

    Wraps each file's plaintext (``entry``) and the archive's own chunks
    (``wrap``); ``sent(n)`` tells how many bytes of each file the first
    ``n`` bytes of the archive held. The archive is produced a little ahead
    of what the HTTP layer has sent (its read-ahead, a few MiB): what each
    of the chunks of the last ``WINDOW`` bytes took from the files is kept.
    """

    WINDOW = 64 << 20

    def __init__(self, files: int) -> None:
        self._pulled = [0] * files  # each file's bytes taken into the archive so far
        self._pending: dict[int, int] = {}  # taken since the archive's last chunk
        self._recent: deque[tuple[int, dict[int, int]]] = deque()  # (chunk length, taken)
        self._recent_bytes = 0
        self._produced = 0

    def entry(self, position: int, chunks: Iterator[stream.Chunk]) -> Iterator[stream.Chunk]:
        for chunk in chunks:
            self._pulled[position] += len(chunk)
            self._pending[position] = self._pending.get(position, 0) + len(chunk)
            yield chunk

    def wrap(self, chunks: Iterator[stream.Chunk]) -> Iterator[stream.Chunk]:
        for chunk in chunks:
            self._produced += len(chunk)
            self._recent.append((len(chunk), self._pending))
            self._pending = {}
            self._recent_bytes += len(chunk)
            while len(self._recent) > 1 and self._recent_bytes - self._recent[0][0] >= self.WINDOW:
                self._recent_bytes -= self._recent.popleft()[0]
            yield chunk

    def sent(self, archive_bytes: int) -> list[int]:
        """Bytes of each file within the archive's first ``archive_bytes``
        (a chunk cut in the middle counts whole: never fewer than went out)."""
        result = list(self._pulled)
        for position, n in self._pending.items():
            result[position] -= n
        unsent = self._produced - archive_bytes
        for length, taken in reversed(self._recent):
            if unsent < length or unsent <= 0:
                break
            unsent -= length
            for position, n in taken.items():
                result[position] -= n
        return result
