"""Every value of every enumeration of the spec negotiates with an independent peer.

The peer here is configured by this file's own table (written from strongSwan's
documentation, in a different but equivalent form: no explicit PRF, ``sha`` for SHA-1),
never by vpngw's ``proposals``/``render``, so a wrong mapping in vpngw fails here
instead of being mirrored on both sides.

Connections run ten at a time on one VPN gateway (the per-gateway quota), each to its own
customer gateway address on one peer charon (IKEv1 main mode with PSK picks its
configuration by address, so addresses must differ). After each batch is up, a ping
crosses every tunnel from the VPC side.

The default suite covers every value at least once, under each IKE version and mode
(``covering_cases``); ``-m slow`` runs the full products (``full_cases``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import build_world
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.charon.vici_client import ViciClient, ViciCommandError
from vpngw.rules.tunnel_config import AUTH_ALGS, DH_GROUPS, ENC_ALGS, IPSEC_PFS

from .world import LabWorld

pytestmark = pytest.mark.dataplane

# The peer's own names for the API's values (strongSwan's proposal keywords).
PEER_ENC = {"aes": "aes128", "aes192": "aes192", "aes256": "aes256", "des": "des", "3des": "3des"}
PEER_INTEG = {"md5": "md5", "sha1": "sha", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
PEER_DH = {
    "group1": "modp768",
    "group2": "modp1024",
    "group5": "modp1536",
    "group14": "modp2048",
    "group24": "modp2048s256",
}
MODES = (("ikev1", "main"), ("ikev1", "aggressive"), ("ikev2", "main"))
BATCH = 10
PSK = "matrix-test-key-1"


@dataclass(frozen=True)
class Case:
    version: str
    mode: str
    ike_enc: str
    ike_auth: str
    ike_dh: str
    esp_enc: str
    esp_auth: str
    esp_pfs: str

    def __str__(self) -> str:
        return "/".join(self.__dict__.values())


def covering_cases() -> list[Case]:
    """Each value of each enumeration at least once, for every IKE version and mode."""
    cases = []
    for index in range(len(IPSEC_PFS)):
        for offset, (version, mode) in enumerate(MODES):
            i = index + offset
            cases.append(
                Case(
                    version,
                    mode,
                    ENC_ALGS[i % 5],
                    AUTH_ALGS[(i + 1) % 5],
                    DH_GROUPS[(i + 2) % 5],
                    ENC_ALGS[(i + 3) % 5],
                    AUTH_ALGS[(i + 4) % 5],
                    IPSEC_PFS[index],
                )
            )
    return cases


def full_cases() -> list[Case]:
    """Every IKE combination under every version and mode, then every IPsec combination."""
    ike = [
        Case(v, m, e, a, d, "aes", "sha1", "group2")
        for (v, m), e, a, d in itertools.product(MODES, ENC_ALGS, AUTH_ALGS, DH_GROUPS)
    ]
    esp = [
        Case(v, m, "aes", "sha1", "group2", e, a, p)
        for (v, m), e, a, p in itertools.product(MODES[::2], ENC_ALGS, AUTH_ALGS, IPSEC_PFS)
    ]
    return ike + esp


def peer_conn(case: Case, slot: int, gateway_ip: str) -> dict[str, Any]:
    ike = f"{PEER_ENC[case.ike_enc]}-{PEER_INTEG[case.ike_auth]}-{PEER_DH[case.ike_dh]}"
    esp = f"{PEER_ENC[case.esp_enc]}-{PEER_INTEG[case.esp_auth]}"
    if case.esp_pfs != "disabled":
        esp += f"-{PEER_DH[case.esp_pfs]}"
    return {
        f"slot{slot}": {
            "version": "1" if case.version == "ikev1" else "2",
            "aggressive": "yes" if case.mode == "aggressive" else "no",
            "local_addrs": [peer_ip(slot)],
            "remote_addrs": [gateway_ip],
            "proposals": [ike],
            "local": {"auth": "psk", "id": peer_ip(slot)},
            "remote": {"auth": "psk", "id": gateway_ip},
            "children": {
                f"slot{slot}": {
                    "local_ts": [peer_subnet(slot)],
                    "remote_ts": [vpc_subnet(slot)],
                    "esp_proposals": [esp],
                    "start_action": "none",
                },
            },
        }
    }


def peer_ip(slot: int) -> str:
    return f"198.19.2.{slot}"


def peer_subnet(slot: int) -> str:
    return f"10.100.{slot}.0/24"


def vpc_subnet(slot: int) -> str:
    return f"10.1.{slot}.0/24"


def host(subnet: str, number: int) -> str:
    return subnet.rsplit(".", 2)[0] + f".{subnet.split('.')[2]}.{number}"


@pytest.fixture
def matrix_peer(lab_world: LabWorld) -> Iterator[tuple[str, ViciClient]]:
    """One peer namespace with BATCH WAN addresses and subnets, and its charon."""
    network = lab_world.network
    charon = lab_peer.start_peer_site(
        network,
        "matrix",
        [peer_ip(slot) for slot in range(1, BATCH + 1)],
        [peer_subnet(s) for s in range(1, BATCH + 1)],
    )
    namespace = network.names.peer("matrix")
    client = charon.client()
    client.load_shared({"id": "matrix", "type": "IKE", "data": PSK, "owners": []})
    try:
        yield namespace, client
    finally:
        client.close()
        charon_daemon.stop_charon(charon)


def run_cases(world: LabWorld, peer: tuple[str, ViciClient], cases: list[Case]) -> None:
    _namespace, client = peer
    place = build_world(world.api, customer_ip=peer_ip(1))
    customers = [place.customer_gateway_id] + [
        world.api.ok("CreateCustomerGateway", IpAddress=peer_ip(slot))["CustomerGatewayId"]
        for slot in range(2, BATCH + 1)
    ]
    failures: list[str] = []
    for start in range(0, len(cases), BATCH):
        batch = cases[start : start + BATCH]
        for slot, case in enumerate(batch, start=1):
            client.load_conn(peer_conn(case, slot, place.internet_ip))
        ids = []
        for slot, case in enumerate(batch, start=1):
            ids.append(
                world.api.ok(
                    "CreateVpnConnection",
                    VpnGatewayId=place.vpn_gateway_id,
                    CustomerGatewayId=customers[slot - 1],
                    LocalSubnet=vpc_subnet(slot),
                    RemoteSubnet=peer_subnet(slot),
                    EffectImmediately="true",
                    AutoConfigRoute="true",
                    IkeConfig=json.dumps(
                        {
                            "IkeVersion": case.version,
                            "IkeMode": case.mode,
                            "IkeEncAlg": case.ike_enc,
                            "IkeAuthAlg": case.ike_auth,
                            "IkePfs": case.ike_dh,
                            "Psk": PSK,
                        }
                    ),
                    IpsecConfig=json.dumps(
                        {"IpsecEncAlg": case.esp_enc, "IpsecAuthAlg": case.esp_auth, "IpsecPfs": case.esp_pfs}
                    ),
                )["VpnConnectionId"]
            )
        for slot, (case, connection_id) in enumerate(zip(batch, ids, strict=True), start=1):
            up = world.wait_status(connection_id, "ipsec_sa_established", timeout_s=15)["Status"]
            passes = up == "ipsec_sa_established" and world.wait_for(
                lambda s=slot: world.ping_from_vpc(
                    place.vpn_gateway_id, host(vpc_subnet(s), 9), host(peer_subnet(s), 9)
                ),
                5,
            )
            if not passes:
                failures.append(f"{case}: {up} {world.connection(connection_id)['Diagnosis']}")
        for connection_id in ids:
            world.api.ok("DeleteVpnConnection", VpnConnectionId=connection_id)
        for slot in range(1, len(batch) + 1):
            with contextlib.suppress(ViciCommandError):
                client.terminate(f"slot{slot}", force=True, timeout_ms=1000)
    assert not failures, "\n".join(failures)


def test_every_value_of_every_enumeration_negotiates(
    lab_world: LabWorld, matrix_peer: tuple[str, ViciClient]
) -> None:
    cases = covering_cases()
    for name, values in (("enc", ENC_ALGS), ("auth", AUTH_ALGS), ("dh", DH_GROUPS)):
        assert {getattr(c, f"ike_{name}") for c in cases} == set(values)
    assert {c.esp_pfs for c in cases} == set(IPSEC_PFS) and {(c.version, c.mode) for c in cases} == set(MODES)
    run_cases(lab_world, matrix_peer, cases)


@pytest.mark.slow
@pytest.mark.skipif(
    "'slow' not in config.getoption('markexpr')", reason="about a minute; select it with -m slow"
)
def test_full_matrix_negotiates(lab_world: LabWorld, matrix_peer: tuple[str, ViciClient]) -> None:
    run_cases(lab_world, matrix_peer, full_cases())
