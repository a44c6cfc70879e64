"""Docs that tests keep honest: every setting and every CLI command is in
the README, and the OpenAPI document lists the stable paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffre.cli.main import app as cli_app
from coffre.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    variable = f"COFFRE_{name.upper()}"
    prefix = variable.rsplit("_", 1)[0]
    assert variable in README or f"{prefix}_" in README, f"{variable} missing from README"


def _commands() -> list[str]:
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in
             cli_app.registered_commands]
    names += [g.name or "" for g in cli_app.registered_groups]
    return sorted(n for n in names if n)


@pytest.mark.parametrize("command", _commands())
def test_every_cli_command_is_in_the_readme(command: str) -> None:
    assert f"coffre {command}" in README


def test_openapi_lists_the_stable_paths(tmp_path: Path) -> None:
    from coffre.bootstrap import build
    from coffre.http.app import create_app
    from coffre.notify.memory import MemoryMailer

    coffre = build(Settings(data_dir=tmp_path), mailer=MemoryMailer())
    paths = create_app(coffre, run_jobs=False).openapi()["paths"]
    coffre.close()
    for path in ["/api/v1/transfers", "/api/v1/uploads/", "/api/v1/links/{token}",
                 "/api/v1/auth/token"]:
        assert path in paths
