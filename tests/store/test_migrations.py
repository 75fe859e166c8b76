"""Migrations: from nothing to head on both databases, and the data steps of each."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.migrate import alembic_config, upgrade
from vpngw.store.models import Base


def test_resource_counts_are_backfilled(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0002")
    db = Database(db_url)
    with db.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO accounts (id, name, create_time) VALUES ('a1', 'one', 0), ('a2', 'two', 0)")
        )
        for n, (account, region) in enumerate([("a1", "r1"), ("a1", "r1"), ("a1", "r2"), ("a2", "r1")]):
            connection.execute(
                text(
                    "INSERT INTO vpcs (id, account_id, region_id, name, description, cidr_block, create_time) "
                    "VALUES (:id, :a, :r, '', '', '10.0.0.0/8', 0)"
                ),
                {"id": f"vpc-{n}", "a": account, "r": region},
            )
    upgrade(db_url)
    with db.engine.connect() as connection:
        counts = set(
            connection.execute(text("SELECT account_id, region_id, kind, count FROM resource_counts")).all()
        )
    assert counts == {("a1", "r1", "vpcs", 2), ("a1", "r2", "vpcs", 1), ("a2", "r1", "vpcs", 1)}
    db.dispose()


def _insert_0004_connection(connection: Connection) -> None:
    """One connection and the rows it needs, written with the 0004 schema's columns."""
    connection.execute(text("INSERT INTO accounts (id, name, create_time) VALUES ('a1', 'one', 0)"))
    connection.execute(
        text(
            "INSERT INTO vpcs (id, account_id, region_id, name, description, cidr_block, create_time) "
            "VALUES ('vpc-1', 'a1', 'r1', 'v', '', '10.0.0.0/8', 0)"
        )
    )
    connection.execute(
        text(
            "INSERT INTO vpn_gateways (id, account_id, region_id, vpc_id, v_switch_id, name, description, bandwidth, "
            "internet_ip, status, charge_type, ipsec_vpn, ssl_vpn, ssl_max_connections, network_type, vpn_type, "
            "auto_propagate, create_time, end_time) VALUES ('vpn-1', 'a1', 'r1', 'vpc-1', '', 'g', '', 10, '198.18.0.2', "
            "'active', 'PostpayByFlow', true, false, 5, 'public', 'Normal', false, 0, 0)"
        )
    )
    connection.execute(
        text(
            "INSERT INTO customer_gateways (id, account_id, region_id, ip_address, name, description, auth_key, create_time) "
            "VALUES ('cgw-1', 'a1', 'r1', '198.19.0.10', 'c', '', '', 0)"
        )
    )
    connection.execute(
        text(
            "INSERT INTO vpn_connections (id, account_id, region_id, vpn_gateway_id, customer_gateway_id, name, local_subnet, "
            "remote_subnet, effect_immediately, auto_config_route, enable_dpd, enable_nat_traversal, ike_config, ipsec_config, "
            "health_check, status, health_check_status, state, create_time) VALUES ('vco-1', 'a1', 'r1', 'vpn-1', 'cgw-1', "
            "'n', '10.1.0.0/24', '10.2.0.0/24', false, true, true, true, '{}', '{}', '{}', 'ike_sa_not_established', "
            "'success', 'active', 0)"
        )
    )


def test_0005_adds_observations_to_existing_connections_and_a_log_table(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0004")
    db = Database(db_url)
    with db.engine.begin() as connection:
        _insert_0004_connection(connection)
    upgrade(db_url)
    with db.engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT diagnosis, traffic IS NULL, observed_time IS NULL FROM vpn_connections WHERE id = 'vco-1'"
            )
        ).one()
        assert tuple(row) == ("", True, True)
        indexes = {
            index["name"]: index["column_names"]
            for index in inspect(connection).get_indexes("vpn_connection_logs")
        }
    assert indexes["ix_vpn_connection_logs_connection_time"] == ["vpn_connection_id", "time_ms", "seq"]
    with db.transaction(write=True) as session:
        assert queries.add_connection_logs(session, [("vco-1", 5, "[IKE] a"), ("vco-1", 5, "[IKE] b")]) == 2
        assert queries.write_observation(
            session,
            "vco-1",
            status="ike_sa_established",
            diagnosis="",
            traffic={"BytesIn": 1, "BytesOut": 2, "PacketsIn": 3, "PacketsOut": 4},
            now_ms=9,
        )
    with db.transaction(write=False) as session:
        total, lines = queries.connection_log_page(session, "vco-1", from_ms=0, to_ms=10, offset=0, limit=10)
        assert (total, [line.message for line in lines], [line.seq for line in lines]) == (
            2,
            ["[IKE] a", "[IKE] b"],
            [1, 2],
        )
    # And back: 0005 leaves 0004's schema as it was, and can be applied again.
    command.downgrade(alembic_config(db_url), "0004")
    with db.engine.connect() as connection:
        assert "vpn_connection_logs" not in inspect(connection).get_table_names()
        assert "diagnosis" not in {
            column["name"] for column in inspect(connection).get_columns("vpn_connections")
        }
    db.dispose()
    upgrade(db_url)


def test_the_models_match_the_migrations(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    db.dispose()
    assert differences == []
