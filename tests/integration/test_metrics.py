"""``GET /metrics`` (Prometheus text format), behind ``COFFRE_METRICS_TOKEN``:
requests by route template and status, bytes in and out, uploads in
flight, job lag; never a path's ids, a token or an address."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server
from tests.integration.flows import upload_bytes
from tests.integration.support import assert_error, module_server

SECRET = "un-secret-de-supervision-assez-long"
mail, server, token, client, admin = module_server("metrics", COFFRE_METRICS_TOKEN=SECRET)


def _samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_need_the_bearer_secret(server: Server, token: str) -> None:
    assert_error(httpx.get(f"{server.url}/metrics"), 401, "authentication_required")
    assert_error(httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer faux"}),
                 401, "authentication_required")
    # An administrator's API token is not the metrics secret.
    assert_error(httpx.get(f"{server.url}/metrics",
                           headers={"Authorization": f"Bearer {token}"}),
                 401, "authentication_required")


def test_requests_bytes_uploads_and_job_lag(server: Server, client: httpx.Client) -> None:
    before = _samples(server)
    for _ in range(3):
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    upload_bytes(client, b"x" * 100_000)
    assert client.get("/api/v1/transfers/0123456789abcdef/events").status_code == 404
    after = _samples(server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("coffre_http_requests_total", method="GET", route="/healthz",
                 status="200") == 3
    # Route templates, never the ids of a path.
    assert delta("coffre_http_requests_total", method="GET",
                 route="/api/v1/transfers/{transfer_id}/events", status="404") == 1
    assert not any("0123456789abcdef" in str(labels) for _, labels in after)
    assert delta("coffre_http_received_bytes_total") >= 100_000
    assert delta("coffre_http_sent_bytes_total") > 0
    assert after[("coffre_uploads_in_flight", ())] == 0
    assert after[("coffre_job_lag_seconds", (("job", "mail"),))] >= 0
    assert after[("coffre_job_lag_seconds", (("job", "purge"),))] >= 0
    assert after[("coffre_database_up", ())] == 1
