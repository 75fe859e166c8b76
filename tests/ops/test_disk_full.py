"""A full disk under a real ``vpngw serve`` whose SQLite database lives on a small tmpfs.

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
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.load import create_params
from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, Api, build_world, signed_query

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


def stored_names(db_file: Path) -> list[str]:
    with sqlite3.connect(db_file) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = [row[0] for row in connection.execute("SELECT name FROM vpn_connections")]
    connection.close()
    return names


def test_full_disk_answers_503_changes_nothing_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    db_file = small_disk / "vpngw.db"
    server = ServerProcess(f"sqlite:///{db_file}", tmp_path, extra_env={"VPNGW_MAX_CONNECTIONS_PER_GATEWAY": "1000"})
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=15) as client:
            world = build_world(Api(client))
            acked: dict[int, str] = {}
            failed: list[int] = []
            fill(small_disk / "filler")
            for index in range(300):
                response = create(client, world, index)
                if response.status_code == 200:
                    acked[index] = response.json()["VpnConnectionId"]
                    continue
                body = response.json()
                assert (response.status_code, body["Code"]) == (503, STORAGE_FULL), response.text
                assert PSK not in response.text and "INSERT" not in response.text and "sqlite" not in response.text
                failed.append(index)
                if len(failed) >= 5:
                    break
            assert failed, "the full disk never failed a write"
            assert sorted(stored_names(db_file)) == sorted(f"c{index}" for index in acked)  # nothing half-written

            (small_disk / "filler").unlink()  # space returns: no restart
            for index in failed:
                response = create(client, world, index)
                assert response.status_code == 200, response.text
                acked[index] = response.json()["VpnConnectionId"]
                again = create(client, world, index)  # and its token now replays
                assert again.json()["VpnConnectionId"] == acked[index]
            assert sorted(stored_names(db_file)) == sorted(f"c{index}" for index in acked)
            listed = client.post("/", params=signed_query("POST", {"Action": "DescribeVpnConnections", "RegionId": REGION}))
            assert listed.json()["TotalCount"] == len(acked)
        server.stop()
        log = server.log_text()
        assert "storage is full" in log and "Traceback" not in log and PSK not in log
        server.start()  # and it starts again on the same file
    finally:
        server.stop()
