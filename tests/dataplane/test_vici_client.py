"""ViciClient against a fake charon over socket.socketpair(AF_UNIX)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpngw.dataplane.charon.vici_client import (
    CharonUnavailable,
    ChildSa,
    IkeSa,
    ViciClient,
    ViciCommandError,
)
from vpngw.dataplane.errors import DataplaneError, TemporaryError
from vpngw.dataplane.spec.render import render_connection, render_shared_key

from .fake_charon import FakeCharon, Script, refusal, success
from .specs import connection

# What charon 5.9.8 streams for one established IKEv2 SA with one CHILD_SA (trimmed).
LIST_SA_EVENT = {
    "vco-abc": {
        "uniqueid": "7",
        "version": "2",
        "state": "ESTABLISHED",
        "local-host": "198.18.10.1",
        "local-port": "4500",
        "local-id": "198.18.10.1",
        "remote-host": "198.18.20.1",
        "remote-port": "4500",
        "remote-id": "198.18.20.1",
        "initiator": "yes",
        "encr-alg": "AES_CBC",
        "encr-keysize": "128",
        "established": "3",
        "rekey-time": "77000",
        "child-sas": {
            "vco-abc-12": {
                "name": "vco-abc",
                "uniqueid": "12",
                "reqid": "3",
                "state": "INSTALLED",
                "mode": "TUNNEL",
                "protocol": "ESP",
                "encap": "yes",
                "spi-in": "c3b0a1f2",
                "spi-out": "0a0b0c0d",
                "bytes-in": "8400",
                "packets-in": "100",
                "bytes-out": "4200",
                "packets-out": "50",
                "local-ts": ["10.1.0.0/16", "10.2.0.0/16"],
                "remote-ts": ["192.168.1.0/24"],
            }
        },
    }
}


@pytest.fixture
def pair() -> Iterator[tuple[ViciClient, FakeCharon]]:
    client_sock, server_sock = socket.socketpair(socket.AF_UNIX)
    client_sock.settimeout(2.0)
    fake = FakeCharon(server_sock)
    client = ViciClient(client_sock)
    yield client, fake
    client.close()
    fake.stop()


def test_list_sas_decodes_one_ike_sa_with_one_child(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("list-sas", Script(events=[LIST_SA_EVENT]))
    assert client.list_sas() == [
        IkeSa(
            name="vco-abc",
            uniqueid=7,
            state="ESTABLISHED",
            local_host="198.18.10.1",
            remote_host="198.18.20.1",
            children=(
                ChildSa(
                    name="vco-abc",
                    uniqueid=12,
                    reqid=3,
                    state="INSTALLED",
                    spi_in=0xC3B0A1F2,
                    spi_out=0x0A0B0C0D,
                    bytes_in=8400,
                    bytes_out=4200,
                    packets_in=100,
                    packets_out=50,
                    local_ts=("10.1.0.0/16", "10.2.0.0/16"),
                    remote_ts=("192.168.1.0/24",),
                ),
            ),
        )
    ]
    assert fake.requests == [("list-sas", {})]
    assert fake.registered == ["list-sa"]


def test_list_sas_filters_by_connection_and_handles_sas_without_children(
    pair: tuple[ViciClient, FakeCharon],
) -> None:
    client, fake = pair
    connecting = {"vco-abc": {"uniqueid": "8", "state": "CONNECTING", "remote-host": "198.18.20.1"}}
    fake.script("list-sas", Script(events=[connecting]))
    [sa] = client.list_sas("vco-abc")
    assert (sa.state, sa.children, sa.local_host) == ("CONNECTING", (), "")
    assert fake.requests == [("list-sas", {"ike": b"vco-abc"})]


def test_list_sas_with_no_sas(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("list-sas", Script())
    assert client.list_sas() == []


def test_list_sas_garbage_numbers_are_reported_not_leaked(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("list-sas", Script(events=[{"vco-abc": {"uniqueid": "seven"}}]))
    with pytest.raises(CharonUnavailable, match="unexpected reply"):
        client.list_sas()


def test_list_conns_returns_the_names(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script(
        "list-conns", Script(events=[{"vco-a": {"version": "IKEv2"}}, {"vco-b": {"version": "IKEv1"}}])
    )
    assert client.list_conns() == frozenset({"vco-a", "vco-b"})


def test_load_conn_sends_the_rendered_message(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("load-conn", success())
    spec = connection(name="vco-abc")
    client.load_conn(render_connection(spec))
    [(command, message)] = fake.requests
    conn = message["vco-abc"]
    assert command == "load-conn"
    assert conn["version"] == b"2"
    assert conn["proposals"] == [b"aes128-sha1-prfsha1-modp1024"]
    assert conn["children"]["vco-abc"]["local_ts"] == [b"10.1.0.0/16"]
    assert conn["local"] == {"auth": b"psk", "id": b"198.18.10.1"}


def test_a_failing_load_conn_is_a_typed_refusal_and_the_client_stays_usable(
    pair: tuple[ViciClient, FakeCharon],
) -> None:
    client, fake = pair
    fake.script("load-conn", refusal("invalid value for: proposals, config discarded"))
    fake.script("list-conns", Script())
    with pytest.raises(ViciCommandError) as caught:
        client.load_conn({"vco-abc": {"proposals": ["nonsense"]}})
    assert caught.value.command == "load-conn"
    assert caught.value.errmsg == "invalid value for: proposals, config discarded"
    assert not isinstance(caught.value, TemporaryError)
    assert isinstance(caught.value, DataplaneError)
    assert client.list_conns() == frozenset()


def test_shared_keys_and_unloading(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    for command in ("load-shared", "unload-shared", "unload-conn"):
        fake.script(command, success())
    spec = connection(name="vco-abc")
    client.load_shared(render_shared_key(spec))
    client.unload_shared("psk-vco-abc")
    client.unload_conn("vco-abc")
    assert [c for c, _ in fake.requests] == ["load-shared", "unload-shared", "unload-conn"]
    assert fake.requests[0][1]["owners"] == [b"198.18.10.1", b"198.18.20.1"]
    assert fake.requests[1][1] == {"id": b"psk-vco-abc"}
    assert fake.requests[2][1] == {"name": b"vco-abc"}


def test_initiate_streams_the_log_and_returns(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script(
        "initiate",
        Script(events=[{"group": "IKE", "level": "1", "msg": "establishing"}], response={"success": "yes"}),
    )
    client.initiate("vco-abc", "vco-abc", timeout_ms=3000)
    assert fake.requests == [
        ("initiate", {"child": b"vco-abc", "ike": b"vco-abc", "timeout": b"3000", "loglevel": b"1"})
    ]
    assert fake.registered == ["control-log"]


def test_a_failed_initiate_carries_charons_log(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    log = [{"msg": "received AUTHENTICATION_FAILED notify error"}, {"msg": "establishing CHILD_SA failed"}]
    fake.script(
        "initiate",
        Script(events=log, response={"success": "no", "errmsg": "establishing CHILD_SA 'c' failed"}),
    )
    with pytest.raises(ViciCommandError) as caught:
        client.initiate("c", "vco-abc")
    assert caught.value.command == "initiate"
    assert caught.value.errmsg == "establishing CHILD_SA 'c' failed"
    assert caught.value.log == ("received AUTHENTICATION_FAILED notify error", "establishing CHILD_SA failed")


def test_initiate_waits_longer_than_the_socket_timeout(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    client_sock = client._sock  # checking the timeout is restored
    client_sock.settimeout(0.1)
    fake.script("initiate", Script(response={"success": "yes"}, delay_s=0.4))
    client.initiate("c", "vco-abc", timeout_ms=300)
    assert client_sock.gettimeout() == 0.1


def test_terminate(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("terminate", success(), refusal("no matching SAs to terminate found"))
    client.terminate("vco-abc", force=True)
    with pytest.raises(ViciCommandError, match="no matching SAs"):
        client.terminate("vco-abc")
    assert fake.requests[0] == (
        "terminate",
        {"ike": b"vco-abc", "timeout": b"5000", "loglevel": b"1", "force": b"yes"},
    )
    assert "force" not in fake.requests[1][1]


def test_version(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("version", Script(response={"daemon": "charon", "version": "5.9.8"}))
    assert client.version() == "5.9.8"


def test_a_daemon_that_hangs_is_unavailable_and_the_client_closes(
    pair: tuple[ViciClient, FakeCharon],
) -> None:
    client, fake = pair
    client._sock.settimeout(0.2)
    fake.script("list-conns", Script(hang=True))
    with pytest.raises(CharonUnavailable) as caught:
        client.list_conns()
    assert isinstance(caught.value, TemporaryError)
    with pytest.raises(CharonUnavailable, match="closed"):
        client.version()


def test_a_daemon_that_drops_the_connection_is_unavailable(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, fake = pair
    fake.script("load-conn", Script(close=True))
    with pytest.raises(CharonUnavailable, match="load-conn"):
        client.load_conn({"x": {}})


def test_an_unknown_command_reply_is_a_protocol_failure(pair: tuple[ViciClient, FakeCharon]) -> None:
    client, _fake = pair  # nothing scripted: the fake answers CMD_UNKNOWN
    with pytest.raises(CharonUnavailable, match="Unexpected response type"):
        client.version()


def test_connect_to_a_missing_socket_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CharonUnavailable, match="cannot connect"):
        ViciClient.connect(str(tmp_path / "no.vici"), timeout=1.0)


def test_connect_over_a_unix_socket_path(tmp_path: Path) -> None:
    path = str(tmp_path / "charon.vici")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    fakes: list[FakeCharon] = []

    def accept() -> None:
        conn, _ = listener.accept()
        fake = FakeCharon(conn)
        fake.script("version", Script(response={"version": "5.9.8"}))
        fakes.append(fake)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        with ViciClient.connect(path, timeout=2.0) as client:
            thread.join(2)
            assert client.version() == "5.9.8"
        with pytest.raises(CharonUnavailable, match="closed"):
            client.version()
    finally:
        thread.join(2)
        for fake in fakes:
            fake.stop()
        listener.close()
