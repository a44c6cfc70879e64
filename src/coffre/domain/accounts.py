"""Who is acting, with which role and scopes, and what they may do."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from coffre.domain.passwords import is_breached
from coffre.errors import InvalidInput, PermissionDenied


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class Scope(enum.StrEnum):
    """What an API token may do. A browser session holds every scope."""

    TRANSFERS_READ = "transfers:read"
    TRANSFERS_WRITE = "transfers:write"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
# RFC 5321 dot-atom local part and a DNS name: no groups, comments, quotes or
# control characters, so the address stored is the address mailed.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


@dataclass(frozen=True)
class Actor:
    """An authenticated user acting through a session or a token."""

    user_id: str
    organisation_id: str
    role: Role
    scopes: frozenset[Scope] = field(default=ALL_SCOPES)
    #: When the credential it acts through expires (None: never, or a session).
    expires_at: datetime | None = None
    #: Whether this credential was obtained with a second factor.
    mfa: bool = False
    #: Whether the user must use one (administrators; members where the
    #: organisation requires it): until then they may only enrol a factor.
    mfa_required: bool = False
    #: When the user last proved who they are (sessions; for step-up).
    auth_time: datetime | None = None
    #: The browser session acted through, if any.
    session_id: str | None = None
    #: Whether ``auth_time`` is recent enough for sensitive actions (SEC-17).
    stepped_up: bool = False

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this token lacks the '{scope}' scope", scope=str(scope))


def parse_scopes(text: str) -> frozenset[Scope]:
    scopes = set()
    for part in text.replace(",", " ").split():
        try:
            scopes.add(Scope(part))
        except ValueError:
            raise InvalidInput(f"unknown scope '{part}'", allowed=sorted(ALL_SCOPES)) from None
    if not scopes:
        raise InvalidInput("at least one scope is needed", allowed=sorted(ALL_SCOPES))
    return frozenset(scopes)


def normalise_email(email: str) -> str:
    """Lower-cased, trimmed address; ``InvalidInput`` if it is not one."""
    value = email.strip()
    if len(value) > 254 or not _EMAIL.fullmatch(value) or len(value.split("@")[0]) > 64:
        raise InvalidInput("invalid e-mail address", field="email")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}".lower()


def check_password_policy(password: str) -> None:
    """SEC-12: at least 12 characters (with lockout), at most 256, not
    one of the commonly breached passwords shipped with Coffre."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must have at most {MAX_PASSWORD_LENGTH} characters", field="password"
        )
    if len(set(password)) < 4:
        raise InvalidInput("the password is too repetitive", field="password")
    if is_breached(password):
        raise InvalidInput("this password appears in lists of breached passwords: choose another",
                           field="password", reason="breached_password")
