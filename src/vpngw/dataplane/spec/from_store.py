"""The desired state of the whole data plane, read from the store.

The reconciler calls :func:`load_desired` on every pass (level-triggered: it never
needs to know what changed) and compares the result with what charon holds. The
conversion of one stored connection, :func:`connection_spec`, is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vpngw.dataplane.errors import PermanentError
from vpngw.dataplane.spec.desired import ConnectionSpec, IkeSettings, IpsecSettings
from vpngw.dataplane.spec.render import REQIDS_PER_CONNECTION
from vpngw.ike_config import opened_ike
from vpngw.sealing import Sealer, SealingError
from vpngw.store import queries
from vpngw.store.engine import Database


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
    """One VPN gateway (one charon) and everything its data plane must realise."""

    vpn_gateway_id: str
    internet_ip: str
    connections: tuple[ConnectionSpec, ...]
    # Remote subnets to route from the VPC side toward the gateway (AutoConfigRoute).
    auto_routes: tuple[str, ...] = ()
    health_checks: tuple[HealthCheckSpec, ...] = ()
    rejected: tuple[RejectedConnection, ...] = ()
    # The VPC-side next hop (an address of the VPC segment that follows the gateway's
    # lease; None for a gateway that has none yet).
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


def load_desired(db: Database, sealer: Sealer) -> dict[str, GatewayState]:
    """Every gateway with the specs of its connections, keyed by gateway id."""
    with db.transaction(write=False) as session:
        gateways, connections = queries.desired_rows(session)
        by_gateway: dict[str, list[ConnectionSpec]] = {g.id: [] for g in gateways}
        rejected: dict[str, list[RejectedConnection]] = {g.id: [] for g in gateways}
        routes: dict[str, list[str]] = {g.id: [] for g in gateways}
        checks: dict[str, list[HealthCheckSpec]] = {g.id: [] for g in gateways}
        addresses = {g.id: g.internet_ip for g in gateways}
        next_hops = {g.id: g.vpc_next_hop for g in gateways}
        # Dual-tunnel connections (#20) are run from their tunnel rows, which this data
        # plane does not do yet: they are skipped, and their tunnels read as not established.
        dual_tunnel = queries.dual_tunnel_connection_ids(session)
        for connection, customer_ip in connections:
            gateway_id = connection.vpn_gateway_id
            if connection.id in dual_tunnel:
                continue
            try:
                spec = connection_spec(
                    connection_id=connection.id,
                    gateway_ip=addresses[connection.vpn_gateway_id],
                    customer_ip=customer_ip,
                    local_subnet=connection.local_subnet,
                    remote_subnet=connection.remote_subnet,
                    ike_config=opened_ike(sealer, connection.ike_config),
                    ipsec_config=connection.ipsec_config,
                    effect_immediately=connection.effect_immediately,
                    enable_dpd=connection.enable_dpd,
                    enable_nat_traversal=connection.enable_nat_traversal,
                    reqid=connection.seq * REQIDS_PER_CONNECTION,
                )
            except (PermanentError, SealingError, KeyError, TypeError, ValueError) as error:
                # One unusable row (written by another version, or by hand) stops only
                # its own connection. Messages name fields, never the Psk.
                reason = f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else str(error)
                rejected[gateway_id].append(RejectedConnection(connection.id, reason))
                continue
            if connection.auto_config_route:
                routes[gateway_id].extend(connection.remote_subnet.split(","))
            check = health_check_spec(connection.id, connection.health_check)
            if check is not None:
                checks[gateway_id].append(check)
            by_gateway[gateway_id].append(spec)
    return {
        gateway_id: GatewayState(
            gateway_id,
            addresses[gateway_id],
            tuple(specs),
            tuple(sorted(set(routes[gateway_id]))),
            tuple(checks[gateway_id]),
            tuple(rejected[gateway_id]),
            next_hops[gateway_id],
        )
        for gateway_id, specs in by_gateway.items()
    }
