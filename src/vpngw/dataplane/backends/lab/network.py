"""The lab backend: every VPN gateway in a namespace pair of one lab, on its WAN.

:mod:`.lab` is the lab itself (names, directories, WAN, teardown), which peers and nodes
use too; this module is only the ``NetworkBackend`` the core drives. Everything is
idempotent and level-triggered, and only things this lab created are ever touched:
namespaces whose names carry the lab's prefix, routes with vpngw's protocol, addresses
on ``lo`` of the lab's own namespaces. docs/lab.md draws the layout.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
from pathlib import Path
from typing import IO

from vpngw.dataplane.backends.base import (
    GatewayHost,
    gateway_addresses,
    machine_lock,
    routed_local_subnets,
)
from vpngw.dataplane.backends.lab import charon_profile, topology
from vpngw.dataplane.backends.lab.lab import Lab
from vpngw.dataplane.errors import BackendBusy
from vpngw.dataplane.spec.from_store import GatewayState
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import Route, link_exists, namespaces

log = logging.getLogger(__name__)


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


class LabNetwork(Lab):
    """The ``lab`` network backend: each VPN gateway in a namespace pair of one lab
    (:class:`~.lab.Lab`), on its WAN.

    ``owner`` names the database this process serves: a lab records the first owner that
    drives it (beside its lock, in /run/vpngw: it lasts as long as the namespaces) and
    refuses any other until ``vpngw lab down``. None (tests, ``vpngw lab`` commands):
    no record, no check.
    """

    kind = "lab"
    addresses_expire = False

    def __init__(
        self, name: str, state_dir: Path, *, run_dir: Path | None = None, owner: str | None = None
    ) -> None:
        super().__init__(name, state_dir, run_dir=run_dir)
        self.owner = owner

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

    def hold_vpc_next_hop(self, vpn_gateway_id: str, address: str, valid_s: float) -> None:
        """Each lab gateway has a VPC side of its own, routed to it directly: no segment
        is shared, so no next hop is needed (lab nodes, on the host backend, have one)."""

    def drop_vpc_next_hop(self, vpn_gateway_id: str) -> None:
        """Nothing to drop (see :meth:`hold_vpc_next_hop`)."""

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
