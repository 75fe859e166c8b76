"""vpngw.ike_config: the one IkeConfig shape, sealed at rest, below actions and data plane."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vpngw
from vpngw.ike_config import PSK_PURPOSE, IkeConfig, opened_ike, peer_ike, sealed_ike
from vpngw.sealing import Sealer, SealingError, parse_keyring

SEALER = Sealer(parse_keyring("k1:" + "A" * 43 + "="))
IKE: IkeConfig = {
    "Psk": "s3cret-key",
    "IkeVersion": "ikev2",
    "IkeMode": "main",
    "IkeEncAlg": "aes",
    "IkeAuthAlg": "sha1",
    "IkePfs": "group2",
    "IkeLifetime": 86400,
    "LocalId": "198.18.0.10",
    "RemoteId": "198.19.0.2",
}


def test_sealed_then_opened_is_the_same_config_and_the_psk_never_in_clear() -> None:
    stored = sealed_ike(SEALER, IKE)
    assert stored["Psk"] != IKE["Psk"] and IKE["Psk"] not in str(stored)
    assert {k: v for k, v in stored.items() if k != "Psk"} == {k: v for k, v in IKE.items() if k != "Psk"}
    assert opened_ike(SEALER, stored) == IKE


def test_a_sealed_psk_opens_only_for_its_purpose() -> None:
    stored = sealed_ike(SEALER, IKE)
    with pytest.raises(SealingError):
        SEALER.open(stored["Psk"], "customer_gateways.auth_key")
    assert SEALER.open(stored["Psk"], PSK_PURPOSE) == IKE["Psk"]


def test_the_peer_sees_the_identities_swapped_and_the_same_keys_in_order() -> None:
    peer = peer_ike(IKE)
    assert (peer["LocalId"], peer["RemoteId"]) == (IKE["RemoteId"], IKE["LocalId"])
    assert list(peer) == list(IKE)
    assert peer_ike(peer) == IKE


@pytest.mark.parametrize("name", ["IKE_VERSIONS", "IKE_MODES", "PSK_PURPOSE"])
def test_the_enumerations_and_the_purpose_are_defined_once(name: str) -> None:
    src = Path(vpngw.__file__).parent
    defining = sorted(
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        and any(
            isinstance(target, ast.Name) and target.id == name
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    )
    assert defining == ["ike_config.py"]
