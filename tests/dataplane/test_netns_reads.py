"""The network re-check reads a namespace over rtnetlink, not with ``ip`` processes
(system/rtnl_dump.py): what it reads must be what ``ip -j`` shows, and a gateway whose
network is as it should be is re-checked without starting a single process."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import Route

from .conftest import claim
from .world import short_state_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def ip_json(*argv: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True)
    parsed: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return parsed


def routes_by_ip(namespace: str) -> set[Route]:
    """What ``netns.owned_routes`` returned when it ran ``ip -j route show`` (the reference)."""
    found: set[Route] = set()
    for entry in ip_json("-n", namespace, "route", "show", "table", "all", "proto", netns.ROUTE_PROTO):
        dst = str(entry["dst"])
        if "/" not in dst:
            dst += "/32"
        flags = entry.get("flags")
        onlink = isinstance(flags, list) and "onlink" in flags
        via = entry.get("gateway")
        found.add(
            Route(
                dst,
                str(entry.get("dev", "")),
                str(via) if via else None,
                str(entry.get("type", "unicast")),
                onlink,
            )
        )
    return found


def lo_by_ip(namespace: str) -> set[str]:
    return {
        f"{info['local']}/{info['prefixlen']}"
        for link in ip_json("-n", namespace, "-4", "addr", "show", "dev", "lo")
        for info in link.get("addr_info", [])
        if not str(info["local"]).startswith("127.")
    }


@pytest.fixture
def namespace() -> Iterator[str]:
    name = claim(f"vpngw-t-{netns.unique_suffix()}") + "r"
    netns.create_namespace(name)
    try:
        yield name
    finally:
        netns.delete_namespace(name)


def test_the_reads_match_ip(namespace: str) -> None:
    netns.run("ip", "-n", namespace, "link", "add", "d0", "type", "veth", "peer", "name", "e0")
    netns.run("ip", "-n", namespace, "link", "set", "d0", "up")
    netns.run("ip", "-n", namespace, "link", "set", "e0", "up")
    netns.add_address(namespace, "d0", "10.9.0.1/24")
    wanted = {
        Route("10.20.0.0/16", "d0", "10.9.0.2"),
        Route("192.0.2.7/32", "d0"),
        Route("172.16.5.0/24", "lo", kind="local"),
        Route("10.30.0.0/24", "d0", "10.99.0.1", onlink=True),
    }
    for cidr in ("10.1.1.1/32", "10.2.2.2/32"):
        netns.add_address(namespace, "lo", cidr)
    netns.sync_routes(namespace, wanted)
    # Not vpngw's: never read as its own.
    netns.run("ip", "-n", namespace, "route", "add", "10.40.0.0/24", "via", "10.9.0.3", "dev", "d0")

    assert netns.owned_routes(namespace) == wanted == routes_by_ip(namespace)
    assert netns.owned_routes(namespace, "d0") == {r for r in wanted if r.dev == "d0"}
    assert netns.lo_addresses(namespace) == {"10.1.1.1/32", "10.2.2.2/32"} == lo_by_ip(namespace)
    assert netns.lo_addresses(namespace, "d0") == {"10.9.0.1/24"}
    assert netns.link_exists(namespace, "d0") and netns.link_exists(namespace, "lo")
    assert not netns.link_exists(namespace, "d9")
    assert not netns.link_exists(namespace + "-missing", "lo")

    # A sync converges on the reads: a route taken away by hand comes back, a stray goes.
    netns.run("ip", "-n", namespace, "route", "del", "10.20.0.0/16", "proto", netns.ROUTE_PROTO)
    netns.run("ip", "-n", namespace, "route", "add", "10.50.0.0/24", "dev", "d0", "proto", netns.ROUTE_PROTO)
    netns.sync_routes(namespace, wanted)
    assert routes_by_ip(namespace) == wanted
    netns.sync_lo_addresses(namespace, ["10.1.1.1", "10.3.3.3"])
    assert lo_by_ip(namespace) == {"10.1.1.1/32", "10.3.3.3/32"}


def test_a_missing_namespace_is_an_error_to_read() -> None:
    with pytest.raises(netns.NetnsError):
        netns.owned_routes(f"vpngw-t-{netns.unique_suffix()}-none")


def count_processes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    started: list[list[str]] = []
    real_run, real_popen = subprocess.run, subprocess.Popen

    def run(argv: Any, *args: Any, **kwargs: Any) -> Any:
        started.append(list(argv))
        return real_run(argv, *args, **kwargs)

    class Popen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, argv: Any, *args: Any, **kwargs: Any) -> None:
            started.append(list(argv))
            super().__init__(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(subprocess, "Popen", Popen)
    return started


def test_a_gateway_network_recheck_starts_no_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The re-check of a gateway whose network is as it should be (every 22.5-30 minutes
    per gateway) runs no ``ip`` process (it was seven), and still heals a hand-made change."""
    name = claim(f"vt-{netns.unique_suffix()}")
    state_dir = short_state_dir()
    network = LabNetwork(name, state_dir / name)
    state = GatewayState(
        vpn_gateway_id="vpn-recheck",
        internet_ip="198.18.7.7",
        connections=(),
        auto_routes=("172.16.9.0/24",),
    )
    try:
        network.prepare()
        network.sync_gateway(state)
        host = network.gateway(state.vpn_gateway_id)
        vpc_before = routes_by_ip(host.vpc_namespace)
        assert {route.dst for route in vpc_before} == {"172.16.9.0/24"}

        started = count_processes(monkeypatch)
        network.sync_gateway(state)
        assert started == []

        # A route deleted by hand comes back at the next re-check.
        netns.run("ip", "-n", host.vpc_namespace, "route", "flush", "proto", netns.ROUTE_PROTO)
        assert routes_by_ip(host.vpc_namespace) == set()
        network.sync_gateway(state)
        assert routes_by_ip(host.vpc_namespace) == vpc_before != set()
    finally:
        monkeypatch.undo()
        network.teardown()


def test_namespaces_are_listed_without_a_process(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reconciler lists the namespaces at every whole-set pass: what ``ip netns list``
    lists, read from /run/netns (``ip`` asked the kernel for each namespace's id too)."""
    by_ip = {str(entry["name"]) for entry in ip_json("netns", "list")}
    started = count_processes(monkeypatch)
    listed = netns.namespaces()
    assert started == []
    assert namespace in listed
    assert listed == by_ip
