"""Operator data on the operator's listener, with labels from closed sets.

``vpngw serve --metrics HOST:PORT`` serves /metrics there; the API port answers 404 (also
for /metrics/, without a redirect). No request can mint a label value: actions come from
the registry, error codes from docs/errors.md (vpngw.error_codes), anything else is
``Other``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, signed_query
from tests.support.postgres import free_port
from vpngw import error_codes, metrics
from vpngw.actions.registry import ACTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def documented_codes() -> tuple[set[str], set[str]]:
    """The codes of docs/errors.md's tables (first column), and its templates (``<Name>``)."""
    codes: set[str] = set()
    for line in DOCS.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        first = ""
        for code in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if code.startswith("."):  # `InvalidParameter.From` / `.To`
                code = first + code
            else:
                first = code.split(".")[0]
            codes.add(code)
    templates = {code for code in codes if "<" in code}
    return codes - templates, templates


def closed_set() -> tuple[set[str], set[str]]:
    names = metrics._parameter_names(ACTIONS)
    codes = set(error_codes.DOCUMENTED) | {"-", "Other"}
    for family in error_codes.PARAMETER_FAMILIES:
        codes |= {f"{family}.{name}" for name in names} | {f"{family}.Other"}
        for config, keys in error_codes.CONFIG_KEYS.items():
            codes |= {f"{family}.{config}.{key}" for key in keys}
    return set(ACTIONS) | {"-", "unknown"}, codes


def test_the_closed_set_of_codes_is_the_one_docs_errors_md_lists() -> None:
    codes, templates = documented_codes()
    assert codes == set(error_codes.DOCUMENTED), (
        "docs/errors.md and vpngw/error_codes.py must list the same codes: "
        f"only in the docs {sorted(codes - error_codes.DOCUMENTED)}, "
        f"only in the code {sorted(error_codes.DOCUMENTED - codes)}"
    )
    assert templates == set(error_codes.TEMPLATES)


@settings(max_examples=300, deadline=None)
@given(
    action=st.one_of(st.sampled_from(sorted(ACTIONS)), st.text(max_size=40)),
    code=st.one_of(
        st.sampled_from(sorted(error_codes.DOCUMENTED)),
        st.builds(
            lambda family, name, key: f"{family}.{name}{key}",
            st.sampled_from(["InvalidParameter", "MissingParameter", "IllegalParam", "Made"]),
            st.one_of(st.sampled_from(["IkeConfig", "Psk", "RegionId"]), st.text(max_size=20)),
            st.one_of(st.just(""), st.sampled_from([".Psk", ".Sip", ".Nope"]), st.text(max_size=8)),
        ),
        st.text(max_size=40),
    ),
)
def test_labels_only_from_closed_sets(action: str, code: str) -> None:
    actions, codes = closed_set()
    action_label = action if action in ACTIONS or action == "-" else "unknown"
    assert action_label in actions
    assert metrics._code_label(code, ACTIONS) in codes
    if code in error_codes.DOCUMENTED:
        assert metrics._code_label(code, ACTIONS) == code


def label_values(text: str) -> set[tuple[str, str]]:
    return {
        (name, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("vpngw_api_")
        for name, value in sample.labels.items()
        if name in ("action", "code")
    }


def series(text: str) -> set[tuple[tuple[str, str], ...]]:
    return {
        tuple(sorted(sample.labels.items()))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "vpngw_api_requests_total"
    }


def test_metrics_only_on_the_operator_listener_and_no_request_mints_a_label(tmp_path: Path) -> None:
    operator_port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    server.start("--metrics", f"127.0.0.1:{operator_port}")
    operator = f"http://127.0.0.1:{operator_port}/metrics"
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for path in ("/metrics", "/metrics/"):
                for host in ("127.0.0.1", "evil.example"):
                    answer = client.get(path, headers={"Host": host})
                    assert answer.status_code == 404 and "location" not in answer.headers
                    assert answer.json()["Code"] == "InvalidAction.NotFound"
            client.post("/", params=signed_query("POST", {"Action": "DescribeRegions"}))
            before = httpx.get(operator, timeout=10)
            assert before.status_code == 200 and "vpngw_store_up 1.0" in before.text
            # The attack of issue 15: made-up parameter names with a NUL value, made-up actions.
            for n in range(150):
                params = {"Action": "DescribeVpcs", "RegionId": REGION, f"Made-up-{n}": "a\x00"}
                assert client.post("/", params=signed_query("POST", params)).status_code == 400
                assert client.post("/", params={"Action": f"Made{n}\x00"}).status_code in (400, 404)
            after = httpx.get(operator, timeout=10)
    finally:
        server.stop()
    actions, codes = closed_set()
    seen = label_values(after.text)
    assert {v for k, v in seen if k == "action"} <= actions
    assert {v for k, v in seen if k == "code"} <= codes, seen
    assert ("code", "InvalidParameter.Other") in seen
    assert len(series(after.text)) - len(series(before.text)) == 2  # not 300 new series
    assert len(after.content) < len(before.content) + 8 * 1024
