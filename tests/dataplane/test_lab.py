"""Real tunnels: two namespaces, one charon each, configured from rendered specs.

``gw`` plays the vpngw gateway (the spec under test), ``cpe`` the customer gateway
(the mirrored spec, responder only). Skipped unless root with strongSwan installed.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from vpngw.dataplane.backends.lab import charon_profile as lab_profile
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.charon.vici_client import ViciClient, ViciCommandError
from vpngw.dataplane.spec.desired import ConnectionSpec
from vpngw.dataplane.spec.render import child_names, render_connection, render_shared_key
from vpngw.dataplane.system import netns

from .conftest import LabPair
from .specs import connection, ike, ipsec

pytestmark = pytest.mark.dataplane


def spec_for(pair: LabPair, **changes: object) -> ConnectionSpec:
    base = {
        "name": "vco-lab",
        "local_addr": pair.gw.wan_addr,
        "remote_addr": pair.cpe.wan_addr,
        "local_subnets": pair.gw.lan_subnets,
        "remote_subnets": pair.cpe.lan_subnets,
        "effect_immediately": False,
    }
    base.update(changes)
    return connection(**base)


def load_both(pair: LabPair, spec: ConnectionSpec, *, cpe_spec: ConnectionSpec | None = None) -> None:
    """The customer side first, so that a ``start`` on gw finds a responder."""
    peer = cpe_spec or lab_peer.mirror_spec(spec)
    for client, side in ((pair.cpe.vici, peer), (pair.gw.vici, spec)):
        client.load_shared(render_shared_key(side))
        client.load_conn(render_connection(side))


def installed(client: ViciClient, conn: str) -> set[str]:
    return {c.name for sa in client.list_sas(conn) for c in sa.children if c.state == "INSTALLED"}


def pings(pair: LabPair, source: str, destination: str) -> bool:
    """Allow a short settling time: an IKEv1 responder installs after Quick Mode 3."""
    return netns.wait_until(lambda: netns.ping(pair.gw.namespace, source, destination), timeout_s=3)


def test_ikev2_tunnel_is_installed_and_carries_traffic(lab_pair: LabPair) -> None:
    spec = spec_for(lab_pair, ike=ike(version="ikev2", auth_alg="sha256", pfs="group14"))
    load_both(lab_pair, spec)
    assert lab_pair.gw.vici.list_conns() == {"vco-lab"}

    lab_pair.gw.vici.initiate("vco-lab", "vco-lab", timeout_ms=5000)

    [sa] = lab_pair.gw.vici.list_sas("vco-lab")
    [child] = sa.children
    assert (sa.state, child.state) == ("ESTABLISHED", "INSTALLED")
    assert (sa.local_host, sa.remote_host) == (lab_pair.gw.wan_addr, lab_pair.cpe.wan_addr)
    assert child.local_ts == lab_pair.gw.lan_subnets and child.remote_ts == lab_pair.cpe.lan_subnets
    assert netns.wait_until(lambda: installed(lab_pair.cpe.vici, "vco-lab") == {"vco-lab"}, timeout_s=3)
    for source in lab_pair.gw.lan_addrs:
        for destination in lab_pair.cpe.lan_addrs:
            assert pings(lab_pair, source, destination), f"{source} -> {destination}"
    [child] = lab_pair.gw.vici.list_sas("vco-lab")[0].children
    assert child.packets_out >= 4 and child.packets_in >= 4 and child.bytes_in > 0

    lab_pair.gw.vici.terminate("vco-lab")
    assert lab_pair.gw.vici.list_sas() == []
    assert not netns.ping(lab_pair.gw.namespace, lab_pair.gw.lan_addrs[0], lab_pair.cpe.lan_addrs[0])


def test_ikev1_start_action_brings_up_one_child_per_subnet_pair(lab_pair: LabPair) -> None:
    spec = spec_for(lab_pair, ike=ike(version="ikev1", mode="main"), effect_immediately=True)
    names = set(child_names(spec))
    assert len(names) == 4

    load_both(lab_pair, spec)  # start_action=start: loading gw initiates every child

    assert netns.wait_until(lambda: installed(lab_pair.gw.vici, "vco-lab") == names, timeout_s=10)
    for source in lab_pair.gw.lan_addrs:
        for destination in lab_pair.cpe.lan_addrs:
            assert pings(lab_pair, source, destination), f"{source} -> {destination}"
    [sa] = lab_pair.gw.vici.list_sas("vco-lab")  # the four children share one IKE_SA

    # A reconcile pass that loads the same message again must not disturb anything.
    load_both(lab_pair, spec)
    [again] = lab_pair.gw.vici.list_sas("vco-lab")
    assert again.uniqueid == sa.uniqueid
    assert {(c.name, c.uniqueid) for c in again.children} == {(c.name, c.uniqueid) for c in sa.children}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            {
                "ike": ike(
                    version="ikev1",
                    mode="aggressive",
                    enc_alg="3des",
                    auth_alg="md5",
                    pfs="group1",
                    local_id="gw.vpngw.example",
                    remote_id="cpe.customer.example",
                ),
                "ipsec": ipsec(enc_alg="3des", auth_alg="md5", pfs="group1"),
            },
            id="ikev1-aggressive-fqdn-3des-md5-group1",
        ),
        pytest.param(
            {
                "ike": ike(version="ikev1", enc_alg="aes256", auth_alg="sha384", pfs="group24"),
                "ipsec": ipsec(enc_alg="des", auth_alg="sha512", pfs="group14"),
            },
            id="ikev1-main-aes256-sha384-group24-esp-des-sha512",
        ),
        pytest.param(
            {
                "ike": ike(enc_alg="aes192", auth_alg="sha512", pfs="group5", lifetime=0),
                "ipsec": ipsec(enc_alg="aes256", auth_alg="sha256", pfs="disabled", lifetime=0),
            },
            id="ikev2-sha512-pfs-disabled-lifetime-0",
        ),
        pytest.param(
            {"ike": ike(version="ikev1"), "enable_dpd": False, "enable_nat_traversal": False},
            id="ikev1-dpd-and-natt-off",
        ),
    ],
)
def test_rendered_variants_establish_and_pass_traffic(lab_pair: LabPair, changes: dict[str, object]) -> None:
    spec = spec_for(
        lab_pair,
        local_subnets=lab_pair.gw.lan_subnets[:1],
        remote_subnets=lab_pair.cpe.lan_subnets[:1],
        **changes,
    )
    load_both(lab_pair, spec)
    [child] = child_names(spec)

    lab_pair.gw.vici.initiate(child, "vco-lab", timeout_ms=10_000)

    assert installed(lab_pair.gw.vici, "vco-lab") == {child}
    assert pings(lab_pair, lab_pair.gw.lan_addrs[0], lab_pair.cpe.lan_addrs[0])


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="takes 60 s; select it with -m slow")
def test_rendered_lifetimes_rekey_without_losing_traffic(lab_pair: LabPair) -> None:
    """IKEv1 and IKEv2 side by side with the shortest lifetime (60 s), pinged every 0.2 s.

    Only gw has the short lifetime (the customer side keeps an hour), as with most real
    peers: this checks that vpngw's own rekeys are seamless, not rekey collisions.
    """
    gw, cpe = lab_pair.gw, lab_pair.cpe
    specs = []
    for n, version in enumerate(("ikev1", "ikev2")):
        spec = spec_for(
            lab_pair,
            name=f"vco-{version}",
            local_subnets=(gw.lan_subnets[n],),
            remote_subnets=(cpe.lan_subnets[n],),
            # Distinct identities: two conns between the same IPs must not share an IKE_SA.
            ike=ike(version=version, lifetime=60, local_id=f"gw{n}.example", remote_id=f"cpe{n}.example"),
            ipsec=ipsec(lifetime=60),
        )
        peer = lab_peer.mirror_spec(spec)
        peer = replace(peer, ike=replace(peer.ike, lifetime=3600), ipsec=replace(peer.ipsec, lifetime=3600))
        load_both(lab_pair, spec, cpe_spec=peer)
        specs.append(spec)
    first_spi = {}
    for spec in specs:
        [child] = child_names(spec)
        gw.vici.initiate(child, spec.name)
        [sa] = gw.vici.list_sas(spec.name)
        first_spi[spec.name] = sa.children[0].spi_in

    count = 290  # 58 s: past the latest rekey (54 s), before the hard expiry (60 s)
    ping = ["ip", "netns", "exec", gw.namespace, "ping", "-n", "-q", "-i", "0.2", "-c", str(count), "-W", "1"]
    pingers = [
        subprocess.Popen([*ping, "-I", gw.lan_addrs[n], cpe.lan_addrs[n]], stdout=subprocess.PIPE, text=True)
        for n in range(2)
    ]
    outputs = [p.communicate(timeout=90)[0] for p in pingers]

    for spec in specs:
        # IKEv1 keeps the replaced CHILD_SA (state REKEYED) until its hard lifetime.
        children = [c for sa in gw.vici.list_sas(spec.name) for c in sa.children if c.state != "REKEYED"]
        assert [c.state for c in children] == ["INSTALLED"], children
        assert children[0].spi_in != first_spi[spec.name], f"{spec.name}: CHILD_SA was not rekeyed"
    for output in outputs:
        assert f" {count} received" in output, output


def test_a_wrong_psk_fails_initiate_with_charons_reason(lab_pair: LabPair) -> None:
    spec = spec_for(lab_pair)
    wrong = lab_peer.mirror_spec(spec_for(lab_pair, ike=ike(psk="not-the-same-key")))
    load_both(lab_pair, spec, cpe_spec=wrong)

    with pytest.raises(ViciCommandError) as caught:
        lab_pair.gw.vici.initiate("vco-lab", "vco-lab", timeout_ms=5000)

    assert caught.value.command == "initiate"
    assert any("AUTHENTICATION_FAILED" in line for line in caught.value.log)


def test_charon_refuses_a_malformed_connection(lab_pair: LabPair) -> None:
    with pytest.raises(ViciCommandError) as caught:
        lab_pair.gw.vici.load_conn({"vco-bad": {"version": "2", "proposals": ["aes128-nonsense"]}})
    assert caught.value.command == "load-conn"
    assert "proposals" in caught.value.errmsg
    assert lab_pair.gw.vici.list_conns() == frozenset()


def test_teardown_leaves_no_namespace_or_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    namespace = f"vpngw-t-{netns.unique_suffix()}x"
    netns.create_namespace(namespace)
    try:
        charon = charon_daemon.start_charon(
            namespace, tmp_path_factory.mktemp("lab"), lab_profile.strongswan_conf
        )
        charon_daemon.stop_charon(charon)
        charon_daemon.stop_charon(charon)  # idempotent
    finally:
        netns.delete_namespace(namespace)
    assert charon.process.returncode is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert namespace not in listed
