"""Entry point of the ``coffre`` command."""

from __future__ import annotations

import os

import typer

from coffre.cli import (
    audit,
    auth,
    backup,
    contacts,
    deposit,
    get,
    members,
    requests,
    send,
    server,
    storage,
    transfers,
)
from coffre.cli.usage import usage
from coffre.domain import times

app = typer.Typer(
    name="coffre",
    help="Coffre: send health data safely. Client commands use COFFRE_URL and COFFRE_TOKEN.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(server.serve)
app.command()(server.setup)
app.command()(server.purge)
app.command()(auth.login)
app.command()(auth.logout)
app.add_typer(auth.token_app, name="token")
app.command()(send.send)
app.add_typer(transfers.app, name="transfers")
app.command()(get.get)
app.add_typer(audit.app, name="audit")
app.add_typer(members.app, name="members")
app.add_typer(members.organisation_app, name="organisation")
app.add_typer(contacts.app, name="contacts")
app.command()(usage)
app.add_typer(requests.app, name="request")
app.command()(deposit.deposit)
app.add_typer(backup.app, name="backup")
app.add_typer(storage.app, name="storage")


def main() -> None:
    try:
        times.use_zone(os.environ.get("COFFRE_TIMEZONE") or times.DEFAULT_ZONE)
    except ValueError as error:
        raise SystemExit(f"COFFRE_TIMEZONE: {error}") from error
    app()


if __name__ == "__main__":
    main()
