"""Contacts: each member's personal contacts and the organisation's
directory (read by every member, written by administrators).

The address is kept in clear (like recipients' addresses: it is what
transfers are matched on); name, phone, profession, RPPS number and
organisation are sealed as one JSON card under the organisation's metadata
key. Search therefore opens the caller's cards and filters in memory: a
few thousand cards take milliseconds; a directory of hundreds of
thousands would need a blind index instead. Card contents never enter the
audit trail or a log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.db.engine import Database
from coffre.db.tables import Contact, new_id
from coffre.domain.accounts import Actor, normalise_email
from coffre.domain.contacts import Card, check_card, fold, matches, rank
from coffre.domain.policy import Action, Target, authorize
from coffre.errors import Conflict, InvalidInput, NotFound
from coffre.ports import Clock
from coffre.services import contact_files
from coffre.services.contact_files import Rejected
from coffre.services.keys import KeyRing
from coffre.services.verification import check_phone

MISSING = "contact not found"
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class ContactView:
    id: str
    email: str
    shared: bool
    name: str
    phone: str
    profession: str
    rpps: str
    organisation: str
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    use_count: int


@dataclass(frozen=True)
class ImportReport:
    format: str
    created: int
    updated: int
    rejected: list[Rejected]
    dry_run: bool


@dataclass(frozen=True)
class Resolved:
    query: str
    email: str
    name: str
    #: The contact's mobile number, only when this server can send codes by SMS.
    phone: str | None


def _context(contact_id: str) -> str:
    return f"contact:{contact_id}:card"


def record_use(session: Session, organisation_id: str, user_id: str, emails: Iterable[str],
               now: datetime) -> None:
    """A transfer went to ``emails``: the sender's personal contacts with
    those addresses rank higher next time. Directory entries are shared by
    the whole organisation, so their use is not recorded: colleagues would
    learn who sends to whom, and when."""
    wanted = set(emails)
    if not wanted:
        return
    rows = session.execute(
        select(Contact).where(
            Contact.organisation_id == organisation_id,
            Contact.owner_id == user_id,
            Contact.email.in_(wanted),
        )
    ).scalars()
    for contact in rows:
        contact.use_count += 1
        contact.last_used_at = now


class ContactService:
    def __init__(self, db: Database, keys: KeyRing, clock: Clock, *,
                 sms_enabled: bool = False) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        self.sms_enabled = sms_enabled

    # -- read -------------------------------------------------------------------

    def search(self, actor: Actor, query: str = "", limit: int | None = None,
               scope: str = "all") -> list[ContactView]:
        """The caller's contacts and the directory's whose name or address
        starts with ``query`` (any case, any accents), most used first."""
        authorize(actor, Action.CONTACT_READ)
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
        with self.db.session() as session:
            views = [v for v in self._visible(session, actor, scope)
                     if matches(query, v.email, _card(v))]
        now = self.clock.now()
        views.sort(key=lambda v: (-rank(v.use_count, v.last_used_at, now), v.shared,
                                  fold(v.name or v.email), v.email))
        return views[:limit] if limit is not None else views

    def get(self, actor: Actor, contact_id: str) -> ContactView:
        with self.db.session() as session:
            return self._view(session, self._load(session, actor, contact_id))

    def resolve(self, actor: Actor, queries: list[str]) -> list[Resolved]:
        """Each query (an address, or the start of a contact's name or
        address) to one address, and the contact's mobile number for codes
        by SMS. Ambiguous or unknown names are ``InvalidInput``."""
        authorize(actor, Action.CONTACT_READ)
        with self.db.session() as session:
            visible = self._visible(session, actor, "all")
        # Personal entries first: they win over the directory's for one address.
        visible.sort(key=lambda v: v.shared)
        out = []
        for query in queries:
            if "@" in query:
                email = normalise_email(query)
                found = [v for v in visible if v.email == email]
            else:
                found = _unique_by_email([v for v in visible if matches(query, v.email, _card(v))])
                exact = [v for v in found if fold(v.name) == fold(query.strip())]
                found = exact or found
                if not found:
                    raise InvalidInput(f"no contact matches {query!r}", field="recipients")
                if len(found) > 1:
                    raise InvalidInput(
                        f"{len(found)} contacts match {query!r}: give more of the name, "
                        "or the address", field="recipients",
                        candidates=[v.email for v in found[:10]],
                    )
                email = found[0].email
            contact = found[0] if found else None
            out.append(Resolved(
                query=query,
                email=email,
                name=contact.name if contact else "",
                phone=_sms_phone(contact.phone) if contact and self.sms_enabled else None,
            ))
        return out

    # -- write ------------------------------------------------------------------

    def create(self, actor: Actor, email: str, card: Card, ctx: trail.Context, *,
               shared: bool = False) -> ContactView:
        self._authorize_scope(actor, shared)
        address = normalise_email(email)
        clean = check_card(card)
        owner = None if shared else actor.user_id
        now = self.clock.now()
        with self.db.session() as session:
            existing = self._by_email(session, actor.organisation_id, owner, [address])
            if existing:
                raise Conflict("a contact with this address already exists",
                               contact=next(iter(existing.values())).id)
            contact = self._add(session, actor.organisation_id, owner, address, clean, now)
            session.flush()
            trail.record(session, "contact.created", actor=actor.user_id,
                         organisation_id=actor.organisation_id, object_type="contact",
                         object_id=contact.id, context=ctx, shared=shared)
            return self._view(session, contact)

    def update(self, actor: Actor, contact_id: str, ctx: trail.Context, *,
               email: str | None = None, **changes: str | None) -> ContactView:
        with self.db.session() as session:
            contact = self._load(session, actor, contact_id, write=True)
            old = self._card(session, contact)
            values = old.as_dict()
            values.update({k: v for k, v in changes.items() if v is not None})
            card = check_card(Card.from_dict(dict(values)))
            changed = sorted(k for k, v in card.as_dict().items() if v != getattr(old, k))
            if email is not None:
                address = normalise_email(email)
                if address != contact.email:
                    clash = self._by_email(session, contact.organisation_id, contact.owner_id,
                                           [address])
                    if clash:
                        raise Conflict("a contact with this address already exists",
                                       contact=clash[address].id)
                    contact.email = address
                    changed.append("email")
            if changed:
                contact.card_sealed = self._seal(session, contact, card)
                contact.updated_at = self.clock.now()
                trail.record(session, "contact.updated", actor=actor.user_id,
                             organisation_id=contact.organisation_id, object_type="contact",
                             object_id=contact.id, context=ctx, fields=changed,
                             shared=contact.owner_id is None)
            return self._view(session, contact)

    def delete(self, actor: Actor, contact_id: str, ctx: trail.Context) -> None:
        with self.db.session() as session:
            contact = self._load(session, actor, contact_id, write=True)
            trail.record(session, "contact.deleted", actor=actor.user_id,
                         organisation_id=contact.organisation_id, object_type="contact",
                         object_id=contact.id, context=ctx, shared=contact.owner_id is None)
            session.delete(contact)

    def import_file(self, actor: Actor, data: bytes, ctx: trail.Context, *,
                    format: str | None = None, shared: bool = False,
                    dry_run: bool = False) -> ImportReport:
        """Import a vCard or CSV file in one transaction: every good entry,
        or (if the file itself cannot be read) nothing. Bad entries are
        reported by line. An address already in the same list (personal, or
        the directory) is updated with the file's non-empty values."""
        self._authorize_scope(actor, shared)
        parsed = contact_files.parse(data, format)
        owner = None if shared else actor.user_id
        now = self.clock.now()
        created = updated = 0
        with self.db.session() as session:
            existing = self._by_email(session, actor.organisation_id, owner,
                                      [e.email for e in parsed.entries])
            for entry in parsed.entries:
                contact = existing.get(entry.email)
                if contact is None:
                    created += 1
                    if not dry_run:
                        self._add(session, actor.organisation_id, owner, entry.email,
                                  entry.card, now)
                    continue
                known = self._card(session, contact)
                values = known.as_dict()
                values.update({k: v for k, v in entry.card.as_dict().items() if v})
                merged = Card.from_dict(dict(values))
                if merged != known:
                    updated += 1
                    if not dry_run:
                        contact.card_sealed = self._seal(session, contact, merged)
                        contact.updated_at = now
            if not dry_run:
                session.flush()
                trail.record(session, "contacts.imported", actor=actor.user_id,
                             organisation_id=actor.organisation_id, context=ctx,
                             format=parsed.format, shared=shared, created=created,
                             updated=updated, rejected=len(parsed.rejected))
        return ImportReport(parsed.format, created, updated, parsed.rejected, dry_run)

    def export(self, actor: Actor, ctx: trail.Context, scope: str = "all") -> tuple[int, str]:
        """(count, vCard 3.0 text) of the caller's contacts and the directory."""
        authorize(actor, Action.CONTACT_READ)
        with self.db.session() as session:
            views = self._visible(session, actor, scope)
            views.sort(key=lambda v: (v.shared, fold(v.name or v.email), v.email))
            trail.record(session, "contacts.exported", actor=actor.user_id,
                         organisation_id=actor.organisation_id, context=ctx, scope=scope,
                         count=len(views))
        return len(views), contact_files.to_vcard([(v.email, _card(v)) for v in views])

    # -- internals --------------------------------------------------------------

    def _authorize_scope(self, actor: Actor, shared: bool) -> None:
        if shared:
            authorize(actor, Action.DIRECTORY_MANAGE)
        else:
            authorize(actor, Action.CONTACT_WRITE, Target(actor.organisation_id, actor.user_id))

    def _load(self, session: Session, actor: Actor, contact_id: str, *,
              write: bool = False) -> Contact:
        contact = session.get(Contact, contact_id)
        if contact is None:
            raise NotFound(MISSING)
        target = Target(contact.organisation_id, contact.owner_id)
        authorize(actor, Action.CONTACT_READ, target, missing=MISSING)
        if write and contact.owner_id is None:
            # Seen by every member, changed by administrators only (403).
            authorize(actor, Action.DIRECTORY_MANAGE)
        elif write:
            authorize(actor, Action.CONTACT_WRITE, target, missing=MISSING)
        return contact

    def _visible(self, session: Session, actor: Actor, scope: str) -> list[ContactView]:
        if scope not in {"all", "personal", "shared"}:
            raise InvalidInput("scope must be all, personal or shared", field="scope")
        owners = []
        if scope in {"all", "personal"}:
            owners.append(Contact.owner_id == actor.user_id)
        if scope in {"all", "shared"}:
            owners.append(Contact.owner_id.is_(None))
        rows = session.execute(
            select(Contact).where(Contact.organisation_id == actor.organisation_id,
                                  or_(*owners))
        ).scalars()
        return [self._view(session, c) for c in rows]

    def _by_email(self, session: Session, organisation_id: str, owner_id: str | None,
                  emails: list[str]) -> dict[str, Contact]:
        if not emails:
            return {}
        owner = Contact.owner_id.is_(None) if owner_id is None else Contact.owner_id == owner_id
        found: dict[str, Contact] = {}
        # Chunked: SQLite limits the number of bound parameters.
        for start in range(0, len(emails), 500):
            rows = session.execute(
                select(Contact).where(Contact.organisation_id == organisation_id, owner,
                                      Contact.email.in_(emails[start:start + 500]))
            ).scalars()
            found.update({c.email: c for c in rows})
        return found

    def _add(self, session: Session, organisation_id: str, owner_id: str | None, email: str,
             card: Card, now: datetime) -> Contact:
        contact = Contact(id=new_id(), organisation_id=organisation_id, owner_id=owner_id,
                          email=email, created_at=now, updated_at=now, use_count=0)
        contact.card_sealed = self._seal(session, contact, card)
        session.add(contact)
        return contact

    def _seal(self, session: Session, contact: Contact, card: Card) -> bytes:
        return self.keys.seal_text(session, contact.organisation_id,
                                   json.dumps(card.as_dict(), ensure_ascii=False),
                                   _context(contact.id))

    def _card(self, session: Session, contact: Contact) -> Card:
        text = self.keys.open_text(session, contact.card_sealed, _context(contact.id))
        return Card.from_dict(json.loads(text))

    def _view(self, session: Session, contact: Contact) -> ContactView:
        card = self._card(session, contact)
        return ContactView(
            id=contact.id, email=contact.email, shared=contact.owner_id is None,
            created_at=contact.created_at, updated_at=contact.updated_at,
            last_used_at=contact.last_used_at, use_count=contact.use_count or 0,
            **card.as_dict(),
        )


def _card(view: ContactView) -> Card:
    return Card(name=view.name, phone=view.phone, profession=view.profession, rpps=view.rpps,
                organisation=view.organisation)


def _unique_by_email(views: list[ContactView]) -> list[ContactView]:
    seen: dict[str, ContactView] = {}
    for view in views:
        seen.setdefault(view.email, view)
    return list(seen.values())


def _sms_phone(phone: str) -> str | None:
    """The number if it can receive a code by SMS (international form)."""
    if not phone:
        return None
    try:
        return check_phone(phone)
    except InvalidInput:
        return None
