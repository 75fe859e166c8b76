"""``vpngw agent`` as a service: readiness over $NOTIFY_SOCKET, its own metrics, JSON logs."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api, build_world
from tests.support.postgres import free_port
from vpngw.dataplane.system import netns

from .fleet import Fleet

pytestmark = pytest.mark.dataplane


def test_the_agent_says_when_it_is_ready_and_shows_its_metrics(
    sqlite_fleet: tuple[Fleet, Api], tmp_path: Path
) -> None:
    fleet, api = sqlite_fleet
    site = fleet.add_node(1)
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(notify_path))
        manager.settimeout(30)
        port = free_port()
        fleet.start_agent(
            site,
            extra=["--metrics", f"127.0.0.1:{port}", "--log-format", "json"],
            env={"NOTIFY_SOCKET": str(notify_path)},
        )
        assert manager.recv(256) == b"READY=1", fleet.log_of(site)
        build_world(api)
        assert netns.wait_until(lambda: bool(site.gateway_namespaces()), timeout_s=15)

        def passes() -> float:
            families = {
                f.name: f
                for f in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            }
            return next(
                s.value
                for s in families["vpngw_reconcile_pass_duration_seconds"].samples
                if s.name.endswith("_count")
            )

        assert netns.wait_until(lambda: passes() >= 2, timeout_s=10)
        fleet.stop_agent(site)
        assert manager.recv(256) == b"STOPPING=1"
    lines = [json.loads(line) for line in fleet.log_of(site).splitlines() if line.startswith("{")]
    assert any(
        line["logger"] == "vpngw.dataplane.nodes.placement" and "took gateway" in line["message"]
        for line in lines
    )
