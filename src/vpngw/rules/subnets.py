"""LocalSubnet / RemoteSubnet: the traffic selectors of a VPN connection."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

from vpngw.errors import BadRequest

_CIDR = re.compile(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", re.ASCII)
_ANY = IPv4Network("0.0.0.0/0")


def _illegal(param: str, value: str, reason: str) -> BadRequest:
    return BadRequest(f"IllegalParam.{param}", f'The specified "{param}" ({value}) is invalid: {reason}')


def parse_subnets(param: str, value: str, max_count: int) -> tuple[IPv4Network, ...]:
    """Comma-separated IPv4 CIDRs, each a network address, no duplicates, at most ``max_count``.

    Spaces around the items are tolerated; the canonical form (``join_subnets``) has none.
    """
    items = [item.strip() for item in value.split(",")]
    if not items or any(not item for item in items):
        raise _illegal(param, value, "an empty item in the comma-separated list")
    if len(items) > max_count:
        raise _illegal(param, value, f"at most {max_count} CIDR blocks are allowed")
    networks: list[IPv4Network] = []
    for item in items:
        if not _CIDR.fullmatch(item):
            raise _illegal(param, value, f"{item!r} is not an IPv4 CIDR block such as 10.0.0.0/24")
        try:
            network = IPv4Network(item, strict=True)
        except ipaddress.NetmaskValueError:
            raise _illegal(param, value, f"{item!r} has an invalid prefix length") from None
        except ValueError:
            host = ipaddress.IPv4Interface(item) if _valid_interface(item) else None
            hint = f"; did you mean {host.network}?" if host else ""
            raise _illegal(param, value, f"{item!r} is not a network address{hint}") from None
        if network in networks:
            raise _illegal(param, value, f"{item} is listed twice")
        networks.append(network)
    return tuple(networks)


def _valid_interface(item: str) -> bool:
    try:
        ipaddress.IPv4Interface(item)
    except ValueError:
        return False
    return True


def join_subnets(networks: Iterable[IPv4Network]) -> str:
    return ",".join(str(network) for network in networks)


def is_destination_routing(local: tuple[IPv4Network, ...], remote: tuple[IPv4Network, ...]) -> bool:
    """0.0.0.0/0 on both sides is Alibaba's destination-routing mode."""
    return local == (_ANY,) and remote == (_ANY,)


def _overlap(a: Iterable[IPv4Network], b: Iterable[IPv4Network]) -> tuple[IPv4Network, IPv4Network] | None:
    for x in a:
        for y in b:
            if x.overlaps(y):
                return x, y
    return None


def check_sides(local: tuple[IPv4Network, ...], remote: tuple[IPv4Network, ...]) -> None:
    """The two sides of one connection never overlap; 0.0.0.0/0 on both is not supported yet."""
    if is_destination_routing(local, remote):
        raise BadRequest(
            "OperationUnsupported.DestinationRouting",
            "LocalSubnet and RemoteSubnet 0.0.0.0/0 select destination-routing mode, "
            "which this service does not support yet; give the subnets of both sides.",
        )
    pair = _overlap(local, remote)
    if pair:
        raise _illegal(
            "RemoteSubnet",
            join_subnets(remote),
            f"{pair[1]} overlaps {pair[0]} of LocalSubnet",
        )


@dataclass(frozen=True)
class Selectors:
    """The traffic selectors of an existing connection, for the conflict check."""

    connection_id: str
    local: tuple[IPv4Network, ...]
    remote: tuple[IPv4Network, ...]


def check_no_conflict(
    local: tuple[IPv4Network, ...], remote: tuple[IPv4Network, ...], others: Iterable[Selectors]
) -> None:
    """Two connections on one gateway conflict when both their local and their remote
    subnets overlap: their traffic selectors would claim the same packets."""
    for other in others:
        if _overlap(local, other.local) and _overlap(remote, other.remote):
            raise BadRequest(
                "VpnConnection.SubnetConflict",
                f"LocalSubnet and RemoteSubnet overlap those of {other.connection_id} on the same VPN gateway: "
                "both connections would claim the same traffic.",
            )


@functools.lru_cache(maxsize=4096)
def parse_stored(value: str) -> tuple[IPv4Network, ...]:
    """Subnets as stored (already validated and canonical). Cached: every create parses
    the selectors of its gateway's other connections, and networks are immutable."""
    return tuple(IPv4Network(item) for item in value.split(","))
