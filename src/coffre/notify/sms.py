"""SMS through a pluggable HTTP provider: ``POST {"to", "text"}`` as JSON,
with the API key as a Bearer token.

For recipients' one-time codes only (SEC-9: never a factor of an
account). Never logs the number, the text or the key.
"""

from __future__ import annotations

import httpx

from coffre.errors import StorageError

TIMEOUT = httpx.Timeout(10.0)


class HttpSmsSender:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def send(self, to: str, text: str) -> None:
        try:
            response = httpx.post(
                self.url, json={"to": to, "text": text}, headers=self._headers, timeout=TIMEOUT
            )
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise StorageError(f"the SMS provider could not be reached ({reason})") from None
        if not 200 <= response.status_code < 300:
            status = response.status_code
            raise StorageError(f"the SMS provider refused the message (HTTP {status})")
