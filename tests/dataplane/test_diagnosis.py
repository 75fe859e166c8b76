"""Diagnoses from real charon 5.9.8 log lines.

tests/dataplane/logs/*.log were captured from real negotiations between a vpngw gateway
and a lab peer (both charons), as the gateway's charon logged them for the connection,
in both roles: ``*_initiator`` (the gateway negotiates) and ``*_responder`` (the peer
does). The connection id is replaced by ``vco-CONN``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vpngw.dataplane.diagnosis import (
    AUTHENTICATION,
    NO_PROPOSAL,
    NOT_RESPONDING,
    TRAFFIC_SELECTORS,
    diagnose,
    is_success,
)

LOGS = Path(__file__).parent / "logs"
OURS_IKE = ["aes128-md5-prfmd5-modp1024"]
OURS_ESP = ["aes128-md5-modp1024"]


def lines(case: str) -> list[str]:
    return (LOGS / f"{case}.log").read_text().splitlines()


def diagnosis_of(case: str) -> tuple[str, str]:
    found = diagnose(lines(case), ike_proposals=OURS_IKE, esp_proposals=OURS_ESP)
    assert found is not None, case
    return found.kind, found.message


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("psk_v2_initiator", AUTHENTICATION),
        ("psk_v2_responder", AUTHENTICATION),
        ("psk_v1_initiator", AUTHENTICATION),
        ("psk_v1_initiator_gave_up", AUTHENTICATION),  # ends "peer not responding", but the key is why
        ("psk_v1_responder", AUTHENTICATION),
        ("psk_v1_aggressive_initiator", AUTHENTICATION),
        ("remote_id_v2_initiator", AUTHENTICATION),
        ("remote_id_v2_responder", AUTHENTICATION),
        ("remote_id_v1_initiator", AUTHENTICATION),
        ("ike_proposal_v2_initiator", NO_PROPOSAL),
        ("ike_proposal_v2_responder", NO_PROPOSAL),
        ("ike_proposal_v1_initiator", NO_PROPOSAL),
        ("ike_proposal_v1_responder", NO_PROPOSAL),
        ("esp_proposal_v2_initiator", NO_PROPOSAL),
        ("esp_proposal_v2_responder", NO_PROPOSAL),
        ("esp_proposal_v1_initiator", NO_PROPOSAL),
        ("esp_proposal_v1_responder", NO_PROPOSAL),
        ("no_peer_v2", NOT_RESPONDING),
        ("no_peer_v1", NOT_RESPONDING),
        ("ts_v2_initiator", TRAFFIC_SELECTORS),
        ("ts_v2_responder", TRAFFIC_SELECTORS),
        ("ts_v1_initiator", TRAFFIC_SELECTORS),
    ],
)
def test_each_captured_failure_gets_its_kind(case: str, kind: str) -> None:
    assert diagnosis_of(case)[0] == kind


@pytest.mark.parametrize("case", ["ike_proposal_v2_responder", "ike_proposal_v1_responder"])
def test_as_responder_both_sides_ike_proposals_are_named(case: str) -> None:
    _kind, message = diagnosis_of(case)
    assert "IKE (phase 1)" in message
    assert "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_1024" in message  # the peer's
    assert "IKE:AES_CBC_128/HMAC_MD5_96/PRF_HMAC_MD5/MODP_1024" in message  # ours


@pytest.mark.parametrize("case", ["esp_proposal_v2_responder", "esp_proposal_v1_responder"])
def test_esp_mismatches_are_phase_2_and_name_both_sides(case: str) -> None:
    _kind, message = diagnosis_of(case)
    assert "IPsec (phase 2)" in message and "IpsecEncAlg" in message
    assert "ESP:AES_CBC_256/HMAC_SHA2_256_128" in message and "ESP:AES_CBC_128/HMAC_MD5_96" in message


@pytest.mark.parametrize(
    ("case", "phase"),
    [("ike_proposal_v2_initiator", "IKE (phase 1)"), ("esp_proposal_v2_initiator", "IPsec (phase 2)"),
     ("esp_proposal_v1_initiator", "IPsec (phase 2)")],
)
def test_as_initiator_the_refusal_is_reported_with_our_proposal(case: str, phase: str) -> None:
    _kind, message = diagnosis_of(case)
    assert phase in message and "refused" in message
    assert (OURS_ESP[0] if "phase 2" in phase else OURS_IKE[0]) in message


def test_identity_mismatches_name_both_identities() -> None:
    assert "'someone-else.example.com'" in diagnosis_of("remote_id_v1_initiator")[1]
    assert "'cpe.example.com'" in diagnosis_of("remote_id_v1_initiator")[1]
    assert "'someone-else.example.com'" in diagnosis_of("remote_id_v2_responder")[1]
    assert "Psk" in diagnosis_of("psk_v2_initiator")[1]


def test_not_responding_names_the_peer_and_retransmits() -> None:
    message = diagnosis_of("no_peer_v2")[1]
    assert "198.19.0.10" in message and "3 retransmits" in message


def test_selectors_are_quoted() -> None:
    assert "10.99.1.0/24" in diagnosis_of("ts_v2_responder")[1]


def test_a_later_success_clears_the_diagnosis() -> None:
    failed = lines("psk_v2_initiator")
    recovered = [*failed, "[IKE] IKE_SA vco-CONN[9] established between 198.18.0.2[198.18.0.2]...198.19.0.10[198.19.0.10]",
                 "[IKE] CHILD_SA vco-CONN{9} established with SPIs c1_i c2_o and TS 10.1.1.0/24 === 10.10.1.0/24"]
    assert diagnose(recovered) is None
    assert diagnose([*recovered, *failed[-3:]]) is not None  # and a failure after it counts again


def test_healthy_and_unrelated_lines_give_nothing() -> None:
    assert diagnose([]) is None
    assert diagnose(["[IKE] initiating IKE_SA vco-CONN[1] to 198.19.0.10", "[IKE] remote host is behind NAT"]) is None
    assert is_success("[IKE] CHILD_SA vco-CONN{2} established with SPIs 1_i 2_o and TS a === b")
    assert not is_success("[IKE] establishing CHILD_SA vco-CONN{1}")


def test_no_captured_log_holds_a_key() -> None:
    for path in LOGS.glob("*.log"):
        assert "wrong-key-0001" not in path.read_text()
