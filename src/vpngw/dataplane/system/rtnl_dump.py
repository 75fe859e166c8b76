"""What a network namespace holds, read over rtnetlink without a process (impure).

The reconciler re-checks every gateway's network every 22.5-30 minutes (and at every
change of its desired state): whether its links exist, which addresses ``lo`` holds,
which routes with vpngw's protocol are there. As ``ip -j`` commands that was seven
processes per gateway and 8.6 ms of CPU in them (docs/benchmarks.md, "Issue 18, next
session"); here the same facts come from rtnetlink dumps (links, IPv4 addresses, IPv4
routes) sent from the calling thread, which :func:`~.netns.in_namespace` puts in the
namespace. Only reads: every change is still an ``ip`` command (docs/dataplane.md).

The functions here run in whatever namespace the calling thread is in; they know no
namespace names (netns.py wraps them).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLM_F_DUMP_INTR = 0x10
_RTM_GETLINK, _RTM_NEWLINK = 18, 16
_RTM_GETADDR, _RTM_NEWADDR = 22, 20
_RTM_GETROUTE, _RTM_NEWROUTE = 26, 24
_IFLA_IFNAME = 3
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 1, 4, 5, 15
_RTNH_F_ONLINK = 4
_RT_TABLE_MAIN, _RT_TABLE_LOCAL = 254, 255

# ``ip``'s names of the route types (rtnetlink.h, RTN_*), as ``ip -j route`` prints them.
ROUTE_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}


class DumpError(OSError):
    """The kernel refused a dump, or a dump was interrupted by a change (retried once)."""


@dataclass(frozen=True)
class DumpedRoute:
    """One IPv4 route as the kernel holds it (every table)."""

    dst: str  # "a.b.c.d/len"
    dev: str  # "" when the route has no single output interface
    via: str | None
    kind: str  # ROUTE_TYPES' name
    table: int
    protocol: int
    onlink: bool


@dataclass
class NamespaceDump:
    """Links (index -> name), IPv4 addresses per link name (``a.b.c.d/len``), IPv4 routes."""

    links: dict[int, str] = field(default_factory=dict)
    addresses: dict[str, set[str]] = field(default_factory=dict)
    routes: list[DumpedRoute] = field(default_factory=list)

    def has_link(self, name: str) -> bool:
        return name in self.links.values()


def _request(kind: int, body: bytes, sequence: int) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, _NLM_F_REQUEST | _NLM_F_DUMP, sequence, 0) + body


def _attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """rtattrs from ``offset`` to the end of ``data`` (the last of a kind wins)."""
    found: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _dump(sock: socket.socket, kind: int, body: bytes, sequence: int) -> list[tuple[int, bytes]]:
    """Every message (type, payload) of one dump."""
    sock.send(_request(kind, body, sequence))
    messages: list[tuple[int, bytes]] = []
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + 16 <= len(data):
            length, message_type, flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                raise DumpError("rtnetlink: a message shorter than its header")
            payload = data[offset + 16 : offset + length]
            offset += (length + 3) & ~3
            if seq != sequence:
                continue
            if flags & _NLM_F_DUMP_INTR:
                raise DumpError("rtnetlink: the dump was interrupted by a change")
            if message_type == _NLMSG_DONE:
                return messages
            if message_type == _NLMSG_ERROR:
                (error,) = struct.unpack_from("=i", payload)
                if error:
                    raise DumpError(-error, os.strerror(-error))
                continue
            messages.append((message_type, payload))


def _links(sock: socket.socket) -> dict[int, str]:
    links: dict[int, str] = {}
    for message_type, payload in _dump(
        sock, _RTM_GETLINK, struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0), 1
    ):
        if message_type != _RTM_NEWLINK:
            continue
        (index,) = struct.unpack_from("=i", payload, 4)
        name = _attributes(payload, 16).get(_IFLA_IFNAME)
        if name is not None:
            links[index] = name.rstrip(b"\0").decode()
    return links


def _addresses(sock: socket.socket, links: dict[int, str]) -> dict[str, set[str]]:
    addresses: dict[str, set[str]] = {}
    for message_type, payload in _dump(
        sock, _RTM_GETADDR, struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0), 2
    ):
        if message_type != _RTM_NEWADDR:
            continue
        family, prefixlen, _flags, _scope, index = struct.unpack_from("=BBBBI", payload)
        if family != socket.AF_INET:
            continue
        attributes = _attributes(payload, 8)
        local = attributes.get(_IFA_LOCAL, attributes.get(_IFA_ADDRESS))
        if local is None or index not in links:
            continue
        addresses.setdefault(links[index], set()).add(f"{ipaddress.IPv4Address(local)}/{prefixlen}")
    return addresses


def _routes(sock: socket.socket, links: dict[int, str]) -> list[DumpedRoute]:
    routes: list[DumpedRoute] = []
    request = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    for message_type, payload in _dump(sock, _RTM_GETROUTE, request, 3):
        if message_type != _RTM_NEWROUTE:
            continue
        family, dst_len, _src_len, _tos, table, protocol, _scope, kind, flags = struct.unpack_from(
            "=BBBBBBBBI", payload
        )
        if family != socket.AF_INET:
            continue
        attributes = _attributes(payload, 12)
        if _RTA_TABLE in attributes:
            (table,) = struct.unpack("=I", attributes[_RTA_TABLE][:4])
        dst = attributes.get(_RTA_DST)
        gateway = attributes.get(_RTA_GATEWAY)
        oif = attributes.get(_RTA_OIF)
        dev = links.get(struct.unpack("=i", oif[:4])[0], "") if oif is not None else ""
        routes.append(
            DumpedRoute(
                dst=f"{ipaddress.IPv4Address(dst) if dst else '0.0.0.0'}/{dst_len}",
                dev=dev,
                via=str(ipaddress.IPv4Address(gateway)) if gateway else None,
                kind=ROUTE_TYPES.get(kind, str(kind)),
                table=table,
                protocol=protocol,
                onlink=bool(flags & _RTNH_F_ONLINK),
            )
        )
    return routes


def dump_here(*, addresses: bool = True, routes: bool = True) -> NamespaceDump:
    """Links, and (unless told not to) IPv4 addresses and routes, of the namespace the
    calling thread is in: one rtnetlink socket, two or three dumps. A dump that a
    concurrent change interrupted is read again once (DumpError if again)."""
    for attempt in range(2):
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
                sock.settimeout(2.0)
                sock.bind((0, 0))
                result = NamespaceDump(links=_links(sock))
                if addresses:
                    result.addresses = _addresses(sock, result.links)
                if routes:
                    result.routes = _routes(sock, result.links)
                return result
        except DumpError as error:
            if attempt or error.errno is not None:
                raise
    raise AssertionError("unreachable")
