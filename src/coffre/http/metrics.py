"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Requests by route template and status, bytes received and sent, tus
uploads in flight (counted in the ASGI wrapper ``Measured``), and the lag
of scheduled jobs (read from the database at each scrape, so the same on
every instance). Labels are route templates (``/api/v1/transfers/{transfer_id}``),
never a path, token, address or file name.

Protected by a bearer secret, ``COFFRE_METRICS_TOKEN``: without it the
endpoint does not exist (404); a wrong or missing bearer answers 401.

With ``coffre serve --workers N`` the serve command sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: each worker writes
its counters there and any worker's ``/metrics`` answers for all of them
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from datetime import datetime

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coffre.bootstrap import Coffre
from coffre.db.tables import OutgoingMail, Transfer
from coffre.errors import AuthenticationRequired, NotFound
from coffre.http import deps

UPLOADS = "/api/v1/uploads"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """One application's counters (a registry of its own, so several apps
    in one process, as in tests, never share or clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "coffre_http_requests", "HTTP requests answered, by route template and status",
            ["method", "route", "status"], registry=self.registry)
        self.bytes_in = Counter(
            "coffre_http_received_bytes", "Request body bytes received",
            registry=self.registry)
        self.bytes_out = Counter(
            "coffre_http_sent_bytes", "Response body bytes sent",
            registry=self.registry)
        self.uploads = Gauge(
            "coffre_uploads_in_flight", "tus requests carrying upload data, in progress",
            registry=self.registry, multiprocess_mode="livesum")


class JobLag(Collector):
    """``coffre_job_lag_seconds{job}``: how long the oldest due piece of
    work has waited (mail: a message due to be sent; purge: an expired
    transfer not yet destroyed, legal holds aside); 0 when none waits."""

    def __init__(self, coffre: Coffre) -> None:
        self.coffre = coffre

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "coffre_job_lag_seconds", "Age of the oldest due, unfinished job", labels=["job"])
        up = GaugeMetricFamily(
            "coffre_database_up", "Whether the last scrape could read the database")
        now = self.coffre.clock.now()
        try:
            with self.coffre.db.session() as session:
                mail = session.execute(select(func.min(OutgoingMail.next_attempt_at)).where(
                    OutgoingMail.sent_at.is_(None), OutgoingMail.next_attempt_at <= now,
                    OutgoingMail.body_sealed.is_not(None))).scalar_one()
                purge = session.execute(select(func.min(Transfer.expires_at)).where(
                    Transfer.purged_at.is_(None), Transfer.expires_at <= now,
                    Transfer.held_at.is_(None))).scalar_one()
        except Exception:  # noqa: BLE001 - a scrape reports, never fails
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for job, since in (("mail", mail), ("purge", purge)):
            lag.add_metric([job], _age(now, since))
        yield lag
        yield up


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "static" if scope.get("path", "").startswith("/static/") else "unmatched"


class Measured:
    """ASGI wrapper counting requests, bytes and uploads in flight."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        status = "0"
        uploading = scope["path"].startswith(UPLOADS) and scope["method"] in {"PATCH", "POST"}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                metrics.bytes_in.inc(len(message.get("body", b"")))
            return message

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            elif message["type"] == "http.response.body":
                metrics.bytes_out.inc(len(message.get("body", b"")))
            await send(message)

        if uploading:
            metrics.uploads.inc()
        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            if uploading:
                metrics.uploads.dec()
            metrics.requests.labels(scope["method"], _route(scope), status).inc()


def exposition(coffre: Coffre, metrics: Metrics) -> bytes:
    """The text exposition of this instance (or of all its workers)."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(metrics.registry))
    registry.register(JobLag(coffre))
    return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.registry.collect()  # type: ignore[misc]


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    coffre = deps.coffre(request)
    secret = coffre.settings.metrics_token
    if secret is None:
        raise NotFound("not found")
    given = request.headers.get("authorization", "")
    expected = f"Bearer {secret.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthenticationRequired("a metrics bearer token is required")
    body = await to_thread.run_sync(exposition, coffre, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
