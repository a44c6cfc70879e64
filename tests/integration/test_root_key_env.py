"""The root key given as an environment secret (COFFRE_ROOT_KEY), as
stateless instances of the distributed profile get it: no key file is
written, two instances with their own data directories read each other's
data and sign the audit trail with the same key (derived from the root key
unless COFFRE_AUDIT_SIGNING_KEY is given)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from coffre.audit import trail
from coffre.bootstrap import Coffre, build
from coffre.crypto.envelope import KEY_SIZE
from coffre.db.tables import Organisation
from coffre.errors import ConfigurationError, IntegrityError
from coffre.notify.memory import MemoryMailer
from coffre.settings import Settings
from tests import backends


def secret(raw: bytes | None = None) -> SecretStr:
    return SecretStr(base64.b64encode(raw or os.urandom(KEY_SIZE)).decode())


def instance(data: Path, database: Path, **keys: SecretStr) -> Coffre:
    """An instance on its own data directory, sharing ``database``'s."""
    database.mkdir(parents=True, exist_ok=True)
    url = backends.database_setting(database) or f"sqlite:///{database / 'coffre.db'}"
    return build(Settings(data_dir=data, database_url=url,
                          audit_witness_file=data / "witness.txt", **keys),  # type: ignore[arg-type]
                 mailer=MemoryMailer())


def organisation(app: Coffre) -> str:
    with app.db.session() as session:
        org = Organisation(name="Cabinet")
        session.add(org)
        session.flush()
        return org.id


def test_instances_given_the_root_key_share_data_and_signatures(tmp_path: Path) -> None:
    """SEC-25: the key never lands in a file next to the data."""
    root = secret()
    first = instance(tmp_path / "one", tmp_path / "one", root_key=root)
    second = instance(tmp_path / "two", tmp_path / "one", root_key=root)
    try:
        org = organisation(first)
        with first.db.session() as session:
            sealed = first.keys.seal_text(session, org, "Dr Martin, compte rendu", "test")
            trail.record(session, "test.event", actor="a", organisation_id=org)
        signed = first.audit.checkpoint()
        assert signed is not None
        with second.db.session() as session:
            assert second.keys.open_text(session, sealed, "test") == "Dr Martin, compte rendu"
        assert second.audit.public_key == first.audit.public_key
        assert second.audit.verify().intact
        for data in (tmp_path / "one", tmp_path / "two"):
            keys = data / "keys"
            assert not keys.exists() or not any(keys.iterdir()), list(keys.iterdir())
    finally:
        first.close()
        second.close()


def test_another_root_key_opens_nothing(tmp_path: Path) -> None:
    first = instance(tmp_path / "one", tmp_path / "one", root_key=secret())
    other = instance(tmp_path / "two", tmp_path / "one", root_key=secret())
    try:
        with first.db.session() as session:
            sealed = first.keys.seal_text(session, organisation(first), "confidentiel", "test")
        with other.db.session() as session, pytest.raises(IntegrityError):
            other.keys.open_text(session, sealed, "test")
    finally:
        first.close()
        other.close()


def test_a_given_signing_key_is_used(tmp_path: Path) -> None:
    seed = os.urandom(KEY_SIZE)
    app = instance(tmp_path / "one", tmp_path / "one", root_key=secret(),
                   audit_signing_key=secret(seed))
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
        assert app.audit.public_key == expected
    finally:
        app.close()


@pytest.mark.parametrize("value", ["pas du base64 !", base64.b64encode(b"court").decode()])
def test_a_malformed_root_key_refuses_to_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        instance(tmp_path / "one", tmp_path / "one", root_key=SecretStr(value))
    assert value not in refused.value.message  # the secret is never echoed
