"""The network backend: where a VPN gateway's network comes from.

The reconciler and the gateway agent never know whether they drive the lab's namespaces
(:class:`~.lab_network.LabNetwork`) or a real host's interfaces
(:class:`~.host_network.HostNetwork`): both offer this one interface. A backend owns
everything *around* charon (namespaces, links, addresses, routes); charon itself, its
connections and what it observes are the same everywhere (:mod:`.charon`,
:mod:`.gateway_agent`).

The pure rules that every backend shares (which addresses a gateway holds inside its
local subnets) live here too.
"""

from __future__ import annotations

import fcntl
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from vpngw.dataplane.errors import BackendBusy

if TYPE_CHECKING:
    from vpngw.dataplane.spec.from_store import GatewayState


# Inside every gateway's namespace, whatever the backend: ``wan0`` holds the InternetIp,
# ``vpc0`` is the transit link toward the VPC side. Every gateway has a namespace of its
# own, so every one uses the same two transit addresses. On a host, ``nexthop0`` (a
# macvlan of the VPC-side interface) holds the gateway's VPC-side next hop.
WAN_IF = "wan0"
GATEWAY_VPC_IF = "vpc0"
VPC_NEXT_HOP_IF = "nexthop0"
TRANSIT_GATEWAY = "169.254.100.1"  # the gateway's end of the transit link
TRANSIT_VPC = "169.254.100.2"  # the VPC side's end (the lab's VPC namespace; a host's veth)
TRANSIT_PREFIX = 30


def node_gateway_prefix(node: str) -> str:
    """The name prefix of a host node's gateway namespaces (``vpngw-<node>-g-<vpn-id>``):
    the host backend names them so, and lab nodes, which play hosts, clean them up."""
    return f"vpngw-{node}-g-"


#: A charon profile: (VICI socket path, log file path) -> the text of its strongswan.conf.
#: Each backend brings its own (the lab's test tuning; the host's production settings).
CharonProfile = Callable[[str, Path], str]


@dataclass(frozen=True)
class GatewayHost:
    """Where one VPN gateway runs: the namespace of its charon, charon's state dir, and
    the charon profile its backend brings.

    ``vpc_namespace`` is the namespace that stands for the VPC side (the lab's), or the
    node's own namespace on a host (None: the namespace vpngw runs in). ``run_dir`` holds
    the VICI socket and the pid file (e.g. under /run, gone at a reboot like the charon
    itself); None: the state dir holds them too.
    """

    vpn_gateway_id: str
    namespace: str
    vpc_namespace: str | None
    state_dir: Path
    profile: CharonProfile
    run_dir: Path | None = None

    @property
    def vici_path(self) -> str:
        return str((self.run_dir or self.state_dir) / "charon.vici")

    @property
    def pid_path(self) -> Path:
        return (self.run_dir or self.state_dir) / "charon.pid"


class NetworkBackend(Protocol):
    """What the data plane needs from the network of the machine it runs on."""

    #: ``lab`` or ``host`` (shown by ``vpngw node list``).
    kind: str
    #: Whether :meth:`hold_internet_ip` and :meth:`hold_vpc_next_hop` give addresses a
    #: lifetime that every renewal must refresh (the host's kernel lifetimes). False: they
    #: hold nothing (the lab), and the lease keeper does not call them at every renewal
    #: (a thousand calls a second that do nothing, at 1,000 gateways).
    addresses_expire: bool

    def lock(self) -> IO[bytes]:
        """Hold the machine-wide lock of this backend's gateways (closing releases it):
        two data planes on one set of namespaces would remove each other's gateways."""
        ...

    def prepare(self) -> None:
        """Check or build what every gateway shares (the lab WAN; the host's uplink)."""
        ...

    def gateway(self, vpn_gateway_id: str) -> GatewayHost:
        """Where the gateway runs and with which charon profile (pure: names only)."""
        ...

    def gateway_ids(self) -> set[str]:
        """Gateways that have a namespace here (running, or left behind)."""
        ...

    def sync_gateway(self, state: GatewayState) -> None:
        """Make the gateway's namespaces, links, addresses and routes match ``state``."""
        ...

    def remove_gateway(self, vpn_gateway_id: str) -> None:
        """Stop every process of the gateway and delete its namespaces and state."""
        ...

    def hold_internet_ip(self, vpn_gateway_id: str, internet_ip: str, valid_s: float) -> None:
        """Keep answering for ``internet_ip`` for ``valid_s`` more seconds (a lease was
        renewed). The kernel drops the address by itself when that time passes without
        a renewal, so a node that dies or loses the database stops answering for it
        before another node may take it (docs/nodes.md). A backend without other nodes
        may keep the address for ever."""
        ...

    def hold_vpc_next_hop(self, vpn_gateway_id: str, address: str, valid_s: float) -> None:
        """Keep answering for the gateway's VPC-side next hop for ``valid_s`` more seconds,
        as :meth:`hold_internet_ip` does for its InternetIp (kernel lifetime, gratuitous ARP
        when new here). A separate operation: the lease keeper binds it to the gateway's
        lease today; a dual-tunnel gateway binds it to the node of its preferred live
        tunnel. A backend without a shared VPC segment may ignore it."""
        ...

    def drop_vpc_next_hop(self, vpn_gateway_id: str) -> None:
        """Stop answering for the gateway's VPC-side next hop at once (another node is to
        answer for it), leaving the rest of the gateway running."""
        ...

    def fence(self, vpn_gateway_id: str) -> None:
        """Stop answering for the gateway at once (its lease could not be renewed): drop
        its InternetIp and its VPC-side next hop and stop its charon. Needs no database;
        the next pass removes the rest."""
        ...


LOCK_DIR = Path("/run/vpngw")


def machine_lock(name: str, busy_message: str) -> IO[bytes]:
    """Hold ``/run/vpngw/<name>.lock`` (closing the file releases it, and so does the
    process's end); raise BackendBusy with ``busy_message`` if another process holds it."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    handle = open(LOCK_DIR / f"{name}.lock", "wb")  # noqa: SIM115 - held until released
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BackendBusy(busy_message) from None
    return handle


def remove_machine_locks(prefix: str) -> list[str]:
    """Remove the lock files ``/run/vpngw/<prefix>.lock`` and ``/run/vpngw/<prefix>-*.lock``
    (a lab's and its nodes', ``vpngw lab down``) that no process holds; the names removed.
    A held one stays: removing it would let a second process take a fresh lock beside it."""
    removed = []
    for path in sorted({LOCK_DIR / f"{prefix}.lock", *LOCK_DIR.glob(f"{prefix}-*.lock")}):
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def gateway_anchor(subnet: str) -> str | None:
    """The address a gateway holds inside one of its local subnets, or None.

    strongSwan 5.9.8 refuses to install a CHILD_SA whose local traffic selector holds
    no address of its namespace ("error installing route"), and uses that address as
    the route's source. The gateway takes the first host of each subnet, like the
    address a cloud reserves in every subnet. Subnets too wide for that (shorter than
    /8, e.g. 0.0.0.0/0) already contain a transit address.
    """
    network = ipaddress.ip_network(subnet, strict=False)
    if network.version != 4 or network.prefixlen < 8:
        return None
    if network.prefixlen >= 31:
        return str(network.network_address)
    return str(network.network_address + 1)


def gateway_addresses(state: GatewayState) -> set[str]:
    """The host addresses the gateway's namespace holds on ``lo``: the anchor of every
    local subnet and every health check's ``sip``."""
    found = {
        anchor
        for spec in state.connections
        for subnet in spec.local_subnets
        if (anchor := gateway_anchor(subnet)) is not None
    }
    return found | {check.sip for check in state.health_checks}


def routed_local_subnets(state: GatewayState) -> set[str]:
    """The local subnets (normalised) that the gateway routes toward the VPC side."""
    return {
        str(ipaddress.ip_network(subnet, strict=False))
        for spec in state.connections
        for subnet in spec.local_subnets
        if ipaddress.ip_network(subnet, strict=False).prefixlen >= 8
    }
