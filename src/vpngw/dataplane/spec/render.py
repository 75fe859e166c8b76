"""Render a :class:`~.desired.ConnectionSpec` into the messages VICI takes.

``render_connection(spec)`` returns the ``load-conn`` message and
``render_shared_key(spec)`` the ``load-shared`` message. Both are pure and deterministic:
the same spec always gives the same dict, every value is a string or a list of strings
(what goes on the wire), and lists whose order carries no meaning are sorted. Golden
files in ``tests/dataplane/golden/`` pin the output.

Choices made here (swanctl.conf vocabulary):

Children
    IKEv2 negotiates one CHILD_SA carrying every subnet, named like the connection
    (``vco-x``). IKEv1 Quick Mode carries one subnet pair per CHILD_SA (with several
    remote_ts only the first one gets traffic), so IKEv1 gets one child per
    (local, remote) pair, named ``vco-x-1``, ``vco-x-2``, ... in sorted pair order.
    Changing the subnets therefore may renumber IKEv1 children; the reconciler treats a
    subnet change as a changed connection anyway. :func:`child_names` lists them.

Lifetimes (``IkeLifetime``, ``IpsecLifetime``, seconds)
    A lifetime L > 0 is the hard limit. strongSwan rekeys at 90 % of L minus a random
    jitter of up to 10 % (``rand_time``), so a rekey starts between 80 % and 90 % of L
    and both peers rarely rekey at the same moment. For the IKE SA that is
    ``rekey_time`` + ``over_time`` = L (IKEv1 reauthenticates instead of rekeying), for
    the CHILD_SA ``life_time`` = L. Lifetimes under ``MIN_LIFETIME`` (60 s) are raised
    to it, so the margin between rekey and hard expiry is at least 6 s. With 10 s
    lifetimes on both peers (1 s margin) strongSwan 5.9.8 lost the whole IKEv2 SA in
    about one lab run in ten: both ends rekeyed at once and the hard lifetime expired
    while the collision was being resolved.

    L = 0 (the API accepts 0..86400) is taken as strongSwan's 0: this side never rekeys
    and never expires the SA; the peer's own lifetime still applies (IKEv2 lifetimes are
    not negotiated, so the peer rekeys or deletes when its timer fires).

Start, DPD and close actions
    ``EffectImmediately=true``: ``start_action=start`` (charon initiates when the
    connection is loaded), ``dpd_action=restart`` and ``close_action=start`` (charon
    re-initiates at once when the peer dies or deletes the CHILD_SA). ``keyingtries``
    keeps strongSwan's default of 1: the reconciler, not charon, owns long-term retries.

    ``EffectImmediately=false``: ``start_action=trap``, ``dpd_action=clear``,
    ``close_action=none``: negotiate when traffic enters. charon installs the trap
    policy and its route into ``ipsec0`` at once, but on strongSwan 5.9.8
    kernel-libipsec never raises the acquire itself (it logs "could not find an
    outbound IPsec SA for reqid {N}, dropping packet"; native support arrived in
    5.9.11). The reconciler watches charon's log for that line and initiates the
    child whose static ``reqid`` it names (``acquire.py``); as with a kernel acquire,
    the first packet is dropped.

Static reqids
    Every child gets ``reqid`` = ``spec.reqid`` + its index (0, 1, ...), so that a
    logged reqid names its child. ``spec.reqid`` comes from the connection's row
    (:data:`REQIDS_PER_CONNECTION` apart), so it never changes while the connection
    lives. 0 leaves the reqid to charon.

DPD (``EnableDpd``)
    ``dpd_delay`` = ``DPD_DELAY``; IKEv1 also gets ``dpd_timeout`` = ``IKEV1_DPD_TIMEOUT``.
    IKEv2 has no per-connection DPD timeout: it gives up after charon's global
    ``retransmit_*`` settings (strongswan.conf), about 165 s with the defaults.
    DPD off: neither key is written (strongSwan's default ``dpd_delay=0`` = off).

NAT traversal (``EnableNatTraversal``)
    true -> ``encap=yes`` (always UDP-encapsulate ESP, which also passes NATs that
    defeat detection); false -> ``encap=no``. strongSwan has no switch that refuses
    NAT-T: with ``encap=no`` it still floats to UDP 4500 when it detects a NAT. And on
    5.9.8 kernel-libipsec fakes a NAT, so ESP is always UDP-encapsulated there.

Identities and the pre-shared key
    ``LocalId``/``RemoteId`` default to the gateway addresses when empty. The key is
    loaded under the id ``psk-<vco-id>`` (:func:`shared_key_id`) with both identities
    as owners. ``unique=replace``: a peer that reconnects with the same identity (after
    a reboot, say) replaces its stale IKE_SA instead of stacking a second one.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vpngw.dataplane.errors import InvalidSpec
from vpngw.dataplane.spec.desired import ConnectionSpec
from vpngw.dataplane.spec.proposals import esp_proposal, ike_proposal

MIN_LIFETIME = 60
# IKEv1 needs one child per subnet pair: at most 10 x 10 with the default quotas.
REQIDS_PER_CONNECTION = 128
DPD_DELAY = "10s"
IKEV1_DPD_TIMEOUT = "30s"

# A child's description before rendering: (name, local_ts, remote_ts).
_Child = tuple[str, list[str], list[str]]


def shared_key_id(connection_name: str) -> str:
    """The ``load-shared``/``unload-shared`` id of a connection's pre-shared key."""
    return f"psk-{connection_name}"


def child_names(spec: ConnectionSpec) -> tuple[str, ...]:
    """The CHILD_SA config names :func:`render_connection` gives ``spec``, in order."""
    return tuple(name for name, _local, _remote in _children(spec))


def render_connection(spec: ConnectionSpec) -> dict[str, Any]:
    """The VICI ``load-conn`` message ``{name: {...}}`` for ``spec``."""
    ike_rekey, ike_margin = _rekey_and_margin(spec.ike.lifetime)
    conn: dict[str, Any] = {
        "version": "1" if spec.ike.version == "ikev1" else "2",
        "aggressive": _yes_no(spec.ike.version == "ikev1" and spec.ike.mode == "aggressive"),
        "local_addrs": [spec.local_addr],
        "remote_addrs": [spec.remote_addr],
        "proposals": [ike_proposal(spec.ike)],
        "rekey_time": _seconds(ike_rekey),
        "over_time": _seconds(ike_margin),
        "rand_time": _seconds(ike_margin),
        "encap": _yes_no(spec.enable_nat_traversal),
        "unique": "replace",
        "local": {"auth": "psk", "id": _local_id(spec)},
        "remote": {"auth": "psk", "id": _remote_id(spec)},
    }
    if spec.enable_dpd:
        conn["dpd_delay"] = DPD_DELAY
        if spec.ike.version == "ikev1":
            conn["dpd_timeout"] = IKEV1_DPD_TIMEOUT

    esp = esp_proposal(spec.ipsec)
    child_rekey, child_margin = _rekey_and_margin(spec.ipsec.lifetime)
    hard = child_rekey + child_margin
    always_up = spec.effect_immediately
    conn["children"] = {
        name: _with_reqid(
            spec,
            index,
            {
                "local_ts": local_ts,
                "remote_ts": remote_ts,
                "esp_proposals": [esp],
                "mode": "tunnel",
                "start_action": "start" if always_up else "trap",
                "dpd_action": "restart" if always_up else "clear",
                "close_action": "start" if always_up else "none",
                "rekey_time": _seconds(child_rekey),
                "life_time": _seconds(hard),
                "rand_time": _seconds(child_margin),
            },
        )
        for index, (name, local_ts, remote_ts) in enumerate(_children(spec))
    }
    return {spec.name: conn}


def child_reqids(spec: ConnectionSpec) -> dict[int, str]:
    """The static reqid of each of ``spec``'s children (empty when ``spec.reqid`` is 0)."""
    if not spec.reqid:
        return {}
    return {spec.reqid + index: name for index, name in enumerate(child_names(spec))}


def _with_reqid(spec: ConnectionSpec, index: int, child: dict[str, Any]) -> dict[str, Any]:
    if spec.reqid:
        child["reqid"] = str(spec.reqid + index)
    return child


def render_shared_key(spec: ConnectionSpec) -> dict[str, Any]:
    """The VICI ``load-shared`` message holding ``spec``'s pre-shared key."""
    return {
        "id": shared_key_id(spec.name),
        "type": "IKE",
        "data": spec.ike.psk,
        "owners": sorted({_local_id(spec), _remote_id(spec)}),
    }


def _children(spec: ConnectionSpec) -> list[_Child]:
    local = _sorted_subnets("local_subnets", spec.local_subnets)
    remote = _sorted_subnets("remote_subnets", spec.remote_subnets)
    if spec.ike.version == "ikev2":
        return [(spec.name, local, remote)]
    pairs = [(ls, rs) for ls in local for rs in remote]
    return [(f"{spec.name}-{n}", [ls], [rs]) for n, (ls, rs) in enumerate(pairs, start=1)]


def _sorted_subnets(field: str, subnets: tuple[str, ...]) -> list[str]:
    """Parse, de-duplicate and sort CIDRs numerically (10.2.0.0/16 before 10.10.0.0/16)."""
    networks: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for subnet in subnets:
        try:
            networks.add(ipaddress.ip_network(subnet, strict=True))
        except ValueError:
            raise InvalidSpec(field, subnet, "not a CIDR network address such as 10.0.0.0/24") from None
    ordered = sorted(networks, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    return [str(n) for n in ordered]


def _rekey_and_margin(lifetime: int) -> tuple[int, int]:
    """(rekey time, margin) with rekey + margin = the hard lifetime; (0, 0) for 0."""
    if lifetime == 0:
        return 0, 0
    hard = max(lifetime, MIN_LIFETIME)
    margin = hard // 10
    return hard - margin, margin


def _local_id(spec: ConnectionSpec) -> str:
    return spec.ike.local_id or spec.local_addr


def _remote_id(spec: ConnectionSpec) -> str:
    return spec.ike.remote_id or spec.remote_addr


def _seconds(value: int) -> str:
    return f"{value}s"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
