from __future__ import annotations

import pytest

from vpngw.dataplane.errors import InvalidSpec, PermanentError
from vpngw.dataplane.spec import proposals
from vpngw.dataplane.spec.proposals import esp_proposal, ike_proposal
from vpngw.rules import tunnel_config

from .specs import ike, ipsec


@pytest.mark.parametrize(
    ("enc", "auth", "pfs", "expected"),
    [
        ("aes", "md5", "group1", "aes128-md5-prfmd5-modp768"),
        ("aes192", "sha1", "group2", "aes192-sha1-prfsha1-modp1024"),
        ("aes256", "sha256", "group5", "aes256-sha256-prfsha256-modp1536"),
        ("des", "sha384", "group14", "des-sha384-prfsha384-modp2048"),
        ("3des", "sha512", "group24", "3des-sha512-prfsha512-modp2048s256"),
    ],
)
def test_ike_proposal(enc: str, auth: str, pfs: str, expected: str) -> None:
    assert ike_proposal(ike(enc_alg=enc, auth_alg=auth, pfs=pfs)) == expected


@pytest.mark.parametrize(
    ("enc", "auth", "pfs", "expected"),
    [
        ("aes", "md5", "group1", "aes128-md5-modp768"),
        ("aes192", "sha1", "group2", "aes192-sha1-modp1024"),
        ("aes256", "sha256", "group5", "aes256-sha256-modp1536"),
        ("des", "sha384", "group14", "des-sha384-modp2048"),
        ("3des", "sha512", "group24", "3des-sha512-modp2048s256"),
        ("aes", "sha1", "disabled", "aes128-sha1"),
    ],
)
def test_esp_proposal(enc: str, auth: str, pfs: str, expected: str) -> None:
    assert esp_proposal(ipsec(enc_alg=enc, auth_alg=auth, pfs=pfs)) == expected


def test_the_tables_cover_exactly_what_the_api_accepts() -> None:
    assert tuple(proposals.ENCRYPTION) == tunnel_config.ENC_ALGS
    assert tuple(proposals.INTEGRITY) == tunnel_config.AUTH_ALGS
    assert tuple(proposals.DH_GROUPS) == tunnel_config.DH_GROUPS
    assert (proposals.PFS_DISABLED, *proposals.DH_GROUPS) == tunnel_config.IPSEC_PFS


@pytest.mark.parametrize(
    ("call", "field", "value"),
    [
        (lambda: ike_proposal(ike(enc_alg="sm4")), "ike.enc_alg", "sm4"),
        (lambda: ike_proposal(ike(auth_alg="sm3")), "ike.auth_alg", "sm3"),
        (lambda: ike_proposal(ike(pfs="group19")), "ike.pfs", "group19"),
        (lambda: ike_proposal(ike(pfs="disabled")), "ike.pfs", "disabled"),
        (lambda: ike_proposal(ike(enc_alg="AES")), "ike.enc_alg", "AES"),
        (lambda: esp_proposal(ipsec(enc_alg="aes128")), "ipsec.enc_alg", "aes128"),
        (lambda: esp_proposal(ipsec(auth_alg="sha2")), "ipsec.auth_alg", "sha2"),
        (lambda: esp_proposal(ipsec(pfs="group99")), "ipsec.pfs", "group99"),
    ],
)
def test_unknown_values_are_permanent_errors_naming_the_field(call: object, field: str, value: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        call()  # type: ignore[operator]
    assert isinstance(caught.value, PermanentError)
    assert (caught.value.field, caught.value.value) == (field, value)
    assert "supported:" in str(caught.value)


def test_the_esp_pfs_error_lists_disabled_as_supported() -> None:
    with pytest.raises(InvalidSpec, match="supported: disabled, group1"):
        esp_proposal(ipsec(pfs="none"))
