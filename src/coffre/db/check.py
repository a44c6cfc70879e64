"""``python -m coffre.db.check``: migrations and models must not drift
(``alembic check`` on a fresh database migrated to head)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from coffre.db.migrate import alembic_config, upgrade


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'check.db'}"
        upgrade(url)
        command.check(alembic_config(url))
        print("alembic check: models and migrations agree")


if __name__ == "__main__":
    main()
