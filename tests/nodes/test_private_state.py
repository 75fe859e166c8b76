"""The data plane's state is its owner's alone (issue 15, item 5): ``vpngw agent``, started
under a loose umask, and the charons it runs create every file and directory of their
state (charon's configuration, pid files, logs, the VICI socket, the applied records) without
group or other permissions."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from tests.support.api import Api, build_world, connection_params
from vpngw.dataplane.system import netns

from .fleet import Fleet

pytestmark = pytest.mark.dataplane


def test_an_agent_under_umask_0_keeps_its_state_private(
    sqlite_fleet: tuple[Fleet, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, api = sqlite_fleet
    site = fleet.add_node(1)
    real_popen = subprocess.Popen

    def loose_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs["preexec_fn"] = lambda: os.umask(0)
        return real_popen(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "Popen", loose_popen)
    fleet.start_agent(site)
    monkeypatch.undo()
    world = build_world(api)
    api.ok("CreateVpnConnection", **connection_params(world, IkeConfig='{"Psk":"state-psk-1"}'))
    assert netns.wait_until(lambda: bool(site.gateway_namespaces()), timeout_s=20), fleet.log_of(site)
    assert netns.wait_until(lambda: "loaded" in fleet.log_of(site), timeout_s=20), fleet.log_of(site)
    made = [p for p in site.state_dir.rglob("*") if p.name != "agent.log" and not p.is_symlink()]
    assert len([p for p in made if p.is_file()]) >= 2, [str(p) for p in made]
    # charon makes its VICI socket 0770 itself (strongSwan's choice); it sits in a 0700
    # directory, which keeps everybody else from reaching it.
    loose = {
        str(p): oct(stat.S_IMODE(p.lstat().st_mode))
        for p in made
        if p.lstat().st_mode & 0o077
        and not (stat.S_ISSOCK(p.lstat().st_mode) and not p.parent.stat().st_mode & 0o077)
    }
    assert not loose, loose
    fleet.stop_agent(site)
