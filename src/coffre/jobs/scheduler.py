"""In-process scheduler for the embedded profile (and each instance of the
distributed one: the services claim work with row locks)."""

from __future__ import annotations

import asyncio
import logging
import time

from anyio import to_thread

from coffre.bootstrap import Coffre
from coffre.errors import IntegrityError

log = logging.getLogger(__name__)
MAIL_INTERVAL = 2.0
#: Retention pruning runs this often (seconds); checkpoints follow the settings.
AUDIT_PRUNE_INTERVAL = 6 * 3600.0
#: Backup sessions: counts folded in and paused sessions closed this often;
#: repositories without a recent snapshot looked for this often.
BACKUP_SESSION_INTERVAL = 10.0
BACKUP_ALERT_INTERVAL = 3600.0
#: Refusal windows closed into their aggregate events this often; expired
#: throttle rows purged this often.
REFUSAL_INTERVAL = 5.0
THROTTLE_PURGE_INTERVAL = 600.0


async def run_purge(app: Coffre) -> tuple[int, int]:
    """Crypto-shred expired transfers and abandoned uploads once."""
    transfers = await to_thread.run_sync(app.transfers.purge_expired)
    uploads = await to_thread.run_sync(app.uploads.purge_expired)
    if transfers or uploads:
        log.info("purge: %d transfers, %d uploads", transfers, uploads)
    return transfers, uploads


async def run_sweep(app: Coffre) -> None:
    """Shred orphan keys and remove orphan objects once (``services.sweeper``)."""
    try:
        # Not waited for at shutdown: a sweep may stop anywhere (each step
        # is its own transaction, and removing an object again is harmless).
        report = await to_thread.run_sync(app.sweeper.sweep, abandon_on_cancel=True)
    except Exception:  # its own task: nobody else would see it
        log.exception("sweep failed")
        return
    if report.failed:
        log.warning("sweep: %d orphan objects could not be removed", report.failed)


async def sweep_forever(app: Coffre) -> None:
    """The sweep at start, then every ``sweep_interval_minutes``: beside the
    other jobs, not before them (it lists the whole store)."""
    while True:
        await run_sweep(app)
        await asyncio.sleep(app.settings.sweep_interval_minutes * 60)


async def run_audit(app: Coffre, *, prune: bool) -> None:
    """Erase payloads past retention (when ``prune``), then sign a
    checkpoint if the trail grew and still extends the last one signed, in
    the database and in the witness file (SEC-31, SEC-32)."""
    try:
        if prune:
            erased = await to_thread.run_sync(app.audit.prune)
            if erased:
                log.info("audit: %d event payloads pruned", erased)
        await to_thread.run_sync(app.audit.checkpoint)
    except IntegrityError as error:  # the alert of SEC-31: someone rewrote the trail
        log.error("AUDIT TRAIL ALTERED: %s (%s)", error.message,
                  ", ".join(f"{k} {v}" for k, v in error.details.items()))


async def run_backups(app: Coffre, *, alerts: bool) -> None:
    """Close paused backup sessions into their audit events; with
    ``alerts``, mail the owners of repositories without a recent snapshot."""
    await to_thread.run_sync(app.backups.close_idle_sessions)
    if alerts:
        sent = await to_thread.run_sync(app.backups.alert_stale)
        if sent:
            log.info("backups: %d owners alerted of missing backups", sent)


async def run_limits(app: Coffre, *, purge: bool) -> None:
    """Fold the refusal windows that ended into their audit events; with
    ``purge``, forget the throttle rows that block nothing any more."""
    await to_thread.run_sync(app.denials.flush)
    if purge:
        purged = await to_thread.run_sync(app.throttles.purge)
        if purged:
            log.info("throttles: %d expired rows purged", purged)


async def run_forever(app: Coffre) -> None:
    """Every job: the sweeper in a task of its own, the others in turn."""
    sweeping = asyncio.create_task(sweep_forever(app))
    try:
        await _run_jobs(app)
    finally:
        sweeping.cancel()


async def _run_jobs(app: Coffre) -> None:
    last_purge = 0.0
    last_checkpoint = last_prune = last_sessions = last_alerts = float("-inf")
    last_refusals = last_throttles = float("-inf")
    while True:
        try:
            await app.mail.deliver_due()
            if time.monotonic() - last_purge >= app.settings.purge_interval_seconds:
                last_purge = time.monotonic()
                await run_purge(app)
            if time.monotonic() - last_checkpoint >= app.settings.audit_checkpoint_seconds:
                last_checkpoint = time.monotonic()
                prune = last_checkpoint - last_prune >= AUDIT_PRUNE_INTERVAL
                last_prune = last_checkpoint if prune else last_prune
                await run_audit(app, prune=prune)
            if time.monotonic() - last_sessions >= BACKUP_SESSION_INTERVAL:
                last_sessions = time.monotonic()
                alerts = last_sessions - last_alerts >= BACKUP_ALERT_INTERVAL
                last_alerts = last_sessions if alerts else last_alerts
                await run_backups(app, alerts=alerts)
            if time.monotonic() - last_refusals >= REFUSAL_INTERVAL:
                last_refusals = time.monotonic()
                purge = last_refusals - last_throttles >= THROTTLE_PURGE_INTERVAL
                last_throttles = last_refusals if purge else last_throttles
                await run_limits(app, purge=purge)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing job must not stop the others
            log.exception("scheduled job failed")
        await app.mail.wait_for_work(MAIL_INTERVAL)
