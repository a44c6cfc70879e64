"""The backup rules (coffre.domain.backups), without I/O: object names,
append-only permissions, quotas, maintenance lifetimes, staleness and the
activity counters the audit aggregates."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from coffre.domain import backups as rules
from coffre.domain.backups import Activity, CredentialKind, Operation, Space
from coffre.errors import InvalidInput, PermissionDenied, StorageFull

ID = hashlib.sha256(b"pack").hexdigest()
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", rules.OBJECT_TYPES)
def test_every_restic_type_takes_a_sha256_name(kind: str) -> None:
    rules.check_object(kind, ID)
    rules.check_type(kind)


def test_config_is_the_one_object_named_config() -> None:
    rules.check_object("config", "config")
    with pytest.raises(InvalidInput):
        rules.check_object("config", ID)
    with pytest.raises(InvalidInput):
        rules.check_object("data", "config")


@pytest.mark.parametrize("name", [
    ID.upper(),  # restic's IDs are lowercase
    ID[:-1],
    ID + "0",
    ID[:-1] + "g",
    "../" + ID[3:],
    "",
    ID[:32] + "/" + ID[33:],
])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        rules.check_object("data", name)


@pytest.mark.parametrize("kind", ["config2", "Data", "lock", "", "..", "snapshot", "x" * 500])
def test_unknown_types_are_refused(kind: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        rules.check_object(kind, ID)
    assert len(raised.value.details.get("type", "")) <= 20  # never echoes a long path back
    with pytest.raises(InvalidInput):
        rules.check_type(kind)


def test_config_is_not_a_listable_type() -> None:
    with pytest.raises(InvalidInput):
        rules.check_type("config")


def test_a_name_must_be_the_sha256_of_the_body_except_config() -> None:
    body = b"restic pack"
    digest = hashlib.sha256(body).hexdigest()
    assert rules.verifies("data", digest, digest)
    assert not rules.verifies("data", ID, digest)
    assert not rules.verifies("snapshots", digest, hashlib.sha256(b"other").hexdigest())
    assert rules.verifies("config", "config", digest)


@pytest.mark.parametrize("kind", [*rules.OBJECT_TYPES, "config"])
def test_a_device_credential_creates_and_reads_everything(kind: str) -> None:
    rules.permit(CredentialKind.DEVICE, Operation.CREATE, kind)
    rules.permit(CredentialKind.DEVICE, Operation.READ, kind)


@pytest.mark.parametrize("kind", ["data", "keys", "snapshots", "index", "config"])
def test_a_device_credential_deletes_nothing_but_locks(kind: str) -> None:
    with pytest.raises(PermissionDenied) as raised:
        rules.permit(CredentialKind.DEVICE, Operation.DELETE, kind)
    assert raised.value.details["reason"] == "append_only"
    rules.permit(CredentialKind.DEVICE, Operation.DELETE, "locks")


@pytest.mark.parametrize("kind", [*rules.OBJECT_TYPES, "config"])
def test_a_maintenance_credential_may_delete(kind: str) -> None:
    for operation in Operation:
        rules.permit(CredentialKind.MAINTENANCE, operation, kind)


def test_maintenance_lifetime_defaults_and_bounds() -> None:
    assert rules.maintenance_lifetime(None) == rules.MAINTENANCE_DEFAULT == timedelta(hours=2)
    assert rules.maintenance_lifetime(24) == rules.MAINTENANCE_MAX
    assert rules.maintenance_lifetime(0.5) == timedelta(minutes=30)
    assert rules.maintenance_lifetime(0.001) == timedelta(minutes=1)  # a minute at least
    for hours in (0, -1, 24.01, 1000):
        with pytest.raises(InvalidInput):
            rules.maintenance_lifetime(hours)


def test_device_names_are_cleaned_and_bounded() -> None:
    assert rules.device_name("  Cabinet   poste\taccueil ") == "Cabinet poste accueil"
    assert rules.device_name("é" * rules.MAX_NAME_LENGTH) == "é" * rules.MAX_NAME_LENGTH
    for bad in ("", "   ", "x" * (rules.MAX_NAME_LENGTH + 1), "serveur\x00pg", "a\u200bb"):
        with pytest.raises(InvalidInput):
            rules.device_name(bad)


def test_space_free() -> None:
    assert Space("repository", 10, None).free is None
    assert Space("repository", 10, 25).free == 15
    assert Space("repository", 30, 25).free == 0  # over (a quota lowered): nothing, not < 0


def test_check_space_fits_exactly_and_refuses_one_byte_more() -> None:
    repo, org = Space("repository", 90, 100), Space("organisation", 500, 1000)
    rules.check_space(10, repo, org)
    with pytest.raises(StorageFull) as raised:
        rules.check_space(11, repo, org)
    assert raised.value.status == 507
    assert raised.value.details["quota"] == {"scope": "repository", "used": 90, "limit": 100,
                                             "needed": 11, "free": 10}


def test_check_space_names_the_organisation_when_it_is_the_limit() -> None:
    with pytest.raises(StorageFull) as raised:
        rules.check_space(50, Space("repository", 0, None), Space("organisation", 990, 1000))
    # A device learns what is left of the organisation's quota, not what
    # the other devices hold.
    assert raised.value.details["quota"] == {"scope": "organisation", "needed": 50, "free": 10}
    rules.check_space(10**15, Space("repository", 0, None), Space("organisation", 0, None))


def test_stale_counts_from_the_last_snapshot_or_registration() -> None:
    registered = NOW - timedelta(days=30)
    assert rules.stale(None, registered, NOW, 7)
    assert not rules.stale(None, NOW - timedelta(days=6, hours=23), NOW, 7)
    assert rules.stale(None, NOW - timedelta(days=7), NOW, 7)  # on the day
    assert not rules.stale(NOW - timedelta(days=1), registered, NOW, 7)
    assert rules.stale(NOW - timedelta(days=8), registered, NOW, 7)
    assert not rules.stale(NOW - timedelta(days=8), registered, NOW, 10)


def test_activity_adds_up_and_knows_when_it_is_empty() -> None:
    total = Activity()
    assert total.empty()
    assert Activity(snapshots=1).empty()  # a snapshot is always a write too
    total.add(Activity(written=2, bytes_written=300, snapshots=1))
    total.add(Activity(read=1, bytes_read=50, listed=3))
    total.add(Activity(deleted=1, refused=2))
    assert total == Activity(written=2, bytes_written=300, snapshots=1, read=1, bytes_read=50,
                             listed=3, deleted=1, refused=2)
    assert not total.empty()
    for one in (Activity(written=1), Activity(read=1), Activity(listed=1), Activity(deleted=1),
                Activity(refused=1), Activity(dropped=1)):
        assert not one.empty()
