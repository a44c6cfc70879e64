"""Development mailbox: with no SMTP server configured (embedded profile),
mail is kept in the data directory, sealed, and shown on ``/dev/mailbox``.

Mail carries personal links and messages that may name a patient, so each
file is AES-GCM sealed under a key that is itself wrapped by the root key.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from coffre.crypto import envelope
from coffre.ports import KeyProvider, Mail

KEY_CONTEXT = b"coffre/dev-mailbox"


@dataclass(frozen=True)
class StoredMail:
    id: str
    received: float
    mail: Mail


class DevMailbox:
    def __init__(self, directory: Path, provider: KeyProvider) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        wrapped_file = directory / "mailbox.key"
        if not wrapped_file.exists():
            fd = os.open(wrapped_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(provider.wrap(envelope.new_key(), KEY_CONTEXT))
        self._key = provider.unwrap(wrapped_file.read_bytes(), KEY_CONTEXT)

    async def send(self, mail: Mail) -> None:
        mail_id = f"{time.time_ns():020d}-{os.urandom(4).hex()}"
        body = json.dumps(
            {
                "to": mail.to,
                "subject": mail.subject,
                "text": mail.text,
                "html": mail.html,
                "headers": mail.headers,
            }
        ).encode()
        sealed = envelope.seal(self._key, body, mail_id.encode())
        tmp = self.directory / f".{mail_id}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(sealed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / f"{mail_id}.mail")

    def messages(self) -> list[StoredMail]:
        """Newest first."""
        out = []
        for path in sorted(self.directory.glob("*.mail"), reverse=True):
            mail_id = path.stem
            data = json.loads(envelope.open_sealed(self._key, path.read_bytes(), mail_id.encode()))
            out.append(
                StoredMail(
                    mail_id,
                    int(mail_id.split("-")[0]) / 1e9,
                    Mail(
                        to=data["to"],
                        subject=data["subject"],
                        text=data["text"],
                        html=data["html"],
                        headers=data["headers"] or {},
                    ),
                )
            )
        return out
