"""In-memory mailer for unit tests."""

from __future__ import annotations

from coffre.ports import Mail


class MemoryMailer:
    def __init__(self) -> None:
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)


class MemorySmsSender:
    """In-memory SMS provider for unit tests: keeps (number, text) pairs."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))
