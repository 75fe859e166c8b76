"""The Starlette application: a plain route list and one error path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vpngw import ids
from vpngw.actions.dispatch import dispatch
from vpngw.api import dialects, render
from vpngw.config import Settings
from vpngw.errors import ApiError, InternalError, NotFound
from vpngw.store.engine import Database

log = logging.getLogger(__name__)

Parser = Callable[[Request], Awaitable[tuple[str, dict[str, str]]]]


class Api:
    """Binds the HTTP routes to one database and one set of settings."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def rpc(self, request: Request) -> Response:
        return await self._serve(request, dialects.rpc_request, apsara=False)

    async def apsara(self, request: Request) -> Response:
        async def parse(req: Request) -> tuple[str, dict[str, str]]:
            return await dialects.apsara_request(req, req.path_params)

        return await self._serve(request, parse, apsara=True)

    async def _serve(self, request: Request, parse: Parser, *, apsara: bool) -> Response:
        request_id = ids.new_request_id()
        try:
            action, params = await parse(request)
            fields = await run_in_threadpool(
                dispatch,
                self.db,
                self.settings,
                action,
                params,
                account_id=self.settings.default_account_id,
                request_id=request_id,
                host=request.headers.get("host", self.settings.host_id),
            )
        except ApiError as error:
            return render.failure(error, request_id, self.settings.host_id, apsara=apsara)
        except Exception:
            # Never a traceback (nor a parameter value) to the client; the log keeps the type.
            log.exception("request %s failed", request_id)
            return render.failure(InternalError(), request_id, self.settings.host_id, apsara=apsara)
        return render.success(fields, request_id, apsara=apsara)


class MethodNotAllowed(ApiError):
    status = 405


async def no_route(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods get the same JSON error body as everything else."""
    status = getattr(exc, "status_code", 404)
    error: ApiError
    if status == 405:
        error = MethodNotAllowed("UnsupportedHTTPMethod", f"{request.method} is not allowed on {request.url.path}.")
    else:
        error = NotFound("InvalidAction.NotFound", f"No API is served at {request.method} {request.url.path}.")
    return render.failure(error, ids.new_request_id(), "vpngw", apsara=request.url.path.startswith("/apsara/"))


def build_app(db: Database, settings: Settings) -> Starlette:
    api = Api(db, settings)
    routes = [
        Route("/", api.rpc, methods=["GET", "POST"]),
        Route("/apsara/route/{product}/{action}", api.apsara, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: no_route, 405: no_route})
