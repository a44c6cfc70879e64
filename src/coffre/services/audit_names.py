"""What the events of one page of the audit view name, for administrators
to read (``http/web/audit_sentences``): recipients and depositors by their
address, files by their name (unsealed) and size. Only objects of the
reader's organisation, only for a reader of its audit trail; a purged or
unknown object is simply not named.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select

from coffre.db.engine import Database
from coffre.db.tables import Recipient, RequestDepositor, Transfer, TransferFile, UploadRequest
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, Target, authorize
from coffre.services.keys import KeyRing

#: Most objects looked up for one page.
MOST = 500


def names(db: Database, keys: KeyRing, actor: Actor, people: Collection[str],
          files: Collection[str]) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """(person id -> address, file id -> (name, size)) for ``actor``'s organisation."""
    authorize(actor, Action.AUDIT_READ, Target(actor.organisation_id))
    org = actor.organisation_id
    wanted_people = list(people)[:MOST]
    wanted_files = list(files)[:MOST]
    found_people: dict[str, str] = {}
    found_files: dict[str, tuple[str, int]] = {}
    with db.session() as session:
        if wanted_people:
            for rid, email in session.execute(
                select(Recipient.id, Recipient.email).join(Transfer)
                .where(Recipient.id.in_(wanted_people), Transfer.organisation_id == org)):
                found_people[rid] = email
            for did, email in session.execute(
                select(RequestDepositor.id, RequestDepositor.email).join(UploadRequest)
                .where(RequestDepositor.id.in_(wanted_people),
                       UploadRequest.organisation_id == org)):
                found_people[did] = email
        if wanted_files:
            for row in session.execute(
                select(TransferFile).join(Transfer)
                .where(TransferFile.id.in_(wanted_files), Transfer.organisation_id == org,
                       Transfer.purged_at.is_(None))).scalars():
                name = keys.open_text(session, row.name_sealed, f"file:{row.id}")
                found_files[row.id] = (name, row.size)
    return found_people, found_files
