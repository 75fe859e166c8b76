"""The desired state of one VPN connection, in the API's vocabulary.

These are plain frozen values: the reconciler builds them from the database and compares
them with ``==`` to decide whether charon must be told anything. They hold API words
(``ikev2``, ``aes``, ``group2``, ``disabled``), never strongSwan keywords; translating is
the job of ``proposals`` and ``render``.

Only the shape is checked here (closed vocabularies, integer lifetimes, tuples), so that
a malformed row fails where the spec is built. Algorithm names are checked by the single
table in ``proposals``, and subnets by ``render``. The API layer has already validated
everything a client sent, so any failure here is a :class:`~.errors.PermanentError`.

The pre-shared key is excluded from ``repr`` (and so from ``str``, logs and tracebacks);
``dataclasses.asdict`` and pickling still carry it, so do not log their output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vpngw.dataplane.errors import InvalidSpec
from vpngw.ike_config import IKE_MODES, IKE_VERSIONS, IkeMode, IkeVersion


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidSpec(name, value, f"must be one of {', '.join(choices)}")


def _check_lifetime(name: str, value: object) -> None:
    # bool is an int subclass; True is not a lifetime.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidSpec(name, value, "must be a non-negative integer number of seconds")


def _check_subnets(name: str, value: object) -> None:
    if not isinstance(value, tuple) or not value or not all(isinstance(s, str) for s in value):
        raise InvalidSpec(name, value, "must be a non-empty tuple of CIDR strings")


@dataclass(frozen=True)
class IkeSettings:
    """Phase 1 (IKE SA): the API's ``IkeConfig``."""

    version: IkeVersion
    mode: IkeMode
    enc_alg: str
    auth_alg: str
    pfs: str
    lifetime: int
    psk: str = field(repr=False)
    local_id: str
    remote_id: str

    def __post_init__(self) -> None:
        _check_choice("ike.version", self.version, IKE_VERSIONS)
        _check_choice("ike.mode", self.mode, IKE_MODES)
        _check_lifetime("ike.lifetime", self.lifetime)
        if not isinstance(self.psk, str) or not self.psk:
            # Never put the key itself in the error.
            raise InvalidSpec("ike.psk", "<hidden>", "must be a non-empty string")


@dataclass(frozen=True)
class IpsecSettings:
    """Phase 2 (CHILD_SA): the API's ``IpsecConfig``. ``pfs`` may be ``disabled``."""

    enc_alg: str
    auth_alg: str
    pfs: str
    lifetime: int

    def __post_init__(self) -> None:
        _check_lifetime("ipsec.lifetime", self.lifetime)


@dataclass(frozen=True)
class ConnectionSpec:
    """One VPN connection as charon must run it.

    ``name`` is the connection's ``vco-`` id; it names the strongSwan connection, so it
    must be unique within one charon. ``local_addr`` is the VPN gateway's public IP and
    ``remote_addr`` the customer gateway's.
    """

    name: str
    local_addr: str
    remote_addr: str
    local_subnets: tuple[str, ...]
    remote_subnets: tuple[str, ...]
    ike: IkeSettings
    ipsec: IpsecSettings
    effect_immediately: bool
    enable_dpd: bool
    enable_nat_traversal: bool
    # The first static reqid of the connection's children; 0 lets charon choose.
    reqid: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.reqid, int) or isinstance(self.reqid, bool) or self.reqid < 0:
            raise InvalidSpec("reqid", self.reqid, "must be a non-negative integer")
        if not isinstance(self.name, str) or not self.name:
            raise InvalidSpec("name", self.name, "must be a non-empty string")
        _check_subnets("local_subnets", self.local_subnets)
        _check_subnets("remote_subnets", self.remote_subnets)
