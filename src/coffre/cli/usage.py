"""``coffre usage``: storage used against the quotas (the caller's, and the
organisation's with each member's for administrators)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress_bar import ProgressBar
from rich.table import Table

from coffre.cli.client import api, check, out, print_json

JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
_UNITS = ("octets", "Kio", "Mio", "Gio", "Tio")


def human(size: int | None) -> str:
    if size is None:
        return "illimité"
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "octets" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def _row(table: Table, label: str, usage: dict[str, Any]) -> None:
    limit = usage["limit"]
    bar: Any = "—"
    if limit:
        bar = ProgressBar(total=limit, completed=min(usage["used"], limit), width=30)
    share = f"{100 * usage['used'] / limit:.0f} %" if limit else "—"
    table.add_row(label, human(usage["used"]), human(limit), share, bar)


def usage(as_json: JSON = False) -> None:
    """Storage used and quotas (yours; your organisation's if administrator)."""
    with api() as client:
        report = check(client.get("/api/v1/usage"))
    if as_json:
        print_json(report)
        return
    table = Table("espace", "utilisé", "quota", "part", "", title="Stockage utilisé")
    _row(table, "vous", report["user"])
    if report.get("organisation"):
        _row(table, "organisation", report["organisation"])
    out.print(table)
    if report.get("members"):
        members = Table("membre", "utilisé", title="Par membre")
        for m in sorted(report["members"], key=lambda m: -m["used"]):
            members.add_row(m["email"], human(m["used"]))
        out.print(members)
