from __future__ import annotations

import dataclasses

import pytest

from vpngw.dataplane.errors import InvalidSpec, PermanentError
from vpngw.dataplane.spec.desired import ConnectionSpec

from .specs import TEST_PSK, connection, ike, ipsec


def test_repr_and_str_never_show_the_psk() -> None:
    spec = connection()
    for text in (repr(spec), str(spec), repr(spec.ike), f"{spec}", f"{spec.ike!r}"):
        assert TEST_PSK not in text
    assert "psk" not in repr(spec.ike)
    assert "enc_alg='aes'" in repr(spec.ike)


def test_specs_are_frozen_hashable_values() -> None:
    assert connection() == connection()
    assert hash(connection()) == hash(connection())
    assert connection() != connection(ike=ike(psk="another-key"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        connection().name = "vco-x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ike(version="ikev3"), "ike.version"),
        (lambda: ike(mode="quick"), "ike.mode"),
        (lambda: ike(lifetime=-1), "ike.lifetime"),
        (lambda: ike(lifetime=True), "ike.lifetime"),
        (lambda: ike(lifetime="3600"), "ike.lifetime"),
        (lambda: ike(psk=""), "ike.psk"),
        (lambda: ipsec(lifetime=-5), "ipsec.lifetime"),
        (lambda: connection(name=""), "name"),
        (lambda: connection(local_subnets=()), "local_subnets"),
        (lambda: connection(remote_subnets=["10.0.0.0/8"]), "remote_subnets"),
    ],
)
def test_malformed_fields_are_permanent_errors(build: object, field: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field
    assert isinstance(caught.value, PermanentError)


def test_a_psk_error_does_not_echo_the_value() -> None:
    with pytest.raises(InvalidSpec) as caught:
        ike(psk=None)
    assert caught.value.value == "<hidden>"


def test_zero_lifetimes_are_accepted() -> None:
    spec = connection(ike=ike(lifetime=0), ipsec=ipsec(lifetime=0))
    assert isinstance(spec, ConnectionSpec)
