"""The console against a real ``vpngw serve`` (no data plane) in a real Chromium:
strict CSP and static files only, sign-in (a wrong secret refused without a crash),
nothing of the secret kept in storage, cookies or URLs, sign-out, every list, the
create form (a double click creates one connection), the operator's nodes page, a
phone-sized screen, and the message outside a secure context."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET, build_world, connection_params
from vpngw.console import STATIC_DIR

from .harness import DESKTOP, PHONE, Browser, Server, browser, running_server

PAGES = ["connections", "gateways", "customer-gateways", "vpcs", "nodes"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(lab=False) as running:
        api = running.api()
        world = build_world(api)
        api.ok("CreateVpnConnection", **connection_params(world, Name="branch-office"))
        yield running


def _static_files() -> list[Path]:
    return sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False
        self.current = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.current = tag

    def handle_data(self, data: str) -> None:
        if self.current in ("script", "style") and data.strip():
            self.inline_script = True


def test_console_files_are_static_same_origin_and_under_a_strict_csp(server: Server) -> None:
    files = _static_files()
    assert {f.name for f in files} >= {"index.html", "console.css", "app.js", "signer.js", "api.js"}
    for path in files:
        url = f"{server.url}/console/{path.relative_to(STATIC_DIR).as_posix()}"
        response = httpx.get(url)
        assert response.status_code == 200, url
        policy = response.headers["content-security-policy"]
        assert (
            "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
        )
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        # The code, without its comments (which may name what the code never does).
        text = re.sub(r"^\s*(//|\*|/\*\*).*$", "", response.text, flags=re.MULTILINE)
        # No third-party origin, no markup built from strings, no storage of any kind.
        # No third-party origin: imports, sources and fetches are relative; no markup
        # built from strings; no storage of any kind.
        assert not re.search(r"""(?:from|import|src=|href=|url\(|fetch\()\s*["']?(?:https?:)?//""", text), (
            path
        )
        for banned in (
            "innerHTML",
            "outerHTML",
            "eval(",
            "new Function",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
        ):
            assert banned not in text, (path, banned)
    index = httpx.get(f"{server.url}/console/")
    assert index.status_code == 200 and "content-security-policy" in index.headers
    markup = _Markup()
    markup.feed(index.text)
    assert not markup.inline_script
    scripts = [attrs for tag, attrs in markup.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "js/app.js"}]
    for tag, attrs in markup.tags:
        assert "style" not in attrs and not any(name.startswith("on") for name in attrs), (tag, attrs)
    redirect = httpx.get(f"{server.url}/console")
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/console/")
    for folder in ("/console/js", "/console/js/", "/console/js/views"):  # no listing, no redirect
        answer = httpx.get(f"{server.url}{folder}", headers={"Host": "evil.example"})
        assert answer.status_code == 404 and "location" not in answer.headers, folder
    missing = httpx.get(f"{server.url}/console/nothing-here.js")
    assert missing.status_code == 404 and missing.json()["Code"] == "InvalidAction.NotFound"


def _no_secret_anywhere(driven: Browser, secret: str) -> None:
    assert driven.requests, "the page made no request"
    for request in driven.requests:
        assert secret not in request.url, request.url
        assert secret not in json.dumps(request.headers), request.url
        assert secret not in (request.post_data or ""), request.url
    assert driven.context.cookies() == []
    state = driven.context.storage_state()
    assert state["cookies"] == []
    assert all(not origin.get("localStorage") for origin in state["origins"]), state["origins"]
    page = driven.page
    assert page.evaluate("sessionStorage.length") == 0
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("indexedDB.databases().then((d) => d.length)") == 0
    assert secret not in page.url
    assert secret not in page.content()


def test_sign_in_lists_create_and_sign_out_keep_nothing_of_the_secret(server: Server) -> None:
    api = server.api()
    with browser(DESKTOP) as driven:
        page = driven.page
        page.goto(f"{server.url}/console/")
        assert page.get_by_label("AccessKeyId").is_visible()
        driven.shot("signin", full_page=False)

        # A wrong secret: refused with the API's error, the page keeps working.
        driven.sign_in(server.url, secret="not-the-secret-at-all")
        error = page.get_by_test_id("signin-error")
        error.wait_for(state="visible")
        assert "SignatureDoesNotMatch" in error.inner_text()
        assert page.get_by_label("AccessKeySecret").input_value() == ""  # not kept in the field
        assert page.locator("#nav").is_hidden()
        driven.shot("signin-refused", full_page=False)
        driven.sign_in(server.url)
        page.get_by_test_id("list-DescribeVpnConnections").wait_for()

        # The region chooser is DescribeRegions.
        regions = [r["RegionId"] for r in api.ok("DescribeRegions")["Regions"]["Region"]]
        assert page.locator("#region option").evaluate_all("(os) => os.map((o) => o.value)") == regions
        assert page.locator("#region").input_value() == REGION
        assert page.locator("#key-id").inner_text() == TEST_KEY_ID

        # Every list, with its rows; the operator (default account) sees the nodes page.
        page.get_by_role("link", name="branch-office").wait_for()
        driven.shot("connections", full_page=False)
        for view, action, rows in [
            ("gateways", "DescribeVpnGateways", 1),
            ("customer-gateways", "DescribeCustomerGateways", 1),
            ("vpcs", "DescribeVpcs", 1),
        ]:
            page.locator(f'#nav a[data-view="{view}"]').click()
            listing = page.get_by_test_id(f"list-{action}")
            listing.locator("tbody tr[data-id]").first.wait_for()
            assert listing.locator("tbody tr[data-id]").count() == rows
            assert "1 in all" in listing.get_by_test_id("pager-info").inner_text()
            driven.shot(view, full_page=False)
        page.locator('#nav a[data-view="nodes"]').wait_for(state="visible")
        page.locator('#nav a[data-view="nodes"]').click()
        page.get_by_test_id("nodes-page").wait_for()
        page.get_by_test_id("nodes-page").get_by_text("0 node(s)").wait_for()  # --no-dataplane

        # Filters and paging are the API's.
        page.locator('#nav a[data-view="connections"]').click()
        page.get_by_label("VpnConnectionId").fill("vco-none")
        page.get_by_role("button", name="Filter").click()
        page.get_by_text("Nothing here yet.").wait_for()
        page.get_by_role("button", name="Clear").click()
        page.get_by_role("link", name="branch-office").wait_for()

        # A double click on Create makes one connection: the same content keeps its ClientToken.
        page.get_by_test_id("new-connection").click()
        form = page.get_by_test_id("create-connection")
        form.get_by_label("Name", exact=True).fill("double-click")
        form.get_by_label("LocalSubnet").fill("10.3.0.0/24")
        form.get_by_label("RemoteSubnet").fill("10.30.0.0/24")
        assert form.get_by_label("IkeLifetime").input_value() == "86400"  # defaults shown
        assert form.get_by_label("IpsecPfs").input_value() == "group2"
        driven.shot("create-connection")
        page.get_by_test_id("submit-connection").dblclick()
        page.get_by_test_id("connection-page").wait_for()
        named = [
            c
            for c in api.ok("DescribeVpnConnections", PageSize=50)["VpnConnections"]["VpnConnection"]
            if c["Name"] == "double-click"
        ]
        assert len(named) == 1
        page.get_by_test_id("phases").wait_for()

        _no_secret_anywhere(driven, TEST_KEY_SECRET)
        assert not driven.errors, driven.errors

        # Sign-out forgets the key: the sign-in form again, even for a page's address.
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("AccessKeySecret").wait_for()
        page.goto(f"{server.url}/console/#/vpcs")
        page.get_by_label("AccessKeySecret").wait_for()
        assert page.locator("#nav").is_hidden()
        page.reload()
        page.get_by_label("AccessKeySecret").wait_for()
        _no_secret_anywhere(driven, TEST_KEY_SECRET)
        assert not driven.errors, driven.errors


def test_pages_fit_a_phone_and_a_desktop(server: Server) -> None:
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        with browser(viewport) as driven:
            page = driven.page
            page.goto(f"{server.url}/console/")
            assert driven.fits_width(), name
            driven.sign_in(server.url)
            page.get_by_role("link", name="branch-office").wait_for()
            for view in PAGES:
                page.goto(f"{server.url}/console/#/{view}")
                page.locator("main section").first.wait_for()
                page.wait_for_timeout(300)
                assert driven.fits_width(), (name, view)
                assert page.locator("main h1").first.is_visible()
            page.goto(f"{server.url}/console/#/connections")
            page.get_by_role("link", name="branch-office").click()
            page.get_by_test_id("topology").wait_for()
            assert driven.fits_width(), (name, "connection")
            if name == "phone":
                driven.shot("phone-connection")
                page.goto(f"{server.url}/console/#/connections")
                page.get_by_role("link", name="branch-office").wait_for()
                driven.shot("phone-connections", full_page=False)
            assert not driven.errors, driven.errors


def test_a_tenant_gets_no_nodes_page(server: Server) -> None:
    created = server.vpngw(
        "account", "create", "tenant-b", "--db", f"sqlite:///{server.workdir / 'vpngw.db'}"
    )
    assert created.returncode == 0
    tenant: dict[str, Any] = json.loads(created.stdout)
    with browser(DESKTOP) as driven:
        page = driven.page
        driven.sign_in(server.url, tenant["AccessKeyId"], tenant["AccessKeySecret"])
        page.get_by_text("Nothing here yet.").wait_for()  # a tenant sees only its own resources
        page.wait_for_timeout(500)
        assert page.locator('#nav a[data-view="nodes"]').is_hidden()
        page.goto(f"{server.url}/console/#/nodes")
        page.get_by_text("Forbidden.Operator").wait_for()
        assert not driven.errors, driven.errors


def test_outside_a_secure_context_the_page_says_why_it_cannot_sign(server: Server) -> None:
    """Plain HTTP on a non-loopback name is no secure context: WebCrypto is missing."""
    with browser(DESKTOP) as driven:
        page = driven.page

        def relay(route: Any) -> None:
            path = route.request.url.removeprefix("http://vpngw.invalid")
            route.fulfill(response=route.fetch(url=f"{server.url}{path}"))

        page.route("http://vpngw.invalid/**", relay)
        page.goto("http://vpngw.invalid/console/")
        banner = page.locator("#insecure")
        banner.wait_for(state="visible")
        assert "secure context" in banner.inner_text()
        assert page.get_by_role("button", name="Sign in").is_disabled()
        assert page.evaluate("window.isSecureContext") is False
        driven.shot("insecure-context", full_page=False)
        # Chromium says it ignores COOP on an untrustworthy origin: the browser's note, no page error.
        assert not [e for e in driven.errors if "Cross-Origin-Opener-Policy" not in e], driven.errors


def test_vpcs_gateways_and_customer_gateways_are_made_and_deleted_in_the_console(server: Server) -> None:
    api = server.api()
    with browser(DESKTOP) as driven:
        page = driven.page
        driven.sign_in(server.url)
        page.get_by_test_id("list-DescribeVpnConnections").wait_for()

        page.goto(f"{server.url}/console/#/vpcs")
        page.locator("summary", has_text="Create VPC").click()
        panel = page.get_by_test_id("create-CreateVpc")
        assert panel.get_by_label("CidrBlock").input_value() == "172.16.0.0/12"  # the default shown
        panel.get_by_label("CidrBlock").fill("10.0.0.1/8")
        panel.get_by_label("VpcName").fill("made-here")
        panel.get_by_role("button", name="Create VPC").click()
        error = panel.locator('[data-field="CidrBlock"] .field-error')
        error.wait_for(state="visible")
        assert "InvalidCidrBlock.Malformed" in error.inner_text()
        panel.get_by_label("CidrBlock").fill("192.168.0.0/16")
        panel.get_by_role("button", name="Create VPC").click()
        page.get_by_text("made-here").wait_for()
        vpc_id = next(
            v["VpcId"] for v in api.ok("DescribeVpcs")["Vpcs"]["Vpc"] if v["VpcName"] == "made-here"
        )

        page.goto(f"{server.url}/console/#/gateways")
        page.locator("summary", has_text="Create VPN gateway").click()
        panel = page.get_by_test_id("create-CreateVpnGateway")
        panel.get_by_label("VpcId").select_option(vpc_id)
        panel.get_by_label("Name", exact=True).fill("gw-made-here")
        panel.get_by_role("button", name="Create VPN gateway").click()
        page.get_by_text("gw-made-here").wait_for()
        gateway = next(g for g in api.ok("DescribeVpnGateways", VpcId=vpc_id)["VpnGateways"]["VpnGateway"])
        assert (gateway["Name"], gateway["Spec"]) == ("gw-made-here", "10M")

        page.goto(f"{server.url}/console/#/customer-gateways")
        page.locator("summary", has_text="Create customer gateway").click()
        panel = page.get_by_test_id("create-CreateCustomerGateway")
        panel.get_by_label("IpAddress").fill("127.0.0.1")
        panel.get_by_label("Name", exact=True).fill("cpe-made-here")
        panel.get_by_role("button", name="Create customer gateway").click()
        error = panel.locator('[data-field="IpAddress"] .field-error')
        error.wait_for(state="visible")
        assert "InvalidIpAddress.WrongFormat" in error.inner_text()
        panel.get_by_label("IpAddress").fill("198.19.7.7")
        panel.get_by_role("button", name="Create customer gateway").dblclick()  # one, not two
        row = page.locator("tr", has_text="cpe-made-here")
        row.wait_for()
        page.wait_for_timeout(500)
        made = [
            c
            for c in api.ok("DescribeCustomerGateways", PageSize=50)["CustomerGateways"]["CustomerGateway"]
            if c["Name"] == "cpe-made-here"
        ]
        assert len(made) == 1 and made[0]["IpAddress"] == "198.19.7.7"

        # Delete asks once; a gateway still in use says why.
        row.get_by_role("button", name="Delete…").click()
        row.get_by_role("button", name="Yes, delete").click()
        row.wait_for(state="detached")
        api.fails(
            "DescribeCustomerGateway",
            404,
            "InvalidCustomerGatewayInstanceId.NotFound",
            CustomerGatewayId=made[0]["CustomerGatewayId"],
        )
        page.goto(f"{server.url}/console/#/vpcs")
        row = page.locator("tr", has_text="made-here")
        row.get_by_role("button", name="Delete…").click()
        row.get_by_role("button", name="Yes, delete").click()
        refusal = row.locator(".field-error")
        refusal.wait_for(state="visible")
        assert "DependencyViolation.VpnGateway" in refusal.inner_text()
        driven.shot("vpcs-delete-refused", full_page=False)
        assert not driven.errors, driven.errors


def test_paging_and_an_error_inside_a_sub_form(server: Server) -> None:
    api = server.api()
    for n in range(12):
        api.ok("CreateCustomerGateway", IpAddress=f"198.19.50.{n + 1}", Name=f"paged-{n:02d}")
    total = api.ok("DescribeCustomerGateways")["TotalCount"]
    with browser(DESKTOP) as driven:
        page = driven.page
        driven.sign_in(server.url)
        page.get_by_test_id("list-DescribeVpnConnections").wait_for()
        page.goto(f"{server.url}/console/#/customer-gateways")
        listing = page.get_by_test_id("list-DescribeCustomerGateways")
        info = listing.get_by_test_id("pager-info")
        pages = -(-total // 10)
        listing.get_by_text(f"Page 1 of {pages} · {total} in all").wait_for()
        assert listing.locator("tbody tr[data-id]").count() == 10
        listing.get_by_role("button", name="Next ›").click()
        listing.get_by_text(f"Page 2 of {pages}").wait_for()
        second = listing.locator("tbody tr[data-id]").evaluate_all("(rows) => rows.map((r) => r.dataset.id)")
        expected = [
            c["CustomerGatewayId"]
            for c in api.ok("DescribeCustomerGateways", PageNumber=2)["CustomerGateways"]["CustomerGateway"]
        ]
        assert second == expected
        listing.get_by_label("Page size").select_option("20")
        listing.get_by_text(f"Page 1 of {-(-total // 20)}").wait_for()
        assert listing.locator("tbody tr[data-id]").count() == min(total, 20)
        assert "in all" in info.inner_text()

        # A key of IkeConfig out of range: the error at that box of the sub-form.
        page.goto(f"{server.url}/console/#/new-connection")
        form = page.get_by_test_id("create-connection")
        form.get_by_label("LocalSubnet").fill("10.4.0.0/24")
        form.get_by_label("RemoteSubnet").fill("10.40.0.0/24")
        form.get_by_label("IkeLifetime").fill("999999")
        page.get_by_test_id("submit-connection").click()
        error = form.locator('[data-field="IkeConfig.IkeLifetime"] .field-error')
        error.wait_for(state="visible")
        assert "InvalidParameter.IkeConfig.IkeLifetime" in error.inner_text()
        assert form.get_by_label("IkeLifetime").get_attribute("class") == "invalid"
        assert page.get_by_test_id("form-error").is_hidden()
        assert not driven.errors, driven.errors
