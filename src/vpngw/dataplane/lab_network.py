"""The lab data plane's network: namespaces, links, addresses and routes (impure).

:mod:`.topology` decides names and addresses; this module makes the kernel match them,
through iproute2. Every operation is idempotent and level-triggered: ``ensure_*`` builds
what is missing and leaves what exists, ``sync_*`` compares what a namespace holds with
what it should hold and changes only the difference. So a pass after a crash, a restart
of vpngw or a hand-deleted route converges without knowing what happened.

Only things this lab created are ever touched: namespaces whose names carry the lab's
prefix, routes with protocol :data:`~.topology.ROUTE_PROTO`, addresses on ``lo`` of the
lab's own namespaces.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vpngw.dataplane import lab, topology
from vpngw.dataplane.topology import LabNames

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Route:
    """One route vpngw owns. ``kind`` is ``unicast`` or ``local`` (AnyIP: every address
    of ``dst`` is this namespace's own, so hosts of a subnet need no addresses)."""

    dst: str
    dev: str
    via: str | None = None
    kind: str = "unicast"

    @property
    def table(self) -> str:
        return "local" if self.kind == "local" else "main"


def ip_json(*argv: str) -> list[dict[str, object]]:
    done = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise lab.LabError(f"ip -j {' '.join(argv)}: {done.stderr.strip()}")
    parsed: list[dict[str, object]] = json.loads(done.stdout or "[]")
    return parsed


def namespaces() -> set[str]:
    """Every network namespace of the machine, by name."""
    return {str(entry["name"]) for entry in ip_json("netns", "list")}


def ensure_namespace(name: str) -> bool:
    """Create ``name`` (loopback up, forwarding on) unless it exists; True if created."""
    if Path("/run/netns", name).exists():
        return False
    lab.create_namespace(name)
    lab.run("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    return True


def delete_namespace(name: str) -> None:
    if Path("/run/netns", name).exists():
        lab.delete_namespace(name)


def link_exists(namespace: str, ifname: str) -> bool:
    done = subprocess.run(["ip", "-n", namespace, "link", "show", ifname], capture_output=True, check=False)
    return done.returncode == 0


# -- addresses and routes ---------------------------------------------------------


def lo_addresses(namespace: str) -> set[str]:
    """The host addresses (``a.b.c.d/32``) on ``lo`` other than loopback's own."""
    found: set[str] = set()
    for link in ip_json("-n", namespace, "-4", "addr", "show", "dev", "lo"):
        for info in link.get("addr_info", []):  # type: ignore[union-attr]
            local = str(info["local"])  # type: ignore[index]
            if not local.startswith("127."):
                found.add(f"{local}/{info['prefixlen']}")  # type: ignore[index]
    return found


def sync_lo_addresses(namespace: str, wanted: Iterable[str]) -> None:
    """Make ``lo`` hold exactly ``wanted`` host addresses (plus loopback's)."""
    target = {f"{address}/32" for address in wanted}
    present = lo_addresses(namespace)
    for cidr in sorted(present - target):
        lab.run("ip", "-n", namespace, "addr", "del", cidr, "dev", "lo")
    for cidr in sorted(target - present):
        lab.run("ip", "-n", namespace, "addr", "add", cidr, "dev", "lo")


def owned_routes(namespace: str) -> set[Route]:
    found: set[Route] = set()
    for entry in ip_json("-n", namespace, "route", "show", "table", "all", "proto", topology.ROUTE_PROTO):
        dst = str(entry["dst"])
        if "/" not in dst:
            dst += "/32"
        kind = str(entry.get("type", "unicast"))
        via = entry.get("gateway")
        found.add(Route(dst, str(entry.get("dev", "")), str(via) if via else None, kind))
    return found


def sync_routes(namespace: str, wanted: Iterable[Route]) -> None:
    """Make the routes with vpngw's protocol in ``namespace`` exactly ``wanted``."""
    target = set(wanted)
    present = owned_routes(namespace)
    for route in sorted(present - target):
        lab.run("ip", "-n", namespace, "route", "del", *_route_args(route))
    for route in sorted(target - present):
        lab.run("ip", "-n", namespace, "route", "replace", *_route_args(route))


def _route_args(route: Route) -> list[str]:
    args = [route.kind, route.dst, "table", route.table, "proto", topology.ROUTE_PROTO]
    if route.via:
        args += ["via", route.via]
    return [*args, "dev", route.dev]


# -- processes --------------------------------------------------------------------


def pid_alive(pid: int, *, command: str = "charon") -> bool:
    """Whether ``pid`` is a live (non-zombie) process running ``command``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = status.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and command.encode() in cmdline


def kill_pid(pid: int, *, timeout_s: float = 5.0) -> None:
    """SIGTERM ``pid`` (SIGKILL after ``timeout_s``) and wait until it is gone.

    The process may not be our child (adopted after a restart of vpngw), so it is
    watched through /proc; if it is our child, it is reaped here.
    """
    if not pid_alive(pid):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    if not lab.wait_until(lambda: _reap(pid) or not pid_alive(pid), timeout_s=timeout_s, interval_s=0.02):
        os.kill(pid, signal.SIGKILL)
        lab.wait_until(lambda: _reap(pid) or not pid_alive(pid), timeout_s=timeout_s, interval_s=0.02)


def _reap(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


# -- the lab ----------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayHost:
    """Where one VPN gateway runs: its two namespaces and its charon's state dir."""

    vpn_gateway_id: str
    namespace: str
    vpc_namespace: str
    state_dir: Path

    @property
    def vici_path(self) -> str:
        return str(self.state_dir / "charon.vici")

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "charon.pid"


class LabBusy(lab.LabError):
    """Another process drives this lab already."""


LOCK_DIR = Path("/run/vpngw")


class LabNetwork:
    """One lab: its WAN, its gateways' namespaces and charons, its peers."""

    def __init__(self, name: str, state_dir: Path) -> None:
        self.names = LabNames(topology.check_lab_name(name))
        self.state_dir = state_dir

    def lock(self) -> IO[bytes]:
        """Hold the machine-wide lock of this lab (closing the file releases it).

        Two reconcilers on one lab would each remove the other's gateways (a gateway
        that is not in *its* store is deleted), so a second one is refused.
        """
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        handle = open(LOCK_DIR / f"{self.names.lab}.lock", "wb")  # noqa: SIM115 - held until released
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LabBusy(f"lab {self.names.lab!r} is driven by another vpngw process; "
                          "give this one another lab (--lab NAME) or --no-dataplane") from None
        return handle

    # -- WAN ----------------------------------------------------------------------

    def ensure_wan(self) -> None:
        wan = self.names.wan
        ensure_namespace(wan)
        if not link_exists(wan, topology.WAN_BRIDGE):
            lab.run("ip", "-n", wan, "link", "add", topology.WAN_BRIDGE, "type", "bridge")
            lab.run("ip", "-n", wan, "addr", "add", f"{topology.WAN_ROUTER}/{topology.WAN_NETWORK.prefixlen}",
                    "dev", topology.WAN_BRIDGE)
            lab.run("ip", "-n", wan, "link", "set", topology.WAN_BRIDGE, "up")

    def attach_to_wan(self, namespace: str, address: str) -> None:
        """Give ``namespace`` a ``wan0`` on the lab bridge holding ``address``/32.

        Only the lab range (and host routes a caller adds) is reachable through it: a
        default route would let packets for the far subnets leave unencrypted.
        """
        self.ensure_wan()
        port = topology.bridge_port(namespace)
        if not link_exists(namespace, topology.WAN_IF):
            if link_exists(self.names.wan, port):
                lab.run("ip", "-n", self.names.wan, "link", "del", port)
            lab.add_veth_pair(namespace, topology.WAN_IF, self.names.wan, port)
            lab.run("ip", "-n", self.names.wan, "link", "set", port, "master", topology.WAN_BRIDGE)
            lab.run("ip", "-n", namespace, "addr", "add", f"{address}/32", "dev", topology.WAN_IF)
            lab.run("ip", "-n", namespace, "route", "add", str(topology.WAN_NETWORK), "dev", topology.WAN_IF)

    # -- gateways -----------------------------------------------------------------

    def gateway(self, vpn_gateway_id: str) -> GatewayHost:
        return GatewayHost(
            vpn_gateway_id,
            self.names.gateway(vpn_gateway_id),
            self.names.vpc(vpn_gateway_id),
            self.state_dir / f"g-{vpn_gateway_id}",
        )

    def gateway_ids(self) -> set[str]:
        """Gateways that have a namespace in this lab (running, or left behind)."""
        ids = {self.names.gateway_id_of(ns) for ns in namespaces()}
        return {gateway_id for gateway_id in ids if gateway_id}

    def ensure_gateway(self, vpn_gateway_id: str, internet_ip: str) -> GatewayHost:
        """The gateway's namespace on the WAN and its VPC side, created if missing."""
        host = self.gateway(vpn_gateway_id)
        ensure_namespace(host.namespace)
        self.attach_to_wan(host.namespace, internet_ip)
        ensure_namespace(host.vpc_namespace)
        if not link_exists(host.namespace, topology.GATEWAY_VPC_IF):
            lab.add_veth_pair(host.namespace, topology.GATEWAY_VPC_IF, host.vpc_namespace, topology.VPC_GATEWAY_IF)
            prefix = topology.TRANSIT_PREFIX
            lab.add_address(host.namespace, topology.GATEWAY_VPC_IF, f"{topology.TRANSIT_GATEWAY}/{prefix}")
            lab.add_address(host.vpc_namespace, topology.VPC_GATEWAY_IF, f"{topology.TRANSIT_VPC}/{prefix}")
        host.state_dir.mkdir(parents=True, exist_ok=True)
        return host

    def remove_gateway(self, vpn_gateway_id: str) -> None:
        """Stop the gateway's charon and delete its namespaces and state: nothing stays."""
        host = self.gateway(vpn_gateway_id)
        pid = read_pid(host.pid_path)
        if pid is not None:
            kill_pid(pid)
        delete_namespace(host.namespace)
        delete_namespace(host.vpc_namespace)
        self.detach_from_wan(host.namespace)
        shutil.rmtree(host.state_dir, ignore_errors=True)

    def detach_from_wan(self, namespace: str) -> None:
        """Remove the bridge end of a deleted namespace's WAN veth, if it is still there.

        The kernel frees a deleted namespace (and so both veth ends) asynchronously: the
        port may vanish between looking and deleting, which is fine.
        """
        port = topology.bridge_port(namespace)
        if self.names.wan not in namespaces() or not link_exists(self.names.wan, port):
            return
        try:
            lab.run("ip", "-n", self.names.wan, "link", "del", port)
        except lab.LabError:
            if link_exists(self.names.wan, port):
                raise

    # -- the whole lab --------------------------------------------------------------

    def teardown(self) -> None:
        """Remove every gateway, peer and the WAN of this lab (``vpngw lab down``)."""
        for gateway_id in self.gateway_ids():
            self.remove_gateway(gateway_id)
        for namespace in sorted(namespaces()):
            peer = self.names.peer_name_of(namespace)
            if peer is not None:
                pid = read_pid(self.peer_dir(peer) / "charon.pid")
                if pid is not None:
                    kill_pid(pid)
        for namespace in sorted(namespaces()):
            if self.names.owns(namespace):
                delete_namespace(namespace)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def peer_dir(self, name: str) -> Path:
        return self.state_dir / f"p-{name}"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_gateway_charon(host: GatewayHost) -> int:
    """Start charon in the gateway's namespace; return its pid (also in ``charon.pid``).

    A charon that is still running there (after a restart of vpngw) is adopted instead.
    """
    pid = read_pid(host.pid_path)
    if pid is not None and pid_alive(pid):
        return pid
    started = time.monotonic()
    charon = lab.start_charon(host.namespace, host.state_dir)
    host.pid_path.write_text(f"{charon.pid}\n")
    log.info("charon for %s started (pid %d) in %.0f ms", host.vpn_gateway_id, charon.pid,
             (time.monotonic() - started) * 1000)
    return charon.pid
