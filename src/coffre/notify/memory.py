"""In-memory mailer for unit tests."""

from __future__ import annotations

from coffre.ports import Mail


class MemoryMailer:
    def __init__(self) -> None:
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)
