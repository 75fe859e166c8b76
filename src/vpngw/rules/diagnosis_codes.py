"""DiagnoseVpnConnections' ``FailedReasonCode`` for a stored diagnosis.

The data plane stores a diagnosis as its message (``VpnConnection.diagnosis``), whose
first words name its kind (``vpngw.dataplane.observe.diagnosis``: "No proposal chosen
...", "Authentication failed: ..."). Each kind maps to the public API's reason code where
Alibaba's troubleshooting table has the same failure (``AlgorithmMismatch``), and to a
documented vpngw code otherwise (docs/errors.md, "Diagnosis reason codes").
tests/api/test_diagnose.py checks every kind the data plane produces against this table.
"""

from __future__ import annotations

#: (message prefix, data-plane kind, FailedReasonCode)
CODES: tuple[tuple[str, str, str], ...] = (
    ("No proposal chosen", "no_proposal_chosen", "AlgorithmMismatch"),
    ("IKE version mismatch", "ike_version_mismatch", "IkeVersionMismatch"),
    ("Authentication failed", "authentication_failed", "PskOrIdentityMismatch"),
    ("Peer not responding", "peer_not_responding", "PeerNotResponding"),
    ("Traffic selectors refused", "traffic_selectors_unacceptable", "TrafficSelectorMismatch"),
)
#: What the store reports when no node confirms it runs the gateway (``store.freshness``):
#: nothing negotiates at all, whatever the last diagnosis was.
NOT_RUNNING = "GatewayNotRunning"
_NOT_RUNNING_PREFIXES = (
    "No data-plane node runs this gateway",
    "Node ",
    # A tunnel of a dual-tunnel connection that no node has reported (actions.tunnels).
    "No data-plane node has reported this tunnel",
)
#: A diagnosis whose wording this table does not know (a newer data plane's).
UNKNOWN = "NegotiationFailed"


def reason_code(diagnosis: str) -> str:
    """The reason code of a stored diagnosis; '' when there is none (the connection is healthy)."""
    if not diagnosis:
        return ""
    for prefix, _kind, code in CODES:
        if diagnosis.startswith(prefix):
            return code
    if diagnosis.startswith(_NOT_RUNNING_PREFIXES):
        return NOT_RUNNING
    return UNKNOWN
