"""Every route of the application with the policy it declares
(``deps.acting``/``guard.page`` action, or ``deps.public`` reason), for the
generated authorisation tests of the API and of the pages."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coffre.bootstrap import build
from coffre.http import deps
from coffre.http.app import create_app
from coffre.notify.memory import MemoryMailer
from coffre.settings import Settings


def declared_routes() -> list[tuple[str, str, str | None]]:
    """(method, path, declared policy or None) of every route."""
    with tempfile.TemporaryDirectory() as tmp:
        coffre = build(Settings(data_dir=Path(tmp)), mailer=MemoryMailer())
        try:
            app = create_app(coffre, run_jobs=False)
            found = []
            for route in _flatten(app.routes):
                dependant = getattr(route, "dependant", None)
                if dependant is None:  # mounts (static files)
                    continue
                declared = _declared(dependant)
                for method in sorted(route.methods):
                    found.append((method, route.path,
                                  declared[0] if len(declared) == 1 else None))
            return found
        finally:
            coffre.close()


def _flatten(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # routers included lazily
            yield from route.effective_route_contexts()
        else:
            yield route


def _declared(dependant: Any) -> list[str]:
    found = []
    for dependency in dependant.dependencies:
        policy = deps.declared_policy(dependency.call)
        if policy:
            found.append(policy)
        found += _declared(dependency)
    return found
