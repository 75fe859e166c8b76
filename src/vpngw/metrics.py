"""Prometheus metrics: what the operator listener's ``GET /metrics`` serves
(``vpngw serve --metrics HOST:PORT``, :class:`OperatorListener`; docs/operations.md lists
them). The API port serves none.

Two kinds, kept apart on purpose:

* **In-process** metrics, updated where things happen: API requests (by action and error
  code), reconcile pass durations, charon restarts. They live on prometheus_client's
  default registry, with its process and Python collectors, and count what *this*
  process did.
* **Store** metrics, read from the database at scrape time by :class:`StoreCollector`:
  connections by ``Status``, tunnels up, health-check verdicts, per-connection bytes and
  packets. The data plane writes those into ``vpn_connections``, so they are right
  whichever process (this one, or a data-plane agent on another node) runs the tunnels,
  and every API node of a shared database reports the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vpngw import error_codes
from vpngw.store import queries
from vpngw.store.engine import Database

log = logging.getLogger(__name__)

ActionTable = Mapping[str, Any]  # actions.registry.ACTIONS (not imported: the data plane imports this module)

# The *_created series (a timestamp per counter) double the output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The four values of docs/api.md: every one is always exported, 0 included, so that a
# dashboard's sum never loses a series.
STATUSES = (
    "ike_sa_not_established",
    "ike_sa_established",
    "ipsec_sa_not_established",
    "ipsec_sa_established",
)
VERDICTS = ("success", "failed")

# API latencies run from a cached Describe (about a millisecond) to a create that waits
# behind other writers on SQLite (tens of milliseconds) or conflicts (hundreds).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "vpngw_api_requests",
    "API requests answered, by action and error code ('-' for success).",
    ["action", "code"],
)
REQUEST_SECONDS = Histogram(
    "vpngw_api_request_duration_seconds",
    "Time from receiving an API request to its response, by action and error code.",
    ["action", "code"],
    buckets=_LATENCY_BUCKETS,
)
RECONCILE_PASS_SECONDS = Histogram(
    "vpngw_reconcile_pass_duration_seconds",
    "Duration of one data-plane reconcile pass (every gateway this node holds).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# The data plane's own families: in vpngw serve they come from its data-plane process
# (cli/dataplane_process.py), not from the API's copies of them (which stay at zero).
DATAPLANE_FAMILIES = ("vpngw_reconcile_pass_duration_seconds", "vpngw_charon_restarts")
CHARON_RESTARTS = Counter(
    "vpngw_charon_restarts",
    "charons found dead and started again by the data plane, by VPN gateway.",
    ["vpn_gateway_id"],
)

# Labels come only from closed sets, whatever clients send: the action label is a served
# action ("unknown" for any other name, "-" when the request named none); the code label is
# a code docs/errors.md documents (vpngw.error_codes), a template of it filled with a
# parameter name an action declares, "<Family>.Other" for a parameter name no action has
# (InvalidParameter.<Name> names whatever parameter the client sent), or "Other".


# The common parameters every request may carry (signature, dialect), besides the actions' own.
COMMON_PARAMETERS = frozenset(
    {
        "AccessKeyId",
        "Action",
        "Format",
        "RegionId",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
    }
)
_names_of: dict[int, frozenset[str]] = {}  # id(actions) -> every parameter name (computed once)


def _parameter_names(actions: ActionTable) -> frozenset[str]:
    names = _names_of.get(id(actions))
    if names is None:
        names = COMMON_PARAMETERS | {
            field.alias or name
            for action in actions.values()
            for name, field in action.params.model_fields.items()
        }
        _names_of[id(actions)] = names
    return names


def _code_label(code: str, actions: ActionTable) -> str:
    if code == "-" or code in error_codes.DOCUMENTED:
        return code
    family, _, rest = code.partition(".")
    if family not in error_codes.PARAMETER_FAMILIES:
        return "Other"
    name, _, key = rest.partition(".")
    if name not in _parameter_names(actions):
        return f"{family}.Other"
    if key and key not in error_codes.CONFIG_KEYS.get(name, ()):
        return f"{family}.Other"
    return code


def observe_request(action: str, code: str, seconds: float, actions: ActionTable) -> None:
    """Count one answered API request. ``action`` is what the client asked for, ``code``
    the error code or ``-``; ``actions`` the served actions (``actions.registry.ACTIONS``)."""
    action_label = action if action in actions or action == "-" else "unknown"
    code_label = _code_label(code, actions)
    REQUESTS.labels(action_label, code_label).inc()
    REQUEST_SECONDS.labels(action_label, code_label).observe(seconds)


class StoreCollector(Collector):
    """Connection metrics read from ``vpn_connections`` at each scrape (one query)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily("vpngw_connections", "VPN connections by Status.", labels=["status"])
        tunnels_up = GaugeMetricFamily(
            "vpngw_tunnels_up",
            "VPN connections whose every CHILD_SA is installed (Status ipsec_sa_established).",
        )
        health = GaugeMetricFamily(
            "vpngw_health_checks", "Enabled health checks by their latest verdict.", labels=["verdict"]
        )
        connection_up = GaugeMetricFamily(
            "vpngw_connection_up",
            "1 when the connection's Status is ipsec_sa_established, else 0.",
            labels=["vpn_connection_id", "vpn_gateway_id"],
        )
        connection_health = GaugeMetricFamily(
            "vpngw_connection_health_check_success",
            "1 when the connection's enabled health check reads success, 0 when failed.",
            labels=["vpn_connection_id", "vpn_gateway_id"],
        )
        bytes_total = CounterMetricFamily(
            "vpngw_connection_bytes",
            "Bytes through the connection's current CHILD_SAs (restarts at a rekey), by direction.",
            labels=["vpn_connection_id", "vpn_gateway_id", "direction"],
        )
        packets_total = CounterMetricFamily(
            "vpngw_connection_packets",
            "Packets through the connection's current CHILD_SAs (restarts at a rekey), by direction.",
            labels=["vpn_connection_id", "vpn_gateway_id", "direction"],
        )
        store_up = GaugeMetricFamily("vpngw_store_up", "1 when this scrape could read the store, else 0.")
        try:
            rows = self._rows()
        except Exception as error:  # a scrape must answer even when the database does not
            log.warning("metrics: reading the store failed: %s", type(error).__name__)
            store_up.add_metric([], 0.0)
            yield store_up
            return
        store_up.add_metric([], 1.0)
        statuses = dict.fromkeys(STATUSES, 0)
        verdicts = dict.fromkeys(VERDICTS, 0)
        for connection_id, gateway_id, status, check, verdict, traffic in rows:
            statuses[status] = statuses.get(status, 0) + 1
            ids = [connection_id, gateway_id]
            connection_up.add_metric(ids, 1.0 if status == "ipsec_sa_established" else 0.0)
            if isinstance(check, dict) and check.get("Enable"):
                verdicts[verdict] = verdicts.get(verdict, 0) + 1
                connection_health.add_metric(ids, 1.0 if verdict == "success" else 0.0)
            counters = traffic or {}
            for direction in ("in", "out"):
                suffix = direction.capitalize()
                bytes_total.add_metric([*ids, direction], float(counters.get(f"Bytes{suffix}", 0)))
                packets_total.add_metric([*ids, direction], float(counters.get(f"Packets{suffix}", 0)))
        for status, count in statuses.items():
            by_status.add_metric([status], float(count))
        for verdict, count in verdicts.items():
            health.add_metric([verdict], float(count))
        tunnels_up.add_metric([], float(statuses["ipsec_sa_established"]))
        yield from (
            store_up,
            by_status,
            tunnels_up,
            health,
            connection_up,
            connection_health,
            bytes_total,
            packets_total,
        )

    def _rows(self) -> list[tuple[str, str, str, object, str, dict[str, int] | None]]:
        with self.db.session(write=False) as session:
            return queries.connection_metric_rows(session)


def scrape(store: CollectorRegistry) -> bytes:
    """The text exposition: this process's metrics, then the store's."""
    return generate_latest(REGISTRY) + generate_latest(store)


def store_registry(db: Database) -> CollectorRegistry:
    """A registry holding only the store collector of ``db`` (one per application)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(db))
    return registry


class _ProcessAndStore(Collector):
    """This process's metrics (the default registry), ``also``'s (serve's data-plane
    process), then the store's."""

    def __init__(self, db: Database, also: Collector | None = None) -> None:
        self.store = StoreCollector(db)
        self.also = also

    def collect(self) -> Iterator[Metric]:
        if self.also is None:
            yield from REGISTRY.collect()
        else:
            yield from (f for f in REGISTRY.collect() if f.name not in DATAPLANE_FAMILIES)
            yield from self.also.collect()
        yield from self.store.collect()


class OperatorListener:
    """``vpngw serve --metrics HOST:PORT``: ``/metrics`` on the operator's own address.

    The API port serves no metrics: they name every tenant's connections and gateways and
    show their traffic (docs/security.md). prometheus_client's own HTTP server, in a
    daemon thread, answers the scrape (on any path) with this process's metrics and the
    store's."""

    def __init__(self, db: Database, host: str, port: int, *, also: Collector | None = None) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ProcessAndStore(db, also))
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
