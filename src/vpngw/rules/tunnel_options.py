"""TunnelOptionsSpecification: the settings of each tunnel of a dual-tunnel connection.

The SDKs send it flattened into the form body (``TunnelOptionsSpecification.1.Role``,
``TunnelOptionsSpecification.1.TunnelIkeConfig.Psk``; ModifyTunnelAttribute's one object
without the index: ``TunnelOptionsSpecification.TunnelIkeConfig.Psk``); a JSON body (the
Apsara route) carries it as JSON. Either way one entry arrives here as a mapping whose
members are scalars, nested mappings, or dotted names (``TunnelIkeConfig.Psk``).

Values follow the rules of the top-level settings exactly (``rules.tunnel_config``:
TunnelIkeConfig is an IkeConfig, TunnelIpsecConfig an IpsecConfig). Error codes keep the
parameter's family without the entry's index (``InvalidParameter.TunnelOptionsSpecification.
TunnelIkeConfig.Psk``: a closed set), and the message names the entry
(``TunnelOptionsSpecification.2.TunnelIkeConfig.Psk``). A Psk is never echoed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vpngw.errors import BadRequest, invalid_parameter
from vpngw.rules.tunnel_config import IKE_KEYS, IPSEC_KEYS, parse_keys
from vpngw.rules.values import check_max_length, parse_bool, parse_int

PARAM = "TunnelOptionsSpecification"
ROLES = ("master", "slave")
TUNNELS = 2
#: The members of one entry (TunnelId only on ModifyVpnConnectionAttribute; TunnelIndex, not in
#: the SDK's request models, is what Terraform's tunnel blocks carry, and is accepted).
MEMBERS = (
    "TunnelId",
    "TunnelIndex",
    "CustomerGatewayId",
    "Role",
    "EnableDpd",
    "EnableNatTraversal",
    "TunnelIkeConfig",
    "TunnelIpsecConfig",
    "TunnelBgpConfig",
    "RemoteCaCertificate",
)
#: Every name an error code can carry after ``InvalidParameter.TunnelOptionsSpecification.``
#: or ``MissingParameter.TunnelOptionsSpecification.`` (vpngw.error_codes).
ERROR_KEYS = frozenset(
    [*MEMBERS]
    + [f"TunnelIkeConfig.{key.name}" for key in IKE_KEYS]
    + [f"TunnelIpsecConfig.{key.name}" for key in IPSEC_KEYS]
)


@dataclass(frozen=True)
class TunnelGiven:
    """What one entry gives (None / empty: not given, keep the default or what is stored)."""

    tunnel_id: str | None = None
    tunnel_index: int | None = None
    customer_gateway_id: str | None = None
    role: str | None = None
    enable_dpd: bool | None = None
    enable_nat_traversal: bool | None = None
    ike: dict[str, Any] = field(default_factory=dict)
    ipsec: dict[str, Any] = field(default_factory=dict)


def _invalid(member: str, where: str, reason: str) -> BadRequest:
    """``InvalidParameter.TunnelOptionsSpecification[.<member>]`` naming ``where`` in the message."""
    code_name = f"{PARAM}.{member}" if member else PARAM
    return BadRequest(
        invalid_parameter(code_name, reason).code, f'The specified parameter "{where}" is not valid: {reason}'
    )


def _decoded(value: Any, where: str, member: str = "") -> Any:
    """A JSON text where an object or a list is expected (a JSON body, or a member sent as
    one JSON string like IkeConfig) decoded; anything else as it is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise _invalid(member, where, "must be a JSON object") from None
    return value


def _nested(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The entry with dotted members (``TunnelIkeConfig.Psk``) folded into objects; member
    names matched case-insensitively."""
    canonical = {name.lower(): name for name in MEMBERS}
    out: dict[str, Any] = {}
    for raw_key, value in entry.items():
        head, _, rest = str(raw_key).partition(".")
        name = canonical.get(head.lower())
        if name is None:
            raise _invalid("", where, f"unknown member {head!r}; the members are {', '.join(MEMBERS)}")
        if rest:
            slot = out.setdefault(name, {})
            if not isinstance(slot, dict):
                raise _invalid(name, f"{where}.{name}", "is given both whole and by its keys")
            if rest in slot:
                raise _invalid(name, f"{where}.{name}", f"key {rest} is given twice")
            slot[rest] = value
        elif name in out:
            raise _invalid(name, f"{where}.{name}", "is given twice")
        else:
            out[name] = value
    return out


def _config(out: dict[str, Any], name: str, where: str, keys: Any) -> dict[str, Any]:
    value = _decoded(out.get(name), f"{where}.{name}", name)
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        raise _invalid(name, f"{where}.{name}", "must be an object (give its keys as .Key)")
    return parse_keys(f"{PARAM}.{name}", value, keys, where=f"{where}.{name}")


def _text(out: dict[str, Any], name: str, where: str, limit: int) -> str | None:
    value = out.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _invalid(name, f"{where}.{name}", "must be a string")
    return check_max_length(f"{PARAM}.{name}", value, limit)


def _flag(out: dict[str, Any], name: str, where: str) -> bool | None:
    value = out.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_bool(name, value)
    except BadRequest:
        raise _invalid(name, f"{where}.{name}", "must be true or false") from None


def _empty(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(_empty(item) for item in value.values())
    return value is None or value == ""


def parse_entry(entry: Any, where: str, *, tunnel_id: bool) -> TunnelGiven:
    """One entry (``where`` names it: ``TunnelOptionsSpecification.2``). ``tunnel_id``:
    whether the entry may carry a TunnelId (ModifyVpnConnectionAttribute's entries)."""
    entry = _decoded(entry, where)
    if not isinstance(entry, Mapping):
        raise _invalid("", where, "must be an object (give its members as .Member)")
    out = _nested(entry, where)
    # Refusals first, as for the top-level parameters (docs/api.md).
    if not _empty(_decoded(out.get("TunnelBgpConfig"), f"{where}.TunnelBgpConfig", "TunnelBgpConfig")):
        raise BadRequest(
            "OperationUnsupported.Bgp",
            f'"{where}.TunnelBgpConfig" is not supported: BGP over the tunnels is not offered '
            "(as BgpConfig.EnableBgp=true and EnableTunnelsBgp=true are not).",
        )
    if not _empty(out.get("RemoteCaCertificate")):
        raise BadRequest(
            "OperationUnsupported.RemoteCaCertificate",
            f'"{where}.RemoteCaCertificate" is not supported: certificates belong to NationalStandard '
            "(SM) gateways, which are not offered.",
        )
    if not tunnel_id and not _empty(out.get("TunnelId")):
        raise _invalid("TunnelId", f"{where}.TunnelId", "a new connection's tunnels have no id yet")
    role = _text(out, "Role", where, 16)
    if role is not None and role.lower() not in ROLES:
        raise _invalid("Role", f"{where}.Role", "must be master or slave")
    index = out.get("TunnelIndex")
    if index is not None and index != "":
        try:
            index = parse_int("TunnelIndex", index, 1, TUNNELS)
        except BadRequest:
            raise _invalid("TunnelIndex", f"{where}.TunnelIndex", "must be 1 or 2") from None
    return TunnelGiven(
        tunnel_id=_text(out, "TunnelId", where, 32),
        tunnel_index=index if isinstance(index, int) else None,
        customer_gateway_id=_text(out, "CustomerGatewayId", where, 32),
        role=role.lower() if role is not None else None,
        enable_dpd=_flag(out, "EnableDpd", where),
        enable_nat_traversal=_flag(out, "EnableNatTraversal", where),
        ike=_config(out, "TunnelIkeConfig", where, IKE_KEYS),
        ipsec=_config(out, "TunnelIpsecConfig", where, IPSEC_KEYS),
    )


def _entries(value: Any) -> list[Any]:
    value = _decoded(value, PARAM)
    if isinstance(value, Mapping):  # a JSON body may key its entries by N
        value = [value[key] for key in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0)]
    if not isinstance(value, list):
        raise _invalid("", PARAM, "give it as TunnelOptionsSpecification.N.Member")
    return value


def parse_new_tunnels(value: Any) -> tuple[TunnelGiven, TunnelGiven]:
    """CreateVpnConnection's entries: exactly two, one ``master`` and one ``slave``, each
    with its CustomerGatewayId. Entry N becomes tunnel N (tunnel 1 runs on the gateway's
    InternetIp, tunnel 2 on its DisasterRecoveryInternetIp)."""
    entries = _entries(value)
    if len(entries) != TUNNELS:
        raise _invalid(
            "", PARAM, f"a dual-tunnel connection has exactly two tunnels ({len(entries)} entries given)"
        )
    tunnels = [parse_entry(entry, f"{PARAM}.{n}", tunnel_id=False) for n, entry in enumerate(entries, 1)]
    indexes = [tunnel.tunnel_index for tunnel in tunnels]
    if any(index is not None for index in indexes):
        if sorted(index or 0 for index in indexes) != [1, 2]:
            raise _invalid("TunnelIndex", f"{PARAM}.N.TunnelIndex", "give both tunnels, 1 and 2, once each")
        tunnels.sort(key=lambda tunnel: tunnel.tunnel_index or 0)
    for n, tunnel in enumerate(tunnels, 1):
        if tunnel.customer_gateway_id is None:
            raise BadRequest(
                f"MissingParameter.{PARAM}.CustomerGatewayId",
                f'The input parameter "{PARAM}.{n}.CustomerGatewayId" that is mandatory for processing '
                "this request is not supplied.",
            )
        if tunnel.role is None:
            raise BadRequest(
                f"MissingParameter.{PARAM}.Role",
                f'The input parameter "{PARAM}.{n}.Role" that is mandatory for processing this request '
                "is not supplied (one tunnel is master, the other slave).",
            )
    check_roles([tunnel.role or "" for tunnel in tunnels])
    return tunnels[0], tunnels[1]


def check_roles(roles: Sequence[str]) -> None:
    """A connection's two tunnels are one ``master`` and one ``slave``."""
    if sorted(roles) != sorted(ROLES):
        raise _invalid("Role", f"{PARAM}.N.Role", "one tunnel must be master and the other slave")


def parse_changed_tunnels(value: Any) -> list[TunnelGiven]:
    """ModifyVpnConnectionAttribute's entries: one or two, each naming its tunnel by TunnelId
    (or by TunnelIndex when it has no TunnelId)."""
    entries = _entries(value)
    if not 1 <= len(entries) <= TUNNELS:
        raise _invalid("", PARAM, f"give one or two tunnels ({len(entries)} entries given)")
    tunnels = [parse_entry(entry, f"{PARAM}.{n}", tunnel_id=True) for n, entry in enumerate(entries, 1)]
    seen: set[str] = set()
    for n, tunnel in enumerate(tunnels, 1):
        if tunnel.tunnel_id is None and tunnel.tunnel_index is None:
            raise BadRequest(
                f"MissingParameter.{PARAM}.TunnelId",
                f'The input parameter "{PARAM}.{n}.TunnelId" that is mandatory for processing this '
                "request is not supplied (it names the tunnel to change).",
            )
        name = tunnel.tunnel_id or f"#{tunnel.tunnel_index}"
        if name in seen:
            raise _invalid("TunnelId", f"{PARAM}.{n}.TunnelId", f"the tunnel {name} is given twice")
        seen.add(name)
    return tunnels


def parse_one_tunnel(value: Any) -> TunnelGiven:
    """ModifyTunnelAttribute's one object (``TunnelOptionsSpecification.Member``): no
    TunnelId inside (the action names the tunnel) and no Role (a tunnel keeps its role)."""
    given = parse_entry(value, PARAM, tunnel_id=False)
    if given.tunnel_index is not None:
        raise _invalid("TunnelIndex", f"{PARAM}.TunnelIndex", "the tunnel is named by TunnelId")
    if given.role is not None:
        raise _invalid("Role", f"{PARAM}.Role", "ModifyTunnelAttribute does not change a tunnel's role")
    return given
