"""The HTTP layer's download bodies (``coffre.http.downloads``) close what
they stream as soon as the response ends, however it ends: a body may hold
a storage connection (an S3 GET streaming the blob), which must not wait
for the garbage collector."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from coffre.http.downloads import delivered, started

MIB = 1 << 20


class Tracked:
    def __init__(self, pieces: int, fail_at: int | None = None) -> None:
        self.closed = False
        self.ends: list[tuple[int, bool]] = []
        self.body = self._pieces(pieces, fail_at)

    def _pieces(self, count: int, fail_at: int | None) -> Iterator[bytes]:
        try:
            for number in range(count):
                if number == fail_at:
                    raise OSError("storage went away")
                yield b"x" * MIB
        finally:
            self.closed = True

    def on_end(self, sent: int, complete: bool) -> None:
        self.ends.append((sent, complete))


def stream(tracked: Tracked, take: int | None) -> int:
    """Run the response body as the server would, stopping after ``take`` pieces."""
    got = 0

    async def main() -> None:
        nonlocal got
        body = delivered(started(tracked.body, tracked.on_end), tracked.on_end)
        async for piece in body:
            got += len(piece)
            if take is not None and got >= take * MIB:
                break
        await body.aclose()  # what the server does when the client goes away

    anyio.run(main)
    return got


def test_a_complete_download_closes_its_body() -> None:
    tracked = Tracked(10)
    assert stream(tracked, None) == 10 * MIB
    assert tracked.closed
    assert tracked.ends == [(10 * MIB, True)]


def test_an_abandoned_download_closes_its_body_at_once() -> None:
    tracked = Tracked(50)
    keep = tracked.body  # another reference: the garbage collector cannot be what closes it
    assert stream(tracked, 5) >= 5 * MIB
    assert tracked.closed
    [(sent, complete)] = tracked.ends
    assert not complete and 0 < sent < 50 * MIB
    assert keep is tracked.body


def test_a_body_failing_before_its_first_byte_is_closed_and_counted_as_nothing() -> None:
    tracked = Tracked(50, fail_at=0)
    with pytest.raises(OSError):
        started(tracked.body, tracked.on_end)
    assert tracked.closed
    assert tracked.ends == [(0, False)]
