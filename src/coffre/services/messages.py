"""The mails Coffre sends, in French first with an English summary."""

from __future__ import annotations

from datetime import datetime

from coffre.ports import Mail


def _date(value: datetime | None) -> str:
    return value.strftime("%d/%m/%Y %H:%M UTC") if value else "sans limite / no limit"


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
) -> Mail:
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
