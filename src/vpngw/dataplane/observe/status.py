"""What charon holds, in the API's words: a connection's ``Status`` and traffic (pure).

``Status`` (the spec's four values) is computed from ``list-sas`` alone, never from log
text:

* ``ike_sa_not_established``: no IKE_SA of the connection is established;
* ``ike_sa_established``: the IKE_SA is up, its CHILD_SAs are not all installed yet;
* ``ipsec_sa_not_established``: the IKE_SA is up but a CHILD_SA negotiation failed
  (the connection carries a diagnosis, e.g. traffic selectors refused);
* ``ipsec_sa_established``: the IKE_SA is up and every CHILD_SA the connection needs
  (IKEv1: one per subnet pair) is installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vpngw.dataplane.charon.vici_client import IkeSa

IKE_UP = frozenset({"ESTABLISHED", "REKEYING", "REKEYED"})
CHILD_UP = frozenset({"INSTALLED", "REKEYING", "REKEYED", "UPDATING"})
IKE_IN_PROGRESS = frozenset({"CREATED", "CONNECTING"})


@dataclass(frozen=True)
class Traffic:
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0

    def as_api(self) -> dict[str, int]:
        return {
            "BytesIn": self.bytes_in,
            "BytesOut": self.bytes_out,
            "PacketsIn": self.packets_in,
            "PacketsOut": self.packets_out,
        }


@dataclass(frozen=True)
class Observed:
    status: str
    traffic: Traffic
    installed_children: frozenset[str]
    in_progress: bool


def observe(sas: Iterable[IkeSa], name: str, children: Iterable[str], *, child_failed: bool) -> Observed:
    """The state of connection ``name`` (whose CHILD_SAs are ``children``) in ``sas``."""
    mine = [sa for sa in sas if sa.name == name]
    up = [sa for sa in mine if sa.state in IKE_UP]
    installed = frozenset(c.name for sa in up for c in sa.children if c.state in CHILD_UP)
    traffic = Traffic(
        sum(c.bytes_in for sa in up for c in sa.children),
        sum(c.bytes_out for sa in up for c in sa.children),
        sum(c.packets_in for sa in up for c in sa.children),
        sum(c.packets_out for sa in up for c in sa.children),
    )
    in_progress = any(sa.state in IKE_IN_PROGRESS for sa in mine)
    if not up:
        status = "ike_sa_not_established"
    elif set(children) <= installed:
        status = "ipsec_sa_established"
    elif child_failed:
        status = "ipsec_sa_not_established"
    else:
        status = "ike_sa_established"
    return Observed(status, traffic, installed, in_progress)
