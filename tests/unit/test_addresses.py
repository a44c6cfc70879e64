"""The source a limit counts an address under (``domain.addresses``)."""

from __future__ import annotations

import pytest

from coffre.domain.addresses import throttle_bucket


@pytest.mark.parametrize(("address", "bucket"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:0::9", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("::ffff:cb00:7107", "203.0.113.7"),
    ("::1", "::/64"),
    ("testclient", "testclient"),
    (None, None),
])
def test_buckets(address: str | None, bucket: str | None) -> None:
    assert throttle_bucket(address) == bucket


def test_the_next_64_is_another_source() -> None:
    assert throttle_bucket("2001:db8:1:2::1") != throttle_bucket("2001:db8:1:3::1")
