"""The memory budget of backup bodies (``http.backup_bodies``), without a
server: bounded, taken as bytes arrive, capped per credential, shared
between organisations. The server-side attacks are in
tests/integration/test_backup_bodies.py."""

from __future__ import annotations

import mmap

import pytest

from coffre.errors import StorageError, TooManyAttempts
from coffre.http.backup_bodies import BodyBudget, Buffers

MIB = 1 << 20


def test_a_body_holds_nothing_until_bytes_arrive_and_the_budget_is_bounded() -> None:
    budget = BodyBudget(10 * MIB, per_credential=8, idle=60)
    stalled = [budget.admit("device", "org") for _ in range(8)]
    assert budget.held == 0  # eight silent bodies take nothing
    stalled[0].grow(10 * MIB - 10)
    with pytest.raises(StorageError) as refused:
        stalled[1].grow(11)
    assert refused.value.status == 503 and refused.value.details["reason"] == "busy"
    stalled[0].close()
    assert budget.held == 0
    stalled[1].grow(10 * MIB)


def test_a_credential_has_a_bounded_count_of_bodies_in_flight() -> None:
    budget = BodyBudget(10 * MIB, per_credential=3, idle=60)
    bodies = [budget.admit("device", "org") for _ in range(3)]
    with pytest.raises(TooManyAttempts) as refused:
        budget.admit("device", "org")
    assert refused.value.status == 429
    assert refused.value.details["retry_after"] >= 1
    budget.admit("another device", "org").close()  # others are not counted with it
    bodies[0].close()
    budget.admit("device", "org")


def test_an_organisation_over_its_share_is_dropped_for_another() -> None:
    budget = BodyBudget(8 * MIB, per_credential=8, idle=60)
    hog = budget.admit("a", "org-a")
    hog.grow(6 * MIB)  # alone, it may take it all
    other = budget.admit("b", "org-b")
    assert budget.share("org-a") == budget.share("org-b") == 4 * MIB
    with pytest.raises(StorageError):
        other.grow(3 * MIB)  # no room yet: the hog, over its half, is dropped
    assert hog.preempted
    with pytest.raises(StorageError):
        hog.grow(1)  # and cannot grow any more
    hog.close()
    other.grow(3 * MIB)
    with pytest.raises(StorageError):
        other.grow(2 * MIB)  # over its own share now


def test_large_buffers_are_mappings_kept_for_the_next_bodies() -> None:
    buffers = Buffers()
    small = buffers.take(1000)
    assert isinstance(small, bytearray) and len(small) == 1000
    large = buffers.take(17 * MIB)
    assert isinstance(large, mmap.mmap) and len(large) == 24 * MIB
    buffers.give(large)
    assert buffers.take(16 * MIB) is large
    huge = buffers.take(160 * MIB)
    buffers.give(huge)  # past LARGEST: let go
    assert buffers.take(160 * MIB) is not huge
