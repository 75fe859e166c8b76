"""The systemd units in deploy/: systemd itself accepts them, and their command lines,
expanded from the example environment files as systemd expands them, are ones vpngw's
own parser takes (so a renamed option cannot leave a unit behind)."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vpngw.cli.main import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = {
    "vpngw.service": "vpngw.env.example",
    "vpngw-api.service": "vpngw.env.example",
    "vpngw-agent.service": "agent.env.example",
}


def environment(example: Path) -> dict[str, str]:
    """The file as a shell sources it (``set -a; . FILE``), which must agree with systemd."""
    result = subprocess.run(
        ["bash", "-c", f"set -a; . {shlex.quote(str(example))}; set +a; env -0"],
        capture_output=True,
        check=True,
        env={},
        timeout=10,
    )
    assert not result.stderr, result.stderr  # an unquoted value with spaces runs a command
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return {key: value for key, value in pairs if key.startswith(("VPNGW_", "PGPASSFILE"))}


def exec_start(unit: Path, env: dict[str, str]) -> list[str]:
    """ExecStart as systemd expands it: ``${X}`` is one word, a lone ``$X`` splits on spaces."""
    line = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    words: list[str] = []
    for word in shlex.split(line.removeprefix("ExecStart=")):
        if re.fullmatch(r"\$[A-Z_]+", word):
            words.extend(env.get(word[1:], "").split())
        else:
            words.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env.get(m.group(1), ""), word))
    return words


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_accepts_the_unit(unit: str, tmp_path: Path) -> None:
    vpngw = Path(sys.executable).parent / "vpngw"
    text = (DEPLOY / unit).read_text().replace("/opt/vpngw/bin/vpngw", str(vpngw))
    text = text.replace("EnvironmentFile=/etc/vpngw/", f"EnvironmentFile={tmp_path}/")
    (tmp_path / unit).write_text(text)
    shutil.copy(
        DEPLOY / UNITS[unit], tmp_path / ("agent.env" if unit == "vpngw-agent.service" else "vpngw.env")
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_the_serve_unit_runs_a_command_vpngw_takes() -> None:
    argv = exec_start(DEPLOY / "vpngw.service", environment(DEPLOY / "vpngw.env.example"))
    assert argv[0] == "/opt/vpngw/bin/vpngw"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.host, args.port, args.log_format) == ("serve", "127.0.0.1", 8080, "json")
    assert args.credentials_file == "/var/lib/vpngw/credentials.json"
    assert "Type=notify" in (DEPLOY / "vpngw.service").read_text().splitlines()


def test_the_api_unit_runs_the_api_only_as_the_vpngw_user() -> None:
    argv = exec_start(DEPLOY / "vpngw-api.service", environment(DEPLOY / "vpngw.env.example"))
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.no_dataplane
    lines = (DEPLOY / "vpngw-api.service").read_text().splitlines()
    assert "User=vpngw" in lines and "useradd" in "\n".join(lines)


def test_the_several_node_serve_options_run_the_api_only() -> None:
    text = (DEPLOY / "vpngw.env.example").read_text()
    several = next(line for line in text.splitlines() if line.startswith("#VPNGW_SERVE_OPTIONS=")).lstrip("#")
    key, _, value = several.partition("=")
    env = {**environment(DEPLOY / "vpngw.env.example"), key: shlex.split(value)[0]}
    argv = exec_start(DEPLOY / "vpngw.service", env)
    assert build_parser().parse_args(argv[1:]).no_dataplane


def test_the_agent_unit_runs_a_command_vpngw_takes() -> None:
    argv = exec_start(DEPLOY / "vpngw-agent.service", environment(DEPLOY / "agent.env.example"))
    assert argv[:6] == [
        "/opt/vpngw/bin/vpngw",
        "agent",
        "--node",
        "node-1",
        "--db",
        "postgresql+psycopg://vpngw@db.example/vpngw",
    ]
    assert argv[6:] == ["--backend", "host", "--log-format", "json", "--uplink", "eth0", "--vpc-side", "eth1"]
    if "agent" not in subcommands():
        pytest.skip("vpngw agent is being built: its command line is checked once the parser has it")
    build_parser().parse_args(argv[1:])
