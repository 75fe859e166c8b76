"""Network namespaces, links, addresses, routes and processes inside them (impure).

Thin, idempotent wrappers around iproute2 that every network backend shares (the lab's
namespaces, a real host's interfaces). ``ensure_*`` builds what is missing and leaves
what exists; ``sync_*`` compares what a namespace holds with what it should hold and
changes only the difference, so a pass after a crash, a restart or a hand-deleted route
converges without knowing what happened. Only routes with protocol :data:`ROUTE_PROTO`
are ever touched by ``sync_routes``.

``iproute2`` runs as a command rather than through pyroute2, for a measured reason
(docs/dataplane.md). Needs root.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from vpngw.dataplane.errors import TemporaryError
from vpngw.dataplane.system import rtnl_dump

T = TypeVar("T")

# Routes vpngw installs carry this protocol number, so a sync never touches others'.
ROUTE_PROTO = "199"


class NetnsError(TemporaryError):
    """A network step failed (a command's error, a process that would not come up); the
    next attempt may succeed (retried after ``delay``, with backoff)."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message, delay=delay)


def unique_suffix() -> str:
    """Six random hex digits, for names no one else uses (``vpngw-t-3fa9c1``)."""
    return secrets.token_hex(3)


def run(*argv: str) -> None:
    """Run a command; raise NetnsError with its stderr if it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")


def run_batch(namespace: str | None, commands: Sequence[Sequence[str]]) -> None:
    """Run several ``ip`` commands (each the words after ``ip``) in one ``ip -batch``
    process inside ``namespace`` (None: the namespace vpngw runs in), in order; the first
    that fails stops the rest and raises NetnsError naming it.

    A cold build of a gateway is some fifty ``ip`` commands; one process each cost
    5-7 ms apiece on this machine (fork, exec, netlink setup), one batch costs one
    (docs/benchmarks.md, "Nodes"). No word may hold a space or a quote (interface names,
    addresses and keywords never do).
    """
    if not commands:
        return
    for words in commands:
        if any(not word or any(c in word for c in " \t\n\"'#\\") for word in words):
            raise ValueError(f"ip -batch cannot carry {list(words)!r}")
    script = "".join(" ".join(words) + "\n" for words in commands)
    done = subprocess.run(
        ["ip", *ip_args(namespace), "-batch", "-"], input=script, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        where = f" in {namespace}" if namespace else ""
        raise NetnsError(f"ip -batch{where}: exit {done.returncode}: {done.stderr.strip()}")


_CLONE_NEWNET = 0x40000000


def in_namespace(namespace: str, action: Callable[[], T]) -> T:
    """Run ``action`` on a short-lived thread that has entered ``namespace`` (``setns``
    moves only that thread): what it opens there (a socket, a ``/proc/sys/net`` file)
    belongs to that namespace, whatever thread uses it later. No process is started."""
    made: list[T] = []
    failed: list[BaseException] = []

    def enter_and_act() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{namespace}", "rb") as handle:
                if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
            made.append(action())
        except BaseException as error:  # handed to the caller's thread
            failed.append(error)

    worker = threading.Thread(target=enter_and_act, name=f"setns-{namespace}", daemon=True)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return made[0]


def write_sysctls(namespace: str, settings: Iterable[str]) -> None:
    """Set ``name=value`` sysctls (``net.ipv4.ip_forward=1``) inside ``namespace``, as
    ``ip netns exec NS sysctl -w`` would, without its two processes: ``/proc/sys/net``
    answers for the namespace of the thread that opens it (:func:`in_namespace`)."""
    pairs = [setting.split("=", 1) for setting in settings]

    def write() -> None:
        for name, value in pairs:
            with open("/proc/sys/" + name.replace(".", "/"), "w") as handle:
                handle.write(value)

    try:
        in_namespace(namespace, write)
    except OSError as error:
        raise NetnsError(f"sysctl in {namespace}: {error}") from None


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; return the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def ip_json(*argv: str) -> list[dict[str, object]]:
    done = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip -j {' '.join(argv)}: {done.stderr.strip()}")
    parsed: list[dict[str, object]] = json.loads(done.stdout or "[]")
    return parsed


def ip_args(namespace: str | None) -> list[str]:
    """``ip`` options that address ``namespace`` (None: the namespace vpngw runs in)."""
    return ["-n", namespace] if namespace else []


# -- namespaces and links ---------------------------------------------------------


NETNS_RUN_DIR = Path("/run/netns")


def namespaces() -> set[str]:
    """Every named network namespace of the machine: the entries of /run/netns, which is
    what ``ip netns list`` lists. Read directly: ``ip netns list`` also asks the kernel
    for every namespace's id, 66 ms of CPU with 2,000 namespaces (1,000 lab gateways),
    and the reconciler lists them at every whole-set pass (docs/benchmarks.md, "Issue 18,
    next session")."""
    try:
        return set(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return set()


def create_namespace(name: str) -> None:
    """Create network namespace ``name`` with its loopback up. Fails if it exists."""
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")


def ensure_namespace(name: str) -> bool:
    """Create ``name`` (loopback up, forwarding on) unless it exists; True if created."""
    if Path("/run/netns", name).exists():
        return False
    create_namespace(name)
    write_sysctls(name, ["net.ipv4.ip_forward=1"])
    return True


# Bytes of packets a neighbour-table entry may queue while its address resolves (the
# kernel's default is the socket send-buffer maximum, 212,992).
UNRESOLVED_QUEUE_BYTES = 16384


def limit_unresolved_queue(namespace: str, ifname: str) -> None:
    """Cap what may wait for an unresolved neighbour on ``ifname`` in ``namespace``.

    A charon sends all ESP (kernel-libipsec forces UDP encapsulation) and IKE through one
    UDP socket: with the default cap, packets to a dead peer on the same link fill that
    socket's whole send buffer while its address fails to resolve, and charon's sender
    blocks, stalling every other tunnel of that charon with no log line
    (/work/shared/reference/dualtunnel.md, "A hazard found on a flat test WAN").
    """
    write_sysctls(namespace, [unresolved_queue_setting(ifname)])


def unresolved_queue_setting(ifname: str) -> str:
    """The sysctl of :func:`limit_unresolved_queue`, ``name=value``."""
    return f"net.ipv4.neigh.{ifname}.unres_qlen_bytes={UNRESOLVED_QUEUE_BYTES}"


def udp_socket_in(namespace: str, address: str, port: int) -> socket.socket:
    """A UDP socket bound to ``address``:``port`` inside ``namespace``, usable from here.

    A socket belongs to the namespace it was created in, whatever thread uses it later
    (:func:`in_namespace`).
    """

    def create() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        return in_namespace(namespace, create)
    except Exception as error:
        raise NetnsError(f"a UDP socket on {address}:{port} in {namespace}: {error}") from None


def delete_namespace(name: str) -> None:
    """Delete namespace ``name`` if it exists; its interfaces (veth ends too) go with it."""
    if Path("/run/netns", name).exists():
        run("ip", "netns", "del", name)


def add_veth_pair(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair whose ends are born inside ``ns_a`` and ``ns_b`` and set up.

    Interface names are at most 15 characters.
    """
    run("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
    run("ip", "-n", ns_a, "link", "set", if_a, "up")
    run("ip", "-n", ns_b, "link", "set", if_b, "up")


def add_address(namespace: str, ifname: str, cidr: str) -> None:
    """Add ``cidr`` (e.g. ``10.1.1.1/24``) to ``ifname`` inside ``namespace``.

    Add LAN addresses before starting charon: charon's netlink socket overflows when
    about a hundred addresses appear at once while it runs.
    """
    run("ip", "-n", namespace, "addr", "add", cidr, "dev", ifname)


def link_exists(namespace: str | None, ifname: str) -> bool:
    """Whether ``ifname`` exists in ``namespace`` (False if the namespace does not): asked
    of the kernel from a thread in the namespace, no ``ip`` process (rtnl_dump.py says why)."""

    def ask() -> bool:
        try:
            socket.if_nametoindex(ifname)
        except OSError:
            return False
        return True

    if namespace is None:
        return ask()
    try:
        return in_namespace(namespace, ask)
    except OSError:
        return False


def dump_namespace(
    namespace: str | None, *, addresses: bool = True, routes: bool = True
) -> rtnl_dump.NamespaceDump:
    """The links, IPv4 addresses and IPv4 routes of ``namespace`` (None: the namespace
    vpngw runs in), read over rtnetlink without a process; NetnsError if it cannot be read."""

    def read() -> rtnl_dump.NamespaceDump:
        return rtnl_dump.dump_here(addresses=addresses, routes=routes)

    try:
        return read() if namespace is None else in_namespace(namespace, read)
    except OSError as error:
        raise NetnsError(f"reading {namespace or 'the host namespace'}: {error}") from None


def ping(namespace: str, source: str, destination: str, *, timeout_s: int = 1) -> bool:
    """One ICMP echo from ``source`` (a local address) inside ``namespace``."""
    command = ["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c", "1", "-W", str(timeout_s)]
    done = subprocess.run([*command, "-I", source, destination], capture_output=True, check=False)
    return done.returncode == 0


# -- addresses and routes ---------------------------------------------------------


@dataclass(frozen=True, order=True)
class Route:
    """One route vpngw owns. ``kind`` is ``unicast`` or ``local`` (AnyIP: every address
    of ``dst`` is this namespace's own, so hosts of a subnet need no addresses)."""

    dst: str
    dev: str
    via: str | None = None
    kind: str = "unicast"
    # ``via`` is reached on ``dev`` whatever the addresses there (one transit address
    # can then serve several gateways' links in one namespace).
    onlink: bool = False

    @property
    def table(self) -> str:
        return "local" if self.kind == "local" else "main"


def lo_addresses(namespace: str | None, dev: str = "lo") -> set[str]:
    """The IPv4 addresses (``a.b.c.d/32``) on ``dev`` other than loopback's own."""
    held = dump_namespace(namespace, routes=False).addresses.get(dev, set())
    return {cidr for cidr in held if not cidr.startswith("127.")}


def addr_infos(link: dict[str, object]) -> list[dict[str, object]]:
    """The ``addr_info`` entries of one link of ``ip -j addr show`` (typed: ip's JSON is untyped)."""
    infos = link.get("addr_info", [])
    return [info for info in infos if isinstance(info, dict)] if isinstance(infos, list) else []


def sync_lo_addresses(namespace: str | None, wanted: Iterable[str]) -> None:
    """Make ``lo`` hold exactly ``wanted`` host addresses (plus loopback's)."""
    target = {f"{address}/32" for address in wanted}
    present = lo_addresses(namespace)
    for cidr in sorted(present - target):
        run("ip", *ip_args(namespace), "addr", "del", cidr, "dev", "lo")
    for cidr in sorted(target - present):
        run("ip", *ip_args(namespace), "addr", "add", cidr, "dev", "lo")


def owned_routes(namespace: str | None, dev: str | None = None) -> set[Route]:
    """The routes with vpngw's protocol in ``namespace`` (only those on ``dev`` if given)."""
    return {
        Route(route.dst, route.dev, route.via, route.kind, route.onlink)
        for route in dump_namespace(namespace, addresses=False).routes
        if route.protocol == int(ROUTE_PROTO) and (dev is None or route.dev == dev)
    }


def sync_routes(namespace: str | None, wanted: Iterable[Route], *, dev: str | None = None) -> None:
    """Make the routes with vpngw's protocol in ``namespace`` exactly ``wanted``; with
    ``dev``, only those on that device are compared (a namespace shared by several
    gateways, each owning the routes on its own link)."""
    target = set(wanted)
    present = owned_routes(namespace, dev)
    for route in sorted(present - target):
        run("ip", *ip_args(namespace), "route", "del", *route_args(route))
    for route in sorted(target - present):
        run("ip", *ip_args(namespace), "route", "replace", *route_args(route))


def route_args(route: Route) -> list[str]:
    """The words after ``ip route replace`` (or ``del``) for ``route``."""
    args = [route.kind, route.dst, "table", route.table, "proto", ROUTE_PROTO]
    if route.via:
        args += ["via", route.via]
    return [*args, "dev", route.dev, *(["onlink"] if route.onlink else [])]


# -- processes --------------------------------------------------------------------


def pid_alive(pid: int, *, command: str = "charon") -> bool:
    """Whether ``pid`` is a live (non-zombie) process running ``command``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = status.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and command.encode() in cmdline


def kill_pid(pid: int, *, timeout_s: float = 5.0) -> None:
    """SIGTERM ``pid`` (SIGKILL after ``timeout_s``) and wait until it is gone.

    The process may not be our child (adopted after a restart of vpngw), so it is
    watched through /proc; if it is our child, it is reaped here.
    """
    if not pid_alive(pid):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: _reap(pid) or not pid_alive(pid), timeout_s=timeout_s, interval_s=0.02):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _reap(pid) or not pid_alive(pid), timeout_s=timeout_s, interval_s=0.02)


def _reap(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def namespace_pids(name: str) -> set[int]:
    """Every process whose network namespace is ``name`` (``ip netns pids``), found from
    the namespace itself, whatever pid files say."""
    done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return set()
    return {int(word) for word in done.stdout.split() if word.isdigit()}


def kill_namespace_processes(name: str, *, timeout_s: float = 5.0) -> None:
    """SIGTERM every process inside namespace ``name`` (SIGKILL after ``timeout_s``) and
    wait until none is left: a namespace is never deleted under a running daemon."""
    pids = namespace_pids(name)
    for pid in pids:
        with _gone_already():
            os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not _any_alive(pids), timeout_s=timeout_s, interval_s=0.02):
        for pid in namespace_pids(name):
            with _gone_already():
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _any_alive(namespace_pids(name)), timeout_s=timeout_s, interval_s=0.02)


def _any_alive(pids: set[int]) -> bool:
    alive = False
    for pid in pids:
        _reap(pid)
        alive = alive or _exists(pid)
    return alive


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


class _gone_already:
    """Ignore ProcessLookupError: the process ended between listing and signalling."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is ProcessLookupError
