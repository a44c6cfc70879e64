"""The mails Coffre sends, in French first with an English summary."""

from __future__ import annotations

from datetime import datetime

from coffre.domain import times
from coffre.ports import Mail


def _date(value: datetime | None) -> str:
    return times.people(value) if value else "sans limite"


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
) -> Mail:
    """``code``: how the recipient will get a one-time code ("email", "sms")."""
    title = subject or "Des fichiers vous ont été envoyés"
    lines = [
        f"{sender} <{sender_email}> vous a envoyé des fichiers avec Coffre.",
        "",
    ]
    if message:
        lines += ["Message :", message, ""]
    lines += [
        "Votre lien personnel (ne le transférez pas) :",
        link,
        "",
        f"Disponible jusqu'au : {_date(expires_at)}",
    ]
    if code:
        by = "par SMS" if code == "sms" else "à cette adresse"
        lines.append(f"Pour ouvrir ce lien, un code à usage unique vous sera envoyé {by}.")
    if password:
        lines.append("Un mot de passe est nécessaire : demandez-le à l'expéditeur.")
    lines += [
        "",
        "--",
        f"{sender} sent you files with Coffre. Your personal link: {link}",
    ]
    return Mail(to=to, subject=f"[Coffre] {title}", text="\n".join(lines))


def download_notice(*, to: str, recipient: str, transfer_subject: str, what: str) -> Mail:
    subject = transfer_subject or "votre envoi"
    text = "\n".join(
        [
            f"{recipient} a téléchargé {what} ({subject}).",
            "",
            "--",
            f"{recipient} downloaded {what}.",
        ]
    )
    return Mail(to=to, subject=f"[Coffre] Téléchargement par {recipient}", text=text)


def security_notice(*, to: str, french: str, english: str) -> Mail:
    """A change to the security of someone's account (SEC-14: factor changes)."""
    text = "\n".join([
        french,
        "",
        "Si vous n'êtes pas à l'origine de ce changement, prévenez sans attendre "
        "l'administrateur de votre organisation.",
        "",
        "--",
        english,
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
        "",
        "--",
        ("An administrator asked for your password to be renewed. " if forced else
         "A password reset was asked for your account. ")
        + f"Single-use link, valid {minutes} minutes: {link}",
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
            f"{inviter} <{inviter_email}> vous invite à rejoindre « {organisation} » sur Coffre,",
            f"en tant que {role_name}.",
            "",
            "Pour créer votre compte, ouvrez ce lien personnel (il ne sert qu'une fois,",
            "ne le transférez pas) :",
            link,
            "",
            f"Valable jusqu'au : {_date(expires_at)}",
            "Si vous n'attendiez pas cette invitation, ignorez ce message.",
            "",
            "--",
            f"{inviter} invites you to join {organisation} on Coffre. "
            f"Your one-time link: {link}",
        ]
    )
    one_line = " ".join(organisation.split())  # no header injection through the name
    return Mail(to=to, subject=f"[Coffre] Invitation à rejoindre {one_line}", text=text)


def one_time_code(*, to: str, code: str, purpose: str, minutes: int) -> Mail:
    """A one-time code for a recipient or a depositor, ``purpose`` saying
    what it opens (the code appears only here, never in logs)."""
    text = "\n".join(
        [
            f"Votre code pour {purpose} : {code}",
            "",
            f"Il est valable {minutes} minutes et ne sert qu'une fois.",
            "Si vous n'avez rien demandé, ignorez ce message.",
            "",
            "--",
            f"Your one-time code: {code} (valid {minutes} minutes).",
        ]
    )
    return Mail(to=to, subject="[Coffre] Votre code de vérification", text=text)


def recipient_code_sms(*, code: str, minutes: int) -> str:
    return f"Coffre : votre code est {code} (valable {minutes} min). Ne le communiquez pas."


def deposit_request(
    *, to: str, requester: str, requester_email: str, message: str, link: str,
    expires_at: datetime, channel: str,
) -> Mail:
    """An invitation to deposit files; ``channel``: how the code will come."""
    by = "par SMS" if channel == "sms" else "à cette adresse"
    lines = [
        f"{requester} <{requester_email}> vous invite à lui déposer des fichiers avec Coffre.",
        "",
    ]
    if message:
        lines += ["Message :", message, ""]
    lines += [
        "Votre lien personnel de dépôt (ne le transférez pas) :",
        link,
        "",
        f"Disponible jusqu'au : {_date(expires_at)}",
        f"Pour déposer, un code à usage unique vous sera envoyé {by}.",
        "Vous ne verrez que vos propres fichiers.",
        "",
        "--",
        f"{requester} asks you to deposit files with Coffre. Your personal link: {link}",
    ]
    return Mail(to=to, subject="[Coffre] Invitation à déposer des fichiers",
                text="\n".join(lines))


def deposit_received(*, to: str, depositor: str, files: int, size: int, link: str) -> Mail:
    text = "\n".join(
        [
            f"{depositor} vous a déposé {files} fichier(s) ({size} octets).",
            "Retrouvez-les dans vos envois reçus :",
            link,
            "",
            "--",
            f"{depositor} deposited {files} file(s) for you.",
        ]
    )
    return Mail(to=to, subject="[Coffre] Des fichiers vous ont été déposés", text=text)


def backup_stale(*, to: str, device: str, days: int, last: datetime | None) -> Mail:
    """A backup repository with no snapshot for ``days`` days."""
    since = f"depuis le {_date(last)}" if last else "depuis son enregistrement"
    text = "\n".join([
        f"Aucune sauvegarde de « {device} » n'a été reçue {since} "
        f"(plus de {days} jours).",
        "",
        "Vérifiez que la tâche de sauvegarde (restic) tourne sur cet appareil, "
        "et qu'il peut joindre Coffre.",
        "",
        "--",
        f"No backup of \"{device}\" has reached Coffre for more than {days} days.",
    ])
    return Mail(to=to, subject=f"[Coffre] Pas de sauvegarde depuis {days} jours : {device}",
                text=text)
