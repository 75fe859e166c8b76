"""The lab backend: every VPN gateway in namespaces of one machine, on a lab WAN.

:mod:`.topology` decides names and addresses; this module makes the kernel match them
through :mod:`.netns`. Everything is idempotent and level-triggered, and only things
this lab created are ever touched: namespaces whose names carry the lab's prefix,
routes with vpngw's protocol, addresses on ``lo`` of the lab's own namespaces.
docs/lab.md draws the layout.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from vpngw.dataplane.backends.base import (
    LOCK_DIR,
    GatewayHost,
    gateway_addresses,
    machine_lock,
    routed_local_subnets,
)
from vpngw.dataplane.backends.lab import charon_profile, topology
from vpngw.dataplane.backends.lab.topology import LabNames
from vpngw.dataplane.errors import BackendBusy
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import NetnsError, Route, link_exists, namespaces

log = logging.getLogger(__name__)

STATE_ROOT = Path("/var/lib/vpngw")
RUN_ROOT = Path("/run/vpngw")


def default_dirs(
    lab: str, *, environ: Mapping[str, str] | None = None, root: bool | None = None
) -> tuple[Path, Path]:
    """(state dir, run dir) of a lab, machine-wide like its namespaces (docs/operations.md).

    As root: ``/var/lib/vpngw/<lab>`` (configurations, logs, fingerprints) and
    ``/run/vpngw/<lab>`` (VICI sockets and pid files, gone at a reboot with the charons
    and namespaces). Otherwise per user: ``$XDG_STATE_HOME/vpngw/<lab>`` (default
    ``~/.local/state``) and ``$XDG_RUNTIME_DIR/vpngw/<lab>`` (default: the state dir).
    Never under the working directory: two folders on one lab share one charon state.
    """
    env = os.environ if environ is None else environ
    if os.geteuid() == 0 if root is None else root:
        return STATE_ROOT / lab, RUN_ROOT / lab
    state_home = Path(env.get("XDG_STATE_HOME") or Path(env.get("HOME") or Path.home()) / ".local" / "state")
    state = state_home / "vpngw" / lab
    runtime = env.get("XDG_RUNTIME_DIR")
    return state, (Path(runtime) / "vpngw" / lab if runtime else state)


class LabOwnedElsewhere(BackendBusy):
    """The lab belongs to another database: taking it over would delete that database's
    gateways (they are not in this one)."""

    def __init__(self, lab: str, owner: str, other: str) -> None:
        super().__init__(
            f"lab {lab!r} belongs to the database {owner}, not to this one ({other}): its gateways "
            f"would be deleted; give this server another lab (--lab NAME), or remove that lab "
            f"first if its database is gone (vpngw lab down --lab {lab})"
        )
        self.lab = lab
        self.owner = owner
        self.other = other


class LabNetwork:
    """One lab: its WAN, its gateways' namespaces and charons, its peers (the ``lab``
    network backend).

    ``owner`` names the database this process serves: a lab records the first owner that
    drives it (beside its lock, in /run/vpngw: it lasts as long as the namespaces) and
    refuses any other until ``vpngw lab down``. None (tests, ``vpngw lab`` commands):
    no record, no check.
    """

    kind = "lab"

    def __init__(
        self, name: str, state_dir: Path, *, run_dir: Path | None = None, owner: str | None = None
    ) -> None:
        self.names = LabNames(topology.check_lab_name(name))
        self.state_dir = state_dir
        self.run_dir = run_dir or state_dir
        self.owner = owner

    @property
    def owner_path(self) -> Path:
        return LOCK_DIR / f"{self.names.lab}.owner"

    def recorded_owner(self) -> str | None:
        """The database that owns this lab, or None if none is recorded."""
        try:
            return str(json.loads(self.owner_path.read_text())["database"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def lock(self) -> IO[bytes]:
        """Hold the machine-wide lock of this lab (closing the file releases it).

        Two reconcilers on one lab would each remove the other's gateways (a gateway
        that is not in *its* store is deleted), so a second one is refused, and so is one
        on another database than the lab's owner (:class:`LabOwnedElsewhere`), running or
        not.
        """
        self._check_owner()
        handle = machine_lock(
            self.names.lab,
            f"lab {self.names.lab!r} is driven by another vpngw process; "
            "give this one another lab (--lab NAME) or --no-dataplane",
        )
        try:
            self._check_owner()
            if self.owner is not None:
                self.owner_path.write_text(json.dumps({"database": self.owner}) + "\n")
        except BaseException:
            handle.close()
            raise
        return handle

    def _check_owner(self) -> None:
        recorded = self.recorded_owner()
        if self.owner is not None and recorded is not None and recorded != self.owner:
            raise LabOwnedElsewhere(self.names.lab, recorded, self.owner)

    def prepare(self) -> None:
        self.ensure_wan()

    # -- WAN ----------------------------------------------------------------------

    def ensure_wan(self) -> None:
        wan = self.names.wan
        netns.ensure_namespace(wan)
        if not link_exists(wan, topology.WAN_BRIDGE):
            netns.run("ip", "-n", wan, "link", "add", topology.WAN_BRIDGE, "type", "bridge")
            netns.run(
                "ip",
                "-n",
                wan,
                "addr",
                "add",
                f"{topology.WAN_ROUTER}/{topology.WAN_NETWORK.prefixlen}",
                "dev",
                topology.WAN_BRIDGE,
            )
            netns.run("ip", "-n", wan, "link", "set", topology.WAN_BRIDGE, "up")

    def attach_to_wan(self, namespace: str, address: str) -> None:
        """Give ``namespace`` a ``wan0`` on the lab bridge holding ``address``/32.

        Only the lab range (and host routes a caller adds) is reachable through it: a
        default route would let packets for the far subnets leave unencrypted.
        """
        self.ensure_wan()
        port = topology.bridge_port(namespace)
        if not link_exists(namespace, topology.WAN_IF):
            if link_exists(self.names.wan, port):
                netns.run("ip", "-n", self.names.wan, "link", "del", port)
            netns.add_veth_pair(namespace, topology.WAN_IF, self.names.wan, port)
            netns.run("ip", "-n", self.names.wan, "link", "set", port, "master", topology.WAN_BRIDGE)
            netns.run("ip", "-n", namespace, "addr", "add", f"{address}/32", "dev", topology.WAN_IF)
            netns.run(
                "ip", "-n", namespace, "route", "add", str(topology.WAN_NETWORK), "dev", topology.WAN_IF
            )

    # -- gateways -----------------------------------------------------------------

    def gateway(self, vpn_gateway_id: str) -> GatewayHost:
        return GatewayHost(
            vpn_gateway_id,
            self.names.gateway(vpn_gateway_id),
            self.names.vpc(vpn_gateway_id),
            self.state_dir / f"g-{vpn_gateway_id}",
            charon_profile.strongswan_conf,
            self.run_dir / f"g-{vpn_gateway_id}",
        )

    def gateway_ids(self) -> set[str]:
        """Gateways that have a namespace in this lab (running, or left behind)."""
        ids = {self.names.gateway_id_of(ns) for ns in namespaces()}
        return {gateway_id for gateway_id in ids if gateway_id}

    def ensure_gateway(self, vpn_gateway_id: str, internet_ip: str) -> GatewayHost:
        """The gateway's namespace on the WAN and its VPC side, created if missing."""
        host = self.gateway(vpn_gateway_id)
        vpc_namespace = self.names.vpc(vpn_gateway_id)  # the lab always has a VPC side
        netns.ensure_namespace(host.namespace)
        self.attach_to_wan(host.namespace, internet_ip)
        netns.ensure_namespace(vpc_namespace)
        if not link_exists(host.namespace, topology.GATEWAY_VPC_IF):
            netns.add_veth_pair(
                host.namespace, topology.GATEWAY_VPC_IF, vpc_namespace, topology.VPC_GATEWAY_IF
            )
            prefix = topology.TRANSIT_PREFIX
            netns.add_address(host.namespace, topology.GATEWAY_VPC_IF, f"{topology.TRANSIT_GATEWAY}/{prefix}")
            netns.add_address(vpc_namespace, topology.VPC_GATEWAY_IF, f"{topology.TRANSIT_VPC}/{prefix}")
        host.state_dir.mkdir(parents=True, exist_ok=True)
        return host

    def sync_gateway(self, state: GatewayState) -> None:
        host = self.ensure_gateway(state.vpn_gateway_id, state.internet_ip)
        gateway_lo, gateway_routes, vpc_routes = network_plan(state)
        netns.sync_lo_addresses(host.namespace, gateway_lo)
        netns.sync_routes(host.namespace, gateway_routes)
        netns.sync_routes(host.vpc_namespace, vpc_routes)

    def hold_internet_ip(self, vpn_gateway_id: str, internet_ip: str, valid_s: float) -> None:
        """The lab is one machine, guarded by its lock: the address stays for ever."""

    def fence(self, vpn_gateway_id: str) -> None:
        host = self.gateway(vpn_gateway_id)
        if host.namespace in namespaces():
            netns.kill_namespace_processes(host.namespace)
            if link_exists(host.namespace, topology.WAN_IF):
                netns.run("ip", "-n", host.namespace, "link", "set", topology.WAN_IF, "down")

    def remove_gateway(self, vpn_gateway_id: str) -> None:
        """Stop every process in the gateway's namespaces (found from the namespaces
        themselves, not only from a pid file), delete them and the state: nothing stays."""
        host = self.gateway(vpn_gateway_id)
        for namespace in (host.namespace, self.names.vpc(vpn_gateway_id)):
            netns.kill_namespace_processes(namespace)
            netns.delete_namespace(namespace)
        self.detach_from_wan(host.namespace)
        shutil.rmtree(host.state_dir, ignore_errors=True)
        if host.run_dir is not None:
            shutil.rmtree(host.run_dir, ignore_errors=True)

    def detach_from_wan(self, namespace: str) -> None:
        """Remove the bridge end of a deleted namespace's WAN veth, if it is still there.

        The kernel frees a deleted namespace (and so both veth ends) asynchronously: the
        port may vanish between looking and deleting, which is fine.
        """
        port = topology.bridge_port(namespace)
        if self.names.wan not in namespaces() or not link_exists(self.names.wan, port):
            return
        try:
            netns.run("ip", "-n", self.names.wan, "link", "del", port)
        except NetnsError:
            if link_exists(self.names.wan, port):
                raise

    # -- the whole lab --------------------------------------------------------------

    def teardown(self) -> None:
        """Remove every gateway, peer and the WAN of this lab (``vpngw lab down``)."""
        for gateway_id in self.gateway_ids():
            self.remove_gateway(gateway_id)
        for namespace in sorted(namespaces()):
            if self.names.owns(namespace):
                netns.kill_namespace_processes(namespace)
                netns.delete_namespace(namespace)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.owner_path.unlink(missing_ok=True)  # the lab is free for any database again

    def peer_dir(self, name: str) -> Path:
        return self.state_dir / f"p-{name}"

    def peer_run_dir(self, name: str) -> Path:
        return self.run_dir / f"p-{name}"


def network_plan(state: GatewayState) -> tuple[set[str], set[Route], set[Route]]:
    """(addresses on the gateway's ``lo``, routes in the gateway namespace, routes on the
    VPC side) for ``state``: the whole lab layout of one gateway, pure."""
    gateway_routes = {
        Route(subnet, topology.GATEWAY_VPC_IF, topology.TRANSIT_VPC) for subnet in routed_local_subnets(state)
    }
    vpc_routes = {Route(subnet, "lo", kind="local") for subnet in routed_local_subnets(state)}
    for spec in state.connections:
        if ipaddress.ip_address(spec.remote_addr) not in topology.WAN_NETWORK:
            gateway_routes.add(Route(f"{spec.remote_addr}/32", topology.WAN_IF))
    for subnet in state.auto_routes:
        network = ipaddress.ip_network(subnet, strict=False)
        vpc_routes.add(Route(str(network), topology.VPC_GATEWAY_IF, topology.TRANSIT_GATEWAY))
    return gateway_addresses(state), gateway_routes, vpc_routes
