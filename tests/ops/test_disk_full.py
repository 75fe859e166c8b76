"""A full disk under a real ``vpngw serve``: its SQLite database on a small tmpfs, or its
PostgreSQL database in a tablespace on one.

While the disk is full, every answer is a success or the documented 503
``ServiceUnavailable.StorageFull`` (never a 500, no traceback in the log, nothing of the
statement or a secret in the message); a failed create leaves nothing behind; the file
stays a valid database; and once space returns the same requests, retried with their
ClientTokens, succeed without a restart, each exactly once.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.ops.load import create_params
from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, Api, build_world, signed_query
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")

PSK = "disk-full-psk-4f2a9c"
STORAGE_FULL = "ServiceUnavailable.StorageFull"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards even if the test fails."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as filler:
        while True:
            try:
                filler.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]


def create(client: httpx.Client, world: object, index: int) -> httpx.Response:
    query = create_params(world, index)  # type: ignore[arg-type]
    query["IkeConfig"] = json.dumps({"Psk": PSK})
    return client.post("/", params=signed_query("POST", query))


def sqlite_names(db_file: Path) -> Callable[[], list[str]]:
    def names() -> list[str]:
        with sqlite3.connect(db_file) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            found = [row[0] for row in connection.execute("SELECT name FROM vpn_connections")]
        connection.close()
        return found

    return names


def postgres_names(url: str) -> Callable[[], list[str]]:
    # Connected now, before the disk fills: a backend started while the tablespace is full
    # cannot write its relation-cache init file there and PostgreSQL refuses the connection
    # (FATAL "could not write init file"), which says nothing about vpngw. The test drops the
    # database WITH (FORCE) at the end, which closes this connection.
    connection = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    def names() -> list[str]:
        return [row[0] for row in connection.execute("SELECT name FROM vpn_connections")]

    return names


def run_out_of_space(db_url: str, disk: Path, workdir: Path, stored_names: Callable[[], list[str]]) -> None:
    """Fill ``disk`` under a running server, write until it fails, free it, retry."""
    server = ServerProcess(db_url, workdir, extra_env={"VPNGW_MAX_CONNECTIONS_PER_GATEWAY": "1000"})
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=15) as client:
            world = build_world(Api(client))
            acked: dict[int, str] = {}
            failed: list[int] = []
            fill(disk / "filler")
            for index in range(300):
                response = create(client, world, index)
                if response.status_code == 200:
                    acked[index] = response.json()["VpnConnectionId"]
                    continue
                body = response.json()
                assert (response.status_code, body["Code"]) == (503, STORAGE_FULL), response.text
                for leak in (PSK, "INSERT", "sqlite", "psycopg", "could not"):
                    assert leak not in response.text
                failed.append(index)
                if len(failed) >= 5:
                    break
            assert failed, "the full disk never failed a write"
            assert sorted(stored_names()) == sorted(f"c{index}" for index in acked)  # nothing half-written

            (disk / "filler").unlink()  # space returns: no restart
            for index in failed:
                response = create(client, world, index)
                assert response.status_code == 200, response.text
                acked[index] = response.json()["VpnConnectionId"]
                again = create(client, world, index)  # and its token now replays
                assert again.json()["VpnConnectionId"] == acked[index]
            assert sorted(stored_names()) == sorted(f"c{index}" for index in acked)
            listed = client.post(
                "/", params=signed_query("POST", {"Action": "DescribeVpnConnections", "RegionId": REGION})
            )
            assert listed.json()["TotalCount"] == len(acked)
        server.stop()
        log = server.log_text()
        assert "storage is full" in log and "Traceback" not in log and PSK not in log
        server.start()  # and it starts again on the same database
    finally:
        server.stop()


def test_full_disk_under_sqlite_answers_503_changes_nothing_and_recovers(
    small_disk: Path, tmp_path: Path
) -> None:
    db_file = small_disk / "vpngw.db"
    run_out_of_space(f"sqlite:///{db_file}", small_disk, tmp_path, sqlite_names(db_file))


def test_full_disk_under_postgresql_answers_503_changes_nothing_and_recovers(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The database's tables live in a tablespace on a small tmpfs (PostgreSQL's own WAL
    stays where it is): extending a table fails with disk_full."""
    name = "full_" + uuid.uuid4().hex[:10]
    disk = postgres_server.workdir / name  # inside the server's own (postgres-owned) directory
    disk.mkdir()
    owner = pwd.getpwnam(postgres_server.run_as) if postgres_server.run_as else None
    options = "size=4m,mode=0700" + (f",uid={owner.pw_uid},gid={owner.pw_gid}" if owner else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], check=True)
    admin = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    try:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
            connection.execute(f"CREATE DATABASE {name} TABLESPACE {name}")
        try:
            url = f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/{name}"
            run_out_of_space(url, disk, tmp_path, postgres_names(url))
        finally:
            (disk / "filler").unlink(missing_ok=True)
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                connection.execute(f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        subprocess.run(["umount", str(disk)], check=True)
        disk.rmdir()
