"""Diagnoses from real charon 5.9.8 log lines.

tests/dataplane/logs/<case>_<mode>_<role>.log were captured from real negotiations between
two lab charons (two namespaces joined by a veth; gateway 198.18.0.2, peer 198.19.0.10),
as the *gateway's* charon emitted them: every VICI ``log`` event (level <= 1) attributed to
the connection ``vco-CONN`` the way :class:`~vpngw.dataplane.observe.connection_logs.ConnectionLogs`
does it in production, i.e. written as ``[GROUP] msg``. ``mode`` is ``v2``, ``v1`` (main)
or ``v1_aggressive``; ``role`` says who initiated: ``initiator`` = the gateway
(``initiate`` over VICI), ``responder`` = the peer. The gateway proposes
``aes128-md5-prfmd5-modp1024`` / ``aes128-md5-modp1024`` with key ``gateway-key-0001``.
The cases:

================  =====================================================================
psk               the peer's key is ``wrong-key-0001``
ike_proposal      the peer's IKE proposal is aes256-sha256-prfsha256-modp1024
esp_proposal      the peer's ESP proposal is aes256-sha256-modp1024 (IKE comes up)
remote_id         the gateway's RemoteId is cpe.example.com, the peer calls itself
                  someone-else.example.com
local_id          the gateway's LocalId is gw.example.com, the peer expects
                  other-gw.example.com
ts                the peer's own subnet is 10.99.1.0/24 instead of 10.10.1.0/24
version           the peer uses the other IKE version
no_peer           nothing listens at the peer's address (initiator only)
dropped           the peer's answers never reach the gateway (initiator only)
replies_dropped   the peer initiates, the gateway's answers never reach it (responder)
ok                nothing wrong: the tunnel comes up
================  =====================================================================

Packets were "dropped" with a permanent neighbour entry pointing at an unused MAC address
on the sending side (this kernel has no tc classifiers and there is no nft/iptables). Lab
charons give up after 3 retransmits (backends/lab/charon_profile.py); half-open IKE_SAs are deleted
after charon's default 30 s.

``*_via_initiate.log`` hold the control-log lines the failed ``initiate`` streamed back
(:attr:`ViciCommandError.log`: bare ``msg`` text, no group, and only until initiate
returned). psk_v1_initiator_gave_up, no_peer_v1 and no_peer_v2 are older captures of a
gateway run by the reconciler against a lab peer (its connection id replaced by
``vco-CONN``; no_peer_v1 shows the reconciler's re-initiation).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.charon.vici_client import ViciCommandError
from vpngw.dataplane.charon.vici_events import EventListener
from vpngw.dataplane.observe.connection_logs import ConnectionLogs
from vpngw.dataplane.observe.diagnosis import (
    AUTHENTICATION,
    KINDS,
    NO_PROPOSAL,
    NOT_RESPONDING,
    TRAFFIC_SELECTORS,
    VERSION_MISMATCH,
    Diagnosis,
    diagnose,
    is_success,
    message_text,
)
from vpngw.dataplane.spec.render import render_connection, render_shared_key
from vpngw.dataplane.system import netns

from .conftest import LabPair
from .specs import connection, ike, ipsec

LOGS = Path(__file__).parent / "logs"
OURS_IKE = ("aes128-md5-prfmd5-modp1024",)
OURS_ESP = ("aes128-md5-modp1024",)
KEYS = ("gateway-key-0001", "wrong-key-0001")
MODES = ("v2", "v1", "v1_aggressive")
ROLES = ("initiator", "responder")

PEER_IKE = "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_1024"
OUR_IKE = "IKE:AES_CBC_128/HMAC_MD5_96/PRF_HMAC_MD5/MODP_1024"


def lines(case: str) -> list[str]:
    return (LOGS / f"{case}.log").read_text().splitlines()


def diagnosis_of(case: str, **ours: str) -> Diagnosis:
    found = diagnose(lines(case), ike_proposals=OURS_IKE, esp_proposals=OURS_ESP, **ours)
    assert found is not None, case
    return found


EXPECTED = {
    **{f"psk_{m}_{r}": AUTHENTICATION for m in MODES for r in ROLES},
    **{f"ike_proposal_{m}_{r}": NO_PROPOSAL for m in MODES for r in ROLES},
    **{f"esp_proposal_{m}_{r}": NO_PROPOSAL for m in MODES for r in ROLES},
    **{f"remote_id_{m}_{r}": AUTHENTICATION for m in MODES for r in ROLES},
    **{f"local_id_{m}_{r}": AUTHENTICATION for m in MODES for r in ROLES},
    **{f"ts_{m}_{r}": TRAFFIC_SELECTORS for m in MODES for r in ROLES},
    # As initiator a version mismatch is a bare NO_PROPOSAL_CHOSEN, like a proposal mismatch.
    **{f"version_{m}_initiator": NO_PROPOSAL for m in MODES},
    **{f"version_{m}_responder": VERSION_MISMATCH for m in MODES},
    **{f"no_peer_{m}_initiator": NOT_RESPONDING for m in MODES},
    **{f"dropped_{m}_initiator": NOT_RESPONDING for m in MODES},
    **{f"replies_dropped_{m}_responder": NOT_RESPONDING for m in MODES},
    **{
        f"{case}_via_initiate": kind
        for case, kind in [
            ("psk_v2_initiator", AUTHENTICATION),
            ("psk_v1_initiator", AUTHENTICATION),
            ("ike_proposal_v2_initiator", NO_PROPOSAL),
            ("esp_proposal_v1_initiator", NO_PROPOSAL),
            ("ts_v2_initiator", TRAFFIC_SELECTORS),
            ("no_peer_v1_aggressive_initiator", NOT_RESPONDING),
            ("remote_id_v1_initiator", AUTHENTICATION),
        ]
    },
    "psk_v1_initiator_gave_up": AUTHENTICATION,  # ends "peer not responding", but the key is why
    "no_peer_v1": NOT_RESPONDING,
    "no_peer_v2": NOT_RESPONDING,
}


def test_every_fixture_is_listed_and_every_kind_is_seen() -> None:
    assert {p.stem for p in LOGS.glob("*.log")} == set(EXPECTED) | {
        f"ok_{m}_{r}" for m in MODES for r in ROLES
    }
    assert set(EXPECTED.values()) == set(KINDS)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_captured_failure_gets_its_kind(case: str) -> None:
    assert diagnosis_of(case).kind == EXPECTED[case]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bare_vici_messages_diagnose_like_connection_logs_lines(case: str) -> None:
    bare = [message_text(line) for line in lines(case)]
    assert not any(line.startswith("[") and "] " in line[:6] for line in bare)
    assert diagnose(bare, ike_proposals=OURS_IKE, esp_proposals=OURS_ESP) == diagnosis_of(case)


@pytest.mark.parametrize("case", [c for c in EXPECTED if c.endswith("_via_initiate")])
def test_an_initiate_commands_log_diagnoses_like_the_event_stream(case: str) -> None:
    assert diagnosis_of(case) == diagnosis_of(case.removesuffix("_via_initiate"))


# -- no proposal chosen -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_as_responder_both_sides_ike_proposals_are_named(mode: str) -> None:
    message = diagnosis_of(f"ike_proposal_{mode}_responder").message
    assert message.startswith("No proposal chosen for IKE (phase 1): the peer offered ")
    assert f"the peer offered {PEER_IKE}, but this gateway accepts {OUR_IKE}." in message


@pytest.mark.parametrize("mode", MODES)
def test_as_responder_both_sides_esp_proposals_are_named(mode: str) -> None:
    message = diagnosis_of(f"esp_proposal_{mode}_responder").message
    assert "IPsec (phase 2)" in message and "IpsecEncAlg" in message
    assert "the peer offered ESP:AES_CBC_256/HMAC_SHA2_256_128/" in message
    assert "this gateway accepts ESP:AES_CBC_128/HMAC_MD5_96/MODP_1024/NO_EXT_SEQ" in message


@pytest.mark.parametrize(
    ("case", "phase", "ours"),
    [(f"ike_proposal_{m}_initiator", "IKE (phase 1)", OURS_IKE[0]) for m in MODES]
    + [(f"esp_proposal_{m}_initiator", "IPsec (phase 2)", OURS_ESP[0]) for m in MODES]
    + [(f"version_{m}_initiator", "IKE (phase 1)", OURS_IKE[0]) for m in MODES],
)
def test_as_initiator_only_the_refusal_is_known_and_ours_is_named(case: str, phase: str, ours: str) -> None:
    message = diagnosis_of(case).message
    assert phase in message and "refused this gateway's" in message and f"({ours})" in message
    assert "AES_CBC_256" not in message  # the peer's proposal never reaches the initiator
    assert ("IkeVersion" in message) == (phase == "IKE (phase 1)")


def test_a_retransmit_handled_meanwhile_does_not_hide_the_peers_proposals() -> None:
    """The peer re-sent its IKE_SA_INIT; charon's other thread logs the new attempt's first
    line between the first attempt's proposals and its refusal (seen in CI under load)."""
    first = lines("ike_proposal_v2_responder")
    refusal = first.index("[IKE] received proposals unacceptable")
    interleaved = [*first[:refusal], "[IKE] 198.19.0.10 is initiating an IKE_SA", *first[refusal:]]
    found = diagnose(interleaved, ike_proposals=OURS_IKE, esp_proposals=OURS_ESP)
    assert found is not None and found.kind == NO_PROPOSAL
    assert f"the peer offered {PEER_IKE}, but this gateway accepts {OUR_IKE}." in found.message


def test_without_our_proposals_the_refusal_still_reads() -> None:
    found = diagnose(lines("ike_proposal_v2_initiator"))
    assert found is not None and "refused this gateway's IKE proposal;" in found.message


# -- IKE version --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "theirs", "ours"),
    [("v2", "IKEv1", "IKEv2"), ("v1", "IKEv2", "IKEv1"), ("v1_aggressive", "IKEv2", "IKEv1")],
)
def test_as_responder_a_version_mismatch_names_both_versions(mode: str, theirs: str, ours: str) -> None:
    message = diagnosis_of(f"version_{mode}_responder").message
    assert f"the peer negotiates with {theirs}, but this connection uses {ours}" in message


# -- authentication -----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(c for c, kind in EXPECTED.items() if kind == AUTHENTICATION))
def test_every_authentication_failure_says_key_or_identity(case: str) -> None:
    message = diagnosis_of(case).message
    assert message.startswith(
        "Authentication failed: the pre-shared key (Psk) or an identity (LocalId/RemoteId)"
    )


@pytest.mark.parametrize("case", ["remote_id_v1_initiator", "remote_id_v1_aggressive_initiator"])
def test_ikev1_initiator_names_the_expected_and_the_received_identity(case: str) -> None:
    assert (
        "The peer identified itself as 'someone-else.example.com', but this connection expects "
        "'cpe.example.com' (RemoteId)."
    ) in diagnosis_of(case).message


@pytest.mark.parametrize("case", [f"remote_id_{m}_responder" for m in MODES])
def test_as_responder_the_received_identity_is_named_and_compared_when_ours_is_given(case: str) -> None:
    assert "'someone-else.example.com'" in diagnosis_of(case).message
    told = diagnosis_of(case, local_id="198.18.0.2", remote_id="cpe.example.com").message
    assert "'someone-else.example.com', but this connection's RemoteId is 'cpe.example.com'" in told
    assert "LocalId is" not in told


def test_ikev2_responder_names_the_identity_the_peer_expects_of_us() -> None:
    plain = diagnosis_of("local_id_v2_responder").message
    assert "it expects this gateway to be 'other-gw.example.com'" in plain
    told = diagnosis_of("local_id_v2_responder", local_id="gw.example.com", remote_id="198.19.0.10").message
    assert "'other-gw.example.com', but this connection's LocalId is 'gw.example.com'" in told


def test_a_wrong_key_is_called_a_key_mismatch_where_charon_can_tell() -> None:
    assert "the pre-shared key differs" in diagnosis_of("psk_v2_responder").message
    assert "most likely the pre-shared key differs" in diagnosis_of("psk_v1_aggressive_initiator").message
    for role in ROLES:
        assert "cannot decrypt the peer's messages" in diagnosis_of(f"psk_v1_{role}").message


def test_ikev1_shapes_without_an_error_line_are_recognised() -> None:
    # Aggressive responder: the peer's AUTHENTICATION_FAILED is only queued, then charon gives up.
    for case in ("psk_v1_aggressive_responder", "local_id_v1_aggressive_responder"):
        assert "Aggressive Mode reply with a notification" in diagnosis_of(case).message
    # Main-mode responder: established, then deleted at once by a peer that refuses our LocalId.
    assert "deleted the IKE SA as soon as it was established" in diagnosis_of("local_id_v1_responder").message
    assert "'gw.example.com'" in diagnosis_of("local_id_v1_responder").message


def test_our_own_identity_is_named_when_the_peer_refuses_it() -> None:
    assert "authentication as 'gw.example.com'" in diagnosis_of("local_id_v2_initiator").message


# -- not responding -----------------------------------------------------------------


@pytest.mark.parametrize("case", [f"{c}_{m}_initiator" for c in ("no_peer", "dropped") for m in MODES])
def test_not_responding_names_the_peer_and_retransmits(case: str) -> None:
    message = diagnosis_of(case).message
    assert "198.19.0.10 did not answer after 3 retransmits" in message and "UDP 500 and 4500" in message


@pytest.mark.parametrize("mode", MODES)
def test_when_our_answers_are_lost_the_diagnosis_says_so(mode: str) -> None:
    assert "answers probably do not reach it" in diagnosis_of(f"replies_dropped_{mode}_responder").message


def test_a_failure_before_a_give_up_in_the_same_attempt_wins() -> None:
    assert lines("psk_v1_initiator")[-1].endswith("peer not responding")
    assert lines("psk_v1_responder")[-1].endswith("after timeout")
    assert diagnosis_of("psk_v1_initiator").kind == AUTHENTICATION
    assert diagnosis_of("psk_v1_responder").kind == AUTHENTICATION


def test_the_newest_attempt_decides() -> None:
    refused_then_silent = lines("ike_proposal_v2_initiator") + lines("no_peer_v2_initiator")
    assert diagnose(refused_then_silent).kind == NOT_RESPONDING  # type: ignore[union-attr]
    silent_then_refused = lines("no_peer_v2_initiator") + lines("psk_v2_initiator")
    assert diagnose(silent_then_refused).kind == AUTHENTICATION  # type: ignore[union-attr]


def test_a_phase_2_refusal_does_not_explain_a_later_time_out() -> None:
    give_up = [
        line for line in lines("no_peer_v2_initiator") if "giving up" in line or "not responding" in line
    ]
    assert diagnose(lines("esp_proposal_v2_initiator") + give_up).kind == NOT_RESPONDING  # type: ignore[union-attr]


# -- traffic selectors ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_as_responder_the_refused_selectors_are_quoted(mode: str) -> None:
    message = diagnosis_of(f"ts_{mode}_responder").message
    assert "the peer proposed 10.99.1.0/24 on its side and 10.1.1.0/24 on this side" in message


@pytest.mark.parametrize("mode", MODES)
def test_as_initiator_the_refusal_is_named(mode: str) -> None:
    message = diagnosis_of(f"ts_{mode}_initiator").message
    assert "the IKE SA is up" in message and "LocalSubnet and RemoteSubnet" in message


# -- success, noise and secrets ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("role", ROLES)
def test_a_healthy_negotiation_gives_nothing(mode: str, role: str) -> None:
    assert diagnose(lines(f"ok_{mode}_{role}"), ike_proposals=OURS_IKE, esp_proposals=OURS_ESP) is None
    assert any(is_success(line) for line in lines(f"ok_{mode}_{role}"))


@pytest.mark.parametrize("failure", sorted(c for c in EXPECTED if c.endswith("_initiator")))
def test_a_later_success_clears_the_diagnosis_and_a_new_failure_counts_again(failure: str) -> None:
    mode = next(m for m in ("v1_aggressive", "v2", "v1") if f"_{m}_" in f"{failure}_")
    recovered = lines(failure) + lines(f"ok_{mode}_initiator")
    assert diagnose(recovered) is None
    assert diagnose(recovered + lines(failure)) == diagnose(lines(failure))


def test_success_lines() -> None:
    assert is_success(
        "[IKE] CHILD_SA vco-CONN{2} established with SPIs a1d2aa3f_i 417a6175_o and TS "
        "10.1.1.0/24 === 10.10.1.0/24"
    )
    assert is_success(
        "IKE_SA vco-CONN[1] established between 198.18.0.2[198.18.0.2]...198.19.0.10[198.19.0.10]"
    )
    assert is_success("CHILD_SA vco-CONN-1{2} established with SPIs 27d15324_i 7aa57ca2_o and TS a === b")
    assert not is_success("[IKE] establishing CHILD_SA vco-CONN{1}")
    assert not is_success("[IKE] establishing IKE_SA failed, peer not responding")
    assert not is_success("[IKE] failed to establish CHILD_SA, keeping IKE_SA")


def test_unrelated_lines_give_nothing() -> None:
    assert diagnose([]) is None
    noise = [
        "[KNL] flags changed for fe80::e4d7:74ff:fe9d:56b4 on vtb11f4dg",
        "[CFG] vici initiate CHILD_SA 'vco-CONN'",
        "[IKE] initiating IKE_SA vco-CONN[1] to 198.19.0.10",
        "[IKE] remote host is behind NAT",
        "[IKE] received retransmit of response with ID 0, but next request already sent",
        "[IKE] sending address list update using MOBIKE",
        "[ESP] could not find an outbound IPsec SA for reqid 129, dropping packet",
    ]
    assert diagnose(noise) is None


def test_no_key_ever_appears() -> None:
    for path in LOGS.glob("*.log"):
        text = path.read_text()
        assert not any(key in text for key in KEYS), path.name
        found = diagnose(
            text.splitlines(),
            ike_proposals=OURS_IKE,
            esp_proposals=OURS_ESP,
            local_id="gw.example.com",
            remote_id="cpe.example.com",
        )
        assert found is None or not any(key in found.message for key in KEYS)


# -- live ---------------------------------------------------------------------------------


class _Captured:
    """The gateway charon's log events for one connection, filed like production does."""

    def __init__(self, name: str, peer: str) -> None:
        self.name = name
        self.logs = ConnectionLogs()
        self.logs.set_connections({name: peer})
        self._lock = threading.Lock()

    def on_event(self, kind: str, event: dict[str, object]) -> None:
        if kind == "log" and int(str(event.get("level", "0"))) <= 1:
            with self._lock:
                self.logs.add(event)

    def lines(self) -> list[str]:
        return self.logs.recent(self.name)


@contextlib.contextmanager
def _listening(vici_path: str, captured: _Captured) -> Iterator[None]:
    listener = EventListener(vici_path, captured.on_event, name="diagnosis-test")
    listener.start()
    try:
        assert listener.wait_ready(5.0)
        yield
    finally:
        listener.stop()


@pytest.mark.dataplane
def test_live_wrong_psk_and_proposal_mismatch_are_diagnosed(lab_pair: LabPair) -> None:
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    gw, cpe = lab_pair.gw, lab_pair.cpe
    name, good_key, bad_key = "vco-diag", "live-key-0001", "live-wrong-0001"
    spec = connection(
        name=name,
        local_addr=gw.wan_addr,
        remote_addr=cpe.wan_addr,
        local_subnets=gw.lan_subnets[:1],
        remote_subnets=cpe.lan_subnets[:1],
        ike=ike(auth_alg="md5", psk=good_key),
        ipsec=ipsec(auth_alg="md5"),
        effect_immediately=False,
    )
    conn = render_connection(spec)[name]
    ours = {"ike_proposals": conn["proposals"], "esp_proposals": conn["children"][name]["esp_proposals"]}
    peer = lab_peer.mirror_spec(spec)
    captured = _Captured(name, cpe.wan_addr)

    def load_peer(peer_spec: object) -> None:
        cpe.vici.load_shared(render_shared_key(peer_spec))  # type: ignore[arg-type]
        cpe.vici.load_conn(render_connection(peer_spec))  # type: ignore[arg-type]

    def diagnosed(kind: str | None) -> bool:
        found = diagnose(captured.lines(), **ours)
        return (found.kind if found else None) == kind

    with _listening(gw.charon.vici_path, captured):
        gw.vici.load_shared(render_shared_key(spec))
        gw.vici.load_conn(render_connection(spec))

        # 1. A wrong key on the peer; the gateway initiates.
        load_peer(replace(peer, ike=replace(peer.ike, psk=bad_key)))
        with pytest.raises(ViciCommandError) as caught:
            gw.vici.initiate(name, name, timeout_ms=5000)
        from_command = diagnose(caught.value.log, **ours)
        assert from_command is not None and from_command.kind == AUTHENTICATION, caught.value.log
        assert netns.wait_until(lambda: diagnosed(AUTHENTICATION), timeout_s=5), captured.lines()

        # 2. The key fixed: the tunnel comes up and the diagnosis goes.
        load_peer(peer)
        gw.vici.initiate(name, name, timeout_ms=5000)
        assert netns.wait_until(lambda: diagnosed(None), timeout_s=5), captured.lines()
        for side in (gw, cpe):  # neither side may reuse this IKE_SA for what follows
            with contextlib.suppress(ViciCommandError):
                side.vici.terminate(name, force=True)
        assert netns.wait_until(lambda: not gw.vici.list_sas() and not cpe.vici.list_sas(), timeout_s=5)

        # 3. The peer proposes other IKE algorithms and initiates: both sides are named.
        load_peer(replace(peer, ike=replace(peer.ike, enc_alg="aes256", auth_alg="sha256")))
        with pytest.raises(ViciCommandError):
            cpe.vici.initiate(name, name, timeout_ms=5000)
        assert netns.wait_until(lambda: diagnosed(NO_PROPOSAL), timeout_s=5), captured.lines()
        message = diagnose(captured.lines(), **ours).message  # type: ignore[union-attr]
        assert f"the peer offered {PEER_IKE}, but this gateway accepts {OUR_IKE}" in message

        # 4. The same mismatch with the gateway initiating: only the refusal of ours is known.
        with pytest.raises(ViciCommandError) as caught:
            gw.vici.initiate(name, name, timeout_ms=5000)
        refusal = "refused this gateway's IKE proposal (aes128-md5-prfmd5-modp1024)"
        from_command = diagnose(caught.value.log, **ours)
        assert (
            from_command is not None and from_command.kind == NO_PROPOSAL and refusal in from_command.message
        )
        assert netns.wait_until(
            lambda: refusal in getattr(diagnose(captured.lines(), **ours), "message", ""), timeout_s=5
        ), captured.lines()

    everything = captured.lines()
    assert not any(key in line for line in everything for key in (good_key, bad_key))
