"""Every action code the audit trail records (``trail.record``), in one
place: the audit view gives each a sentence and a category
(``http/web/audit_sentences``), and ``tests/unit/test_audit_actions.py``
fails when the code records an action missing here, or when one here has
no sentence. Add a new action here with the code that records it.
"""

from __future__ import annotations

ACTIONS = frozenset({
    "access.busy", "access.denied", "access.refusals", "access.throttled",
    "access.unauthenticated",
    "audit.acknowledged", "audit.adopted", "audit.exported", "audit.pruned",
    "audit.verified",
    "backup.access_denied", "backup.body_dropped", "backup.delete_refused",
    "backup.device_registered", "backup.device_revoked",
    "backup.maintenance_key_issued", "backup.maintenance_used", "backup.object_deleted",
    "backup.repository_initialised", "backup.session", "backup.snapshot_written",
    "backup.stale_alerted",
    "contact.created", "contact.deleted", "contact.updated",
    "contacts.exported", "contacts.imported",
    "deposit.completed", "deposit.rate_limited",
    "depositor.code_failed", "depositor.code_sent", "depositor.code_verified",
    "depositor.locked",
    "factor.added", "factor.assertion_rejected", "factor.code_reused",
    "factor.enrolment_failed", "factor.recovery_code_used",
    "factor.recovery_codes_generated", "factor.removed", "factor.replay_rejected",
    "invitation.accepted", "invitation.created", "invitation.refused",
    "invitation.revoked",
    "key.created",
    "link.code_failed", "link.code_not_sent", "link.code_sent", "link.code_verified",
    "link.locked", "link.opened", "link.password_failed", "link.password_locked",
    "link.unknown", "link.unlocked",
    "login.account_slowed", "login.failed", "login.second_factor",
    "login.second_factor_failed", "login.succeeded",
    "mail.failed", "mail.sent",
    "member.disabled", "member.enabled", "member.role_changed", "member.sessions_ended",
    "organisation.policy_changed",
    "password.changed", "password.check.failed", "password.check.succeeded",
    "password.reset_expired", "password.reset_forced", "password.reset_invalid",
    "password.reset_mailed", "password.reset_requested", "password.reset_suppressed",
    "password.reset_used",
    "reauth.completed", "reauth.failed", "reauth.resumed",
    "reauth.second_factor_failed", "reauth.succeeded",
    "request.admin_access", "request.closed", "request.created",
    "request.depositor_joined", "request.depositor_rejoined",
    "session.ended", "session.expired", "session.started",
    "setup.completed", "setup.link_issued", "setup.reused", "setup.unknown",
    "storage.swept",
    "token.created", "token.revoked",
    "transfer.admin_access", "transfer.created", "transfer.deleted",
    "transfer.downloaded", "transfer.extended", "transfer.forwarded",
    "transfer.hold_placed", "transfer.hold_released", "transfer.owner_downloaded",
    "transfer.owner_read", "transfer.owner_read_started", "transfer.purge_skipped",
    "transfer.purged", "transfer.read", "transfer.read_started", "transfer.revoked",
    "upload.completed", "upload.created", "upload.expired", "upload.quota_exceeded",
    "upload.refused", "upload.rekeyed", "upload.terminated",
    "user.created",
})
