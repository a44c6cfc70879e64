"""The mails Coffre sends: in French only, in words a patient understands,
with links that open pages (never the API).

An organisation may keep subjects and messages out of mails
(``discreet``): a mail then says who sent files, and the subject and
message are read on the link's page, after verification. Never puts a
file's content, a code other than the one it carries, or a token other
than the reader's own in a mail.
"""

from __future__ import annotations

from datetime import datetime

from coffre.domain import times
from coffre.ports import Mail


def _date(value: datetime | None) -> str:
    return times.people(value) if value else "sans limite"


def _one_line(text: str) -> str:
    """A header's text on one line (no header injection through a name)."""
    return " ".join(text.split())


def _until(value: datetime | None) -> str:
    return f"jusqu'au {_date(value)}" if value else "sans date limite"


def files(count: int) -> str:
    """ "1 fichier", "3 fichiers"."""
    return f"{count} fichier" if count == 1 else f"{count} fichiers"


def size(value: int) -> str:
    """A size as the pages show it in French: 850 octets, 1,5 Mo."""
    amount = float(value)
    for unit in ("octets", "Ko", "Mo", "Go"):
        if amount < 1024 or unit == "Go":
            text = f"{amount:.0f} {unit}" if unit == "octets" else f"{amount:.1f} {unit}"
            return text.replace(".", ",")
        amount /= 1024
    return f"{value} octets"  # pragma: no cover - the loop always returns


_IGNORE = "Si vous n'attendiez pas ce message, ignorez-le."
_DISCREET = ("Par discrétion, l'objet et le message de cet envoi ne figurent pas dans cet "
             "e-mail : vous les lirez sur la page du lien.")


def transfer_link(
    *,
    to: str,
    sender: str,
    sender_email: str,
    subject: str,
    message: str,
    link: str,
    expires_at: datetime | None,
    password: bool,
    code: str | None = None,
    discreet: bool = False,
) -> Mail:
    """``code``: how the recipient will get a one-time code ("email", "sms");
    ``discreet``: the subject and message stay out of the mail."""
    who = _one_line(sender)
    neutral = f"Des fichiers vous ont été envoyés par {who}"
    title = neutral if discreet or not subject else _one_line(subject)
    lines = [
        "Bonjour,",
        "",
        f"{sender} ({sender_email}) vous a envoyé des fichiers de façon sécurisée avec Coffre.",
        "",
    ]
    if message and not discreet:
        lines += [f"Message de {sender} :", message, ""]
    lines += [
        "Pour les recevoir, ouvrez votre lien personnel (ne le transférez à personne) :",
        link,
        "",
    ]
    if code:
        by = "par SMS" if code == "sms" else "à cette adresse e-mail"
        lines.append(f"Pour vérifier qu'il s'agit bien de vous, un code à usage unique vous "
                     f"sera envoyé {by} quand vous ouvrirez le lien.")
    if password:
        lines.append("Un mot de passe est aussi nécessaire : l'expéditeur vous le donnera "
                     "(demandez-le-lui).")
    lines.append(f"Les fichiers sont disponibles {_until(expires_at)}.")
    if discreet and (subject or message):
        lines += ["", _DISCREET]
    lines += ["", _IGNORE]
    return Mail(to=to, subject=f"[Coffre] {title}", text="\n".join(lines))


def download_notice(*, to: str, recipient: str, transfer_subject: str, count: int,
                    archive: bool, link: str, discreet: bool = False) -> Mail:
    """The sender asked to be told when a recipient downloads: ``count``
    files, or all of them as one ZIP (``archive``)."""
    what = "tous les fichiers (en une archive ZIP)" if archive else files(count)
    sent = ("de votre envoi" if discreet or not transfer_subject
            else f"de votre envoi « {transfer_subject} »")
    text = "\n".join([
        f"{recipient} a téléchargé {what} {sent}.",
        "",
        "Le détail de l'envoi :",
        link,
    ])
    return Mail(to=to, subject=f"[Coffre] {_one_line(recipient)} a téléchargé vos fichiers",
                text=text)


def security_notice(*, to: str, french: str, english: str = "") -> Mail:
    """A change to the security of someone's account (SEC-14: factor
    changes). ``english`` is no longer sent (mails are French only)."""
    text = "\n".join([
        french,
        "",
        "Si vous n'êtes pas à l'origine de ce changement, prévenez sans attendre "
        "l'administrateur de votre organisation.",
    ])
    return Mail(to=to, subject="[Coffre] Sécurité de votre compte", text=text)


def password_reset(*, to: str, link: str, minutes: int, forced: bool) -> Mail:
    """A single-use link that sets a new password (it never removes the
    second factor, which is still asked at the next sign-in)."""
    why = ("Un administrateur de votre organisation a demandé le renouvellement de votre "
           "mot de passe : l'ancien ne fonctionne plus." if forced else
           "Quelqu'un (vous, sans doute) a demandé à changer le mot de passe de votre compte.")
    text = "\n".join([
        why,
        "",
        "Pour choisir un nouveau mot de passe, ouvrez ce lien personnel (il ne sert qu'une "
        "fois, ne le transférez pas) :",
        link,
        "",
        f"Il est valable {minutes} minutes. Passé ce délai, demandez-en un autre depuis la "
        "page de connexion (« Mot de passe oublié »).",
        "Votre second facteur (application ou clé d'accès) vous sera demandé comme d'habitude.",
        *([] if forced else ["Si vous n'avez rien demandé, ignorez ce message : votre mot de "
                             "passe ne change pas."]),
    ])
    return Mail(to=to, subject="[Coffre] Nouveau mot de passe", text=text)


_ROLE_NAMES = {"admin": "administrateur", "member": "membre"}


def invitation(
    *,
    to: str,
    organisation: str,
    inviter: str,
    inviter_email: str,
    role: str,
    link: str,
    expires_at: datetime,
) -> Mail:
    role_name = _ROLE_NAMES.get(role, role)
    text = "\n".join(
        [
            "Bonjour,",
            "",
            f"{inviter} ({inviter_email}) vous invite à rejoindre « {organisation} » sur "
            f"Coffre, en tant que {role_name}.",
            "",
            "Pour créer votre compte, ouvrez ce lien personnel (il ne sert qu'une fois, "
            "ne le transférez pas) :",
            link,
            "",
            f"Valable {_until(expires_at)}.",
            "Si vous n'attendiez pas cette invitation, ignorez ce message.",
        ]
    )
    return Mail(to=to, subject=f"[Coffre] Invitation à rejoindre {_one_line(organisation)}",
                text=text)


def one_time_code(*, to: str, code: str, purpose: str, minutes: int) -> Mail:
    """A one-time code for a recipient or a depositor, ``purpose`` saying
    what it opens (the code appears only here, never in logs)."""
    text = "\n".join(
        [
            f"Votre code pour {purpose} : {code}",
            "",
            f"Saisissez-le sur la page du lien. Il est valable {minutes} minutes et ne sert "
            "qu'une fois ; ne le communiquez à personne.",
            "Si vous n'avez rien demandé, ignorez ce message.",
        ]
    )
    return Mail(to=to, subject="[Coffre] Votre code de vérification", text=text)


def recipient_code_sms(*, code: str, minutes: int) -> str:
    return f"Coffre : votre code est {code} (valable {minutes} min). Ne le communiquez pas."


def deposit_request(
    *, to: str, requester: str, requester_email: str, message: str, link: str,
    expires_at: datetime, channel: str, discreet: bool = False,
) -> Mail:
    """An invitation to deposit files; ``channel``: how the code will come."""
    by = "par SMS" if channel == "sms" else "à cette adresse e-mail"
    lines = [
        "Bonjour,",
        "",
        f"{requester} ({requester_email}) vous invite à lui transmettre des fichiers de façon "
        "sécurisée avec Coffre.",
        "",
    ]
    if message and not discreet:
        lines += [f"Message de {requester} :", message, ""]
    lines += [
        "Pour déposer vos fichiers, ouvrez votre lien personnel (ne le transférez à personne) :",
        link,
        "",
        f"Vous pouvez déposer {_until(expires_at)}.",
        f"Pour vérifier qu'il s'agit bien de vous, un code à usage unique vous sera envoyé {by}.",
        "Vous ne verrez que vos propres fichiers.",
    ]
    if discreet and message:
        lines += ["", "Par discrétion, le message de cette demande ne figure pas dans cet "
                  "e-mail : vous le lirez sur la page du lien."]
    lines += ["", _IGNORE]
    return Mail(to=to, subject=f"[Coffre] {_one_line(requester)} vous invite à déposer "
                "des fichiers", text="\n".join(lines))


def deposit_received(*, to: str, depositor: str, count: int, total: int, link: str) -> Mail:
    """Files deposited for an upload request; ``link``: the request's page."""
    text = "\n".join(
        [
            f"{depositor} vous a déposé {files(count)} ({size(total)}).",
            "",
            f"Retrouvez-{'le' if count == 1 else 'les'} sur la page de votre demande de dépôt :",
            link,
        ]
    )
    return Mail(to=to, subject="[Coffre] Des fichiers vous ont été déposés", text=text)


def backup_stale(*, to: str, device: str, days: int, last: datetime | None,
                 link: str | None = None) -> Mail:
    """A backup repository with no snapshot for ``days`` days."""
    since = f"depuis le {_date(last)}" if last else "depuis son enregistrement"
    text = "\n".join([
        f"Aucune sauvegarde de « {device} » n'a été reçue {since} "
        f"(plus de {days} jours).",
        "",
        "Vérifiez que la tâche de sauvegarde (restic) tourne sur cet appareil, "
        "et qu'il peut joindre Coffre.",
        *(["", "Vos sauvegardes :", link] if link else []),
    ])
    return Mail(to=to, subject=f"[Coffre] Pas de sauvegarde depuis {days} jours : "
                f"{_one_line(device)}", text=text)
