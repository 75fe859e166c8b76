"""The one table from API algorithm names to strongSwan proposal keywords.

A strongSwan proposal is a dash-joined list of keywords (swanctl.conf ``proposals`` and
``esp_proposals``). vpngw offers exactly one proposal per phase, built from the
connection's settings, so both peers must be configured alike (as on Alibaba Cloud):

==========  ===========================================  ====================================
phase       keywords                                     example (aes, sha256, group14)
==========  ===========================================  ====================================
IKE         encryption-integrity-prf-dh                  ``aes128-sha256-prfsha256-modp2048``
ESP         encryption-integrity[-dh]                    ``aes128-sha256-modp2048``
==========  ===========================================  ====================================

IKE needs a pseudo-random function as well as integrity. strongSwan would derive the PRF
from the integrity keyword if it were left out; it is written out here so the proposal
says everything that is negotiated. ESP has no PRF. ``IpsecPfs=disabled`` drops the DH
group from the ESP proposal (no PFS on CHILD_SA rekeys); IKE always needs a group.

Note that IKEv2 creates the first CHILD_SA inside IKE_AUTH without a DH exchange, so the
ESP group only takes effect on rekeys. That is the protocol, not a choice made here.

A name missing from the table raises :class:`~.errors.InvalidSpec`, a permanent error.
"""

from __future__ import annotations

from collections.abc import Mapping

from vpngw.dataplane.errors import InvalidSpec
from vpngw.dataplane.spec.desired import IkeSettings, IpsecSettings

ENCRYPTION: Mapping[str, str] = {
    "aes": "aes128",
    "aes192": "aes192",
    "aes256": "aes256",
    "des": "des",
    "3des": "3des",
}

# API auth name -> (integrity keyword, PRF keyword). The integrity keywords select the
# RFC 4868 truncations (sha256 -> HMAC_SHA2_256_128), as standard IPsec peers expect.
INTEGRITY: Mapping[str, tuple[str, str]] = {
    "md5": ("md5", "prfmd5"),
    "sha1": ("sha1", "prfsha1"),
    "sha256": ("sha256", "prfsha256"),
    "sha384": ("sha384", "prfsha384"),
    "sha512": ("sha512", "prfsha512"),
}

DH_GROUPS: Mapping[str, str] = {
    "group1": "modp768",
    "group2": "modp1024",
    "group5": "modp1536",
    "group14": "modp2048",
    "group24": "modp2048s256",
}

PFS_DISABLED = "disabled"


def _unsupported(field: str, value: object, supported: list[str]) -> InvalidSpec:
    return InvalidSpec(field, value, f"unsupported; supported: {', '.join(supported)}")


def _lookup(table: Mapping[str, str], field: str, value: str) -> str:
    try:
        return table[value]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        raise _unsupported(field, value, list(table)) from None


def _integrity(field: str, value: str) -> tuple[str, str]:
    try:
        return INTEGRITY[value]
    except (KeyError, TypeError):
        raise _unsupported(field, value, list(INTEGRITY)) from None


def ike_proposal(ike: IkeSettings) -> str:
    """``IkeEncAlg``/``IkeAuthAlg``/``IkePfs`` -> one IKE proposal, e.g. ``aes128-sha1-prfsha1-modp1024``."""
    enc = _lookup(ENCRYPTION, "ike.enc_alg", ike.enc_alg)
    integ, prf = _integrity("ike.auth_alg", ike.auth_alg)
    dh = _lookup(DH_GROUPS, "ike.pfs", ike.pfs)
    return f"{enc}-{integ}-{prf}-{dh}"


def esp_proposal(ipsec: IpsecSettings) -> str:
    """``IpsecEncAlg``/``IpsecAuthAlg``/``IpsecPfs`` -> one ESP proposal, e.g. ``aes256-sha256``."""
    enc = _lookup(ENCRYPTION, "ipsec.enc_alg", ipsec.enc_alg)
    integ, _prf = _integrity("ipsec.auth_alg", ipsec.auth_alg)
    if ipsec.pfs == PFS_DISABLED:
        return f"{enc}-{integ}"
    if ipsec.pfs not in DH_GROUPS:
        raise _unsupported("ipsec.pfs", ipsec.pfs, [PFS_DISABLED, *DH_GROUPS])
    return f"{enc}-{integ}-{DH_GROUPS[ipsec.pfs]}"
