"""Why a connection does not come up, in plain language, from charon's own log lines.

Input: the log lines charon emitted for one connection, oldest first, either as
:mod:`.connection_logs` keeps them (``[IKE] message``) or as bare message text (the
``msg`` of a VICI ``log`` event, or the control-log lines a failed ``initiate`` streams
back, :attr:`.vici_client.ViciCommandError.log`); plus this side's configured proposals
as rendered (``aes128-sha1-prfsha1-modp1024``) and, optionally, its identities.

Only failures newer than the last ``IKE_SA ... established`` / ``CHILD_SA ...
established`` line count (:func:`is_success`): a success makes older failures history.
The lines before it still give context (an IKE SA established just before a refusal makes
that a phase 2 refusal). The newest failure decides, with one exception: an attempt that
failed for a reason charon logged and then ran out of retransmits (IKEv1 with a wrong key
does) is diagnosed by that reason, not as "peer not responding".

Every pattern below is strongSwan 5.9.8's wording, captured from real negotiations between
two lab charons, as the gateway's charon logged them, in both roles (gateway initiates /
peer initiates) and for IKEv2, IKEv1 main and IKEv1 aggressive mode
(tests/dataplane/logs/*.log; the capture is described in tests/dataplane/test_diagnosis.py):

no_proposal_chosen
    The gateway as responder logs both sides ("received proposals: ...", "configured
    proposals: ...", then "received proposals unacceptable" / "no proposal found" (IKE),
    "no acceptable proposal found" / "no matching proposal found" (ESP)), so the
    diagnosis names both. As initiator charon only learns that the peer refused ours
    ("received NO_PROPOSAL_CHOSEN ..."): the diagnosis says so and names ours. A peer
    configured for the other IKE version answers exactly like that too.
ike_version_mismatch
    Responder only: "no IKE config found for A...B, sending NO_PROPOSAL_CHOSEN" right after
    an IKE_SA_INIT (IKEv2) or ID_PROT/AGGRESSIVE (IKEv1) request, which tells the peer's
    version. As initiator it is indistinguishable from a proposal mismatch.
authentication_failed
    A pre-shared key or identity mismatch: "received AUTHENTICATION_FAILED ..." (initiator),
    "tried N shared key for 'A' - 'B', but MAC mismatched" (IKEv2 responder, wrong key),
    "could not decrypt payloads" (IKEv1 main mode: a wrong key garbles the encrypted
    messages, both roles), "calculated HASH does not match HASH payload" (IKEv1 aggressive
    initiator), "IDir 'X' does not match to 'Y'" (IKEv1 initiator), "no matching peer config
    found" (IKEv2 responder) / "no peer config found" (IKEv1 responder) after "looking for
    ... peer configs matching A[ours]...B[theirs]". Two IKEv1 cases leave the gateway
    without an explicit error and are recognised by their shape: as aggressive-mode
    responder with a wrong key or LocalId, the peer's AUTHENTICATION_FAILED arrives as an
    INFORMATIONAL that charon only queues ("queueing INFORMATIONAL_V1 request as tasks still
    active"), then charon gives up retransmitting; as main-mode responder with a LocalId the
    peer does not expect, the IKE SA is established and the peer deletes it at once
    ("received DELETE for IKE_SA") before any Quick Mode.
peer_not_responding
    "giving up after N retransmits" / "establishing IKE_SA failed, peer not responding";
    as responder, "deleting half open IKE_SA with X after timeout" (the peer's packets
    arrive, ours do not reach it); "DPD check timed out" (IKEv1 dead peer detection).
traffic_selectors_unacceptable
    "received TS_UNACCEPTABLE notify" (IKEv2 initiator), "traffic selectors OURS === PEERS
    unacceptable" (IKEv2 responder), "received INVALID_ID_INFORMATION error notify" once the
    IKE SA is up (IKEv1 initiator, Quick Mode), "no matching CHILD_SA config found for
    PEERS === OURS" (IKEv1 responder).

A diagnosis quotes only log text, proposals and identities, never a pre-shared key (charon
never logs one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

NO_PROPOSAL = "no_proposal_chosen"
AUTHENTICATION = "authentication_failed"
NOT_RESPONDING = "peer_not_responding"
TRAFFIC_SELECTORS = "traffic_selectors_unacceptable"
VERSION_MISMATCH = "ike_version_mismatch"
KINDS: tuple[str, ...] = (NO_PROPOSAL, AUTHENTICATION, NOT_RESPONDING, TRAFFIC_SELECTORS, VERSION_MISMATCH)

# "[IKE] " as connection_logs prefixes charon's log group; bare VICI messages have none.
_GROUP_PREFIX = re.compile(r"^\[[A-Z]{3}\] ")
_SUCCESS = re.compile(r"^(?:IKE_SA|CHILD_SA) \S+ established\b")
_IKE_UP = re.compile(r"^IKE_SA (\S+) established\b")
_ATTEMPT = re.compile(
    r"^initiating (?:Main Mode |Aggressive Mode )?IKE_SA \S+ to "
    r"|^\S+ is initiating an? (?:Main Mode |Aggressive Mode )?IKE_SA$"
)

# -- failures -------------------------------------------------------------------
_TS_REFUSED_BY_PEER = re.compile(r"^received TS_UNACCEPTABLE notify")
_TS_REFUSED_V2 = re.compile(r"^traffic selectors (.+) === (.+) unacceptable$")
_TS_REFUSED_V1 = re.compile(r"^no matching CHILD_SA config found(?: for (.+) === (.+))?$")
_INVALID_ID = re.compile(r"^received INVALID_ID_INFORMATION error notify")
_NO_PROPOSAL_HERE = re.compile(
    r"^(?:received proposals unacceptable|no proposal found|no acceptable proposal found|no matching proposal found)"
)
_NO_PROPOSAL_THERE = re.compile(r"^received NO_PROPOSAL_CHOSEN (?:notify|error notify)")
_NO_IKE_CONFIG = re.compile(r"^no IKE config found for (\S+), sending NO_PROPOSAL_CHOSEN$")
_AUTH_REFUSED_BY_PEER = re.compile(r"^received AUTHENTICATION_FAILED (?:notify error|error notify)")
_MAC_MISMATCH = re.compile(r"^tried \d+ shared keys? for '([^']*)' - '([^']*)', but MAC mismatched")
_UNDECRYPTABLE = re.compile(r"^could not decrypt payloads")
_HASH_MISMATCH = re.compile(r"^calculated HASH does not match HASH payload")
_ID_MISMATCH = re.compile(r"^ID\w* '([^']*)' does not match to '([^']*)'")
_NO_PEER_CONFIG = re.compile(r"^no (?:matching )?peer config found")
_PEER_DELETED = re.compile(r"^received DELETE for IKE_SA (\S+)$")
_GAVE_UP = re.compile(r"^giving up after (\d+) retransmits|^establishing IKE_SA failed, peer not responding")
_HALF_OPEN = re.compile(r"^deleting half open IKE_SA with (\S+) after timeout")
_DPD_TIMEOUT = re.compile(r"^DPD check timed out")

# -- context ----------------------------------------------------------------------
_RECEIVED = re.compile(r"^received proposals: (.+)$")
_CONFIGURED = re.compile(r"^configured proposals: (.+)$")
_PEER_CONFIGS = re.compile(r"^looking for (?:pre-shared key )?peer configs matching (\S+)\.\.\.(\S+)$")
_IDENTITY = re.compile(r"\[([^\]]*)\]$")
_MY_AUTH = re.compile(r"^authentication of '([^']*)' \(myself\)")
_RETRANSMITS = re.compile(r"^giving up after (\d+) retransmits")
_PEER_ADDRESS = re.compile(
    r"^initiating (?:Main Mode |Aggressive Mode )?IKE_SA \S+ to (\S+)$|^(\S+) is initiating an? "
    r"|^deleting half open IKE_SA with (\S+) "
)
_REQUEST_VERSION = re.compile(r"^parsed (IKE_SA_INIT|ID_PROT|AGGRESSIVE) request 0 ")
_PEER_RESENT = re.compile(r"^received retransmit of request with ID \d+, retransmitting response")
_AGGRESSIVE_RESPONDER = re.compile(r"^\S+ is initiating a Aggressive Mode IKE_SA$")
_QUEUED_INFORMATIONAL = re.compile(r"^queueing INFORMATIONAL_V1 request as tasks still active")
_PHASE_2_ACTIVITY = re.compile(r"CHILD_SA|QUICK_MODE")
# Every line _classify can call a failure starts with one of these.
_TRIGGERS: tuple[re.Pattern[str], ...] = (
    _TS_REFUSED_BY_PEER,
    _TS_REFUSED_V2,
    _TS_REFUSED_V1,
    _INVALID_ID,
    _NO_PROPOSAL_HERE,
    _NO_PROPOSAL_THERE,
    _NO_IKE_CONFIG,
    _AUTH_REFUSED_BY_PEER,
    _MAC_MISMATCH,
    _UNDECRYPTABLE,
    _HASH_MISMATCH,
    _ID_MISMATCH,
    _NO_PEER_CONFIG,
    _PEER_DELETED,
    _GAVE_UP,
    _HALF_OPEN,
    _DPD_TIMEOUT,
)

_GENERAL_AUTH = (
    "Authentication failed: the pre-shared key (Psk) or an identity (LocalId/RemoteId) does not "
    "match between this gateway and the peer."
)


@dataclass(frozen=True)
class Diagnosis:
    """``kind`` is one of :data:`KINDS`; ``message`` is for the operator."""

    kind: str
    message: str


@dataclass(frozen=True)
class _Found:
    diagnosis: Diagnosis
    # A failure that keeps the IKE SA from being set up (it explains the retransmit
    # time-out that may end the same attempt); phase 2 refusals are not.
    phase_1: bool


@dataclass(frozen=True)
class _Ours:
    ike_proposals: tuple[str, ...]
    esp_proposals: tuple[str, ...]
    local_id: str
    remote_id: str


def message_text(line: str) -> str:
    """A log line without connection_logs' ``[GROUP] `` prefix (bare text is returned as is)."""
    return _GROUP_PREFIX.sub("", line.rstrip("\n"), count=1)


def is_success(line: str) -> bool:
    """Whether a log line reports an IKE_SA or a CHILD_SA established."""
    return _SUCCESS.match(message_text(line)) is not None


def diagnose(
    lines: Sequence[str],
    *,
    ike_proposals: Sequence[str] = (),
    esp_proposals: Sequence[str] = (),
    local_id: str = "",
    remote_id: str = "",
) -> Diagnosis | None:
    """The diagnosis of the newest failure after the last success, or None.

    ``ike_proposals``/``esp_proposals`` are this side's proposals as rendered (named when
    the log does not show charon's own "configured proposals"); ``local_id``/``remote_id``
    are the connection's identities (LocalId/RemoteId, or the addresses they default to),
    used to say which identity differs when the log shows only the peer's.
    """
    texts = [message_text(line) for line in lines]
    ours = _Ours(tuple(ike_proposals), tuple(esp_proposals), local_id, remote_id)
    start = _after_last_success(texts)
    failures = [
        (index, found)
        for index in range(start, len(texts))
        if (found := _classify(texts, index, ours)) is not None
    ]
    if not failures:
        return None
    index, newest = failures[-1]
    if newest.diagnosis.kind == NOT_RESPONDING:
        attempt_start = _attempt_start(texts, index)
        reasons = [
            found
            for at, found in failures
            if at >= attempt_start and found.phase_1 and found.diagnosis.kind != NOT_RESPONDING
        ]
        if reasons:
            return reasons[-1].diagnosis
    return newest.diagnosis


def _after_last_success(texts: Sequence[str]) -> int:
    for index in range(len(texts) - 1, -1, -1):
        if _SUCCESS.match(texts[index]):
            return index + 1
    return 0


def _attempt_start(texts: Sequence[str], index: int) -> int:
    """Where the negotiation that line ``index`` belongs to started (0 if not seen)."""
    for at in range(index - 1, -1, -1):
        if _ATTEMPT.search(texts[at]):
            return at
    return 0


def _classify(texts: Sequence[str], index: int, ours: _Ours) -> _Found | None:
    """The failure line ``index`` reports, or None for any other line."""
    text = texts[index]
    if not any(trigger.match(text) for trigger in _TRIGGERS):
        return None  # most lines: no need to look back
    attempt = texts[_attempt_start(texts, index) : index]
    ike_up = any(_IKE_UP.match(line) for line in attempt)

    if _TS_REFUSED_BY_PEER.match(text) or (_INVALID_ID.match(text) and ike_up):
        return _Found(_ts_refused_by_peer(text), phase_1=False)
    if found := _TS_REFUSED_V2.match(text):
        return _Found(_ts_refused_here(peer=found.group(2), mine=found.group(1)), phase_1=False)
    if found := _TS_REFUSED_V1.match(text):
        return _Found(_ts_refused_here(peer=found.group(1), mine=found.group(2)), phase_1=False)
    if _NO_PROPOSAL_HERE.match(text) or _NO_PROPOSAL_THERE.match(text):
        if _NO_PROPOSAL_HERE.match(text):
            # This side refused, so it logged the peer's proposals just before. charon
            # handles a retransmitted request in another thread: that attempt's first
            # line can fall between them and the refusal, so look back past it.
            attempt = texts[_after_last_success(texts[:index]) : index]
        phase_2 = ike_up or "CHILD_SA" in text or (_last_match(_RECEIVED, attempt) or "").startswith("ESP:")
        return _Found(_no_proposal(attempt, ours, phase_2=phase_2), phase_1=not phase_2)
    if found := _NO_IKE_CONFIG.match(text):
        return _Found(_version_mismatch(found.group(1), attempt or texts[:index]), phase_1=True)
    if (auth := _authentication(text, attempt, texts, index, ours, ike_up=ike_up)) is not None:
        return _Found(auth, phase_1=True)
    if _GAVE_UP.match(text) or _HALF_OPEN.match(text) or _DPD_TIMEOUT.match(text):
        if (
            _GAVE_UP.match(text)
            and text.startswith("establishing IKE_SA failed")
            and any(_RETRANSMITS.match(line) for line in attempt[-3:])
        ):
            return None  # the "giving up" line just before already said it
        return _Found(_not_responding(text, attempt), phase_1=False)
    return None


# -- the messages -------------------------------------------------------------------


def _no_proposal(attempt: Sequence[str], ours: _Ours, *, phase_2: bool) -> Diagnosis:
    received = _last_match(_RECEIVED, attempt)
    configured = _last_match(_CONFIGURED, attempt)
    if phase_2:
        stage, settings, mine = (
            "IPsec (phase 2)",
            "IpsecEncAlg, IpsecAuthAlg and IpsecPfs",
            ours.esp_proposals,
        )
    else:
        stage, settings, mine = "IKE (phase 1)", "IkeEncAlg, IkeAuthAlg and IkePfs", ours.ike_proposals
    if received is not None:
        accepted = configured or ", ".join(mine) or "something else"
        return Diagnosis(
            NO_PROPOSAL,
            f"No proposal chosen for {stage}: the peer offered {received}, but this gateway accepts "
            f"{accepted}. Make {settings} the same on both sides.",
        )
    named = f" ({', '.join(mine)})" if mine else ""
    if phase_2:
        return Diagnosis(
            NO_PROPOSAL,
            f"No proposal chosen for {stage}: the IKE SA is up, but the peer refused this gateway's IPsec "
            f"proposal{named}; the peer's own proposals are only logged when the peer initiates. "
            f"Make {settings} match the peer's.",
        )
    return Diagnosis(
        NO_PROPOSAL,
        f"No proposal chosen for {stage}: the peer refused this gateway's IKE proposal{named}; the peer's "
        f"own proposals are only logged when the peer initiates. Make {settings} match the peer's, and "
        "IkeVersion too (a peer set to the other IKE version refuses the same way).",
    )


def _version_mismatch(addresses: str, attempt: Sequence[str]) -> Diagnosis:
    request = _last_match(_REQUEST_VERSION, attempt)
    if request == "IKE_SA_INIT":
        theirs, other = "IKEv2", "IKEv1"
    elif request in ("ID_PROT", "AGGRESSIVE"):
        theirs, other = "IKEv1", "IKEv2"
    else:
        return Diagnosis(
            VERSION_MISMATCH,
            f"IKE version mismatch: the peer's request matches no IKE configuration here ({addresses}). "
            "Check that IkeVersion and the gateway addresses are the same on both sides.",
        )
    return Diagnosis(
        VERSION_MISMATCH,
        f"IKE version mismatch: the peer negotiates with {theirs}, but this connection uses {other} "
        f"(no {theirs} configuration for {addresses}). Set IkeVersion the same on both sides.",
    )


def _authentication(
    text: str, attempt: Sequence[str], texts: Sequence[str], index: int, ours: _Ours, *, ike_up: bool
) -> Diagnosis | None:
    if found := _ID_MISMATCH.match(text):
        return _auth(
            f"The peer identified itself as '{found.group(1)}', but this connection expects "
            f"'{found.group(2)}' (RemoteId)."
        )
    if found := _MAC_MISMATCH.match(text):
        return _auth(
            f"The identities match this connection ('{found.group(1)}' here, '{found.group(2)}' the "
            "peer), but the peer's proof does not verify with this gateway's key: the pre-shared key "
            "differs."
        )
    if _UNDECRYPTABLE.match(text):
        if any(_UNDECRYPTABLE.match(line) for line in attempt):
            return None  # once per attempt is enough
        return _auth(
            "IKEv1 main mode cannot decrypt the peer's messages, which is what a different "
            "pre-shared key looks like."
        )
    if _HASH_MISMATCH.match(text):
        return _auth(
            "The peer's HASH does not verify with this gateway's key (IKEv1 aggressive mode): most "
            "likely the pre-shared key differs."
        )
    if _NO_PEER_CONFIG.match(text):
        return _auth(_unknown_identities(attempt, ours))
    if _AUTH_REFUSED_BY_PEER.match(text):
        me = _last_match(_MY_AUTH, attempt) or ours.local_id
        as_me = f" as '{me}'" if me else ""
        return _auth(
            f"The peer refused this gateway's authentication{as_me} (AUTHENTICATION_FAILED): the keys "
            "differ, or the peer expects other identities."
        )
    if _INVALID_ID.match(text) and not ike_up:
        return _auth(
            "The peer refused this gateway's identity (INVALID_ID_INFORMATION) before the IKE SA was "
            "up: check LocalId and the peer's RemoteId."
        )
    if found := _PEER_DELETED.match(text):
        return _deleted_at_once(found.group(1), texts, index, ours)
    if _GAVE_UP.match(text) and _aggressive_reply_refused(attempt):
        return _auth(
            "The peer answered this gateway's Aggressive Mode reply with a notification instead of "
            "completing the exchange, then went silent: that is how an IKEv1 peer rejects the "
            "pre-shared key or this gateway's identity (LocalId)."
        )
    return None


def _auth(detail: str) -> Diagnosis:
    return Diagnosis(AUTHENTICATION, f"{_GENERAL_AUTH} {detail}")


def _unknown_identities(attempt: Sequence[str], ours: _Ours) -> str:
    """The peer's identities, from "looking for ... peer configs matching OURS...THEIRS"."""
    found = _last_match_groups(_PEER_CONFIGS, attempt)
    mine_seen, theirs_seen = (_identity(endpoint) for endpoint in found) if found else (None, None)
    clauses = []
    if theirs_seen is not None:
        differs = ours.remote_id and theirs_seen != ours.remote_id
        clauses.append(
            f"the peer identified itself as '{theirs_seen}'"
            + (f", but this connection's RemoteId is '{ours.remote_id}'" if differs else "")
        )
    if mine_seen not in (None, "%any"):
        differs = ours.local_id and mine_seen != ours.local_id
        clauses.append(
            f"it expects this gateway to be '{mine_seen}'"
            + (f", but this connection's LocalId is '{ours.local_id}'" if differs else "")
        )
    if not clauses:
        return "The peer's identities match no connection here."
    sentence = "; ".join(clauses)
    return f"{sentence[0].upper()}{sentence[1:]}, which matches no connection here."


def _identity(endpoint: str) -> str | None:
    found = _IDENTITY.search(endpoint)
    return found.group(1) if found else None


def _deleted_at_once(sa: str, texts: Sequence[str], index: int, ours: _Ours) -> Diagnosis | None:
    """IKEv1: the peer deletes the IKE SA it just established with us, before any Quick Mode."""
    for at in range(index - 1, -1, -1):
        established = _IKE_UP.match(texts[at])
        if established:
            if established.group(1) != sa:
                return None
            if any(_PHASE_2_ACTIVITY.search(line) for line in texts[at + 1 : index]):
                return None
            me = _identity(texts[at].split("...", 1)[0]) or ours.local_id
            named = f" ('{me}')" if me else ""
            return _auth(
                f"The peer deleted the IKE SA as soon as it was established, before any IPsec SA: an "
                f"IKEv1 peer does that when it does not accept this gateway's identity{named}; check "
                "that the peer's RemoteId is this LocalId."
            )
    return None


def _aggressive_reply_refused(attempt: Sequence[str]) -> bool:
    return any(_AGGRESSIVE_RESPONDER.match(line) for line in attempt) and any(
        _QUEUED_INFORMATIONAL.match(line) for line in attempt
    )


def _not_responding(text: str, attempt: Sequence[str]) -> Diagnosis:
    address = _peer_address([*attempt, text])
    who = f"the peer {address}" if address else "the peer"
    if _HALF_OPEN.match(text) or any(_PEER_RESENT.match(line) for line in attempt):
        return Diagnosis(
            NOT_RESPONDING,
            f"Peer not responding: {who} started a negotiation but never completed it, so this gateway's "
            "answers probably do not reach it. Check that UDP 500 and 4500 pass from this gateway to the peer.",
        )
    if _DPD_TIMEOUT.match(text):
        return Diagnosis(
            NOT_RESPONDING,
            f"Peer not responding: dead peer detection got no answer from {who}. Check that the peer is up "
            "and that UDP 500 and 4500 reach it.",
        )
    retransmits = _RETRANSMITS.match(text) or _last_match_object(_RETRANSMITS, attempt)
    after = f" after {retransmits.group(1)} retransmits" if retransmits else ""
    return Diagnosis(
        NOT_RESPONDING,
        f"Peer not responding: {who} did not answer{after}. Check that it is up, that UDP 500 and 4500 "
        "reach it, and that it is configured for this gateway's address.",
    )


def _ts_refused_by_peer(text: str) -> Diagnosis:
    notify = "TS_UNACCEPTABLE" if "TS_UNACCEPTABLE" in text else "INVALID_ID_INFORMATION"
    return Diagnosis(
        TRAFFIC_SELECTORS,
        f"Traffic selectors refused: the IKE SA is up, but the peer refused this connection's subnets "
        f"({notify}). Make LocalSubnet and RemoteSubnet mirror the peer's subnets.",
    )


def _ts_refused_here(*, peer: str | None, mine: str | None) -> Diagnosis:
    shown = f" (the peer proposed {peer} on its side and {mine} on this side)" if peer and mine else ""
    return Diagnosis(
        TRAFFIC_SELECTORS,
        f"Traffic selectors refused: the IKE SA is up, but the peer's subnets do not match this connection's "
        f"RemoteSubnet and LocalSubnet{shown}. Make them mirror each other.",
    )


def _peer_address(lines: Sequence[str]) -> str | None:
    for line in reversed(lines):
        found = _PEER_ADDRESS.match(line)
        if found:
            return next(group for group in found.groups() if group)
    return None


def _last_match(pattern: re.Pattern[str], lines: Sequence[str]) -> str | None:
    found = _last_match_object(pattern, lines)
    return found.group(1) if found else None


def _last_match_groups(pattern: re.Pattern[str], lines: Sequence[str]) -> tuple[str, ...] | None:
    found = _last_match_object(pattern, lines)
    return found.groups() if found else None


def _last_match_object(pattern: re.Pattern[str], lines: Sequence[str]) -> re.Match[str] | None:
    for line in reversed(lines):
        found = pattern.match(line)
        if found:
            return found
    return None
