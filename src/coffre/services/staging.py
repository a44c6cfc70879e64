"""Blobs written before anything refers to them (a re-key, a copy).

Writing a large blob takes minutes and runs outside any transaction, so
its row cannot wait for the row that will refer to it. The row is
committed first *without its data key* (a staged blob: ``wrapped_key`` and
``shredded_at`` both NULL, nothing referring to it): it tells the orphan
sweeper which object is being written. The key stays in memory and reaches
the database only in the transaction that makes a row refer to the blob
(``adopt``). If anything fails before, ``discard`` deletes the object and
marks the row shredded; if the process dies, the object is noise (its key
was never stored) and the sweeper removes it once its grace period is over.
No path leaves a decryptable blob that nothing refers to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from coffre.crypto import stream
from coffre.db.engine import Database
from coffre.db.tables import Blob, new_id
from coffre.errors import Conflict
from coffre.ports import BlobStore, Clock
from coffre.services.keys import KeyRing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedBlob:
    id: str
    storage_key: str
    header: stream.StreamHeader
    #: The data key, in memory only until ``adopt``.
    key: bytes
    wrapped_key: bytes


def stage(session: Session, keys: KeyRing, organisation_id: str) -> StagedBlob:
    """Add a staged blob's row (no key stored) to ``session``; the caller commits."""
    blob = Blob(id=new_id(), organisation_id=organisation_id)
    blob.storage_key = f"blobs/{blob.id[:2]}/{blob.id}"
    header = stream.StreamHeader.random()
    blob.header = header.to_bytes()
    data_key = keys.new_blob_key(session, blob)
    wrapped = blob.wrapped_key
    assert wrapped is not None
    blob.wrapped_key = None
    session.add(blob)
    return StagedBlob(blob.id, blob.storage_key, header, data_key, wrapped)


def adopt(session: Session, staged: StagedBlob) -> Blob:
    """In the transaction that makes a row refer to the blob: store its key.

    Raises ``Conflict`` if the sweeper gave the blob up meanwhile (its
    writer stalled past the grace period): the caller then discards it.
    """
    row = session.get(Blob, staged.id, with_for_update=True)
    if row is None or row.shredded_at is not None or row.wrapped_key is not None:
        raise Conflict("the new copy was removed while it was written; retry")
    row.wrapped_key = staged.wrapped_key
    return row


def discard(db: Database, store: BlobStore, clock: Clock, staged: StagedBlob) -> None:
    """The write failed or lost its race: no key was stored; delete the
    object and mark the row shredded. Best effort (the caller is already
    failing): what stays behind is noise, and the sweeper's."""
    try:
        with db.session() as session:
            row = session.get(Blob, staged.id, with_for_update=True)
            if row is not None and row.wrapped_key is None and row.shredded_at is None:
                row.shredded_at = clock.now()
        store.delete(staged.storage_key)
    except Exception:  # noqa: BLE001 - never hide the caller's own error
        log.warning("could not remove the staged blob %s; the sweeper will", staged.id)
