"""Logs an operator can trust: no client can forge a line or put a control character in
one; every access line names the client's address, the AccessKeyId and the error code,
never the secret; no redirect echoes the client's Host.

Against a real ``vpngw serve`` process, in both log formats."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET, signed_query
from vpngw.logs import JsonFormatter, TextFormatter

FORGED = "2026-12-06 09:00:00,000 INFO vpngw.access: FORGED"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@pytest.fixture(params=["text", "json"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start("--log-format", request.param, "--log-level", "info")
    try:
        yield process, request.param
    finally:
        process.stop()


def raw_request(port: int, head: bytes) -> bytes:
    """Send a request head as given (no client library would send these bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
            if b"\r\n\r\n" in answer and len(answer.split(b"\r\n\r\n", 1)[1]) > 0:
                break
        return answer


def log_lines(process: ServerProcess) -> list[str]:
    # stdout (the start-up notes, "vpngw: ...") shares the file with the log on stderr.
    return [line for line in process.log_text().splitlines() if line and not line.startswith("vpngw: ")]


def test_no_client_value_forges_a_line_and_access_lines_say_who(server: tuple[ServerProcess, str]) -> None:
    process, log_format = server
    with httpx.Client(base_url=process.url, timeout=10) as client:
        # 1. A newline (and an escape sequence) in an unsigned parameter the access log names.
        assert client.post("/", params={"Action": f"Describe\n{FORGED}\x1b[2J"}).status_code == 400
        # 2. A made-up parameter name with a NUL value: its name becomes part of the error code.
        signed = signed_query(
            "POST", {"Action": "DescribeVpcs", "RegionId": REGION, f"N\r\n{FORGED}": "a\x00"}
        )
        assert client.post("/", params=signed).status_code == 400
        # 3. A signed request that succeeds, and one whose signature is wrong.
        assert client.post("/", params=signed_query("POST", {"Action": "DescribeRegions"})).status_code == 200
        forged = signed_query("POST", {"Action": "DescribeRegions"}, secret="not-the-secret")
        assert client.post("/", params=forged).json()["Code"] == "SignatureDoesNotMatch"
    # 4. A path with raw control characters (percent-encoded on the wire, decoded by the server).
    answer = raw_request(
        process.port,
        b"POST /apsara/route/Vpc/X%0A"
        + FORGED.replace(" ", "%20").encode()
        + b" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 4"), answer
    process.stop()

    lines = log_lines(process)
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        access = [r for r in records if r["logger"] == "vpngw.access"]
        texts = [r["message"] for r in records] + [str(v) for r in access for v in r.values()]
    else:
        assert all(TEXT_LINE.match(line) or line.startswith("    ") for line in lines), lines
        access = [line for line in lines if " vpngw.access: " in line]
        texts = lines
    assert len(access) == 5, access
    assert not [t for t in texts if re.search("[\x00-\x08\x0b-\x1f\x7f]", t)]
    assert not [line for line in lines if line.startswith("2026-12-06 09:00:00")]  # no forged record
    if log_format == "json":
        assert access[0]["action"] == "Describe\\n" + FORGED + "\\x1b[2J"  # escaped, whole
        assert access[-1]["path"] == "/apsara/route/Vpc/X\\n" + FORGED
    else:  # in the text line a value is one space-free field
        assert (
            " POST / Describe%0A2026-12-06%2009:00:00,000%20INFO%20vpngw.access:%20FORGED%1B[2J 400 "
            in access[0]
        )

    if log_format == "json":
        assert all(r["client"] == "127.0.0.1" for r in access)
        keyed = [r for r in access if r["access_key_id"] == TEST_KEY_ID]
        assert [r["code"] for r in keyed] == [
            "InvalidParameter.N\\r\\n" + FORGED,  # the client's parameter name, escaped
            "-",
            "SignatureDoesNotMatch",
        ]
        assert [(r["access_key_id"], r["code"]) for r in (access[0], access[-1])] == [
            ("-", "MissingParameter.AccessKeyId")
        ] * 2
    else:
        assert all(" 127.0.0.1 " in line for line in access)
        keyed = [line.split(f" 127.0.0.1 {TEST_KEY_ID} POST / ")[1] for line in access if TEST_KEY_ID in line]
        assert [line.split(" ")[1:3] for line in keyed] == [
            ["400", "InvalidParameter.N%0D%0A2026-12-06%2009:00:00,000%20INFO%20vpngw.access:%20FORGED"],
            ["200", "-"],
            ["400", "SignatureDoesNotMatch"],
        ]
    assert TEST_KEY_SECRET not in process.log_text()


@pytest.mark.parametrize(
    "path", ["/metrics/", "/apsara/route/Vpc/DescribeRegions/", "//", "/apsara/route/Vpc/DescribeRegions//"]
)
def test_no_redirect_echoes_the_clients_host(tmp_path: Path, path: str) -> None:
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start()
    try:
        response = httpx.request(
            "POST" if path.startswith("/apsara") else "GET",
            f"{process.url}{path}",
            headers={"Host": "evil.example"},
            follow_redirects=False,
            timeout=10,
        )
    finally:
        process.stop()
    assert not 300 <= response.status_code < 400, response.headers
    assert "location" not in response.headers and "evil.example" not in response.text
    assert response.status_code == 404 and response.json()["Code"] == "InvalidAction.NotFound"


def test_a_traceback_cannot_forge_a_record() -> None:
    try:
        raise ValueError(f"bad value\n{FORGED}\x1b[2J")
    except ValueError:
        record = logging.LogRecord(
            "vpngw.x", logging.ERROR, __file__, 1, "failed: %s", ("a\nb",), sys.exc_info()
        )
    text = TextFormatter().format(record).splitlines()
    assert TEXT_LINE.match(text[0]) and text[0].endswith(" ERROR vpngw.x: failed: a\\nb")
    assert len(text) > 2 and all(line.startswith("    ") for line in text[1:]), text
    assert any(line == f"    {FORGED}\\x1b[2J" for line in text) and "\x1b" not in "".join(text)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed: a\\nb" and "\x1b" not in line["exception"]
