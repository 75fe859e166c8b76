"""The host backend's cold build of a gateway (one ``ip -batch`` per side instead of a
process per command) ends exactly where the step-by-step sync would, and falls back to it
when the host holds leftovers; the in-process pieces it relies on (sysctls through
``setns``, an address lifetime refreshed over rtnetlink) do what ``ip``/``sysctl`` do."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpngw.dataplane.backends.base import GATEWAY_VPC_IF, TRANSIT_GATEWAY, VPC_NEXT_HOP_IF, WAN_IF
from vpngw.dataplane.backends.host import network as host_network
from vpngw.dataplane.backends.host.network import HostConfig, HostNetwork
from vpngw.dataplane.backends.lab import node as lab_node
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.system import netlink, netns
from vpngw.dataplane.system.netns import NetnsError

from ..dataplane import specs
from .conftest import _claim

pytestmark = pytest.mark.dataplane


@pytest.fixture
def host() -> Iterator[HostNetwork]:
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    lab_name = f"vt-{netns.unique_suffix()}"
    _claim(lab_name)
    lab = LabNetwork(lab_name, Path(tempfile.mkdtemp(prefix="vl", dir="/tmp")) / lab_name)
    node = lab_node.create_node(lab, f"{lab_name}-n1", vpc_subnets=("10.0.0.0/8",))
    backend = HostNetwork(
        HostConfig(
            node.name,
            lab_node.UPLINK,
            lab_node.VPC_SIDE,
            Path(tempfile.mkdtemp(prefix="vs", dir="/tmp")),
            host_namespace=node.namespace,
        )
    )
    try:
        yield backend
    finally:
        for gateway_id in backend.gateway_ids():
            backend.remove_gateway(gateway_id)
        lab_node.remove_node(lab, node.name)
        lab.teardown()
        assert not {ns for ns in netns.namespaces() if ns.startswith(f"{lab_name}-")}


def gateway_state(gateway_id: str = "vpn-build1") -> GatewayState:
    connections = tuple(
        specs.connection(
            name=f"vco-build{k}",
            local_addr="198.19.250.77",
            remote_addr=f"198.19.1.{k}",  # on the uplink's own network (the lab WAN)
            local_subnets=(f"10.2.{k}.0/24",),
            remote_subnets=(f"172.16.{k}.0/24",),
        )
        for k in range(1, 4)
    ) + (
        specs.connection(
            name="vco-build9",
            local_addr="198.19.250.77",
            remote_addr="203.0.113.9",  # elsewhere: a host route through the uplink
            local_subnets=("10.3.0.0/24",),
            remote_subnets=("172.17.0.0/24",),
        ),
    )
    return GatewayState(
        gateway_id,
        "198.19.250.77",
        connections,
        auto_routes=("172.16.1.0/24", "172.17.0.0/24"),
        vpc_next_hop="169.254.51.77",
    )


def commands_during(action: object) -> list[tuple[str, ...]]:
    """Every process ``action()`` started (argv)."""
    seen: list[tuple[str, ...]] = []
    real = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[bytes], args: list[str], *rest: object, **kwargs: object) -> None:
        seen.append(tuple(args))
        real(self, args, *rest, **kwargs)  # type: ignore[arg-type]

    subprocess.Popen.__init__ = counting  # type: ignore[assignment,method-assign]
    try:
        action()  # type: ignore[operator]
    finally:
        subprocess.Popen.__init__ = real  # type: ignore[method-assign]
    return seen


CHANGES = {"add", "replace", "del", "set", "flush"}


def assert_built(backend: HostNetwork, state: GatewayState) -> None:
    """What the step-by-step sync would leave: checked, then a second sync changes nothing."""
    namespace = backend.gateway(state.vpn_gateway_id).namespace
    assert netns.lo_addresses(namespace, WAN_IF) == {f"{state.internet_ip}/32"}
    assert netns.lo_addresses(namespace, VPC_NEXT_HOP_IF) == {f"{state.vpc_next_hop}/32"}
    assert netns.lo_addresses(namespace, GATEWAY_VPC_IF) == {f"{TRANSIT_GATEWAY}/30"}
    assert netns.lo_addresses(namespace) == {"10.2.1.1/32", "10.2.2.1/32", "10.2.3.1/32", "10.3.0.1/32"}
    assert netns.owned_routes(namespace) == backend._gateway_routes(state)
    transit = host_network._hashed("vg", state.vpn_gateway_id)
    assert netns.owned_routes(backend.config.host_namespace, transit) == backend._host_routes(state)
    assert {r.dst for r in backend._host_routes(state)} == {"172.16.1.0/24", "172.17.0.0/24"}
    for name in (WAN_IF, VPC_NEXT_HOP_IF, GATEWAY_VPC_IF, "lo"):
        shown = netns.ip_json("-n", namespace, "link", "show", name)
        assert "UP" in shown[0]["flags"], (name, shown)  # type: ignore[operator]
    sysctl = Path("/proc/sys/net/ipv4/ip_forward")
    assert netns.in_namespace(namespace, sysctl.read_text).strip() == "1"
    unresolved = Path(f"/proc/sys/net/ipv4/neigh/{WAN_IF}/unres_qlen_bytes")
    assert int(netns.in_namespace(namespace, unresolved.read_text)) == netns.UNRESOLVED_QUEUE_BYTES
    for setting in host_network.NEXT_HOP_SYSCTLS:
        name, value = setting.split("=")
        written = Path("/proc/sys/" + name.replace(".", "/"))
        assert netns.in_namespace(namespace, written.read_text).strip() == value, setting
    # The step-by-step sync finds nothing to change.
    again = commands_during(lambda: backend.sync_gateway(state))
    changing = [argv for argv in again if CHANGES & set(argv) and "-j" not in argv]
    # The leased addresses are refreshed (replace) by design; nothing else changes.
    assert all("addr" in argv and "replace" in argv for argv in changing), changing


def test_a_new_gateway_is_built_in_a_few_processes_and_ends_as_the_step_by_step_sync(
    host: HostNetwork,
) -> None:
    state = gateway_state()
    host.hold_internet_ip(state.vpn_gateway_id, state.internet_ip, 4.5)
    host.hold_vpc_next_hop(state.vpn_gateway_id, str(state.vpc_next_hop), 4.5)
    started = commands_during(lambda: host.sync_gateway(state))
    ip_processes = [argv for argv in started if argv[0] == "ip" and "arping" not in argv]
    assert len(ip_processes) <= 6, ip_processes  # was some fifty
    assert_built(host, state)


def test_leftovers_on_the_host_send_the_build_step_by_step(host: HostNetwork) -> None:
    state = gateway_state("vpn-build2")
    host.hold_internet_ip(state.vpn_gateway_id, state.internet_ip, 4.5)
    host.hold_vpc_next_hop(state.vpn_gateway_id, str(state.vpc_next_hop), 4.5)
    namespace = host.gateway(state.vpn_gateway_id).namespace
    # A crashed run left the uplink's temporary macvlan on the host: the batch fails on it.
    leftover = host_network._hashed("mv", f"{namespace}/{WAN_IF}")
    netns.run(
        "ip", "-n", str(host.config.host_namespace), "link", "add", "link", lab_node.UPLINK, "name", leftover,
        "type", "macvlan", "mode", "bridge",
    )  # fmt: skip
    host.sync_gateway(state)
    assert_built(host, state)
    assert not netns.link_exists(host.config.host_namespace, leftover)


def test_a_batch_stops_at_the_first_failing_command_and_names_it(host: HostNetwork) -> None:
    namespace = str(host.config.host_namespace)
    with pytest.raises(NetnsError, match="nosuchdevice"):
        netns.run_batch(
            namespace, [["link", "set", "nosuchdevice", "up"], ["addr", "add", "192.0.2.1/32", "dev", "lo"]]
        )
    assert "192.0.2.1/32" not in netns.lo_addresses(namespace)
    with pytest.raises(ValueError):
        netns.run_batch(namespace, [["addr", "add", "192.0.2.1/32 dev lo"]])


def test_a_lifetime_refreshed_over_netlink_is_what_ip_would_set(host: HostNetwork) -> None:
    namespace = str(host.config.host_namespace)
    netlink.replace_address(namespace, "lo", "192.0.2.44", 7)
    shown = netns.ip_json("-n", namespace, "-4", "addr", "show", "dev", "lo")
    infos = [info for link in shown for info in netns.addr_infos(link) if info["local"] == "192.0.2.44"]
    assert len(infos) == 1 and infos[0]["prefixlen"] == 32
    assert 5 <= int(str(infos[0]["valid_life_time"])) <= 7
    assert 5 <= int(str(infos[0]["preferred_life_time"])) <= 7
    netlink.replace_address(namespace, "lo", "192.0.2.44", 3)  # replaced, not added twice
    shown = netns.ip_json("-n", namespace, "-4", "addr", "show", "dev", "lo")
    infos = [info for link in shown for info in netns.addr_infos(link) if info["local"] == "192.0.2.44"]
    assert len(infos) == 1 and int(str(infos[0]["valid_life_time"])) <= 3
    with pytest.raises(NetnsError, match="nosuch0"):
        netlink.replace_address(namespace, "nosuch0", "192.0.2.45", 3)
    netns.run("ip", "-n", namespace, "addr", "del", "192.0.2.44/32", "dev", "lo")
