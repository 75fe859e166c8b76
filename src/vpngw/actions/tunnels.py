"""The tunnels of dual-tunnel connections, as the connection actions take and show them.

A dual-tunnel gateway (CreateVpnGateway with DisasterRecoveryVSwitchId) has two
addresses; each of its connections has two tunnels, one per address (tunnel 1 on the
InternetIp, tunnel 2 on the DisasterRecoveryInternetIp), each with its own customer
gateway, role (one master, one slave) and IKE / IPsec settings (TunnelOptionsSpecification).
The connection's top-level IkeConfig, IpsecConfig, EnableDpd, EnableNatTraversal and
CustomerGatewayId are a copy of the master tunnel's, kept in step on every change, for
tools that read only the top level. docs/api.md, "Dual-tunnel connections".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from vpngw import ids
from vpngw.actions.customer_gateways import customer_gateway_not_found
from vpngw.actions.framework import Context, Response
from vpngw.errors import BadRequest, NotFound
from vpngw.ike_config import opened_ike, sealed_ike
from vpngw.rules import tunnel_options
from vpngw.rules.tunnel_config import DEFAULT_IPSEC, default_ike, merge_ike, merge_ipsec
from vpngw.rules.tunnel_options import TunnelGiven
from vpngw.store import freshness, leases, queries
from vpngw.store.models import VpnConnection, VpnConnectionTunnel

INITIAL_STATUS = freshness.NOT_UP
NEVER_OBSERVED = "No data-plane node has reported this tunnel yet: it is not known to be established."
# The public API's per-tunnel State while the tunnel's configuration stands.
TUNNEL_STATE = "active"

NewTunnels = Annotated[
    list[TunnelGiven], BeforeValidator(lambda v: list(tunnel_options.parse_new_tunnels(v)))
]
ChangedTunnels = Annotated[list[TunnelGiven], BeforeValidator(tunnel_options.parse_changed_tunnels)]
OneTunnel = Annotated[TunnelGiven, BeforeValidator(tunnel_options.parse_one_tunnel)]

#: The top-level parameters that hold one tunnel's settings: on a dual-tunnel gateway they
#: are given per tunnel instead (``TunnelOptionsSpecification.N.*``).
SINGLE_TUNNEL_SETTINGS = ("CustomerGatewayId", "IkeConfig", "IpsecConfig", "EnableDpd", "EnableNatTraversal")
#: The top-level flags a dual-tunnel request may still carry, as long as each equals the
#: value of every tunnel: Terraform's provider sends ``EnableDpd`` / ``EnableNatTraversal``
#: whenever its state knows them, and its state reads them from the top level (a copy of
#: the master tunnel's), so an echo must not fail; a value that disagrees is refused.
ECHOED_FLAGS = {"EnableDpd": "enable_dpd", "EnableNatTraversal": "enable_nat_traversal"}


def single_tunnel_gateway(gateway_id: str) -> BadRequest:
    return BadRequest(
        "IncorrectTunnelMode.SingleTunnelGateway",
        f"The VPN gateway {gateway_id} has one tunnel: TunnelOptionsSpecification is for dual-tunnel "
        "gateways (CreateVpnGateway with DisasterRecoveryVSwitchId). Give CustomerGatewayId, IkeConfig "
        "and IpsecConfig instead.",
    )


def dual_tunnel_gateway(gateway_id: str, parameter: str) -> BadRequest:
    return BadRequest(
        "IncorrectTunnelMode.DualTunnelGateway",
        f'The VPN gateway {gateway_id} is dual-tunnel: "{parameter}" is set per tunnel, in '
        "TunnelOptionsSpecification.N (CustomerGatewayId, EnableDpd, EnableNatTraversal, "
        "TunnelIkeConfig, TunnelIpsecConfig).",
    )


def check_echoed_flags(
    gateway_id: str, given: Mapping[str, bool | None], rows: Sequence[VpnConnectionTunnel]
) -> None:
    """Refuse a top-level ``EnableDpd`` / ``EnableNatTraversal`` on a dual-tunnel
    connection unless it equals that flag of every tunnel (:data:`ECHOED_FLAGS`)."""
    for parameter, column in ECHOED_FLAGS.items():
        value = given.get(parameter)
        if value is not None and any(getattr(row, column) != value for row in rows):
            raise BadRequest(
                "IncorrectTunnelMode.DualTunnelGateway",
                f'The VPN gateway {gateway_id} is dual-tunnel: "{parameter}" is set per tunnel, in '
                f"TunnelOptionsSpecification.N.{parameter}; {parameter} outside it is accepted only "
                "when it equals the value of both tunnels.",
            )


def tunnel_not_found(tunnel_id: str) -> NotFound:
    return NotFound("InvalidTunnelId.NotFound", f"The specified tunnel {tunnel_id} does not exist.")


def check_no_single_tunnel_settings(gateway_id: str, given: Mapping[str, bool]) -> None:
    """``given``: which of :data:`SINGLE_TUNNEL_SETTINGS` the request carries (an empty
    IkeConfig ``{}``, as Terraform sends one, does not count)."""
    for parameter in SINGLE_TUNNEL_SETTINGS:
        if given.get(parameter):
            raise dual_tunnel_gateway(gateway_id, parameter)


@dataclass(frozen=True)
class TunnelAddresses:
    """A dual-tunnel gateway's id and its two addresses (tunnel 1's, tunnel 2's)."""

    gateway_id: str
    first: str
    second: str

    def of(self, tunnel_index: int) -> str:
        return self.first if tunnel_index == 1 else self.second


def _customer_ip(ctx: Context, session: Session, region_id: str, customer_gateway_id: str) -> str:
    found = queries.customer_gateway_endpoint(session, ctx.account_id, region_id, customer_gateway_id)
    if found is None:
        raise customer_gateway_not_found(customer_gateway_id)
    return found.ip_address


def new_tunnel_rows(
    ctx: Context,
    session: Session,
    region_id: str,
    connection_id: str,
    addresses: TunnelAddresses,
    given: Sequence[TunnelGiven],
) -> list[VpnConnectionTunnel]:
    """The two tunnel rows of a new connection, the public API's defaults filled in: DPD
    and NAT traversal on, a random 16-character Psk per tunnel, LocalId the tunnel's
    address, RemoteId its customer gateway's address. Entry N is tunnel N."""
    rows = []
    for index, tunnel in enumerate(given, 1):
        customer_gateway_id = tunnel.customer_gateway_id or ""
        customer_ip = _customer_ip(ctx, session, region_id, customer_gateway_id)
        ike = merge_ike(default_ike(ids.new_psk(), addresses.of(index), customer_ip), tunnel.ike)
        rows.append(
            VpnConnectionTunnel(
                id=ids.new_resource_id("tun"),
                vpn_connection_id=connection_id,
                tunnel_index=index,
                role=tunnel.role or "",
                customer_gateway_id=customer_gateway_id,
                enable_dpd=True if tunnel.enable_dpd is None else tunnel.enable_dpd,
                enable_nat_traversal=True
                if tunnel.enable_nat_traversal is None
                else tunnel.enable_nat_traversal,
                ike_config=sealed_ike(ctx.sealer, ike),
                ipsec_config=dict(merge_ipsec(DEFAULT_IPSEC, tunnel.ipsec)),
                status=INITIAL_STATUS,
                diagnosis="",
            )
        )
    return rows


def tunnel_settings(ctx: Context, row: VpnConnectionTunnel) -> tuple[Any, ...]:
    """What a tunnel is negotiated from: a change of any renegotiates it (and clears its diagnosis)."""
    return (
        row.customer_gateway_id,
        opened_ike(ctx.sealer, row.ike_config),
        dict(row.ipsec_config),
        row.enable_dpd,
        row.enable_nat_traversal,
    )


def apply_change(
    ctx: Context, session: Session, region_id: str, row: VpnConnectionTunnel, change: TunnelGiven
) -> None:
    """Merge one tunnel's given settings into its row (the caller checks the roles)."""
    before = tunnel_settings(ctx, row)
    if change.customer_gateway_id is not None and change.customer_gateway_id != row.customer_gateway_id:
        _customer_ip(ctx, session, region_id, change.customer_gateway_id)
        row.customer_gateway_id = change.customer_gateway_id
    if change.role is not None:
        row.role = change.role
    if change.enable_dpd is not None:
        row.enable_dpd = change.enable_dpd
    if change.enable_nat_traversal is not None:
        row.enable_nat_traversal = change.enable_nat_traversal
    if change.ike:
        row.ike_config = sealed_ike(ctx.sealer, merge_ike(opened_ike(ctx.sealer, row.ike_config), change.ike))
    if change.ipsec:
        row.ipsec_config = dict(merge_ipsec(row.ipsec_config, change.ipsec))
    if tunnel_settings(ctx, row) != before:
        row.diagnosis = ""  # the data plane diagnoses the new settings afresh


def mirror_master(connection: VpnConnection, tunnels: Sequence[VpnConnectionTunnel]) -> None:
    """Copy the master tunnel's settings to the connection's top-level columns."""
    master = next(row for row in tunnels if row.role == "master")
    connection.customer_gateway_id = master.customer_gateway_id
    connection.ike_config = dict(master.ike_config)
    connection.ipsec_config = dict(master.ipsec_config)
    connection.enable_dpd = master.enable_dpd
    connection.enable_nat_traversal = master.enable_nat_traversal


def master_columns(tunnels: Sequence[VpnConnectionTunnel]) -> dict[str, Any]:
    """The top-level column values of a new dual-tunnel connection (the master's copy)."""
    master = next(row for row in tunnels if row.role == "master")
    return {
        "customer_gateway_id": master.customer_gateway_id,
        "ike_config": dict(master.ike_config),
        "ipsec_config": dict(master.ipsec_config),
        "enable_dpd": master.enable_dpd,
        "enable_nat_traversal": master.enable_nat_traversal,
    }


# -- what Describe* shows ---------------------------------------------------------------


class TunnelBgpView(Response):
    """BGP over the tunnels is not offered: always empty."""

    local_asn: int = 0
    tunnel_cidr: str = ""
    local_bgp_ip: str = ""
    peer_asn: int = 0
    peer_bgp_ip: str = ""
    bgp_status: str = ""


class TunnelOption(Response):
    tunnel_id: str
    tunnel_index: int
    role: str
    customer_gateway_id: str
    internet_ip: str
    # The data-plane node that holds the tunnel's address ('' while none does): vpngw's "zone".
    zone_no: str
    state: str
    status: str
    # Strings "true"/"false", as the official SDK's DescribeVpnConnection model types them.
    enable_dpd: str
    enable_nat_traversal: str
    remote_ca_certificate: str
    # Plain dicts keep the wire's key names (IkeVersion, ...).
    tunnel_ike_config: dict[str, Any]
    tunnel_ipsec_config: dict[str, Any]
    tunnel_bgp_config: TunnelBgpView
    # vpngw extension, as the connection's: why the tunnel does not come up ('' when it does).
    diagnosis: str


class TunnelOptionsView(Response):
    tunnel_options: list[TunnelOption]


@dataclass(frozen=True)
class TunnelReading:
    """A tunnel's Status and Diagnosis as the API reports them (freshness applied)."""

    row: VpnConnectionTunnel
    status: str
    diagnosis: str


def observers_of(session: Session, gateway_ids: Sequence[str]) -> dict[str, freshness.Observer]:
    """The lease rows of both addresses of each gateway, by lease key."""
    keys = [leases.lease_key(g, index) for g in gateway_ids for index in (1, 2)]
    return freshness.observers(session, keys)


def holders_of(ctx: Context, session: Session, gateway_ids: Sequence[str]) -> dict[str, str]:
    """The node holding each address of the gateways now, by lease key."""
    keys = [leases.lease_key(g, index) for g in gateway_ids for index in (1, 2)]
    return leases.holders(session, keys, now_ms=ctx.now_ms)


def reading(
    row: VpnConnectionTunnel, gateway_id: str, seen_by: Mapping[str, freshness.Observer], now_ms: int
) -> TunnelReading:
    """A tunnel's observation counts only while the holder of its address confirms it
    (store/freshness.py); a tunnel no node has reported yet reads not established."""
    observer = seen_by.get(leases.lease_key(gateway_id, row.tunnel_index))
    status, diagnosis = freshness.effective(row.status, row.diagnosis, observer, now_ms=now_ms)
    if row.observed_time is None and status == row.status and not diagnosis:
        diagnosis = NEVER_OBSERVED
    return TunnelReading(row, status, diagnosis)


def summary_status(readings: Sequence[TunnelReading]) -> str:
    """The connection's Status: ``ipsec_sa_established`` when any tunnel carries traffic,
    else the best of its tunnels' (docs/api.md)."""
    return freshness.summary(r.status for r in readings)


def tunnel_view(
    ctx: Context, found: TunnelReading, addresses: TunnelAddresses, nodes: Mapping[str, str]
) -> TunnelOption:
    row = found.row
    return TunnelOption(
        tunnel_id=row.id,
        tunnel_index=row.tunnel_index,
        role=row.role,
        customer_gateway_id=row.customer_gateway_id,
        internet_ip=addresses.of(row.tunnel_index),
        zone_no=nodes.get(leases.lease_key(addresses.gateway_id, row.tunnel_index), ""),
        state=TUNNEL_STATE,
        status=found.status,
        enable_dpd="true" if row.enable_dpd else "false",
        enable_nat_traversal="true" if row.enable_nat_traversal else "false",
        remote_ca_certificate="",
        tunnel_ike_config=dict(opened_ike(ctx.sealer, row.ike_config)),
        tunnel_ipsec_config=dict(row.ipsec_config),
        tunnel_bgp_config=TunnelBgpView(),
        diagnosis=found.diagnosis,
    )


def find_tunnel(tunnels: Sequence[VpnConnectionTunnel], tunnel_id: str) -> VpnConnectionTunnel:
    for row in tunnels:
        if row.id == tunnel_id:
            return row
    raise tunnel_not_found(tunnel_id)


def check_roles(tunnels: Sequence[VpnConnectionTunnel]) -> None:
    tunnel_options.check_roles([row.role for row in tunnels])
