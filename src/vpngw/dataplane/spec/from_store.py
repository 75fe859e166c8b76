"""The desired state of the whole data plane, read from the store.

The reconciler calls :func:`load_desired` for the gateways whose change stamp moved
(:mod:`vpngw.store.desired_generation`), and for all of them on its heal pass, and
compares the result with what charon holds. The conversion of one stored connection,
:func:`connection_spec`, is pure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from vpngw.dataplane.errors import PermanentError
from vpngw.dataplane.spec.desired import ConnectionSpec, IkeSettings, IpsecSettings
from vpngw.dataplane.spec.render import REQIDS_PER_CONNECTION
from vpngw.ike_config import opened_ike
from vpngw.sealing import Sealer, SealingError
from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.leases import lease_key
from vpngw.store.models import VpnConnection, VpnConnectionTunnel


@dataclass(frozen=True)
class HealthCheckSpec:
    """An enabled HealthCheckConfig: ICMP from ``sip`` to ``dip`` every ``interval_s``."""

    connection_id: str
    sip: str
    dip: str
    interval_s: int
    retry: int


@dataclass(frozen=True)
class RejectedConnection:
    """A stored connection that cannot become a spec (a PermanentError): charon does not
    run it, and its Status and Diagnosis say why."""

    name: str
    reason: str


@dataclass(frozen=True)
class GatewayState:
    """One VPN gateway address (one charon) and everything its data plane must realise."""

    # The lease key: the gateway id, or ``<id>.dr`` for a dual-tunnel gateway's second address.
    vpn_gateway_id: str
    internet_ip: str
    connections: tuple[ConnectionSpec, ...]
    # Remote subnets to route from the VPC side toward the gateway (AutoConfigRoute).
    auto_routes: tuple[str, ...] = ()
    health_checks: tuple[HealthCheckSpec, ...] = ()
    rejected: tuple[RejectedConnection, ...] = ()
    # The names (TunnelIds) of the specs and rejected connections that are tunnels of
    # dual-tunnel connections: their observations go to the tunnel rows.
    tunnels: frozenset[str] = frozenset()
    # A dual-tunnel gateway's address: the other address (the partner it watches, docs/nodes.md)
    # and whether this one carries the VPC-side direction while its tunnels are up.
    partner_ip: str | None = None
    preferred: bool = True
    # The VPC-side next hop (an address of the VPC segment that follows the gateway's
    # lease; None for a gateway that has none yet). Both addresses of a dual-tunnel gateway
    # carry it: the partner watch decides which of their nodes answers for it.
    vpc_next_hop: str | None = None


def connection_spec(
    *,
    connection_id: str,
    gateway_ip: str,
    customer_ip: str,
    local_subnet: str,
    remote_subnet: str,
    ike_config: Mapping[str, Any],
    ipsec_config: Mapping[str, Any],
    effect_immediately: bool,
    enable_dpd: bool,
    enable_nat_traversal: bool,
    reqid: int = 0,
) -> ConnectionSpec:
    """A stored connection (configs with the wire's key names and the Psk in clear,
    subnets comma-joined) as the data plane's desired state."""
    return ConnectionSpec(
        name=connection_id,
        local_addr=gateway_ip,
        remote_addr=customer_ip,
        local_subnets=tuple(local_subnet.split(",")),
        remote_subnets=tuple(remote_subnet.split(",")),
        ike=IkeSettings(
            version=ike_config["IkeVersion"],
            mode=ike_config["IkeMode"],
            enc_alg=ike_config["IkeEncAlg"],
            auth_alg=ike_config["IkeAuthAlg"],
            pfs=ike_config["IkePfs"],
            lifetime=int(ike_config["IkeLifetime"]),
            psk=ike_config["Psk"],
            local_id=ike_config["LocalId"],
            remote_id=ike_config["RemoteId"],
        ),
        ipsec=IpsecSettings(
            enc_alg=ipsec_config["IpsecEncAlg"],
            auth_alg=ipsec_config["IpsecAuthAlg"],
            pfs=ipsec_config["IpsecPfs"],
            lifetime=int(ipsec_config["IpsecLifetime"]),
        ),
        effect_immediately=effect_immediately,
        enable_dpd=enable_dpd,
        enable_nat_traversal=enable_nat_traversal,
        reqid=reqid,
    )


def health_check_spec(connection_id: str, check: Mapping[str, Any]) -> HealthCheckSpec | None:
    """The prober's target for a stored HealthCheckConfig, None when disabled."""
    if not check.get("Enable") or not check.get("Sip") or not check.get("Dip"):
        return None
    return HealthCheckSpec(
        connection_id, check["Sip"], check["Dip"], int(check["Interval"]), int(check["Retry"])
    )


def load_desired(
    db: Database, sealer: Sealer, gateway_ids: Collection[str] | None = None
) -> dict[str, GatewayState]:
    """Every gateway address with the specs it runs, keyed by lease key
    (:func:`vpngw.store.leases.lease_key`); only the addresses of ``gateway_ids`` when
    given (the gateways whose change stamp moved, :mod:`vpngw.store.desired_generation`).

    A single-tunnel gateway is one state under its id, as always. A dual-tunnel gateway is
    two: its InternetIp (under its id) runs tunnel 1 of each of its connections, its
    DisasterRecoveryInternetIp (``<id>.dr``) tunnel 2; each tunnel is a charon connection
    named after its TunnelId, always up, with the tunnel's own customer gateway and
    settings, and the connection's subnets. Each address runs in its own charon, on the
    node that holds its lease.
    """
    with db.transaction(write=False) as session:
        gateways, connections = queries.desired_rows(session, gateway_ids)
        tunnels = queries.tunnels_of(session, [connection.id for connection, _ip in connections])
        tunnel_addresses = queries.customer_gateway_addresses(
            session, {t.customer_gateway_id for rows in tunnels.values() for t in rows}
        )
        units: dict[str, _Unit] = {}
        for gateway in gateways:
            first, second = gateway.internet_ip, gateway.disaster_recovery_internet_ip
            units[lease_key(gateway.id)] = _Unit(first, gateway.vpc_next_hop, partner_ip=second or None)
            if second:
                units[lease_key(gateway.id, 2)] = _Unit(
                    second, gateway.vpc_next_hop, partner_ip=first, preferred=False
                )
        masters: dict[str, list[int]] = {}
        for connection, _customer_ip in connections:
            for tunnel in tunnels.get(connection.id, []):
                if tunnel.role == "master":
                    masters.setdefault(connection.vpn_gateway_id, []).append(tunnel.tunnel_index)
        for gateway_id, indexes in masters.items():
            # The address that runs most master tunnels (ties: the first) is preferred.
            second_wins = indexes.count(2) > indexes.count(1)
            units[lease_key(gateway_id)].preferred = not second_wins
            if lease_key(gateway_id, 2) in units:
                units[lease_key(gateway_id, 2)].preferred = second_wins
        for connection, customer_ip in connections:
            rows = tunnels.get(connection.id, [])
            if not rows:
                _add_connection(units[lease_key(connection.vpn_gateway_id)], connection, customer_ip, sealer)
                continue
            for tunnel in rows:
                unit = units.get(lease_key(connection.vpn_gateway_id, tunnel.tunnel_index))
                if unit is None:
                    continue  # tunnel 2 of a gateway without a second address: nowhere to run it
                _add_tunnel(
                    unit, connection, tunnel, tunnel_addresses.get(tunnel.customer_gateway_id, ""), sealer
                )
    return {
        key: GatewayState(
            key,
            unit.internet_ip,
            tuple(unit.specs),
            tuple(sorted(set(unit.routes))),
            tuple(unit.checks),
            tuple(unit.rejected),
            frozenset(unit.tunnels),
            unit.partner_ip,
            unit.preferred,
            unit.vpc_next_hop,
        )
        for key, unit in units.items()
    }


@dataclass
class _Unit:
    """What one gateway address runs, while :func:`load_desired` gathers it."""

    internet_ip: str
    vpc_next_hop: str | None = None
    partner_ip: str | None = None
    preferred: bool = True
    specs: list[ConnectionSpec] = field(default_factory=list)
    rejected: list[RejectedConnection] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    checks: list[HealthCheckSpec] = field(default_factory=list)
    tunnels: set[str] = field(default_factory=set)


def _rejected(name: str, error: Exception) -> RejectedConnection:
    # One unusable row (written by another version, or by hand) stops only its own
    # connection. Messages name fields, never the Psk.
    reason = f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else str(error)
    return RejectedConnection(name, reason)


def _add_spec(
    unit: _Unit,
    connection: VpnConnection,
    name: str,
    settings: VpnConnection | VpnConnectionTunnel,
    customer_ip: str,
    sealer: Sealer,
    *,
    effect_immediately: bool,
) -> bool:
    """One charon connection named ``name`` for ``connection``'s selectors, negotiated from
    ``settings`` (the connection's own row, or one of its tunnels): added to ``unit``, or
    recorded as rejected (False)."""
    try:
        if not customer_ip:
            raise ValueError(f"the customer gateway {settings.customer_gateway_id} of {name} does not exist")
        spec = connection_spec(
            connection_id=name,
            gateway_ip=unit.internet_ip,
            customer_ip=customer_ip,
            local_subnet=connection.local_subnet,
            remote_subnet=connection.remote_subnet,
            ike_config=opened_ike(sealer, settings.ike_config),
            ipsec_config=settings.ipsec_config,
            effect_immediately=effect_immediately,
            enable_dpd=settings.enable_dpd,
            enable_nat_traversal=settings.enable_nat_traversal,
            reqid=connection.seq * REQIDS_PER_CONNECTION,
        )
    except (PermanentError, SealingError, KeyError, TypeError, ValueError) as error:
        unit.rejected.append(_rejected(name, error))
        return False
    if connection.auto_config_route:
        unit.routes.extend(connection.remote_subnet.split(","))
    unit.specs.append(spec)
    return True


def _add_connection(unit: _Unit, connection: VpnConnection, customer_ip: str, sealer: Sealer) -> None:
    """A single-tunnel connection, on its gateway's InternetIp."""
    added = _add_spec(
        unit,
        connection,
        connection.id,
        connection,
        customer_ip,
        sealer,
        effect_immediately=connection.effect_immediately,
    )
    check = health_check_spec(connection.id, connection.health_check) if added else None
    if check is not None:
        unit.checks.append(check)


def _add_tunnel(
    unit: _Unit, connection: VpnConnection, tunnel: VpnConnectionTunnel, customer_ip: str, sealer: Sealer
) -> None:
    """One tunnel of a dual-tunnel connection, on the address of its index: always up
    (both tunnels of a connection are, docs/nodes.md), whatever EffectImmediately says.
    Its reqid is the connection's: the two tunnels run in two charons."""
    unit.tunnels.add(tunnel.id)
    _add_spec(unit, connection, tunnel.id, tunnel, customer_ip, sealer, effect_immediately=True)
