"""In-process scheduler for the embedded profile (and each instance of the
distributed one: the services claim work with row locks)."""

from __future__ import annotations

import asyncio
import logging
import time

from anyio import to_thread

from coffre.bootstrap import Coffre

log = logging.getLogger(__name__)
MAIL_INTERVAL = 2.0


async def run_purge(app: Coffre) -> tuple[int, int]:
    """Crypto-shred expired transfers and abandoned uploads once."""
    transfers = await to_thread.run_sync(app.transfers.purge_expired)
    uploads = await to_thread.run_sync(app.uploads.purge_expired)
    if transfers or uploads:
        log.info("purge: %d transfers, %d uploads", transfers, uploads)
    return transfers, uploads


async def run_forever(app: Coffre) -> None:
    last_purge = 0.0
    while True:
        try:
            await app.mail.deliver_due()
            if time.monotonic() - last_purge >= app.settings.purge_interval_seconds:
                last_purge = time.monotonic()
                await run_purge(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing job must not stop the others
            log.exception("scheduled job failed")
        await asyncio.sleep(MAIL_INTERVAL)
