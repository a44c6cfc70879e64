"""The audit trail in words (the administration's audit view): each action
code of ``coffre.audit.actions`` has a category and a sentence, so that an
administrator reads "Marie Martin downloaded « report.pdf »
(1.2 MB)" rather than ``transfer.downloaded`` and its JSON (which stay
behind "Details"). A unit test fails on an action without a sentence.

Sentences name people through ``Names`` (members by name, recipients and
depositors by address, files by name and size), filled for one page of
events at a time by the page (``audit_pages``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coffre.http.web.i18n import N_, _, ngettext
from coffre.http.web.templating import filesize

SECURITY = "security"
SENDING = "sending"
DEPOSITS = "deposits"
BACKUPS = "backups"
ADMINISTRATION = "administration"
READS = "reads"
#: The view's filters, in the order shown.
CATEGORIES = {
    SECURITY: N_("Sign-ins and security"),
    SENDING: N_("Transfers"),
    DEPOSITS: N_("Deposits"),
    BACKUPS: N_("Backups"),
    ADMINISTRATION: N_("Administration"),
    READS: N_("File reads"),
}

#: action -> (category, sentence). Placeholders: %(who)s (the member, the
#: recipient or the depositor), %(files)s (« name », ...), %(size)s,
#: %(kind)s (a kind of second factor), %(count)s.
SENTENCES: dict[str, tuple[str, str]] = {
    # -- sign-ins and security
    "access.busy": (SECURITY, N_("Request refused: the server was busy")),
    "access.denied": (SECURITY, N_("Access refused: not allowed")),
    "access.refusals": (SECURITY, N_("Repeated refused accesses from one address (%(count)s)")),
    "access.throttled": (SECURITY, N_("Access refused: too many attempts")),
    "access.unauthenticated": (SECURITY, N_("Access refused: not signed in")),
    "factor.added": (SECURITY, N_("%(who)s added a second factor (%(kind)s)")),
    "factor.assertion_rejected": (SECURITY, N_("Passkey refused for %(who)s")),
    "factor.code_reused": (SECURITY, N_("%(who)s typed a code again that had just been used "
                                        "(same browser: asked to wait for the next one)")),
    "factor.enrolment_failed": (SECURITY, N_("%(who)s could not add a second factor "
                                             "(%(kind)s): wrong code")),
    "factor.recovery_code_used": (SECURITY, N_("%(who)s signed in with a recovery code "
                                               "(%(count)s left)")),
    "factor.recovery_codes_generated": (SECURITY, N_("%(who)s created new recovery codes")),
    "factor.removed": (SECURITY, N_("%(who)s removed a second factor (%(kind)s)")),
    "factor.replay_rejected": (SECURITY, N_("Sign-in refused for %(who)s: an authenticator "
                                            "app code already used was presented again")),
    "login.account_slowed": (SECURITY, N_("Sign-ins to the account of %(who)s slowed down "
                                          "after repeated failures")),
    "login.failed": (SECURITY, N_("Sign-in refused: wrong password")),
    "login.second_factor": (SECURITY, N_("%(who)s signed in with the second factor")),
    "login.second_factor_failed": (SECURITY, N_("Sign-in refused for %(who)s: wrong code or "
                                                "key")),
    "login.succeeded": (SECURITY, N_("%(who)s gave the right password")),
    "password.changed": (SECURITY, N_("%(who)s changed their password")),
    "password.check.failed": (SECURITY, N_("Password change refused for %(who)s: wrong "
                                           "current password")),
    "password.check.succeeded": (SECURITY, N_("%(who)s confirmed their current password")),
    "password.reset_expired": (SECURITY, N_("Expired password reset link used")),
    "password.reset_forced": (SECURITY, N_("%(who)s had a member's password reset")),
    "password.reset_invalid": (SECURITY, N_("Unknown or already used password reset link")),
    "password.reset_mailed": (SECURITY, N_("Password reset link sent by e-mail to %(who)s")),
    "password.reset_requested": (SECURITY, N_("Forgotten password: reset asked for")),
    "password.reset_suppressed": (SECURITY, N_("Forgotten password: no link sent (unknown or "
                                               "disabled account, or too many asks)")),
    "password.reset_used": (SECURITY, N_("%(who)s chose a new password with a reset link")),
    "reauth.completed": (SECURITY, N_("%(who)s confirmed their identity for a sensitive "
                                      "action")),
    "reauth.failed": (SECURITY, N_("Identity confirmation refused for %(who)s: wrong "
                                   "password")),
    "reauth.resumed": (SECURITY, N_("%(who)s went on with the action asked for before "
                                    "confirming their identity")),
    "reauth.second_factor_failed": (SECURITY, N_("Identity confirmation refused for %(who)s: "
                                                 "wrong code or key")),
    "reauth.succeeded": (SECURITY, N_("%(who)s gave their password again")),
    "session.ended": (SECURITY, N_("%(who)s signed out (or a session was ended)")),
    "session.expired": (SECURITY, N_("A session of %(who)s expired")),
    "session.started": (SECURITY, N_("%(who)s signed in")),
    "setup.reused": (SECURITY, N_("Setup link used again (refused)")),
    "setup.unknown": (SECURITY, N_("Unknown setup link (refused)")),
    "token.created": (SECURITY, N_("%(who)s created an API token")),
    "token.revoked": (SECURITY, N_("%(who)s revoked an API token")),
    # -- transfers
    "contact.created": (SENDING, N_("%(who)s added a contact")),
    "contact.deleted": (SENDING, N_("%(who)s deleted a contact")),
    "contact.updated": (SENDING, N_("%(who)s changed a contact")),
    "contacts.exported": (SENDING, N_("%(who)s exported the contacts")),
    "contacts.imported": (SENDING, N_("%(who)s imported contacts")),
    "link.code_failed": (SENDING, N_("Wrong code typed by %(who)s")),
    "link.code_not_sent": (SENDING, N_("Code not sent to %(who)s (too many asks)")),
    "link.code_sent": (SENDING, N_("Code sent to %(who)s")),
    "link.code_verified": (SENDING, N_("Code confirmed by %(who)s")),
    "link.locked": (SENDING, N_("Link of %(who)s locked after wrong codes")),
    "link.opened": (SENDING, N_("%(who)s opened their link")),
    "link.password_failed": (SENDING, N_("Wrong password typed by %(who)s")),
    "link.password_locked": (SENDING, N_("Link of %(who)s locked after wrong passwords")),
    "link.unknown": (SENDING, N_("Unknown link opened (refused)")),
    "link.unlocked": (SENDING, N_("%(who)s unlocked their link with the password")),
    "mail.failed": (SENDING, N_("An e-mail could not be sent")),
    "mail.sent": (SENDING, N_("An e-mail was sent")),
    "storage.swept": (SENDING, N_("Expired files were destroyed")),
    "transfer.created": (SENDING, N_("%(who)s sent a transfer (%(files)s)")),
    "transfer.deleted": (SENDING, N_("%(who)s deleted a transfer")),
    "transfer.extended": (SENDING, N_("%(who)s extended a transfer")),
    "transfer.forwarded": (SENDING, N_("%(who)s forwarded deposited files")),
    "transfer.hold_placed": (SENDING, N_("%(who)s placed a legal hold on a transfer")),
    "transfer.hold_released": (SENDING, N_("%(who)s released a legal hold")),
    "transfer.purge_skipped": (SENDING, N_("An expired transfer was kept (legal hold)")),
    "transfer.purged": (SENDING, N_("An expired transfer was destroyed")),
    "transfer.recipient_revoked": (SENDING, N_("%(who)s revoked one recipient's link")),
    "transfer.revoked": (SENDING, N_("%(who)s revoked a transfer")),
    "upload.completed": (SENDING, N_("%(who)s finished uploading a file (%(size)s)")),
    "upload.created": (SENDING, N_("%(who)s started uploading a file")),
    "upload.expired": (SENDING, N_("An unfinished upload expired")),
    "upload.quota_exceeded": (SENDING, N_("An upload was refused: storage quota reached")),
    "upload.refused": (SENDING, N_("An upload was refused")),
    "upload.rekeyed": (SENDING, N_("An upload's key was renewed")),
    "upload.terminated": (SENDING, N_("An upload was cancelled")),
    # -- deposits
    "deposit.completed": (DEPOSITS, N_("%(who)s deposited %(files)s (%(size)s)")),
    "deposit.rate_limited": (DEPOSITS, N_("Deposit refused: too many attempts")),
    "depositor.code_failed": (DEPOSITS, N_("Wrong code typed by %(who)s")),
    "depositor.code_sent": (DEPOSITS, N_("Code sent to %(who)s")),
    "depositor.code_verified": (DEPOSITS, N_("Code confirmed by %(who)s")),
    "depositor.locked": (DEPOSITS, N_("Deposit link of %(who)s locked after wrong codes")),
    "request.admin_access": (DEPOSITS, N_("%(who)s, administrator, opened a member's upload "
                                          "request")),
    "request.closed": (DEPOSITS, N_("%(who)s closed an upload request")),
    "request.created": (DEPOSITS, N_("%(who)s created an upload request")),
    "request.depositor_joined": (DEPOSITS, N_("%(who)s joined an open deposit link")),
    "request.depositor_rejoined": (DEPOSITS, N_("%(who)s came back to an open deposit link")),
    # -- backups
    "backup.access_denied": (BACKUPS, N_("Backup refused: this device may not use this "
                                         "repository")),
    "backup.body_dropped": (BACKUPS, N_("A backup upload was cut short")),
    "backup.delete_refused": (BACKUPS, N_("Deleting from a backup refused (append-only)")),
    "backup.device_registered": (BACKUPS, N_("%(who)s registered a backup device")),
    "backup.device_revoked": (BACKUPS, N_("%(who)s revoked a backup device")),
    "backup.maintenance_key_issued": (BACKUPS, N_("%(who)s created a backup maintenance "
                                                  "key")),
    "backup.maintenance_used": (BACKUPS, N_("A backup maintenance key was used")),
    "backup.object_deleted": (BACKUPS, N_("Old backup data was deleted (maintenance)")),
    "backup.repository_initialised": (BACKUPS, N_("A backup repository was started")),
    "backup.session": (BACKUPS, N_("A backup device worked with its repository")),
    "backup.snapshot_written": (BACKUPS, N_("A backup was saved")),
    "backup.stale_alerted": (BACKUPS, N_("Alert: a device has not backed up for a while")),
    # -- administration
    "audit.acknowledged": (ADMINISTRATION, N_("An administrator acknowledged an audit "
                                              "warning")),
    "audit.adopted": (ADMINISTRATION, N_("The audit trail's seals were put in place")),
    "audit.exported": (ADMINISTRATION, N_("%(who)s exported the audit trail")),
    "audit.pruned": (ADMINISTRATION, N_("Old audit events were pruned")),
    "audit.verified": (ADMINISTRATION, N_("%(who)s verified the audit trail")),
    "invitation.accepted": (ADMINISTRATION, N_("An invitation was accepted")),
    "invitation.created": (ADMINISTRATION, N_("%(who)s invited a member")),
    "invitation.refused": (ADMINISTRATION, N_("An invitation link was refused")),
    "invitation.revoked": (ADMINISTRATION, N_("%(who)s cancelled an invitation")),
    "key.created": (ADMINISTRATION, N_("An encryption key was created")),
    "member.disabled": (ADMINISTRATION, N_("%(who)s disabled a member")),
    "member.enabled": (ADMINISTRATION, N_("%(who)s enabled a member again")),
    "member.role_changed": (ADMINISTRATION, N_("%(who)s changed a member's role")),
    "member.sessions_ended": (ADMINISTRATION, N_("%(who)s signed a member out everywhere")),
    "organisation.policy_changed": (ADMINISTRATION, N_("%(who)s changed the organisation's "
                                                       "rules")),
    "setup.completed": (ADMINISTRATION, N_("The organisation was created")),
    "setup.link_issued": (ADMINISTRATION, N_("A setup link was made")),
    "transfer.admin_access": (ADMINISTRATION, N_("%(who)s, administrator, opened a member's "
                                                 "transfer")),
    "user.created": (ADMINISTRATION, N_("An account was created")),
    # -- file reads
    "transfer.downloaded": (READS, N_("%(who)s downloaded %(files)s (%(size)s)")),
    "transfer.owner_downloaded": (READS, N_("%(who)s downloaded deposited files %(files)s "
                                            "(%(size)s)")),
    "transfer.owner_read": (READS, N_("%(who)s read part of deposited files %(files)s")),
    "transfer.owner_read_started": (READS, N_("%(who)s started reading deposited files")),
    "transfer.read": (READS, N_("%(who)s read part of %(files)s")),
    "transfer.read_started": (READS, N_("%(who)s started a download")),
}

#: The kinds of second factor, as sentences say them.
_KINDS = {"totp": N_("authenticator app"), "webauthn": N_("passkey")}


@dataclass
class Names:
    """Who and what the events of one page name: members (id -> name),
    recipients and depositors (id -> address), files (id -> (name, size))."""

    members: Mapping[str, str] = field(default_factory=dict)
    people: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)


def actions_of(category: str) -> list[str]:
    """The action codes a category filter stands for."""
    return sorted(a for a, (c, _s) in SENTENCES.items() if c == category)


def category_of(action: str) -> str | None:
    found = SENTENCES.get(action)
    return found[0] if found else None


def file_ids(event: Mapping[str, Any]) -> list[str]:
    details = event.get("details") or {}
    found = details.get("counted") or details.get("files")
    return [str(f) for f in found] if isinstance(found, list) else []


def person_id(event: Mapping[str, Any]) -> str | None:
    thing = event.get("object") or {}
    if thing.get("type") in ("recipient", "depositor"):
        return str(thing.get("id"))
    return None


def describe(event: Mapping[str, Any], names: Names) -> str:
    """The event as a sentence in the reader's language."""
    action = str(event.get("action", ""))
    found = SENTENCES.get(action)
    if found is None:  # an action from a newer version: say what it is called
        return _("Event %(action)s", action=action)
    details = event.get("details") or {}
    who = _who(event, names)
    ids = file_ids(event)
    files = [names.files[f] for f in ids if f in names.files]
    size = sum(s for _n, s in files) or _number(details.get("bytes") or details.get("size")
                                                or details.get("sent"))
    many = details.get("files") if isinstance(details.get("files"), int) else len(ids)
    count = details.get("remaining", details.get("count"))
    kind = _KINDS.get(str(details.get("kind", "")))
    values = {
        "who": who,
        "files": ", ".join(_("“%(name)s”", name=n) for n, _s in files)
        or ngettext("%(num)d file", "%(num)d files", max(1, int(many or 0))),
        "size": filesize(size) if size else "—",
        "kind": _(kind) if kind else _("second factor"),
        "count": count if count is not None else "—",
    }
    return _(found[1]) % values


def _who(event: Mapping[str, Any], names: Names) -> str:
    actor = event.get("actor")
    if actor:
        return names.members.get(str(actor), _("A former member"))
    person = person_id(event)
    if person and person in names.people:
        return names.people[person]
    if person:
        return _("A recipient")
    thing = event.get("object") or {}
    if thing.get("type") == "user" and str(thing.get("id")) in names.members:
        return names.members[str(thing.get("id"))]
    return _("Someone")


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
