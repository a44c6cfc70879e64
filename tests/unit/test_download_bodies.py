"""The HTTP layer's download bodies (``coffre.http.downloads``) close what
they stream as soon as the response ends, however it ends: a body may hold
a storage connection (an S3 GET streaming the blob), which must not wait
for the garbage collector."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from starlette.types import Message

from coffre.http.downloads import Delivery, started
from coffre.services.deliveries import ClaimLost

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


class Guard:
    """A claim that lapses after ``live`` checks."""

    def __init__(self, live: int) -> None:
        self.live = live
        self.checks = 0

    def due(self) -> bool:
        return True

    def keep(self) -> None:
        self.checks += 1
        if self.checks > self.live:
            raise ClaimLost()


def stream(tracked: Tracked, take: int | None, *, stall_at: int | None = None,
           timeout: float = 60.0, guard: Guard | None = None) -> tuple[int, list[str]]:
    """Run the response as the server would: the client goes away after
    ``take`` pieces (the server then cancels the response), or stops
    reading after ``stall_at`` pieces. Returns the bytes it got and the
    messages sent."""
    got = 0
    messages: list[str] = []

    async def main() -> None:
        response = Delivery(started(tracked.body, tracked.on_end), tracked.on_end,
                            timeout=timeout, guard=guard)
        with anyio.CancelScope() as scope:

            async def send(message: Message) -> None:
                nonlocal got
                messages.append(message["type"])
                if message["type"] != "http.response.body" or not message["more_body"]:
                    return
                if stall_at is not None and got >= stall_at * MIB:
                    await anyio.sleep_forever()  # the client no longer reads
                got += len(message["body"])
                if take is not None and got >= take * MIB:
                    scope.cancel()  # what the server does when the client goes away

            await response.stream_response(send)

    anyio.run(main)
    return got, messages


def test_a_complete_download_closes_its_body() -> None:
    tracked = Tracked(10)
    got, messages = stream(tracked, None)
    assert got == 10 * MIB and messages[-1] == "http.response.body"
    assert tracked.closed
    assert tracked.ends == [(10 * MIB, True)]


def test_an_abandoned_download_closes_its_body_at_once() -> None:
    tracked = Tracked(50)
    keep = tracked.body  # another reference: the garbage collector cannot be what closes it
    assert stream(tracked, 5)[0] >= 5 * MIB
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


def test_a_stalled_client_aborts_the_response_after_the_send_timeout() -> None:
    """uvicorn never times out a send its client does not take: the
    response gives up, closes its body and counts what went out."""
    tracked = Tracked(50)
    got, messages = stream(tracked, None, stall_at=3, timeout=0.2)
    assert got == 3 * MIB
    assert tracked.closed
    assert tracked.ends == [(3 * MIB, False)]
    assert messages.count("http.response.body") == 4  # never the final, empty one


def test_a_lapsed_claim_stops_the_response_before_its_next_piece() -> None:
    tracked = Tracked(50)
    guard = Guard(live=2)
    got, messages = stream(tracked, None, guard=guard)
    assert got == 3 * MIB  # the piece after which the claim was found lapsed went out before
    assert messages.count("http.response.body") == 3  # nothing more, not even the end
    assert guard.checks == 3
    assert tracked.closed
    assert tracked.ends == [(3 * MIB, False)]
