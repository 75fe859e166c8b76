"""The lab's network layout: names and addresses, decided in one place (pure).

Every namespace of one lab starts with the lab's name (``vpngw`` by default), so that a
lab can be found, adopted and removed by name alone, and a test lab (``vpngw-t-3fa9c1``)
never touches another lab::

    <lab>-wan          the lab WAN: a bridge ``wan`` holding 198.18.0.1/15
    <lab>-g-<vpn-id>   one per VPN gateway: charon, ``wan0`` (InternetIp/32), ``vpc0``
    <lab>-v-<vpn-id>   the VPC side behind that gateway: ``gw0``, hosts of the local subnets
    <lab>-p-<name>     one per lab peer (customer gateway): charon, ``wan0``, its hosts
    <lab>-vpc          the VPC segment that lab nodes made with ``--shared-vpc`` share

docs/lab.md draws the same picture for people who attach their own IPsec peer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

# The gateway side of every namespace is every backend's; the lab names it here too.
from vpngw.dataplane.backends.base import GATEWAY_VPC_IF as GATEWAY_VPC_IF
from vpngw.dataplane.backends.base import TRANSIT_GATEWAY as TRANSIT_GATEWAY
from vpngw.dataplane.backends.base import TRANSIT_PREFIX as TRANSIT_PREFIX
from vpngw.dataplane.backends.base import TRANSIT_VPC as TRANSIT_VPC
from vpngw.dataplane.backends.base import WAN_IF as WAN_IF

# The lab WAN. VPN gateways take their InternetIp from 198.18.0.0/16 (config's
# internet_ip_pool); lab peers conventionally use 198.19.0.0/16.
WAN_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
WAN_ROUTER = "198.18.0.1"
WAN_BRIDGE = "wan"

# Inside each namespace: the gateway's side is every backend's (backends/base.py); the
# VPC namespace's end of the transit link is the lab's own.
VPC_GATEWAY_IF = "gw0"

DEFAULT_LAB = "vpngw"
_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
_PEER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def check_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name):
        raise ValueError(f"lab name {name!r}: 1-24 of a-z, 0-9 and '-', starting with a letter")
    return name


def check_peer_name(name: str) -> str:
    if not _PEER_NAME.match(name):
        raise ValueError(f"peer name {name!r}: 1-32 of a-z, 0-9 and '-'")
    return name


@dataclass(frozen=True)
class LabNames:
    """The names of one lab's namespaces and bridge-side interfaces."""

    lab: str

    @property
    def wan(self) -> str:
        return f"{self.lab}-wan"

    @property
    def vpc_segment(self) -> str:
        """The VPC segment that the lab's ``--shared-vpc`` nodes share (lab/node.py)."""
        return f"{self.lab}-vpc"

    def gateway(self, vpn_gateway_id: str) -> str:
        return f"{self.lab}-g-{vpn_gateway_id}"

    def vpc(self, vpn_gateway_id: str) -> str:
        return f"{self.lab}-v-{vpn_gateway_id}"

    def peer(self, name: str) -> str:
        return f"{self.lab}-p-{name}"

    def gateway_id_of(self, namespace: str) -> str | None:
        prefix = f"{self.lab}-g-"
        return namespace[len(prefix) :] if namespace.startswith(prefix) else None

    def peer_name_of(self, namespace: str) -> str | None:
        prefix = f"{self.lab}-p-"
        return namespace[len(prefix) :] if namespace.startswith(prefix) else None

    def owns(self, namespace: str) -> bool:
        return namespace in (self.wan, self.vpc_segment) or any(
            namespace.startswith(f"{self.lab}-{kind}-") for kind in ("g", "v", "p")
        )


def bridge_port(namespace: str) -> str:
    """The bridge-side name of a namespace's WAN veth: at most 15 characters, stable."""
    return "w" + hashlib.sha256(namespace.encode()).hexdigest()[:12]
