"""A connection's IkeConfig: its one shape, its closed vocabularies, its Psk sealed at rest.

Below both the actions (which validate, store and show it) and the data plane (which
negotiates with it), so that neither reads it through the other. The shape is the wire's:
the keys a client sends in ``IkeConfig`` are the keys stored in the ``ike_config`` column
and the keys ``DownloadVpnConnectionConfig`` returns. In the store the ``Psk`` is sealed
under the master key (:mod:`vpngw.sealing`), bound to :data:`PSK_PURPOSE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from typing_extensions import TypedDict

from vpngw.sealing import Sealer

IkeVersion = Literal["ikev1", "ikev2"]
IkeMode = Literal["main", "aggressive"]

IKE_VERSIONS: tuple[IkeVersion, ...] = ("ikev1", "ikev2")
IKE_MODES: tuple[IkeMode, ...] = ("main", "aggressive")

#: What a stored Psk is sealed for (associated data): a sealed value copied into another
#: column does not open.
PSK_PURPOSE = "vpn_connections.psk"


class IkeConfig(TypedDict):
    Psk: str
    IkeVersion: str
    IkeMode: str
    IkeEncAlg: str
    IkeAuthAlg: str
    IkePfs: str
    IkeLifetime: int
    LocalId: str
    RemoteId: str


def sealed_ike(sealer: Sealer, ike: Mapping[str, Any]) -> dict[str, Any]:
    """The IkeConfig as stored: the Psk sealed under the master key."""
    return {**ike, "Psk": sealer.seal(ike["Psk"], PSK_PURPOSE)}


def opened_ike(sealer: Sealer, stored: Mapping[str, Any]) -> IkeConfig:
    """The stored IkeConfig with its Psk in clear (for responses and the data plane)."""
    return cast(IkeConfig, {**stored, "Psk": sealer.open(stored["Psk"], PSK_PURPOSE)})


def peer_ike(ike: IkeConfig) -> IkeConfig:
    """The same IkeConfig as the customer's device sees it: the identities swapped."""
    return {
        "Psk": ike["Psk"],
        "IkeVersion": ike["IkeVersion"],
        "IkeMode": ike["IkeMode"],
        "IkeEncAlg": ike["IkeEncAlg"],
        "IkeAuthAlg": ike["IkeAuthAlg"],
        "IkePfs": ike["IkePfs"],
        "IkeLifetime": ike["IkeLifetime"],
        "LocalId": ike["RemoteId"],
        "RemoteId": ike["LocalId"],
    }
