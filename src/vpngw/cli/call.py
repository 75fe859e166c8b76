"""``vpngw call``: a signing command-line client, in the manner of the aliyun CLI.

The key pair comes from ``VPNGW_ACCESS_KEY_ID`` / ``VPNGW_ACCESS_KEY_SECRET``, else from a
credentials file (the JSON that ``vpngw account create`` prints). Parameters are sent in
a form body, signed with the RPC v1 scheme (HMAC-SHA1), to ``<endpoint>/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from vpngw.auth.signatures import sign_rpc_v1

DEFAULT_CREDENTIALS_FILE = Path(".vpngw/credentials.json")
USER_CREDENTIALS_FILE = Path.home() / ".vpngw" / "credentials.json"


class CallError(Exception):
    pass


def load_key_pair(path: str | None) -> tuple[str, str]:
    key_id, secret = os.environ.get("VPNGW_ACCESS_KEY_ID"), os.environ.get("VPNGW_ACCESS_KEY_SECRET")
    if key_id and secret and not path:
        return key_id, secret
    candidates = [Path(path)] if path else [DEFAULT_CREDENTIALS_FILE, USER_CREDENTIALS_FILE]
    for candidate in candidates:
        if candidate.exists():
            document = json.loads(candidate.read_text())
            return str(document["AccessKeyId"]), str(document["AccessKeySecret"])
    raise CallError(
        "no key pair: set VPNGW_ACCESS_KEY_ID and VPNGW_ACCESS_KEY_SECRET, or pass --credentials FILE "
        f"(looked in {', '.join(map(str, candidates))})"
    )


def parse_pairs(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CallError(f"parameters are Key=Value, not {item!r}")
        params[key] = value
    return params


def run_call(args: argparse.Namespace) -> int:
    try:
        key_id, secret = load_key_pair(args.credentials)
        params = {
            "Action": args.action,
            "Version": "2016-04-28",
            "Format": "JSON",
            **parse_pairs(args.params),
        }
    except CallError as error:
        print(f"vpngw call: {error}", file=sys.stderr)
        return 2
    if args.region and "RegionId" not in params:
        params["RegionId"] = args.region
    try:
        failed, body = post_signed(args.endpoint, key_id, secret, params)
    except CallError as error:
        print(f"vpngw call: {error}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
    except ValueError:
        print(body.decode(errors="replace"))
        return 1
    return 1 if failed else 0


def post_signed(endpoint: str, key_id: str, secret: str, params: dict[str, str]) -> tuple[bool, bytes]:
    """POST ``params`` signed with RPC v1 to ``endpoint``; (failed, body)."""
    signed = sign_rpc_v1(
        "POST",
        params,
        key_id,
        secret,
        nonce=uuid.uuid4().hex,
        timestamp=datetime.datetime.now(datetime.UTC),
    )
    if "://" not in endpoint:
        endpoint = "http://" + endpoint  # HOST:PORT, as serve prints it without the scheme
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/",
        data=urllib.parse.urlencode(signed, quote_via=urllib.parse.quote).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return False, bytes(response.read())
    except urllib.error.HTTPError as error:
        return True, bytes(error.read())
    except urllib.error.URLError as error:
        raise CallError(f"cannot reach {endpoint}: {error.reason}") from None


def call_action(
    endpoint: str, credentials: str | None, action: str, params: dict[str, str]
) -> dict[str, object]:
    """Call ``action`` and return its JSON response; CallError with the API's message if
    it fails."""
    key_id, secret = load_key_pair(credentials)
    failed, body = post_signed(
        endpoint, key_id, secret, {"Action": action, "Version": "2016-04-28", "Format": "JSON", **params}
    )
    try:
        document = json.loads(body)
    except ValueError:
        raise CallError(f"{action}: not a JSON response: {body[:200]!r}") from None
    if failed:
        raise CallError(f"{action}: {document.get('Code')}: {document.get('Message')}")
    return dict(document)
