"""Why a connection does not come up, in plain language, from charon's own log lines.

Input: the connection's recent log lines as :mod:`.connection_logs` keeps them
(``[GROUP] message``, oldest first) and this side's configured proposals. Only lines
newer than the last ``IKE_SA ... established`` / ``CHILD_SA ... established`` count: a
success makes older failures history. The newest failure among them decides.

The patterns below are charon 5.9.8's messages as the gateway sees them, captured from
real negotiations in both roles (tests/dataplane/logs/*.log); each names its case:

* no proposal chosen: as responder charon logs both sides ("received proposals: ...",
  "configured proposals: ..."), so the diagnosis names both; as initiator it only learns
  that the peer refused ours (NO_PROPOSAL_CHOSEN), and says so.
* authentication failed: a pre-shared key or identity mismatch. IKEv2 reports it by
  notify or "MAC mismatched"; IKEv1 main mode sees a wrong key as undecryptable
  messages ("message parsing failed"), aggressive mode as a HASH mismatch.
* peer not responding: retransmits exhausted.
* traffic selectors refused: TS_UNACCEPTABLE (IKEv2), INVALID_ID_INFORMATION in Quick
  Mode (IKEv1), or our own refusal of the peer's subnets.

A diagnosis never quotes a pre-shared key (charon never logs one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

NO_PROPOSAL = "no_proposal_chosen"
AUTHENTICATION = "authentication_failed"
NOT_RESPONDING = "peer_not_responding"
TRAFFIC_SELECTORS = "traffic_selectors_unacceptable"

_SUCCESS = re.compile(r"(IKE_SA|CHILD_SA) \S+ established")
_ATTEMPT = re.compile(r"initiating (?:Main Mode |Aggressive Mode )?IKE_SA|is initiating (?:an|a Main Mode|an Aggressive Mode) IKE_SA")
_NO_PROPOSAL = re.compile(
    r"received proposals unacceptable|no proposal found|no acceptable proposal found|no matching proposal found"
    r"|received NO_PROPOSAL_CHOSEN"
)
_AUTHENTICATION = re.compile(
    r"AUTHENTICATION_FAILED|MAC mismatched|calculated HASH does not match|does not match to"
    r"|no matching peer config found|message parsing failed"
)
_NOT_RESPONDING = re.compile(r"peer not responding|giving up after \d+ retransmits")
_TRAFFIC_SELECTORS = re.compile(
    r"TS_UNACCEPTABLE|traffic selectors .* unacceptable|INVALID_ID_INFORMATION|no matching CHILD_SA config"
)
_RECEIVED = re.compile(r"received proposals: (.+)$")
_CONFIGURED = re.compile(r"configured proposals: (.+)$")
_ID_MISMATCH = re.compile(r"ID\w* '([^']*)' does not match to '([^']*)'")
_PEER_CONFIG = re.compile(r"looking for (?:pre-shared key )?peer configs matching \S+\.\.\.\S+?\[([^\]]*)\]")
_SELECTORS = re.compile(r"traffic selectors (.+) unacceptable")
_RETRANSMITS = re.compile(r"giving up after (\d+) retransmits")
_PEER_ADDRESS = re.compile(r"IKE_SA \S+ to (\S+)$")


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    message: str


def is_success(line: str) -> bool:
    """Whether a log line reports an IKE_SA or CHILD_SA established."""
    return _SUCCESS.search(line) is not None


def diagnose(
    lines: Sequence[str], *, ike_proposals: Sequence[str] = (), esp_proposals: Sequence[str] = ()
) -> Diagnosis | None:
    """The diagnosis for the newest failure after the last success, or None.

    "Not responding" is how an attempt ends whenever the peer answers with something we
    cannot use (IKEv1 with a wrong key retransmits until it gives up), so a more specific
    failure earlier in the same attempt wins over it.
    """
    # Failures count after the last success; the lines before still give context
    # (an IKE_SA established just before a refusal makes it a phase 2 refusal).
    failures = [
        (index, found)
        for index in range(_after_last_success(lines), len(lines))
        if (found := _classify(lines, index, ike_proposals, esp_proposals)) is not None
    ]
    if not failures:
        return None
    index, newest = failures[-1]
    if newest.kind == NOT_RESPONDING:
        attempt_start = index - len(_this_attempt(lines[:index]))
        specific = [found for at, found in failures if at >= attempt_start and found.kind != NOT_RESPONDING]
        if specific:
            return specific[-1]
    return newest


def _after_last_success(lines: Sequence[str]) -> int:
    for index in range(len(lines) - 1, -1, -1):
        if is_success(lines[index]):
            return index + 1
    return 0


def _classify(
    lines: Sequence[str], index: int, ike_proposals: Sequence[str], esp_proposals: Sequence[str]
) -> Diagnosis | None:
    """The failure line ``index`` reports, or None for any other line."""
    line = lines[index]
    earlier = lines[:index]
    if _TRAFFIC_SELECTORS.search(line):
        return _traffic_selectors(line)
    if _NO_PROPOSAL.search(line):
        return _no_proposal(line, earlier, ike_proposals, esp_proposals)
    if _AUTHENTICATION.search(line):
        return _authentication(line, earlier)
    if _NOT_RESPONDING.search(line):
        return _not_responding(line, earlier)
    return None


def _this_attempt(earlier: Sequence[str]) -> list[str]:
    """The lines of the negotiation the failure belongs to (since it started)."""
    for index in range(len(earlier) - 1, -1, -1):
        if _ATTEMPT.search(earlier[index]):
            return list(earlier[index:])
    return list(earlier)


def _no_proposal(line: str, earlier: Sequence[str], ike: Sequence[str], esp: Sequence[str]) -> Diagnosis:
    attempt = _this_attempt(earlier)
    received = _last_match(_RECEIVED, attempt)
    configured = _last_match(_CONFIGURED, attempt)
    # Phase 2 when the proposals are ESP ones, or the IKE SA of this attempt was already up.
    phase_2 = (
        (received or configured or "").startswith("ESP:")
        or "CHILD_SA" in line
        or any(line.startswith("[IKE] IKE_SA ") and "established" in line for line in attempt)
    )
    if phase_2:
        stage, settings, ours = "IPsec (phase 2)", "IpsecEncAlg, IpsecAuthAlg and IpsecPfs", ", ".join(esp)
    else:
        stage, settings, ours = "IKE (phase 1)", "IkeEncAlg, IkeAuthAlg and IkePfs", ", ".join(ike)
    if received is not None:
        return Diagnosis(
            NO_PROPOSAL,
            f"No proposal chosen for {stage}: the peer offered {received}, but this gateway accepts "
            f"{configured or ours}. Make {settings} match the peer's.",
        )
    return Diagnosis(
        NO_PROPOSAL,
        f"No proposal chosen for {stage}: the peer refused this gateway's proposal ({ours}). "
        f"Make {settings} match the peer's; the peer's own proposals appear here when it initiates.",
    )


def _authentication(line: str, earlier: Sequence[str]) -> Diagnosis:
    general = (
        "Authentication failed: the pre-shared key (Psk) or an identity (LocalId/RemoteId) differs "
        "between this gateway and the peer."
    )
    mismatch = _ID_MISMATCH.search(line)
    if mismatch:
        return Diagnosis(
            AUTHENTICATION,
            f"Authentication failed: the peer identified itself as '{mismatch.group(1)}', but this "
            f"connection's RemoteId is '{mismatch.group(2)}'.",
        )
    if "no matching peer config found" in line:
        peer_id = _last_match(_PEER_CONFIG, _this_attempt(earlier))
        named = f" '{peer_id}'" if peer_id else ""
        return Diagnosis(
            AUTHENTICATION,
            f"Authentication failed: the peer identified itself as{named}, which matches no RemoteId of "
            "this gateway's connections to it (identity mismatch).",
        )
    if "message parsing failed" in line:
        return Diagnosis(AUTHENTICATION, general + " (IKEv1 main mode could not decrypt the peer's "
                                                   "messages, which is what a different Psk looks like.)")
    return Diagnosis(AUTHENTICATION, general)


def _not_responding(line: str, earlier: Sequence[str]) -> Diagnosis:
    retransmits = _RETRANSMITS.search(line) or _RETRANSMITS.search("\n".join(_this_attempt(earlier)))
    address = None
    for previous in reversed(earlier):
        found = _PEER_ADDRESS.search(previous)
        if found:
            address = found.group(1)
            break
    who = f"the peer {address}" if address else "the peer"
    after = f" after {retransmits.group(1)} retransmits" if retransmits else ""
    return Diagnosis(
        NOT_RESPONDING,
        f"Peer not responding: {who} did not answer{after}. Check that it is up, that UDP 500 and "
        "4500 reach it, and that it is configured for this gateway's address.",
    )


def _traffic_selectors(line: str) -> Diagnosis:
    selectors = _SELECTORS.search(line)
    shown = f" ({selectors.group(1)})" if selectors else ""
    return Diagnosis(
        TRAFFIC_SELECTORS,
        f"Traffic selectors refused{shown}: the peer's subnets do not mirror this connection's "
        "LocalSubnet and RemoteSubnet. The IKE SA is up; no IPsec SA can be built until they match.",
    )


def _last_match(pattern: re.Pattern[str], lines: Sequence[str]) -> str | None:
    for line in reversed(lines):
        found = pattern.search(line)
        if found:
            return found.group(1)
    return None
