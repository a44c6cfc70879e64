"""Administration pages: members and their roles, invitations, the
organisation's policy and its storage usage (the audit viewer is in
``audit_pages``).

For administrators only: each page declares the action its API
counterpart does (``guard.page``), so a member gets the same refusal (403)
as from the API. Thin: parse the form, call ``OrganisationService`` or
``Quotas`` (which authorise and record the audit events), render. After a
change the browser is sent back to the page (303) with a notice key in
the query string, never with an address or a token.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import Depends, Query, Request, Response

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor, Role
from coffre.domain.policy import Action
from coffre.errors import CoffreError, Conflict, InvalidInput
from coffre.http import deps
from coffre.http.web import guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _, pick
from coffre.http.web.templating import page_router, render
from coffre.services.organisations import LIMIT_FIELDS

router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
Lister = Annotated[Actor, Depends(guard.page(Action.MEMBER_LIST))]
Inviter = Annotated[Actor, Depends(guard.page(Action.MEMBER_INVITE))]
Manager = Annotated[Actor, Depends(guard.page(Action.MEMBER_MANAGE))]
PolicyManager = Annotated[Actor, Depends(guard.page(Action.ORGANISATION_MANAGE))]
MB, GB = 1024**2, 1024**3
#: Policy fields shown as numbers: (field, label, unit in bytes or 1, unit's name).
NUMBERS = (
    ("default_expiry_days", N_("Default expiry (days)"), 1),
    ("max_expiry_days", N_("Longest expiry (days)"), 1),
    ("max_file_size", N_("Largest file (MB)"), MB),
    ("max_transfer_size", N_("Largest transfer (MB)"), MB),
    ("max_recipients", N_("Most recipients per transfer"), 1),
    ("user_quota", N_("Storage quota per member (GB)"), GB),
    ("organisation_quota", N_("Storage quota of the organisation (GB)"), GB),
    ("backup_quota", N_("Backup quota of the organisation (GB)"), GB),
    ("backup_alert_days", N_("Alert after this many days without a backup"), 1),
)
SWITCHES = (
    ("require_mfa", N_("Every member must use a second factor (TOTP or passkey)")),
    ("allow_unverified_recipients",
     N_("Transfers may skip the recipient's one-time code")),
    ("block_executables",
     N_("Refuse programs and scripts (.exe, .msi, .bat, .js, .sh...); medical formats, "
        "documents, images and archives are accepted")),
    ("allow_permanent", N_("Members may keep transfers permanently (no expiry)")),
    ("discreet_mail",
     N_("Keep subjects and messages out of mails: mails only say who sent files; the "
        "recipient reads the subject and message on the link's page, after verification")),
)
DOMAINS = (
    ("recipient_domains_allowed", N_("Only these recipient domains (one per line)")),
    ("recipient_domains_denied", N_("Never these recipient domains (one per line)")),
)
_DONE = {
    "invited": N_("Invitation sent."),
    "revoked": N_("Invitation revoked."),
    "role": N_("Role changed."),
    "disabled": N_("Member disabled: their sessions were ended and their API tokens revoked."),
    "enabled": N_("Member enabled."),
    "sessions": N_("The member's sessions were ended."),
    "password_reset": N_("Password reset: the member's password no longer works, their "
                         "sessions and API tokens have ended, and they were mailed a link to "
                         "choose a new one."),
    "reset_refused": N_("This member's password cannot be reset here (your own account, or "
                        "a disabled member)."),
    "policy": N_("Policy saved."),
}
ROLES = (("member", N_("Member")), ("admin", N_("Administrator")))


def tabs(here: str) -> list[tuple[str, str, bool]]:
    pages = (("/admin", N_("Members")), ("/admin/policy", N_("Policy")),
             ("/admin/usage", N_("Storage")), ("/admin/audit", N_("Audit trail")))
    return [(url, _(label), url == here) for url, label in pages]


def _roles() -> list[tuple[str, str]]:
    return [(value, _(label)) for value, label in ROLES]


# -- members and invitations --------------------------------------------------------


def _members_page(request: Request, actor: Actor, *, notice: str | None = None,
                  error: str | tuple[str, str] | None = None,
                  invite: dict[str, str] | None = None,
                  status: int = 200) -> Response:
    service = deps.coffre(request).organisations
    return render(request, "admin/members.html", {
        "tabs": tabs("/admin"), "members": service.members(actor),
        "invitations": service.pending_invitations(actor), "roles": _roles(),
        "role_names": dict(_roles()), "notice": notice, "error": error,
        "invite": invite or {"email": "", "role": "member"},
    }, status=status, actor=actor)


@router.get("/admin")
def members(request: Request, actor: Lister,
            done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _members_page(request, actor, notice=pick(_DONE, done))


def _invite_error(exc: CoffreError) -> tuple[str, str]:
    """The message, next to the invitation's address field."""
    if isinstance(exc, Conflict) and "pending" in str(exc):
        return "email", _("An invitation is already pending for this address: revoke it first.")
    if isinstance(exc, Conflict):
        return "email", _("Someone already has an account with this address.")
    return "email", _("Enter a valid e-mail address.")


@router.post("/admin/invitations")
async def invite(request: Request, actor: Inviter, ctx: Ctx) -> Response:
    form = await small_form(request, 4)
    values = {"email": str(form.get("email", ""))[:254],
              "role": str(form.get("role", "member"))[:20]}
    return await to_thread.run_sync(_invite, request, actor, ctx, values)


def _invite(request: Request, actor: Actor, ctx: Context, values: dict[str, str]) -> Response:
    try:
        deps.coffre(request).organisations.invite(actor, values["email"], values["role"], ctx)
    except (InvalidInput, Conflict) as exc:
        return _members_page(request, actor, error=_invite_error(exc), invite=values,
                             status=409 if isinstance(exc, Conflict) else 400)
    return guard.redirect(request, "/admin?done=invited")


@router.post("/admin/invitations/{invitation_id}/revoke")
def revoke(invitation_id: str, request: Request, actor: Inviter, ctx: Ctx) -> Response:
    deps.coffre(request).organisations.revoke_invitation(actor, invitation_id, ctx)
    return guard.redirect(request, "/admin?done=revoked")


@router.post("/admin/members/{member_id}")
async def update_member(member_id: str, request: Request, actor: Manager, ctx: Ctx) -> Response:
    """One change per form: a new role, or disable, or enable."""
    form = await small_form(request, 4)
    change, role = str(form.get("change", "")), str(form.get("role", ""))[:20]
    return await to_thread.run_sync(_update_member, request, actor, ctx, member_id, change,
                                    role)


def _update_member(request: Request, actor: Actor, ctx: Context, member_id: str, change: str,
                   role: str) -> Response:
    service = deps.coffre(request).organisations
    try:
        if change == "role":
            service.update_member(actor, member_id, ctx, role=role)
        elif change in {"disable", "enable"}:
            service.update_member(actor, member_id, ctx, disabled=change == "disable")
        else:
            raise InvalidInput("unknown change", field="change")
    except Conflict as exc:
        message = (_("The organisation needs at least one enabled administrator.")
                   if exc.details.get("reason") == "last_administrator"
                   else _("You cannot disable your own account."))
        return _members_page(request, actor, error=message, status=409)
    done = {"role": "role", "disable": "disabled", "enable": "enabled"}[change]
    return guard.redirect(request, f"/admin?done={done}")


@router.post("/admin/members/{member_id}/sessions")
def end_sessions(member_id: str, request: Request, actor: Manager, ctx: Ctx) -> Response:
    deps.coffre(request).organisations.end_sessions(actor, member_id, ctx)
    return guard.redirect(request, "/admin?done=sessions")


# -- policy ------------------------------------------------------------------------


def _shown(value: Any, unit: int) -> str:
    """A policy number as the form shows it (in MB or GB for sizes)."""
    if value is None:
        return ""
    if unit == 1 or value % unit == 0:
        return str(value // unit)
    return f"{value / unit:.2f}".rstrip("0").rstrip(".")


def _policy_page(request: Request, actor: Actor, *, notice: str | None = None,
                 error: tuple[str, str] | None = None, values: dict[str, Any] | None = None,
                 status: int = 200) -> Response:
    info = deps.coffre(request).organisations.organisation(actor)
    if values is None:
        values = {"name": info.name, "require_mfa": info.require_mfa,
                  "allow_unverified_recipients": info.allow_unverified_recipients,
                  "block_executables": info.block_executables,
                  "discreet_mail": info.discreet_mail,
                  "allow_permanent": info.policy["allow_permanent"]}
        values |= {name: _shown(info.policy[name], unit) for name, _l, unit in NUMBERS}
        values |= {name: "\n".join(info.policy[name]) for name, _l in DOMAINS}
    return render(request, "admin/policy.html", {
        "tabs": tabs("/admin/policy"), "info": info, "values": values, "notice": notice,
        "error": error, "numbers": [(n, _(label), unit) for n, label, unit in NUMBERS],
        "switches": [(n, _(label)) for n, label in SWITCHES],
        "domains": [(n, _(label)) for n, label in DOMAINS],
    }, status=status, actor=actor)


@router.get("/admin/policy")
def policy(request: Request, actor: PolicyManager,
           done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _policy_page(request, actor, notice=pick(_DONE, done))


def _number(name: str, text: str, unit: int) -> int | None:
    """An empty field restores the instance's value (None)."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        number = float(text) if unit > 1 else int(text)
    except ValueError:
        raise InvalidInput("not a number", field=name) from None
    if not 0 <= number < 2**53:
        raise InvalidInput("out of range", field=name)
    return round(number * unit)


def _policy_error(exc: InvalidInput, unit: int) -> tuple[str, str]:
    field = str(exc.details.get("field") or "")
    if field in {name for name, _l in DOMAINS}:
        return field, _("Enter mail domains such as hopital.fr, one per line; a domain cannot "
                        "be both allowed and denied.")
    if field == "name":
        return field, _("The organisation needs a name.")
    maximum = exc.details.get("maximum")
    if isinstance(maximum, int):
        return field, _("At most %(maximum)s (the instance's limit).",
                        maximum=_shown(maximum, unit))
    return field, _("Enter a positive number, or leave the field empty for the instance's "
                    "value.")


@router.post("/admin/policy")
async def save_policy(request: Request, actor: PolicyManager, ctx: Ctx) -> Response:
    form = await small_form(request, 20)
    values: dict[str, Any] = {"name": str(form.get("name", ""))[:200]}
    values |= {name: bool(form.get(name)) for name, _l in SWITCHES}
    values |= {name: str(form.get(name, ""))[:30] for name, _l, _u in NUMBERS}
    values |= {name: str(form.get(name, ""))[:20_000] for name, _l in DOMAINS}
    return await to_thread.run_sync(_save_policy, request, actor, ctx, values)


def _save_policy(request: Request, actor: Actor, ctx: Context,
                 values: dict[str, Any]) -> Response:
    units = {name: unit for name, _l, unit in NUMBERS}
    try:
        limits: dict[str, Any] = {name: _number(name, values[name], unit)
                                  for name, _l, unit in NUMBERS}
        limits["allow_permanent"] = values["allow_permanent"]
        limits |= {name: values[name].split() for name, _l in DOMAINS}
        assert set(limits) == set(LIMIT_FIELDS)
        deps.coffre(request).organisations.update_organisation(
            actor, ctx, name=values["name"], require_mfa=values["require_mfa"],
            allow_unverified_recipients=values["allow_unverified_recipients"],
            block_executables=values["block_executables"],
            discreet_mail=values["discreet_mail"], limits=limits)
    except InvalidInput as exc:
        unit = units.get(str(exc.details.get("field")), 1)
        return _policy_page(request, actor, error=_policy_error(exc, unit), values=values,
                            status=400)
    return guard.redirect(request, "/admin/policy?done=policy")


# -- usage -------------------------------------------------------------------------


@router.get("/admin/usage")
def usage(request: Request, actor: Lister) -> Response:
    app = deps.coffre(request)
    report = app.quotas.report(actor)
    scheme = urlsplit(app.settings.resolved_storage_url).scheme
    location = {"file": N_("a directory on this server"),
                "s3": N_("an S3 object store"), "memory": N_("memory (tests only)")}.get(scheme)
    return render(request, "admin/usage.html", {
        "tabs": tabs("/admin/usage"), "report": report,
        "location": _(location) if location else scheme,
        "role_admin": Role.ADMIN,
    }, actor=actor)
