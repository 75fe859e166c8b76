"""The data plane's desired state as read from the store, after real API calls."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import Api, build_world, connection_params
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.dataplane.spec.from_store import load_desired
from vpngw.dataplane.spec.render import render_connection


def test_desired_state_follows_the_api(settings: Settings) -> None:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator)) as client:
        api = Api(client)
        world = build_world(api)
        ike = {
            "Psk": "from-the-api",
            "IkeVersion": "ikev2",
            "IkeEncAlg": "aes256",
            "IkeAuthAlg": "sha256",
            "IkePfs": "group14",
        }
        vco = api.ok(
            "CreateVpnConnection",
            **connection_params(
                world,
                EffectImmediately="true",
                IkeConfig=json.dumps(ike),
                IpsecConfig='{"IpsecPfs":"disabled","IpsecLifetime":3600}',
            ),
        )["VpnConnectionId"]
        empty_gateway = api.ok("CreateVpnGateway", VpcId=world.vpc_id, Bandwidth=5)["VpnGatewayId"]

        desired = load_desired(db, make_sealer())
        assert set(desired) == {world.vpn_gateway_id, empty_gateway}
        assert desired[empty_gateway].connections == ()
        state = desired[world.vpn_gateway_id]
        assert state.internet_ip == world.internet_ip
        (spec,) = state.connections
        assert (spec.name, spec.local_addr, spec.remote_addr) == (vco, world.internet_ip, world.customer_ip)
        assert spec.local_subnets == ("10.1.1.0/24", "10.1.2.0/24") and spec.remote_subnets == (
            "10.10.1.0/24",
        )
        assert spec.ike.psk == "from-the-api" and "from-the-api" not in repr(spec)
        assert (spec.ike.version, spec.ike.enc_alg, spec.ike.pfs) == ("ikev2", "aes256", "group14")
        assert (spec.ike.local_id, spec.ike.remote_id) == (world.internet_ip, world.customer_ip)
        assert (spec.ipsec.pfs, spec.ipsec.lifetime) == ("disabled", 3600)
        assert spec.effect_immediately and spec.enable_dpd and spec.enable_nat_traversal
        render_connection(spec)  # the stored state renders

        # Level-triggered: the next read reflects a change and a delete, with no event.
        api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, IkeConfig='{"IkeVersion":"ikev1"}')
        assert load_desired(db, make_sealer())[world.vpn_gateway_id].connections[0].ike.version == "ikev1"
        api.ok("DeleteVpnConnection", VpnConnectionId=vco)
        assert load_desired(db, make_sealer())[world.vpn_gateway_id].connections == ()
    db.dispose()
