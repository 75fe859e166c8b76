"""The web console: static files served at ``/console/`` by ``vpngw serve``.

The console is one more client of the signed API: the browser signs every call itself
(ACS3-HMAC-SHA256 with WebCrypto, ``static/js/signer.js``) and the server adds no route
but these files. Every response carries a strict Content-Security-Policy: scripts,
styles and connections from this origin only, no inline script or style, no framing.
docs/console.md describes the pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """The static files, each response with the security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


async def _to_console(_request: Any) -> Response:
    # A relative Location: never an absolute URL built from the client's Host header.
    return RedirectResponse("/console/", status_code=308, headers=SECURITY_HEADERS)


async def _index(_request: Any) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


def routes() -> list[BaseRoute]:
    """``/console`` (redirected), ``/console/`` (the page) and ``/console/<file>``.

    The files are served without ``html=True``: a folder is a 404, never one of
    StaticFiles' redirects to an absolute URL made from the Host header.
    """
    return [
        Route("/console", _to_console, methods=["GET", "HEAD"]),
        Route("/console/", _index, methods=["GET", "HEAD"]),
        Mount("/console", app=ConsoleFiles(directory=STATIC_DIR), name="console"),
    ]
