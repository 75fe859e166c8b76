"""IkeConfig, IpsecConfig and HealthCheckConfig: JSON strings inside one parameter.

Parsing is lenient where real clients differ (keys in any case, numbers and booleans as
JSON values or strings, ``""`` or ``null`` meaning "not given") and strict about values:
every bad key or value gets an ``InvalidParameter.<Config>[.<Key>]`` error that names it.
A partial config (only the keys given) is merged over a base: the defaults on create,
the stored config on modify.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, Literal, cast

from typing_extensions import TypedDict

from vpngw.errors import BadRequest, invalid_parameter
from vpngw.ike_config import IKE_MODES, IKE_VERSIONS, IkeConfig
from vpngw.rules.values import check_choice, parse_bool, parse_int

ENC_ALGS = ("aes", "aes192", "aes256", "des", "3des")
AUTH_ALGS = ("md5", "sha1", "sha256", "sha384", "sha512")
DH_GROUPS = ("group1", "group2", "group5", "group14", "group24")
IPSEC_PFS = ("disabled", *DH_GROUPS)
HEALTH_CHECK_POLICIES = ("revoke_route", "reserve_route")
MAX_LIFETIME = 86400


class IpsecConfig(TypedDict):
    IpsecEncAlg: str
    IpsecAuthAlg: str
    IpsecPfs: str
    IpsecLifetime: int


class HealthCheck(TypedDict):
    Enable: bool
    Sip: str
    Dip: str
    Interval: int
    Retry: int
    Policy: str


Kind = Literal["choice", "int", "bool", "secret", "identity", "ipv4"]


@dataclass(frozen=True)
class Key:
    """One key of a JSON config: its canonical name and the rule for its value."""

    name: str
    kind: Kind
    choices: tuple[str, ...] = ()
    low: int = 0
    high: int = 0


IKE_KEYS = (
    Key("Psk", "secret"),
    Key("IkeVersion", "choice", IKE_VERSIONS),
    Key("IkeMode", "choice", IKE_MODES),
    Key("IkeEncAlg", "choice", ENC_ALGS),
    Key("IkeAuthAlg", "choice", AUTH_ALGS),
    Key("IkePfs", "choice", DH_GROUPS),
    Key("IkeLifetime", "int", low=0, high=MAX_LIFETIME),
    Key("LocalId", "identity"),
    Key("RemoteId", "identity"),
)
IPSEC_KEYS = (
    Key("IpsecEncAlg", "choice", ENC_ALGS),
    Key("IpsecAuthAlg", "choice", AUTH_ALGS),
    Key("IpsecPfs", "choice", IPSEC_PFS),
    Key("IpsecLifetime", "int", low=0, high=MAX_LIFETIME),
)
HEALTH_CHECK_KEYS = (
    Key("Enable", "bool"),
    Key("Sip", "ipv4"),
    Key("Dip", "ipv4"),
    Key("Interval", "int", low=1, high=60),
    Key("Retry", "int", low=1, high=10),
    Key("Policy", "choice", HEALTH_CHECK_POLICIES),
)
# The 2019 English API doc spells LocalId as "LocalIdIPsec"; accept that spelling too.
_KEY_ALIASES = {"localidipsec": "localid"}

DEFAULT_IPSEC: IpsecConfig = {
    "IpsecEncAlg": "aes",
    "IpsecAuthAlg": "md5",
    "IpsecPfs": "group2",
    "IpsecLifetime": MAX_LIFETIME,
}
DEFAULT_HEALTH_CHECK: HealthCheck = {
    "Enable": False,
    "Sip": "",
    "Dip": "",
    "Interval": 3,
    "Retry": 3,
    "Policy": "revoke_route",
}


def default_ike(psk: str, local_id: str, remote_id: str) -> IkeConfig:
    """The spec's defaults; the identities default to the two gateways' IP addresses."""
    return {
        "Psk": psk,
        "IkeVersion": "ikev1",
        "IkeMode": "main",
        "IkeEncAlg": "aes",
        "IkeAuthAlg": "md5",
        "IkePfs": "group2",
        "IkeLifetime": MAX_LIFETIME,
        "LocalId": local_id,
        "RemoteId": remote_id,
    }


def _printable_no_space(value: str) -> bool:
    return all("!" <= ch <= "~" for ch in value)


def _parse_value(param: str, key: Key, value: object) -> object:
    where = f"{param}.{key.name}"
    if key.kind == "int":
        return parse_int(where, value, key.low, key.high)
    if key.kind == "bool":
        return parse_bool(where, value)
    if not isinstance(value, str):
        raise invalid_parameter(where, "must be a string")
    if key.kind == "choice":
        return check_choice(where, value, key.choices).lower()
    if key.kind == "secret":
        # Never echo the value: it is a pre-shared key.
        if not 1 <= len(value) <= 100 or not _printable_no_space(value):
            raise invalid_parameter(where, "must be 1-100 printable ASCII characters without spaces")
        return value
    if key.kind == "identity":
        if len(value) > 100 or not _printable_no_space(value):
            raise invalid_parameter(where, "must be at most 100 printable ASCII characters without spaces")
        return value
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise invalid_parameter(where, f"{value!r} is not an IPv4 address") from None


def parse_config(param: str, text: str, keys: tuple[Key, ...]) -> dict[str, Any]:
    """The keys given in one JSON config string, canonically named and typed."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise invalid_parameter(param, "must be a JSON object") from None
    if not isinstance(document, dict):
        raise invalid_parameter(param, "must be a JSON object")
    return parse_keys(param, document, keys)


def parse_keys(
    param: str, document: Mapping[str, Any], keys: tuple[Key, ...], *, where: str = ""
) -> dict[str, Any]:
    """The keys given in one config object (already decoded), canonically named and typed.
    ``param`` names the error codes (``InvalidParameter.<param>[.<Key>]``); ``where`` (default
    ``param``) is the name the messages show, e.g. ``TunnelOptionsSpecification.2.TunnelIkeConfig``."""
    where = where or param
    by_lower = {key.name.lower(): key for key in keys}
    given: dict[str, Any] = {}
    for raw_name, value in document.items():
        lowered = raw_name.lower()
        key = by_lower.get(_KEY_ALIASES.get(lowered, lowered))
        if key is None:
            known = ", ".join(k.name for k in keys)
            raise _invalid(param, where, f"unknown key {raw_name!r}; the keys are {known}")
        if value is None or value == "":
            continue
        if key.name in given:
            raise _invalid(param, where, f"key {key.name} is given twice")
        try:
            given[key.name] = _parse_value(param, key, value)
        except BadRequest as error:
            if where == param:
                raise
            # The code keeps the parameter's family; the message names the entry.
            raise BadRequest(error.code, error.message.replace(f'"{param}.', f'"{where}.', 1)) from None
    return given


def _invalid(param: str, where: str, reason: str) -> BadRequest:
    error = invalid_parameter(param, reason)
    return BadRequest(error.code, error.message.replace(f'"{param}"', f'"{where}"', 1))


def merge_ike(base: Mapping[str, Any], given: Mapping[str, Any]) -> IkeConfig:
    # The base is a complete config and the given keys were parsed by the same rules.
    return cast(IkeConfig, {**base, **given})


def merge_ipsec(base: Mapping[str, Any], given: Mapping[str, Any]) -> IpsecConfig:
    return cast(IpsecConfig, {**base, **given})


def merge_health_check(base: Mapping[str, Any], given: Mapping[str, Any]) -> HealthCheck:
    return cast(HealthCheck, {**base, **given})


def check_health_check(
    check: HealthCheck, local: tuple[IPv4Network, ...], remote: tuple[IPv4Network, ...]
) -> None:
    """An enabled health check probes from a VPC-side address (sip, inside LocalSubnet)
    to an IDC-side address (dip, inside RemoteSubnet) through the tunnel."""
    if not check["Enable"]:
        return
    for key, value, side, name in (
        ("Sip", check["Sip"], local, "LocalSubnet"),
        ("Dip", check["Dip"], remote, "RemoteSubnet"),
    ):
        where = f"HealthCheckConfig.{key}"
        if not value:
            raise invalid_parameter(where, "is required when the health check is enabled")
        address = ipaddress.IPv4Address(value)
        if not any(address in network for network in side):
            raise invalid_parameter(where, f"{address} is not inside {name}")
