"""The key ring: organisation KEKs (wrapped by the root key) and per-blob
data keys (wrapped by the KEK). Wrapped keys live in the database, the
root key outside it; handlers and the CLI never see a key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffre.crypto import envelope
from coffre.db.tables import Blob, OrganisationKey, new_id
from coffre.errors import Gone
from coffre.ports import KeyProvider


def _kek_context(organisation_id: str, key_id: str) -> bytes:
    return f"coffre/kek/{organisation_id}/{key_id}".encode()


def _blob_context(blob_id: str) -> bytes:
    return f"coffre/blob/{blob_id}".encode()


class KeyRing:
    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._keks: dict[str, bytes] = {}
        self._lock = threading.Lock()

    # -- organisation keys ----------------------------------------------------

    def create_kek(self, session: Session, organisation_id: str) -> OrganisationKey:
        row = OrganisationKey(organisation_id=organisation_id, root_key_id=self.provider.key_id)
        row.id = new_id()
        kek = envelope.new_key()
        row.wrapped_key = self.provider.wrap(kek, _kek_context(organisation_id, row.id))
        session.add(row)
        session.flush()
        with self._lock:
            self._keks[row.id] = kek
        return row

    def active_kek(self, session: Session, organisation_id: str) -> OrganisationKey:
        row = session.execute(
            select(OrganisationKey).where(
                OrganisationKey.organisation_id == organisation_id, OrganisationKey.active
            )
        ).scalar_one_or_none()
        return row or self.create_kek(session, organisation_id)

    def kek(self, session: Session, kek_id: str) -> bytes:
        with self._lock:
            cached = self._keks.get(kek_id)
        if cached is not None:
            return cached
        row = session.get(OrganisationKey, kek_id)
        if row is None:
            raise Gone("organisation key destroyed")
        kek = self.provider.unwrap(row.wrapped_key, _kek_context(row.organisation_id, row.id))
        with self._lock:
            self._keks[kek_id] = kek
        return kek

    # -- data keys ------------------------------------------------------------

    def new_blob_key(self, session: Session, blob: Blob) -> bytes:
        """Give ``blob`` a fresh data key; returns it (the row keeps it wrapped)."""
        kek_row = self.active_kek(session, blob.organisation_id)
        data_key = envelope.new_key()
        blob.kek_id = kek_row.id
        blob.wrapped_key = envelope.wrap_data_key(
            self.kek(session, kek_row.id), data_key, _blob_context(blob.id)
        )
        return data_key

    def blob_key(self, session: Session, blob: Blob) -> bytes:
        if blob.wrapped_key is None:
            raise Gone("this file has been destroyed")
        return envelope.unwrap_data_key(
            self.kek(session, blob.kek_id), blob.wrapped_key, _blob_context(blob.id)
        )

    # -- sealed metadata ------------------------------------------------------

    def _metadata_key(self, session: Session, organisation_id: str) -> tuple[str, bytes]:
        row = self.active_kek(session, organisation_id)
        return row.id, envelope.derive_key(self.kek(session, row.id), envelope.LABEL_METADATA)

    def seal_text(self, session: Session, organisation_id: str, text: str, context: str) -> bytes:
        """Seal a short text (file name, message) for one organisation."""
        kek_id, key = self._metadata_key(session, organisation_id)
        sealed = envelope.seal(key, text.encode(), context.encode())
        return kek_id.encode() + b":" + sealed

    def open_text(self, session: Session, sealed: bytes, context: str) -> str:
        kek_id, _, body = sealed.partition(b":")
        key = envelope.derive_key(self.kek(session, kek_id.decode()), envelope.LABEL_METADATA)
        return envelope.open_sealed(key, body, context.encode()).decode()

    # -- one-time codes -------------------------------------------------------

    def code_digest(self, session: Session, organisation_id: str, bound_to: str, code: str) -> str:
        """Keyed hash of a one-time code, bound to one object (a recipient).

        HMAC-SHA256 under a subkey of the organisation's KEK used for
        nothing else: a database dump alone does not allow trying the 10^8
        codes offline, and a digest moved to another row does not match.
        """
        row = self.active_kek(session, organisation_id)
        key = envelope.derive_key(self.kek(session, row.id), envelope.LABEL_ONE_TIME_CODE)
        return hmac.new(key, f"{bound_to}\n{code}".encode(), hashlib.sha256).hexdigest()

    def depositor_token(self, session: Session, organisation_id: str, request_id: str,
                        email: str) -> str:
        """The link token of the depositor who joins an open link with
        ``email``: the same for every join with that address (one
        depositor, never one per join), unguessable without the
        organisation's key. It only lets its holder ask for a code, mailed
        to that address."""
        row = self.active_kek(session, organisation_id)
        key = envelope.derive_key(self.kek(session, row.id), envelope.LABEL_DEPOSITOR_TOKEN)
        digest = hmac.new(key, f"{request_id}\n{email}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
