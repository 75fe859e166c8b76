"""Tests of vpngw.auth.signatures, against requests captured from the official SDKs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.sdk import Captured, capturing_server
from vpngw.auth.signatures import (
    MASK,
    Credentials,
    IncomingRequest,
    canonical_request,
    check_timestamp,
    format_timestamp,
    json_body_as_params,
    mask_secrets,
    parse_timestamp,
    pct,
    read_credentials,
    sign_rpc_v1,
    string_to_sign,
    verify,
)
from vpngw.errors import BadRequest

AK = "LTAItestAccessKey"
SECRET = "s3cret/Key+with&odd=chars"
PSK = "TopSecretPsk-42 x:y*/"  # "TopSecretPsk-42" survives any percent-encoding unchanged
TUNNEL_PSK = "TunnelPsk-77 a/b"
NAME = "my conn/中文 *star*"
IKE_CONFIG = json.dumps({"Psk": PSK, "IkeVersion": "ikev2", "IkeMode": "main"})
LOCAL_SUBNET = "10.0.0.0/24,10.0.1.0/24"
CANNED = {"RequestId": "x", "VpnConnectionId": "vco-x", "Name": "n", "CreateTime": 1}
SIGNATURE_MISMATCH_PREFIX = (
    "Specified signature is not matched with our calculation. server string to sign is:"
)


# --------------------------------------------------------------------------- capture server


_CAPTURED: list[Captured] = []


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    with capturing_server(CANNED, into=_CAPTURED) as port:
        yield port


def _last_capture() -> Captured:
    assert _CAPTURED, "the SDK sent nothing"
    return _CAPTURED[-1]


def to_incoming(cap: Captured) -> IncomingRequest:
    """What the HTTP layer will build: decoded query and form, blank values kept."""
    target = urlsplit(cap.target)
    form: tuple[tuple[str, str], ...] = ()
    if cap.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = tuple(parse_qsl(cap.body.decode("utf-8"), keep_blank_values=True))
    return IncomingRequest(
        method=cap.method,
        path=target.path,
        query=tuple(parse_qsl(target.query, keep_blank_values=True)),
        form=form,
        headers=cap.headers,
        body=cap.body,
    )


def capture_core(port: int) -> IncomingRequest:
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkvpc.request.v20160428.CreateVpnConnectionRequest import CreateVpnConnectionRequest

    client = AcsClient(AK, SECRET, "cn-hangzhou")
    req = CreateVpnConnectionRequest()
    req.set_endpoint(f"127.0.0.1:{port}")
    req.set_protocol_type("http")
    req.set_VpnGatewayId("vpn-123")
    req.set_CustomerGatewayId("cgw-456")
    req.set_LocalSubnet(LOCAL_SUBNET)
    req.set_RemoteSubnet("192.168.0.0/16")
    req.set_Name(NAME)
    req.set_IkeConfig(IKE_CONFIG)
    req.set_EnableDpd(True)
    req.set_RemoteCaCertificate("")
    req.set_Tagss([{"Key": "env", "Value": "dev test"}])
    req.set_TunnelOptionsSpecification(
        [{"Role": "master", "CustomerGatewayId": "cgw-456", "TunnelIkeConfig": {"Psk": TUNNEL_PSK}}]
    )
    client.do_action_with_exception(req)
    return to_incoming(_last_capture())


def capture_tea(port: int, signature_algorithm: str | None) -> IncomingRequest:
    from alibabacloud_tea_openapi.models import Config
    from alibabacloud_vpc20160428 import models
    from alibabacloud_vpc20160428.client import Client

    config = Config(
        access_key_id=AK,
        access_key_secret=SECRET,
        region_id="cn-hangzhou",
        endpoint=f"127.0.0.1:{port}",
        protocol="http",
    )
    if signature_algorithm is not None:
        config.signature_algorithm = signature_algorithm
    request = models.CreateVpnConnectionRequest(
        region_id="cn-hangzhou",
        vpn_gateway_id="vpn-123",
        customer_gateway_id="cgw-456",
        local_subnet=LOCAL_SUBNET,
        remote_subnet="192.168.0.0/16",
        name=NAME,
        ike_config=IKE_CONFIG,
        enable_dpd=True,
        remote_ca_certificate="",
        tags=[models.CreateVpnConnectionRequestTags(key="env", value="dev test")],
        tunnel_options_specification=[
            models.CreateVpnConnectionRequestTunnelOptionsSpecification(
                role="master",
                customer_gateway_id="cgw-456",
                tunnel_ike_config=models.CreateVpnConnectionRequestTunnelOptionsSpecificationTunnelIkeConfig(
                    psk=TUNNEL_PSK
                ),
            )
        ],
    )
    Client(config).create_vpn_connection(request)
    return to_incoming(_last_capture())


@pytest.fixture(scope="module")
def core_request(server: int) -> IncomingRequest:
    return capture_core(server)


@pytest.fixture(scope="module")
def tea_v2_request(server: int) -> IncomingRequest:
    return capture_tea(server, "v2")


@pytest.fixture(scope="module")
def tea_acs3_request(server: int) -> IncomingRequest:
    return capture_tea(server, None)


@pytest.fixture(scope="module", params=["core", "tea-v2"])
def v1_request(request: pytest.FixtureRequest) -> IncomingRequest:
    fixture = {"core": "core_request", "tea-v2": "tea_v2_request"}[request.param]
    captured: IncomingRequest = request.getfixturevalue(fixture)
    return captured


# --------------------------------------------------------------------------- helpers


def reject(req: IncomingRequest, secret: str = SECRET) -> BadRequest:
    """Run the full check and return the error it must raise."""
    with pytest.raises(BadRequest) as info:
        creds = read_credentials(req)
        assert creds is not None
        verify(req, creds, secret)
    return info.value


def accept(req: IncomingRequest, secret: str = SECRET) -> Credentials:
    creds = read_credentials(req)
    assert creds is not None
    verify(req, creds, secret)
    return creds


def with_pair(pairs: tuple[tuple[str, str], ...], index: int, value: str) -> tuple[tuple[str, str], ...]:
    return pairs[:index] + ((pairs[index][0], value),) + pairs[index + 1 :]


def with_headers(req: IncomingRequest, **changes: str) -> IncomingRequest:
    headers = dict(req.headers)
    headers.update({name.replace("_", "-"): value for name, value in changes.items()})
    return dataclasses.replace(req, headers=headers)


def tampered(value: str) -> str:
    return value + "0" if value else "x"


def assert_masked_mismatch(error: BadRequest) -> None:
    assert error.code == "SignatureDoesNotMatch"
    assert error.status == 400
    assert error.message.startswith(SIGNATURE_MISMATCH_PREFIX)
    assert error.message.count(":") == 1  # core runs Message.split(':')[1]
    assert "TopSecretPsk" not in error.message
    assert "TunnelPsk" not in error.message


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("AZaz09-_.~", "AZaz09-_.~"),
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("/", "%2F"),
        ("+", "%2B"),
        ("=&%:", "%3D%26%25%3A"),
        ("中", "%E4%B8%AD"),
        ("", ""),
    ],
)
def test_pct(raw: str, encoded: str) -> None:
    assert pct(raw) == encoded


@given(st.text())
def test_pct_is_rfc3986_quoting_of_every_string(raw: str) -> None:
    """The unreserved fast path (no quote() call) gives what quote() gives, Unicode letters
    and digits included (they are not unreserved: Python's \\w would take them)."""
    try:
        expected = quote(raw, safe="~", encoding="utf-8", errors="strict")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            pct(raw)
        return
    assert pct(raw) == expected
    assert pct("é1") == "%C3%A91" and pct("٣") == "%D9%A3"


# --------------------------------------------------------------------------- Alibaba's published example

PUBLISHED_QUERY = (
    ("Timestamp", "2016-02-23T12:46:24Z"),
    ("Format", "XML"),
    ("AccessKeyId", "testid"),
    ("Action", "DescribeRegions"),
    ("SignatureMethod", "HMAC-SHA1"),
    ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
    ("Version", "2014-05-26"),
    ("SignatureVersion", "1.0"),
)
PUBLISHED_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
    "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
    "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
)
PUBLISHED_SIGNATURE = "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def published_request(signature: str = PUBLISHED_SIGNATURE) -> IncomingRequest:
    return IncomingRequest(
        "GET", "/", PUBLISHED_QUERY + (("Signature", signature),), (), {"host": "ecs"}, b""
    )


def test_published_example_string_to_sign() -> None:
    assert string_to_sign(published_request()) == PUBLISHED_STRING_TO_SIGN


def test_published_example_verifies() -> None:
    creds = accept(published_request(), "testsecret")
    assert creds == Credentials(
        scheme="rpc-v1",
        access_key_id="testid",
        nonce="3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        timestamp=datetime(2016, 2, 23, 12, 46, 24, tzinfo=UTC),
        signature_method="HMAC-SHA1",
    )
    assert reject(published_request(), "testsecreT").code == "SignatureDoesNotMatch"
    assert reject(published_request("OLeaidS1JvxuMvnyHOwuJ+uX5qY")).code == "SignatureDoesNotMatch"


def test_sign_rpc_v1_reproduces_published_example() -> None:
    api = {"Format": "XML", "Action": "DescribeRegions", "Version": "2014-05-26"}
    signed = sign_rpc_v1(
        "GET",
        api,
        "testid",
        "testsecret",
        nonce="3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        timestamp=datetime(2016, 2, 23, 12, 46, 24, tzinfo=UTC),
    )
    assert signed["Signature"] == PUBLISHED_SIGNATURE
    assert signed["Timestamp"] == "2016-02-23T12:46:24Z"
    assert api == {"Format": "XML", "Action": "DescribeRegions", "Version": "2014-05-26"}  # not mutated


# --------------------------------------------------------------------------- real SDK requests, rpc-v1


def test_v1_capture_looks_as_documented(
    core_request: IncomingRequest, tea_v2_request: IncomingRequest
) -> None:
    core_query = dict(core_request.query)
    assert core_query["SignatureType"] == ""  # the signed empty value
    assert core_query["Name"] == NAME and core_query["IkeConfig"] == IKE_CONFIG
    assert dict(core_request.form)["TunnelOptionsSpecification.1.TunnelIkeConfig.Psk"] == TUNNEL_PSK
    assert "Signature" in dict(tea_v2_request.query)
    assert dict(tea_v2_request.form)["TunnelOptionsSpecification.1.TunnelIkeConfig.Psk"] == TUNNEL_PSK
    assert "authorization" not in core_request.headers and "authorization" not in tea_v2_request.headers


def test_v1_capture_verifies(v1_request: IncomingRequest) -> None:
    creds = accept(v1_request)
    assert creds.scheme == "rpc-v1"
    assert creds.access_key_id == AK
    assert creds.signature_method == "HMAC-SHA1"
    check_timestamp(creds, datetime.now(UTC))


def test_v1_wrong_secret(v1_request: IncomingRequest) -> None:
    error = reject(v1_request, SECRET + "x")
    assert_masked_mismatch(error)
    # The part core extracts is our string to sign, with the secrets masked.
    shown = error.message.split(":")[1]
    assert shown.startswith("POST&%2F&")
    assert pct(pct(MASK)) in shown
    assert shown == error.message[len(SIGNATURE_MISMATCH_PREFIX) :]


def test_v1_any_changed_value_is_rejected(v1_request: IncomingRequest) -> None:
    for source in ("query", "form"):
        pairs: tuple[tuple[str, str], ...] = getattr(v1_request, source)
        for index, (name, value) in enumerate(pairs):
            if name == "Signature":
                continue
            new_pairs = with_pair(pairs, index, tampered(value))
            if source == "query":
                changed = dataclasses.replace(v1_request, query=new_pairs)
            else:
                changed = dataclasses.replace(v1_request, form=new_pairs)
            error = reject(changed)
            if name in ("Timestamp", "SignatureMethod", "SignatureVersion"):
                continue  # rejected before the digest is computed (format / method / version)
            assert error.code == "SignatureDoesNotMatch", name


def test_v1_dropping_the_empty_signed_value_is_rejected(core_request: IncomingRequest) -> None:
    query = tuple(p for p in core_request.query if p[0] != "SignatureType")
    assert len(query) == len(core_request.query) - 1
    assert reject(dataclasses.replace(core_request, query=query)).code == "SignatureDoesNotMatch"


def test_v1_moving_a_param_between_query_and_form_still_verifies(core_request: IncomingRequest) -> None:
    """The v1 signature covers the union of query and form, wherever each parameter travels."""
    query, form = core_request.query[1:], core_request.form + core_request.query[:1]
    accept(dataclasses.replace(core_request, query=query, form=form))


# --------------------------------------------------------------------------- real SDK requests, ACS3


def test_acs3_capture_verifies(tea_acs3_request: IncomingRequest, server: int) -> None:
    req = tea_acs3_request
    assert req.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=" + AK + ",")
    assert req.headers["host"] == f"127.0.0.1:{server}"
    assert req.body and req.headers["x-acs-content-sha256"] == hashlib.sha256(req.body).hexdigest()
    creds = accept(req)
    assert creds.scheme == "acs3"
    assert creds.access_key_id == AK
    assert creds.signature_method == "ACS3-HMAC-SHA256"
    assert creds.nonce == req.headers["x-acs-signature-nonce"]
    check_timestamp(creds, datetime.now(UTC))
    assert canonical_request(req).startswith("POST\n/\n")


def test_acs3_wrong_secret(tea_acs3_request: IncomingRequest) -> None:
    error = reject(tea_acs3_request, SECRET + "x")
    assert_masked_mismatch(error)
    assert error.message.split(":")[1] == string_to_sign(tea_acs3_request)


def test_acs3_any_changed_query_value_is_rejected(tea_acs3_request: IncomingRequest) -> None:
    assert tea_acs3_request.query
    for index, (name, value) in enumerate(tea_acs3_request.query):
        changed = dataclasses.replace(
            tea_acs3_request, query=with_pair(tea_acs3_request.query, index, tampered(value))
        )
        assert reject(changed).code == "SignatureDoesNotMatch", name


def test_acs3_changed_signed_header_is_rejected(tea_acs3_request: IncomingRequest) -> None:
    for name in ("x-acs-action", "x-acs-version", "x-acs-signature-nonce", "user-agent", "accept"):
        changed = with_headers(tea_acs3_request, **{name: tampered(tea_acs3_request.headers[name])})
        assert reject(changed).code == "SignatureDoesNotMatch", name
    later = format_timestamp(parse_timestamp(tea_acs3_request.headers["x-acs-date"]) + timedelta(seconds=1))
    assert reject(with_headers(tea_acs3_request, x_acs_date=later)).code == "SignatureDoesNotMatch"


def test_acs3_changed_body_is_rejected(tea_acs3_request: IncomingRequest) -> None:
    body = tea_acs3_request.body.replace(b"master", b"slave")
    assert body != tea_acs3_request.body
    changed = dataclasses.replace(tea_acs3_request, body=body)
    error = reject(changed)
    assert error.code == "SignatureDoesNotMatch"
    assert "x-acs-content-sha256" in error.message
    # A forger who also fixes the (signed) hash header still fails.
    rehashed = with_headers(changed, x_acs_content_sha256=hashlib.sha256(body).hexdigest())
    assert_masked_mismatch(reject(rehashed))


def test_acs3_changed_host_port_is_rejected(tea_acs3_request: IncomingRequest, server: int) -> None:
    other = with_headers(tea_acs3_request, host=f"127.0.0.1:{server + 1}")
    assert reject(other).code == "SignatureDoesNotMatch"
    no_port = with_headers(tea_acs3_request, host="127.0.0.1")
    assert reject(no_port).code == "SignatureDoesNotMatch"


def test_acs3_changed_method_or_path_is_rejected(tea_acs3_request: IncomingRequest) -> None:
    assert reject(dataclasses.replace(tea_acs3_request, method="GET")).code == "SignatureDoesNotMatch"
    assert reject(dataclasses.replace(tea_acs3_request, path="/x")).code == "SignatureDoesNotMatch"


def _with_authorization(req: IncomingRequest, old: str, new: str) -> IncomingRequest:
    authorization = req.headers["authorization"]
    assert old in authorization
    return with_headers(req, authorization=authorization.replace(old, new))


def test_acs3_unknown_algorithm(tea_acs3_request: IncomingRequest) -> None:
    changed = _with_authorization(tea_acs3_request, "ACS3-HMAC-SHA256", "ACS3-HMAC-SM3")
    assert reject(changed).code == "InvalidSignatureMethod"


def test_acs3_strict_signed_headers(tea_acs3_request: IncomingRequest) -> None:
    unsigned_host = _with_authorization(tea_acs3_request, "host;", "")
    error = reject(unsigned_host)
    assert (error.code, error.status) == ("IncompleteSignature", 400)
    assert '"host"' in error.message

    extra = with_headers(tea_acs3_request, x_acs_security_token="tok")
    error = reject(extra)
    assert error.code == "IncompleteSignature" and "x-acs-security-token" in error.message
    creds = read_credentials(extra)
    assert creds is not None
    verify(extra, creds, SECRET, strict=False)  # an unsigned header does not change the digest

    unsigned_type = _with_authorization(tea_acs3_request, "content-type;", "")
    assert reject(unsigned_type).code == "IncompleteSignature"


def test_acs3_signed_header_missing_from_request(tea_acs3_request: IncomingRequest) -> None:
    headers = {k: v for k, v in tea_acs3_request.headers.items() if k != "user-agent"}
    error = reject(dataclasses.replace(tea_acs3_request, headers=headers))
    assert error.code == "IncompleteSignature" and "user-agent" in error.message


@pytest.mark.parametrize("header", ["x-acs-date", "x-acs-signature-nonce"])
def test_acs3_missing_date_or_nonce(tea_acs3_request: IncomingRequest, header: str) -> None:
    headers = {k: v for k, v in tea_acs3_request.headers.items() if k != header}
    with pytest.raises(BadRequest) as info:
        read_credentials(dataclasses.replace(tea_acs3_request, headers=headers))
    assert info.value.code == "IncompleteSignature" and header in info.value.message


@pytest.mark.parametrize("field", ["Credential=", "SignedHeaders=", "Signature="])
def test_acs3_incomplete_authorization(tea_acs3_request: IncomingRequest, field: str) -> None:
    changed = _with_authorization(tea_acs3_request, field, "Other=")
    with pytest.raises(BadRequest) as info:
        read_credentials(changed)
    assert info.value.code == "IncompleteSignature"


def test_acs3_bad_date(tea_acs3_request: IncomingRequest) -> None:
    with pytest.raises(BadRequest) as info:
        read_credentials(with_headers(tea_acs3_request, x_acs_date="yesterday"))
    assert info.value.code == "InvalidTimeStamp.Format" and "x-acs-date" in info.value.message


# --------------------------------------------------------------------------- reading credentials, rpc-v1

NOW = datetime(2026, 11, 26, 16, 1, 24, tzinfo=UTC)
API = {"Action": "DescribeRegions", "Version": "2016-04-28", "Format": "JSON"}


def signed_request(overrides: dict[str, str | None] | None = None) -> IncomingRequest:
    """A POST signed with sign_rpc_v1, then altered: a value of None removes the parameter."""
    params = sign_rpc_v1("POST", API, AK, SECRET, nonce="n" * 32, timestamp=NOW)
    for name, value in (overrides or {}).items():
        if value is None:
            del params[name]
        else:
            params[name] = value
    return IncomingRequest("POST", "/", tuple(params.items()), (), {"host": "h"}, b"")


def test_unsigned_request_has_no_credentials() -> None:
    assert read_credentials(IncomingRequest("POST", "/", tuple(API.items()), (), {}, b"")) is None


@pytest.mark.parametrize(
    "name", ["AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"]
)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_v1_missing_piece(name: str, how: str) -> None:
    req = signed_request({name: None if how == "absent" else ""})
    with pytest.raises(BadRequest) as info:
        read_credentials(req)
    assert (info.value.code, info.value.status) == (f"MissingParameter.{name}", 400)


def test_v1_repeated_signature_parameter() -> None:
    req = signed_request()
    req = dataclasses.replace(req, form=(("Signature", "AAAA"),))
    with pytest.raises(BadRequest) as info:
        read_credentials(req)
    assert info.value.code == "IncompleteSignature"


def test_v1_unsupported_signature_version() -> None:
    with pytest.raises(BadRequest) as info:
        read_credentials(signed_request({"SignatureVersion": "2.0"}))
    assert info.value.code == "InvalidParameter.SignatureVersion"


@pytest.mark.parametrize("method", ["HMAC-SHA1", "HMAC-SHA256"])
@pytest.mark.parametrize("http_method", ["GET", "POST"])
def test_v1_sign_and_verify_round_trip(method: str, http_method: str) -> None:
    params = sign_rpc_v1(http_method, API, AK, SECRET, nonce="abc", timestamp=NOW, signature_method=method)  # type: ignore[arg-type]
    req = IncomingRequest(http_method, "/", tuple(params.items()), (), {}, b"")
    assert accept(req).signature_method == method
    other = "POST" if http_method == "GET" else "GET"
    assert reject(dataclasses.replace(req, method=other)).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("method", ["HMAC-MD5", "hmac-sha1", "ACS3-HMAC-SHA256"])
def test_v1_unknown_signature_method(method: str) -> None:
    error = reject(signed_request({"SignatureMethod": method}))
    assert (error.code, error.status) == ("InvalidSignatureMethod", 400)


def test_foreign_authorization_header() -> None:
    req = IncomingRequest("POST", "/", tuple(API.items()), (), {"authorization": "Bearer abc"}, b"")
    with pytest.raises(BadRequest) as info:
        read_credentials(req)
    assert info.value.code == "InvalidSignatureMethod"
    # Next to a v1 signature the header belongs to something else (a proxy) and is ignored.
    v1 = with_headers(signed_request(), authorization="Basic dXNlcjpwYXNz")
    assert accept(v1).scheme == "rpc-v1"


def test_verify_rejects_scheme_mismatch() -> None:
    req = signed_request()
    creds = read_credentials(req)
    assert creds is not None
    with pytest.raises(BadRequest) as info:
        verify(req, dataclasses.replace(creds, scheme="acs3"), SECRET)
    assert info.value.code == "IncompleteSignature"


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-02-23T12:46:24Z", datetime(2016, 2, 23, 12, 46, 24, tzinfo=UTC)),
        ("2016-02-23T12:46:24.000Z", datetime(2016, 2, 23, 12, 46, 24, tzinfo=UTC)),
        ("2016-02-23T12:46:24.5Z", datetime(2016, 2, 23, 12, 46, 24, 500000, tzinfo=UTC)),
        ("2016-02-23T12:46:24.123456789Z", datetime(2016, 2, 23, 12, 46, 24, 123456, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2016-02-23 12:46:24Z",
        "2016-02-23T12:46:24",
        "2016-02-23T12:46:24+08:00",
        "2016-13-23T12:46:24Z",
        "2016-02-30T12:46:24Z",
        "2016-02-23T12:46:24.Z",
        "1456231584",
        "２０１６-02-23T12:46:24Z",  # full-width digits
        "",
    ],
)
def test_malformed_timestamp(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        read_credentials(signed_request({"Timestamp": text or "x"}))
    assert (info.value.code, info.value.status) == ("InvalidTimeStamp.Format", 400)
    with pytest.raises(BadRequest):
        parse_timestamp(text)


@pytest.mark.parametrize("offset", [0, 900, -900, 899.5])
def test_timestamp_inside_window(offset: float) -> None:
    creds = read_credentials(signed_request())
    assert creds is not None
    check_timestamp(creds, NOW + timedelta(seconds=offset))


@pytest.mark.parametrize("offset", [901, -901, 86400])
def test_timestamp_outside_window(offset: int) -> None:
    creds = read_credentials(signed_request())
    assert creds is not None
    with pytest.raises(BadRequest) as info:
        check_timestamp(creds, NOW + timedelta(seconds=offset))
    assert (info.value.code, info.value.status) == ("InvalidTimeStamp.Expired", 400)


def test_timestamp_custom_window() -> None:
    creds = read_credentials(signed_request())
    assert creds is not None
    check_timestamp(creds, NOW + timedelta(seconds=60), max_skew_s=60)
    with pytest.raises(BadRequest):
        check_timestamp(creds, NOW + timedelta(seconds=61), max_skew_s=60)


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    from datetime import timezone

    east8 = timezone(timedelta(hours=8))
    assert format_timestamp(datetime(2026, 1, 2, 11, 4, 5, tzinfo=east8)) == "2026-01-02T03:04:05Z"


# --------------------------------------------------------------------------- masking


def test_mask_secrets() -> None:
    params = (
        ("Psk", "plain:secret"),
        ("AccessKeySecret", "ak"),
        ("AuthKey", "k"),
        ("TunnelOptionsSpecification.1.TunnelIkeConfig.Psk", TUNNEL_PSK),
        ("IkeConfig", '{"Psk": "a\\"b:c", "IkeVersion": "ikev2"}'),
        ("TunnelOptionsSpecification", '[{"TunnelIkeConfig":{"psk":"x","IkeMode":"main"}}]'),
        ("HealthCheckConfig", '{"enable":true,"Psk":12345}'),
        ("Name", "Psk is not a secret name here"),
        ("PskType", "visible"),
        ("Description", ""),
    )
    assert mask_secrets(params) == (
        ("Psk", MASK),
        ("AccessKeySecret", MASK),
        ("AuthKey", MASK),
        ("TunnelOptionsSpecification.1.TunnelIkeConfig.Psk", MASK),
        ("IkeConfig", '{"Psk": "******", "IkeVersion": "ikev2"}'),
        ("TunnelOptionsSpecification", '[{"TunnelIkeConfig":{"psk":"******","IkeMode":"main"}}]'),
        ("HealthCheckConfig", '{"enable":true,"Psk":"******"}'),
        ("Name", "Psk is not a secret name here"),
        ("PskType", "visible"),
        ("Description", ""),
    )
    for (_, before), (_, after) in zip(params, mask_secrets(params), strict=True):
        assert after.count(":") <= before.count(":")


def test_mismatch_message_masks_json_psk_but_verifies_unmasked() -> None:
    """The digest covers the real Psk; only the message shows the mask."""
    api = dict(API, IkeConfig=IKE_CONFIG, Psk=PSK)
    params = sign_rpc_v1("POST", api, AK, SECRET, nonce="n", timestamp=NOW)
    req = IncomingRequest("POST", "/", tuple(params.items()), (), {}, b"")
    accept(req)
    assert "TopSecretPsk" in string_to_sign(req)
    assert_masked_mismatch(reject(req, "wrong"))


# --------------------------------------------------------------------------- JSON bodies


def test_json_body_as_params() -> None:
    body = {
        "Name": "n 中",
        "EnableDpd": True,
        "DryRun": False,
        "OwnerId": 123,
        "Ratio": 1.5,
        "IkeConfig": {"Psk": "p", "IkeVersion": "ikev2", "LocalId": "中"},
        "Tags": [{"Key": "a", "Value": "b"}],
        "Nothing": None,
    }
    assert json_body_as_params(body) == (
        ("Name", "n 中"),
        ("EnableDpd", "true"),
        ("DryRun", "false"),
        ("OwnerId", "123"),
        ("Ratio", "1.5"),
        ("IkeConfig", '{"Psk":"p","IkeVersion":"ikev2","LocalId":"中"}'),
        ("Tags", '[{"Key":"a","Value":"b"}]'),
    )


def test_json_body_parameters_are_covered_by_v1_signature() -> None:
    body = {"VpnGatewayId": "vpn-1", "EnableDpd": True, "IkeConfig": {"Psk": PSK}}
    params = sign_rpc_v1(
        "POST", dict(API, **dict(json_body_as_params(body))), AK, SECRET, nonce="n", timestamp=NOW
    )
    auth = {k: v for k, v in params.items() if k not in dict(json_body_as_params(body))}
    raw = json.dumps(body).encode()

    def from_json(data: dict[str, object]) -> IncomingRequest:
        return IncomingRequest("POST", "/", tuple(auth.items()), json_body_as_params(data), {}, raw)

    accept(from_json(body))
    assert reject(from_json(dict(body, EnableDpd=False))).code == "SignatureDoesNotMatch"
    assert reject(from_json(dict(body, IkeConfig={"Psk": "other"}))).code == "SignatureDoesNotMatch"
    assert_masked_mismatch(reject(from_json(dict(body, Extra="1"))))
