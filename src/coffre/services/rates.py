"""Rate limits over fixed windows, shared by every instance: at most
``limit`` events per ``window`` for one subject (a client address, a
mailbox), counted in a row of the ``throttles`` table.

Unlike ``services.throttle`` (growing delays against guessed secrets),
these count actions that are legitimate one at a time and abusive in
bulk: joining an open deposit link, mailing codes to one address. The
row's ``failures`` is the count in the window that ends at its
``blocked_until``; a row whose window has ended counts nothing and may be
deleted at any time.
Never stores the subject itself: the key is a hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from coffre.db.engine import Database
from coffre.ports import Clock
from coffre.services.throttle import locked_row, throttle_key


@dataclass(frozen=True)
class Count:
    """This event's rank in its window (1 for the first), the limit, and
    when the window ends."""

    rank: int
    limit: int
    resets_at: datetime

    @property
    def allowed(self) -> bool:
        return self.rank <= self.limit

    @property
    def first_refused(self) -> bool:
        """The first event over the limit in this window (worth one audit
        event; the next ones are not)."""
        return self.rank == self.limit + 1

    def retry_after(self, now: datetime) -> int:
        return max(math.ceil((self.resets_at - now).total_seconds()), 1)


class Rates:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def count(self, kind: str, subject: str, limit: int, window: timedelta) -> Count:
        """Count one event of ``kind`` for ``subject``, in its own
        transaction (refused events count too, so a flood stays refused)."""
        key = throttle_key(f"rate:{kind}", subject)
        now = self.clock.now()
        with self.db.session() as session:
            row = locked_row(session, key, kind)
            if row.blocked_until is None or row.blocked_until <= now:
                row.failures = 0
                row.blocked_until = now + window
            row.failures += 1
            row.last_failure_at = now
            return Count(row.failures, limit, row.blocked_until)
