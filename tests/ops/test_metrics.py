"""GET /metrics on the operator listener (``vpngw serve --metrics``), parsed with
prometheus_client's own parser. The API port serves no metrics.

Request metrics count what this process answered; connection metrics are read from the
store at scrape time, so what a data plane wrote (here through the very functions the
reconciler calls, as an agent on another node would) is what a scrape shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api, build_world, connection_params
from tests.support.postgres import free_port
from vpngw import metrics
from vpngw.actions.registry import ACTIONS
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any) -> Samples:
    """Every sample of a scrape, keyed by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextmanager
def operator_listener(db: Database) -> Iterator[httpx.Client]:
    """The listener ``vpngw serve --metrics 127.0.0.1:PORT`` starts, and a client of it."""
    listener = metrics.OperatorListener(db, "127.0.0.1", free_port())
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{listener.port}", timeout=10) as client:
            yield client
    finally:
        listener.stop()


@dataclass
class Served:
    api: Api
    client: TestClient
    db: Database
    operator: httpx.Client


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    db, authenticator = prepared(settings)
    with (
        TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client,
        operator_listener(db) as operator,
    ):
        yield Served(Api(client), client, db, operator)
    db.dispose()


def test_requests_are_counted_by_action_and_code_with_bounded_labels(served: Served) -> None:
    before = scrape(served.operator)
    served.api.ok("CreateVpc", CidrBlock="10.0.0.0/8")
    served.api.fails(
        "DescribeVpnConnection", 404, "InvalidVpnConnectionInstanceId.NotFound", VpnConnectionId="vco-x"
    )
    served.api.fails("NoSuchThing", 404, "InvalidAction.NotFound")
    served.api.fails(
        "DescribeVpcs", 400, "InvalidParameter.Chosen-by-client", **{"Chosen-by-client": "a\x00b"}
    )
    after = scrape(served.operator)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("vpngw_api_requests_total", action="CreateVpc", code="-") == 1
    assert (
        delta(
            "vpngw_api_requests_total",
            action="DescribeVpnConnection",
            code="InvalidVpnConnectionInstanceId.NotFound",
        )
        == 1
    )
    assert delta("vpngw_api_requests_total", action="unknown", code="InvalidAction.NotFound") == 1
    # Refused while parsing (before any action is looked up: docs/errors.md), so action "-".
    assert delta("vpngw_api_requests_total", action="-", code="InvalidParameter.Other") == 1
    assert not any("Chosen-by-client" in str(labels) or "NoSuchThing" in str(labels) for _, labels in after)
    assert metrics._code_label("InvalidParameter.IkeConfig.Psk", ACTIONS) == "InvalidParameter.IkeConfig.Psk"
    assert (
        metrics._code_label("InvalidParameter.SignatureVersion", ACTIONS)
        == "InvalidParameter.SignatureVersion"
    )
    assert delta("vpngw_api_request_duration_seconds_count", action="CreateVpc", code="-") == 1
    assert delta("vpngw_api_request_duration_seconds_bucket", action="CreateVpc", code="-", le="+Inf") == 1
    assert delta("vpngw_api_request_duration_seconds_sum", action="CreateVpc", code="-") > 0
    # The scrape itself is not an API request, and needs no signature; the API port has none.
    assert served.client.get("/metrics").status_code == 404


def test_connection_metrics_are_read_from_the_store_at_scrape_time(served: Served) -> None:
    world = build_world(served.api)
    check = {"Enable": "true", "Sip": "10.1.1.20", "Dip": "10.10.1.7", "Interval": "1", "Retry": "2"}
    up = served.api.ok("CreateVpnConnection", **connection_params(world, HealthCheckConfig=json.dumps(check)))
    down = served.api.ok("CreateVpnConnection", **connection_params(world, RemoteSubnet="10.20.0.0/16"))
    up_id, down_id = up["VpnConnectionId"], down["VpnConnectionId"]
    samples = scrape(served.operator)
    assert value(samples, "vpngw_store_up") == 1
    assert value(samples, "vpngw_connections", status="ike_sa_not_established") == 2
    assert value(samples, "vpngw_tunnels_up") == 0
    assert value(samples, "vpngw_health_checks", verdict="failed") == 1  # enabled, no reply seen yet

    traffic = {"BytesIn": 8400, "BytesOut": 8316, "PacketsIn": 100, "PacketsOut": 99}
    with served.db.transaction(write=True) as session:  # what a data plane, anywhere, writes
        queries.write_observation(
            session, up_id, status="ipsec_sa_established", diagnosis="", traffic=traffic, now_ms=1
        )
        queries.write_health_status(session, up_id, "success")
        queries.write_observation(
            session, down_id, status="ipsec_sa_not_established", diagnosis="x", traffic=None, now_ms=1
        )
    samples = scrape(served.operator)
    ids = {"vpn_connection_id": up_id, "vpn_gateway_id": world.vpn_gateway_id}
    assert value(samples, "vpngw_connections", status="ipsec_sa_established") == 1
    assert value(samples, "vpngw_connections", status="ipsec_sa_not_established") == 1
    assert value(samples, "vpngw_connections", status="ike_sa_not_established") == 0
    assert value(samples, "vpngw_tunnels_up") == 1
    assert value(samples, "vpngw_connection_up", **ids) == 1
    assert (
        value(samples, "vpngw_connection_up", vpn_connection_id=down_id, vpn_gateway_id=world.vpn_gateway_id)
        == 0
    )
    assert value(samples, "vpngw_health_checks", verdict="success") == 1
    assert value(samples, "vpngw_health_checks", verdict="failed") == 0
    assert value(samples, "vpngw_connection_health_check_success", **ids) == 1
    assert value(samples, "vpngw_connection_bytes_total", direction="in", **ids) == 8400
    assert value(samples, "vpngw_connection_bytes_total", direction="out", **ids) == 8316
    assert value(samples, "vpngw_connection_packets_total", direction="in", **ids) == 100
    assert value(samples, "vpngw_connection_packets_total", direction="out", **ids) == 99

    served.api.ok("DeleteVpnConnection", VpnConnectionId=up_id)
    samples = scrape(served.operator)
    assert value(samples, "vpngw_tunnels_up") == 0
    assert not [key for key in samples if ("vpn_connection_id", up_id) in key[1]]


def test_a_scrape_answers_when_the_store_cannot_be_read(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema: every query fails
    try:
        text = metrics.scrape(metrics.store_registry(db)).decode()
    finally:
        db.dispose()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["vpngw_store_up"] == 0 and "vpngw_connections" not in samples
    assert "vpngw_api_requests_total" in text or "vpngw_api_requests" in text


def test_serve_s_scrape_takes_the_data_plane_s_families_from_its_process(settings: Settings) -> None:
    """With the data plane in its own process (cli/dataplane_process.py), serve's scrape
    holds the child's reconcile and charon families once (not serve's idle copies, not
    the child's process_* families), and still answers when the child does not."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    from vpngw.cli.dataplane_process import ChildMetrics

    child_registry = CollectorRegistry()
    passes = Histogram(
        "vpngw_reconcile_pass_duration_seconds", "passes", registry=child_registry, buckets=(1.0,)
    )
    restarts = Counter("vpngw_charon_restarts", "restarts", ["vpn_gateway_id"], registry=child_registry)
    Counter("process_pretend_seconds", "the child's own process family", registry=child_registry).inc()
    for _ in range(3):
        passes.observe(0.2)
    restarts.labels("vpn-1").inc()
    child_port = free_port()
    child_server, _thread = start_http_server(child_port, addr="127.0.0.1", registry=child_registry)
    db, _authenticator = prepared(settings)
    listener = metrics.OperatorListener(db, "127.0.0.1", free_port(), also=ChildMetrics(child_port))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{listener.port}", timeout=10) as client:
            text = client.get("/metrics").text
            samples = scrape(client)
            assert text.count("# TYPE vpngw_reconcile_pass_duration_seconds histogram") == 1
            assert value(samples, "vpngw_reconcile_pass_duration_seconds_count") == 3
            assert value(samples, "vpngw_charon_restarts_total", vpn_gateway_id="vpn-1") == 1
            assert "process_pretend_seconds" not in text
            child_server.shutdown()
            child_server.server_close()
            samples = scrape(client)  # the child is gone (restarting): the rest still answers
            assert value(samples, "vpngw_store_up") == 1
            assert value(samples, "vpngw_reconcile_pass_duration_seconds_count") == 0
    finally:
        listener.stop()
        db.dispose()
