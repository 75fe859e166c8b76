"""One rtnetlink request without a process: refresh an address's lifetime (impure).

The lease keeper refreshes the kernel lifetime of every leased address it holds every
few seconds (``backends/host/leased_address.py``). As ``ip`` commands that was one or two
processes per gateway per refresh, and on a loaded node (three agents building thirty
gateways on two cores) a renewal spent seconds spawning them, long enough to fence
itself (docs/benchmarks.md, "Nodes"). Here the request is sent from a short-lived thread
inside the gateway's namespace (:func:`~.netns.in_namespace`): what
``ip -n NS addr replace A/32 dev IF valid_lft S preferred_lft S`` sends, and nothing
else (building namespaces stays with ``ip``, docs/dataplane.md).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from vpngw.dataplane.system.netns import NetnsError, in_namespace

_RTM_NEWADDR = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_REPLACE, _NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
_IFA_ADDRESS, _IFA_LOCAL, _IFA_CACHEINFO = 1, 2, 6
_RT_SCOPE_UNIVERSE = 0


def _attribute(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def address_request(ifindex: int, address: str, valid_s: int, *, sequence: int = 1) -> bytes:
    """The RTM_NEWADDR message (create or replace) of ``address``/32 on ``ifindex`` with
    ``valid_s`` as both its valid and preferred lifetime."""
    packed = ipaddress.IPv4Address(address).packed
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, _RT_SCOPE_UNIVERSE, ifindex)
    body += _attribute(_IFA_LOCAL, packed) + _attribute(_IFA_ADDRESS, packed)
    body += _attribute(_IFA_CACHEINFO, struct.pack("=IIII", valid_s, valid_s, 0, 0))
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_REPLACE | _NLM_F_CREATE
    return struct.pack("=IHHII", 16 + len(body), _RTM_NEWADDR, flags, sequence, 0) + body


def _acknowledged(reply: bytes) -> int:
    """The error code of the kernel's acknowledgement (0: done; else a negative errno)."""
    _length, kind = struct.unpack_from("=IH", reply)
    if kind != _NLMSG_ERROR:
        raise NetnsError(f"rtnetlink answered message type {kind}, not an acknowledgement")
    (error,) = struct.unpack_from("=i", reply, 16)
    return int(error)


def replace_address(namespace: str, ifname: str, address: str, valid_s: int) -> None:
    """``ip -n NAMESPACE addr replace ADDRESS/32 dev IFNAME valid_lft S preferred_lft S``
    in-process. NetnsError if the namespace or interface is gone or the kernel refuses."""

    def send() -> int:
        ifindex = socket.if_nametoindex(ifname)  # answered in this thread's namespace
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(2.0)
            sock.bind((0, 0))
            sock.send(address_request(ifindex, address, valid_s))
            return _acknowledged(sock.recv(65536))

    try:
        error = in_namespace(namespace, send)
    except OSError as failure:
        raise NetnsError(f"{address} on {ifname} in {namespace}: {failure}") from None
    if error:
        raise NetnsError(f"{address} on {ifname} in {namespace}: {os.strerror(-error)}")
