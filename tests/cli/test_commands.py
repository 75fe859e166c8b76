"""The command line: accounts and keys, the signing client, the insecure switch, rotation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_MASTER_KEY
from tests.support.servers import live_server
from vpngw.auth.authenticator import Authenticator
from vpngw.cli.main import main, prepare_database
from vpngw.config import Settings
from vpngw.sealing import Sealer, load_sealer, new_master_key_line, parse_keyring
from vpngw.store.engine import Database


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPNGW_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.delenv("VPNGW_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("VPNGW_ACCESS_KEY_SECRET", raising=False)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_accounts_and_keys(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "account", "create", "team-a", "--db", db_url)
    pair = json.loads(out)
    assert code == 0 and set(pair) == {"AccountId", "AccessKeyId", "AccessKeySecret"}
    assert len(pair["AccessKeySecret"]) == 30 and pair["AccessKeyId"].startswith("LTAI")
    assert main(["account", "create", "team-a", "--db", db_url]) == 2  # the name is taken
    capsys.readouterr()
    code, out = _run(capsys, "key", "create", "team-a", "--db", db_url)
    second = json.loads(out)
    assert second["AccountId"] == pair["AccountId"] and second["AccessKeyId"] != pair["AccessKeyId"]
    assert _run(capsys, "key", "disable", pair["AccessKeyId"], "--db", db_url)[0] == 0
    assert _run(capsys, "key", "delete", second["AccessKeyId"], "--db", db_url)[0] == 0
    code, out = _run(capsys, "account", "list", "--db", db_url)
    listed = {a["Name"]: a for a in json.loads(out)}
    assert listed["team-a"]["AccessKeys"] == [{"AccessKeyId": pair["AccessKeyId"], "Status": "disabled"}]
    assert pair["AccessKeySecret"] not in out
    assert main(["key", "delete", "LTAInothing", "--db", db_url]) == 2


def test_insecure_mode_is_refused_off_loopback(tmp_path: Path) -> None:
    assert (
        main(["serve", "--insecure-no-auth", "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
        == 2
    )


def test_call_signs_and_reports_errors(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = prepare_database(settings)
    sealer = Sealer(parse_keyring(TEST_MASTER_KEY))
    with live_server(db, settings, Authenticator(db, sealer)) as url:
        code, out = _run(capsys, "account", "create", "caller", "--db", settings.db_url)
        credentials = tmp_path / "credentials.json"
        credentials.write_text(out)
        code, out = _run(
            capsys,
            "call",
            "CreateVpc",
            "RegionId=cn-hangzhou",
            "VpcName=from-cli",
            "--endpoint",
            url,
            "--credentials",
            str(credentials),
        )
        assert code == 0 and json.loads(out)["VpcId"].startswith("vpc-")
        pair = json.loads(credentials.read_text())
        monkeypatch.setenv("VPNGW_ACCESS_KEY_ID", pair["AccessKeyId"])
        monkeypatch.setenv("VPNGW_ACCESS_KEY_SECRET", pair["AccessKeySecret"])
        code, out = _run(capsys, "call", "DescribeVpcs", "--region", "cn-hangzhou", "--endpoint", url)
        assert code == 0 and json.loads(out)["Vpcs"]["Vpc"][0]["VpcName"] == "from-cli"
        bare = url.removeprefix("http://")  # HOST:PORT, as an operator types it
        code, out = _run(capsys, "call", "DescribeVpcs", "--region", "cn-hangzhou", "--endpoint", bare)
        assert code == 0 and json.loads(out)["Vpcs"]["Vpc"][0]["VpcName"] == "from-cli"
        code, out = _run(
            capsys,
            "call",
            "DescribeVpnConnection",
            "RegionId=cn-hangzhou",
            "VpnConnectionId=vco-x",
            "--endpoint",
            url,
        )
        assert code == 1 and json.loads(out)["Code"] == "InvalidVpnConnectionInstanceId.NotFound"
        monkeypatch.setenv("VPNGW_ACCESS_KEY_SECRET", "wrong")
        code, out = _run(capsys, "call", "DescribeVpcs", "--region", "cn-hangzhou", "--endpoint", url)
        assert code == 1 and json.loads(out)["Code"] == "SignatureDoesNotMatch"
    db.dispose()


def test_master_key_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    sealer, where = load_sealer({"VPNGW_MASTER_KEY_FILE": str(path)})
    assert path.stat().st_mode & 0o777 == 0o600 and str(path) in where
    assert sealer.open(sealer.seal("x", "p"), "p") == "x"
    again, _ = load_sealer({"VPNGW_MASTER_KEY_FILE": str(path)})
    assert again.open(sealer.seal("y", "p"), "p") == "y"


def test_rotation_reseals_every_secret(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(capsys, "account", "create", "rotating", "--db", settings.db_url)
    new_line = new_master_key_line("k2")
    monkeypatch.setenv("VPNGW_MASTER_KEY", f"{new_line},{TEST_MASTER_KEY}")
    code, out = _run(capsys, "reseal", "--db", settings.db_url)
    assert code == 0 and "1 secrets sealed under master key k2" in out
    db = Database(settings.db_url)
    from vpngw.store import queries

    with db.session(write=False) as session:
        assert {k.secret_sealed.split(":")[2] for k in queries.all_access_keys(session)} == {"k2"}
    db.dispose()
    # Only the new key is needed from now on.
    monkeypatch.setenv("VPNGW_MASTER_KEY", new_line)
    assert _run(capsys, "reseal", "--db", settings.db_url)[0] == 0


def test_first_start_bootstrap(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vpngw.cli.main import build_parser, configure_authentication

    db = prepare_database(settings)
    sealer = Sealer(parse_keyring(TEST_MASTER_KEY))
    credentials = tmp_path / "creds" / "credentials.json"
    args = build_parser().parse_args(["serve", "--credentials-file", str(credentials)])
    configure_authentication(args, settings, db, sealer, {})
    pair = json.loads(credentials.read_text())
    assert credentials.stat().st_mode & 0o777 == 0o600 and str(credentials) in capsys.readouterr().out
    configure_authentication(args, settings, db, sealer, {})  # a second start keeps the first pair
    assert json.loads(credentials.read_text()) == pair
    env = {"VPNGW_ACCESS_KEY_ID": "LTAIscripted", "VPNGW_ACCESS_KEY_SECRET": "scripted-secret"}
    configure_authentication(build_parser().parse_args(["serve"]), settings, db, sealer, env)
    from vpngw.accounts import list_accounts

    keys = {k["AccessKeyId"] for a in list_accounts(db) for k in a["AccessKeys"]}
    assert {pair["AccessKeyId"], "LTAIscripted"} <= keys
    assert "scripted-secret" not in capsys.readouterr().out
    db.dispose()


def test_serve_refuses_a_new_or_wrong_master_key_on_a_database_with_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    assert _run(capsys, "account", "create", "team-a", "--db", url)[0] == 0  # a sealed secret
    key_file = tmp_path / "new.key"
    monkeypatch.delenv("VPNGW_MASTER_KEY")
    monkeypatch.setenv("VPNGW_MASTER_KEY_FILE", str(key_file))
    assert main(["serve", "--no-dataplane", "--port", "0", "--db", url]) == 2
    assert "no master key" in capsys.readouterr().err
    assert not key_file.exists()  # no new key is made for a database that has secrets
    monkeypatch.setenv("VPNGW_MASTER_KEY", new_master_key_line())  # another fleet's key
    assert main(["serve", "--no-dataplane", "--port", "0", "--db", url]) == 2
    assert "does not open the secrets" in capsys.readouterr().err


def test_admin_commands_need_an_existing_database_named_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VPNGW_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["node", "list"],
        ["migrate"],
        ["backup", "b.db"],
        ["restore", "b.db"],
        ["node", "drain", "n1"],
    ):
        assert main(argv) == 2, argv
        assert "give --db URL or set VPNGW_DB" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    for argv in (["node", "list"], ["migrate"], ["node", "forget", "n1"]):
        assert main([*argv, "--db", missing]) == 2, argv
        assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "vpngw.db").exists()
    assert main(["migrate", "--create", "--db", missing]) == 0  # asked for
    monkeypatch.setenv("VPNGW_DB", missing)
    assert main(["node", "list"]) == 0


def test_node_forget_and_restore_refuse_a_live_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from vpngw.store import leases as lease_store

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    db = prepare_database(Settings(db_url=url))
    assert main(["backup", str(tmp_path / "b.db"), "--db", url]) == 0
    with db.transaction(write=True) as session:
        now_ms = int(time.time() * 1000)
        lease_store.heartbeat(session, node="n1", backend="host", addresses=(), capacity=1, now_ms=now_ms)
        lease_store.heartbeat(
            session, node="old", backend="host", addresses=(), capacity=1, now_ms=now_ms - 60_000
        )
    db.dispose()
    capsys.readouterr()
    assert main(["node", "forget", "n1", "--db", url]) == 2
    assert "is live" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "b.db"), "--db", url]) == 2
    assert "n1 run on this database" in capsys.readouterr().err
    assert main(["node", "forget", "old", "--db", url]) == 0  # a dead one goes


def test_agent_refuses_a_bad_metrics_address_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    argv = ["agent", "--node", "n1", "--backend", "host", "--metrics", "nonsense", "--db", url]
    assert main(argv) == 2
    assert "--metrics" in capsys.readouterr().err
    assert not (tmp_path / "fleet.db").exists()  # nothing opened, nothing registered


def test_serve_runs_no_data_plane_beside_host_agents_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from vpngw.cli.main import build_parser, start_dataplane
    from vpngw.sealing import Sealer
    from vpngw.store import leases as lease_store

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    db = prepare_database(Settings(db_url=url))
    with db.transaction(write=True) as session:
        lease_store.heartbeat(
            session, node="gw-1", backend="host", addresses=(), capacity=1, now_ms=int(time.time() * 1000)
        )
    args = build_parser().parse_args(["serve", "--db", url])
    args.backend_given, args.backend = False, "lab"  # as main() resolves an absent --backend
    assert start_dataplane(args, db, Sealer(parse_keyring(TEST_MASTER_KEY))) is None
    assert "host agents run on this database (gw-1)" in capsys.readouterr().out
    db.dispose()


def test_node_check_prints_what_the_host_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    prepare_database(Settings(db_url=url)).dispose()
    code, out = _run(capsys, "node", "check", "--uplink", "lo", "--vpc-side", "nosuch0", "--db", url)
    assert code == 1
    assert "ok       the uplink lo" in out
    assert "MISSING  the VPC-side interface nosuch0: no such interface" in out
    assert "ok       the fleet's master key and database" in out
    code, out = _run(capsys, "node", "check", "--uplink", "lo", "--db", str(tmp_path / "typo"))
    assert code == 1 and "MISSING  the VPC-side interface: not given (--vpc-side IF)" in out
