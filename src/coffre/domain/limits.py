"""Retention and limits: what an organisation's policy allows, within what
the instance allows. Pure functions over plain values.

An organisation can only tighten the instance's sizes, expiry and recipient
count; quotas default to the instance's (unlimited unless configured) and
are the organisation's to set. ``None`` always means "no limit of its own".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from coffre.errors import InvalidInput, PermissionDenied, QuotaExceeded, TooLarge

TEMPORARY, PERMANENT = "temporary", "permanent"
MODES = (TEMPORARY, PERMANENT)
#: The hard ceiling on recipients of one transfer, whatever the settings say.
RECIPIENTS_CEILING = 1000
#: Days without a backup before an alert, unless configured, and at most.
DEFAULT_BACKUP_ALERT_DAYS = 7
MAX_BACKUP_ALERT_DAYS = 365
#: The largest size or quota accepted anywhere (4 EiB): far above any disk,
#: and below the 2^63 - 1 a database BIGINT holds, so sums stay exact.
MAX_BYTES = 1 << 62
#: The largest integer a database column holds (BIGINT): event ids and
#: sequence numbers a client sends are bounded by it.
MAX_DATABASE_INT = 2**63 - 1
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class InstanceLimits:
    """What the operator configured (settings)."""

    max_file_size: int
    default_expiry_days: int
    max_expiry_days: int
    max_recipients: int
    user_quota: int | None = None
    organisation_quota: int | None = None
    #: Backups (restic): bytes of all the organisation's repositories, and
    #: days without a snapshot before a device is flagged and its owner mailed.
    backup_quota: int | None = None
    backup_alert_days: int = DEFAULT_BACKUP_ALERT_DAYS


@dataclass(frozen=True)
class OrganisationPolicy:
    """What an organisation's administrators chose (``None``: instance's)."""

    default_expiry_days: int | None = None
    max_expiry_days: int | None = None
    allow_permanent: bool = True
    max_file_size: int | None = None
    max_transfer_size: int | None = None
    max_recipients: int | None = None
    recipient_domains_allowed: tuple[str, ...] = ()
    recipient_domains_denied: tuple[str, ...] = ()
    user_quota: int | None = None
    organisation_quota: int | None = None
    backup_quota: int | None = None
    backup_alert_days: int | None = None


@dataclass(frozen=True)
class Limits:
    """The limits in force for one organisation."""

    default_expiry: timedelta
    max_expiry: timedelta
    allow_permanent: bool
    max_file_size: int
    max_transfer_size: int | None
    max_recipients: int
    recipient_domains_allowed: tuple[str, ...]
    recipient_domains_denied: tuple[str, ...]
    user_quota: int | None
    organisation_quota: int | None
    backup_quota: int | None = None
    backup_alert_days: int = DEFAULT_BACKUP_ALERT_DAYS


def _tightest(instance: int, organisation: int | None) -> int:
    return instance if organisation is None else min(instance, organisation)


def effective(instance: InstanceLimits, policy: OrganisationPolicy) -> Limits:
    max_days = _tightest(instance.max_expiry_days, policy.max_expiry_days)
    default_days = min(policy.default_expiry_days or instance.default_expiry_days, max_days)
    return Limits(
        default_expiry=timedelta(days=default_days),
        max_expiry=timedelta(days=max_days),
        allow_permanent=policy.allow_permanent,
        max_file_size=_tightest(instance.max_file_size, policy.max_file_size),
        max_transfer_size=policy.max_transfer_size,
        max_recipients=_tightest(min(instance.max_recipients, RECIPIENTS_CEILING),
                                 policy.max_recipients),
        recipient_domains_allowed=policy.recipient_domains_allowed,
        recipient_domains_denied=policy.recipient_domains_denied,
        user_quota=policy.user_quota if policy.user_quota is not None else instance.user_quota,
        organisation_quota=policy.organisation_quota
        if policy.organisation_quota is not None else instance.organisation_quota,
        backup_quota=policy.backup_quota
        if policy.backup_quota is not None else instance.backup_quota,
        backup_alert_days=policy.backup_alert_days or instance.backup_alert_days,
    )


def check_policy(instance: InstanceLimits, policy: OrganisationPolicy) -> None:
    """An organisation's policy stays within the instance's (400 otherwise)."""

    def positive(name: str, value: int | None, ceiling: int | None = None) -> None:
        if value is None:
            return
        if value < 1:
            raise InvalidInput(f"{name} must be positive", field=name)
        if ceiling is not None and value > ceiling:
            raise InvalidInput(f"{name} cannot exceed the instance's limit ({ceiling})",
                               field=name, maximum=ceiling)
        if value > MAX_BYTES:
            raise InvalidInput(f"{name} is at most {MAX_BYTES}", field=name, maximum=MAX_BYTES)

    positive("max_expiry_days", policy.max_expiry_days, instance.max_expiry_days)
    positive("default_expiry_days", policy.default_expiry_days,
             policy.max_expiry_days or instance.max_expiry_days)
    positive("max_file_size", policy.max_file_size, instance.max_file_size)
    positive("max_transfer_size", policy.max_transfer_size)
    positive("max_recipients", policy.max_recipients,
             min(instance.max_recipients, RECIPIENTS_CEILING))
    positive("user_quota", policy.user_quota)
    positive("organisation_quota", policy.organisation_quota)
    positive("backup_quota", policy.backup_quota)
    positive("backup_alert_days", policy.backup_alert_days, MAX_BACKUP_ALERT_DAYS)
    overlap = set(policy.recipient_domains_allowed) & set(policy.recipient_domains_denied)
    if overlap:
        raise InvalidInput("a domain cannot be both allowed and denied",
                           field="recipient_domains_denied", domains=sorted(overlap))


def parse_domains(values: Iterable[str], field: str) -> tuple[str, ...]:
    """Normalise a list of mail domains (lower case, no ``@``, IDNA)."""
    found: dict[str, None] = {}
    for raw in values:
        value = raw.strip().lower().lstrip("@").rstrip(".")
        if not value:
            continue
        try:
            value = value.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(f"'{raw}' is not a mail domain", field=field) from None
        if not _DOMAIN.match(value):
            raise InvalidInput(f"'{raw}' is not a mail domain", field=field)
        found.setdefault(value, None)
    if len(found) > 500:
        raise InvalidInput("at most 500 domains", field=field)
    return tuple(found)


def _domain_of(email: str) -> str:
    domain = email.rsplit("@", 1)[-1].lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _matches(domain: str, entries: tuple[str, ...]) -> bool:
    """``chu-exemple.fr`` also covers ``imagerie.chu-exemple.fr``."""
    return any(domain == e or domain.endswith("." + e) for e in entries)


def check_recipients(emails: list[str], limits: Limits) -> None:
    """SEC-33: the recipient count and domain lists (403 when refused)."""
    if len(emails) > limits.max_recipients:
        raise PermissionDenied(
            f"at most {limits.max_recipients} recipients per transfer in your organisation",
            reason="too_many_recipients", maximum=limits.max_recipients, given=len(emails),
        )
    denied = sorted({d for d in map(_domain_of, emails)
                     if _matches(d, limits.recipient_domains_denied)})
    if denied:
        raise PermissionDenied(
            "your organisation does not allow sending to these domains: " + ", ".join(denied),
            reason="recipient_domain_denied", domains=denied,
        )
    if limits.recipient_domains_allowed:
        outside = sorted({d for d in map(_domain_of, emails)
                          if not _matches(d, limits.recipient_domains_allowed)})
        if outside:
            raise PermissionDenied(
                "your organisation only allows sending to its listed domains; "
                "not allowed: " + ", ".join(outside),
                reason="recipient_domain_not_allowed", domains=outside,
            )


def resolve_expiry(requested: timedelta | None, *, permanent: bool,
                   limits: Limits) -> timedelta | None:
    """The lifetime of a transfer: ``None`` for permanent storage.

    ``requested`` None with ``permanent`` False means the organisation's
    default. Permanent storage needs the organisation's permission (403);
    an expiry outside 1 hour..maximum is bad input (400).
    """
    if permanent:
        if not limits.allow_permanent:
            raise PermissionDenied(
                "your organisation does not allow permanent storage; choose an expiry",
                reason="permanent_not_allowed",
            )
        return None
    expires_in = limits.default_expiry if requested is None else requested
    if not timedelta(hours=1) <= expires_in <= limits.max_expiry:
        raise InvalidInput(
            f"expiry must be between 1 hour and {limits.max_expiry.days} days",
            field="expires_in",
        )
    return expires_in


def check_file_size(size: int, limits: Limits) -> None:
    if size > limits.max_file_size:
        raise TooLarge(
            f"the file is larger than the {limits.max_file_size} bytes allowed",
            max_size=limits.max_file_size,
        )


def check_transfer_size(total: int, limits: Limits) -> None:
    if limits.max_transfer_size is not None and total > limits.max_transfer_size:
        raise TooLarge(
            f"the transfer is larger than the {limits.max_transfer_size} bytes "
            "your organisation allows",
            max_transfer_size=limits.max_transfer_size, size=total,
        )


@dataclass(frozen=True)
class Usage:
    """Bytes counted against a quota: live files plus uploads in progress."""

    used: int
    limit: int | None

    @property
    def free(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


def check_quota(needed: int, user: Usage, organisation: Usage) -> None:
    """413 when ``needed`` more bytes do not fit the user's or the
    organisation's quota; the details say which, with used/limit/needed."""
    for scope, usage, french in (("user", user, "votre quota"),
                                 ("organisation", organisation, "le quota de l'organisation")):
        if usage.limit is not None and usage.used + needed > usage.limit:
            raise QuotaExceeded(
                f"quota exceeded: {needed} more bytes do not fit in {scope} quota "
                f"({usage.used} of {usage.limit} bytes used) — "
                f"quota dépassé : le fichier ne tient pas dans {french}",
                quota={"scope": scope, "used": usage.used, "limit": usage.limit,
                       "needed": needed},
            )


def mode_of(expires_at: datetime | None) -> str:
    return TEMPORARY if expires_at is not None else PERMANENT


def lowers_expiry(current: datetime | None, new: datetime | None) -> bool:
    """Whether a new expiry (None = permanent) comes before the current one."""
    if current is None:
        return new is not None
    return new is not None and new < current
