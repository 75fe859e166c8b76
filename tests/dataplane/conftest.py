"""Fixtures for the data-plane tests, including a real two-charon lab.

The ``dataplane`` marker is registered here so the suite runs before it is added to
pyproject.toml; registering it twice is harmless.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.dataplane.backends.lab import charon_profile as lab_profile
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.charon.vici_client import ViciClient
from vpngw.dataplane.system import netns

from .world import (
    LabWorld,
    charon_processes_under,
    lab_namespaces,
    short_state_dir,
    wait_gone,
)

MARKER = "dataplane: builds network namespaces and runs real strongSwan charons (root only)"

# Name prefixes of the namespaces this test session creates. Another test run may work
# on the same machine at the same time: the leak check looks at ours only.
SESSION_PREFIXES: set[str] = set()


def claim(prefix: str) -> str:
    """Register a namespace name prefix as this session's; returns it."""
    SESSION_PREFIXES.add(prefix)
    return prefix


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@dataclass(frozen=True)
class Site:
    """One side of the lab: a namespace, its charon and addresses."""

    namespace: str
    wan_addr: str
    lan_addrs: tuple[str, ...]  # one host address per LAN subnet, on lo
    lan_subnets: tuple[str, ...]
    charon: charon_daemon.Charon
    vici: ViciClient


@dataclass(frozen=True)
class LabPair:
    """Two sites joined by a veth pair: ``gw`` plays vpngw, ``cpe`` the customer."""

    gw: Site
    cpe: Site


@pytest.fixture
def lab_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPair]:
    """Two namespaces, a veth, two LAN subnets per side, one charon each.

    Names and addresses are random and only ever created inside the new namespaces:
    WAN 198.19.<n>.1/.2 (from 198.18.0.0/15), LANs 10.<n>.{1,3}.0/24 (gw) and
    10.<n>.{2,4}.0/24 (cpe). Everything is torn down even if setup fails halfway.
    """
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    suffix = netns.unique_suffix()
    claim(f"vpngw-t-{suffix}")
    n = random.randrange(256)
    # A short state dir: a unix socket path must stay under 108 bytes.
    state = tmp_path_factory.mktemp("lab", numbered=True)
    with contextlib.ExitStack() as cleanup:
        sites = []
        for side, wan_host, lan_octets in (("g", 1, (1, 3)), ("c", 2, (2, 4))):
            namespace = f"vpngw-t-{suffix}{side}"
            netns.create_namespace(namespace)
            cleanup.callback(netns.delete_namespace, namespace)
            sites.append((namespace, wan_host, lan_octets))
        (gw_ns, _, _), (cpe_ns, _, _) = sites
        netns.add_veth_pair(gw_ns, f"vt{suffix}g", cpe_ns, f"vt{suffix}c")

        built = []
        for namespace, wan_host, lan_octets in sites:
            wan_addr = f"198.19.{n}.{wan_host}"
            netns.add_address(namespace, f"vt{suffix}{namespace[-1]}", f"{wan_addr}/24")
            lan_addrs = tuple(f"10.{n}.{o}.1" for o in lan_octets)
            for addr in lan_addrs:
                netns.add_address(namespace, "lo", f"{addr}/24")
            charon = charon_daemon.start_charon(namespace, state / namespace[-1], lab_profile.strongswan_conf)
            cleanup.callback(charon_daemon.stop_charon, charon)
            vici = charon.client()
            cleanup.callback(vici.close)
            lan_subnets = tuple(f"10.{n}.{o}.0/24" for o in lan_octets)
            built.append(Site(namespace, wan_addr, lan_addrs, lan_subnets, charon, vici))
        yield LabPair(gw=built[0], cpe=built[1])


@pytest.fixture
def lab_world(tmp_path: Path) -> Iterator[LabWorld]:
    """vpngw (API + reconciler) on a fresh SQLite database with its own lab.

    On teardown the lab is removed and the test fails if any of its namespaces or
    charons remain.
    """
    reason = charon_daemon.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    from vpngw.dataplane.core.reconciler import Reconciler

    settings = Settings(db_url=f"sqlite:///{tmp_path / 'vpngw.db'}")
    db, authenticator = prepared(settings)
    name = claim(f"vt-{netns.unique_suffix()}")
    state_dir = short_state_dir()
    network = LabNetwork(name, state_dir / name)
    reconciler = Reconciler(db, authenticator.sealer, network, period_s=0.5)
    world: LabWorld | None = None
    try:
        reconciler.start()
        app = build_app(db, settings, authenticator, on_change=reconciler.wake)
        with TestClient(app, raise_server_exceptions=False) as client:
            world = LabWorld(Api(client), db, reconciler, network)
            yield world
    finally:
        reconciler.stop()
        if world is not None:
            world.reconciler.stop()  # a test may have replaced it (restart adoption)
        network.teardown()
        db.dispose()
        leftovers = lab_namespaces(f"{name}-")
        charons = charon_processes_under(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        assert not leftovers, f"namespaces left behind: {leftovers}"
        assert wait_gone(charons), f"charons left behind: {charons}"


@pytest.fixture(scope="session", autouse=True)
def no_lab_outlives_the_tests() -> Iterator[None]:
    """After all tests, no namespace the tests made remains (each test cleans up after
    itself; this catches a leak between them, e.g. a reconciler left running)."""

    if charon_daemon.missing_prerequisites():
        yield
        return
    yield
    time.sleep(1.0)  # a leaked reconciler would have recreated something by now
    leaked = (
        {ns for ns in netns.namespaces() if ns.startswith(tuple(SESSION_PREFIXES))}
        if SESSION_PREFIXES
        else set()
    )
    for namespace in leaked:
        netns.delete_namespace(namespace)
    assert not leaked, f"the tests left namespaces behind: {sorted(leaked)}"
