"""vpngw backup / restore on SQLite: an online backup taken while 8 clients write is one
consistent snapshot; a restore brings exactly that snapshot back and the server starts
on it. PostgreSQL is refused with a pointer to pg_dump."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.ops.load import CreatingClients
from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, Api, build_world, signed_query
from vpngw.cli.main import main


def snapshot(path: Path) -> tuple[set[str], int]:
    """Connection names in a database file, and its resource_counts total for them."""
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = {row[0] for row in connection.execute("SELECT name FROM vpn_connections")}
        counted = connection.execute(
            "SELECT COALESCE(SUM(count), 0) FROM resource_counts WHERE kind = 'vpn_connections'"
        ).fetchone()[0]
    connection.close()
    return names, counted


def test_online_backup_is_consistent_and_restore_brings_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db_file = tmp_path / "vpngw.db"
    url = f"sqlite:///{db_file}"
    server = ServerProcess(url, tmp_path, extra_env={"VPNGW_MAX_CONNECTIONS_PER_GATEWAY": "100000"})
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=15) as client:
            world = build_world(Api(client))
        clients = CreatingClients(server.url, world, threads=8)
        clients.start()
        clients.wait_for_acks(20)
        acked_before = set(clients.acked)
        assert main(["backup", str(tmp_path / "backup.db"), "--db", url]) == 0  # while the clients write
        clients.wait_for_acks(len(clients.acked) + 20)
        clients.finish(timeout_s=90)
        assert not clients.unexpected
        assert "master key is not in it" in capsys.readouterr().out

        backed_up, counted = snapshot(tmp_path / "backup.db")
        assert counted == len(backed_up)  # one snapshot: the rows and their counter agree
        assert {f"c{index}" for index in acked_before} <= backed_up
        assert (tmp_path / "backup.db").stat().st_mode & 0o777 == 0o600
        assert not list(tmp_path.glob("backup.db-*"))  # one self-contained file
        assert main(["backup", str(tmp_path / "backup.db"), "--db", url]) == 2  # never overwrites

        live, _ = snapshot(db_file)
        assert live > backed_up
        server.stop()
        assert main(["restore", str(tmp_path / "backup.db"), "--db", url]) == 0
        assert snapshot(db_file)[0] == backed_up
        server.start()
        with httpx.Client(base_url=server.url, timeout=15) as client:
            listed = client.post(
                "/",
                params=signed_query(
                    "POST", {"Action": "DescribeVpnConnections", "RegionId": REGION, "PageSize": "1"}
                ),
            )
            assert listed.status_code == 200 and listed.json()["TotalCount"] == len(backed_up)
    finally:
        server.stop()


def test_backup_refuses_postgresql_and_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backup", str(tmp_path / "x.db"), "--db", "postgresql+psycopg://u@127.0.0.1/db"]) == 2
    assert "pg_dump" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "x.db"), "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert main(["restore", str(tmp_path / "none.db"), "--db", f"sqlite:///{tmp_path / 'y.db'}"]) == 2
    assert not (tmp_path / "x.db").exists()
