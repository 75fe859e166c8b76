"""The Starlette application: a plain route list and one error path.

Every request is parsed by its dialect, authenticated (the signature names the account),
then dispatched. The access log line (``api.access_log``) carries the request id, client
address, AccessKeyId, action, status, error code and duration, never parameter values (they
can hold a Psk) nor the query string (it holds signatures).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vpngw import ids, metrics
from vpngw.actions.dispatch import dispatch, find_action
from vpngw.actions.registry import ACTIONS
from vpngw.api import access_log, dialects, render
from vpngw.api.dialects import ParsedRequest
from vpngw.auth.authenticator import CLAIM_ERRORS, Authenticator, Verified
from vpngw.config import Settings
from vpngw.console import routes as console_routes
from vpngw.errors import ApiError, InternalError, MethodNotAllowed, NotFound
from vpngw.store.direct import Where
from vpngw.store.engine import Database, WouldBlock, grouping, waiting_allowed, without_waiting
from vpngw.store.group_commit import GroupLost, Joined

log = logging.getLogger(__name__)


def _log_failure(request_id: str, error: BaseException | None) -> None:
    """A request's unexpected failure: its type and where it happened, never its message
    (an exception's text can hold a client's input, e.g. a database error's statement)."""
    frames = "".join(traceback.format_tb(error.__traceback__)) if error is not None else ""
    log.error("request %s failed: %s\n%s", request_id, type(error).__name__, frames.rstrip())


Parser = Callable[[Request], Awaitable[ParsedRequest]]

# A read whose nonce claim finds SQLite's write lock taken (the data plane's lease renewal
# or observations, another worker's write: a few milliseconds) tries again on the event
# loop every READ_CLAIM_POLL_S (about a millisecond: the loop's timers) for up to
# READ_CLAIM_WAIT_S, then goes to a worker thread that waits as before. A worker thread
# cost more than the wait (a hand-off, then SQLite's busy handler, whose sleeps are 1, 2,
# 5 ms...): docs/benchmarks.md, "the API's tail beside the data plane".
READ_CLAIM_POLL_S = 0.0005
READ_CLAIM_WAIT_S = 0.025


class _ReadDeferred(Exception):  # noqa: N818 - a condition, as WouldBlock
    """A read action on the event loop would have held it (WouldBlock from the action: a
    long index walk) after its request's nonce was claimed: the action alone runs again in
    a worker thread (claiming the nonce again would refuse the request as a replay)."""

    def __init__(self, account_id: str) -> None:
        super().__init__()
        self.account_id = account_id


class Api:
    """Binds the HTTP routes to one database, its authenticator and the settings."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        authenticator: Authenticator,
        on_change: Callable[[], None] | None,
        *,
        group_commits: bool = True,
    ) -> None:
        self.db = db
        # Off when other processes of this server write the same SQLite file (--workers N): a
        # group holds the write lock for a turn of the loop, which their writes then wait for
        # (docs/benchmarks.md, "the create path").
        self.group_commits = group_commits
        self.on_change = on_change
        self.settings = settings
        self.authenticator = authenticator
        # SQLite transactions take microseconds and no network: short ones run on the loop.
        self.inline = db.engine.dialect.name == "sqlite"

    def _authenticated_dispatch(
        self,
        parsed: ParsedRequest,
        client: str,
        request_id: str,
        host: str,
        verified: Verified | None = None,
    ) -> dict[str, Any]:
        """Authentication and the action, in one worker thread (one hand-off per request).
        ``verified``: the request's signature, when it was verified already (a read that
        tried its nonce claim on the loop first).

        A write action claims its SignatureNonce inside its own transaction; a read, or a
        write that fails (its transaction rolled back), claims it in one of its own, so a
        failed request can no more be replayed than a successful one."""
        if verified is None:
            verified = self.authenticator.verify(parsed.signed, client)
        action = ACTIONS.get(parsed.action)
        if action is None or not action.writes:
            self.authenticator.record_nonce(verified)
            try:
                return self._dispatch(parsed, verified.account_id, request_id, host, None)
            except WouldBlock:
                if waiting_allowed():
                    raise
                # The nonce is claimed: only the action runs again, in a worker thread.
                raise _ReadDeferred(verified.account_id) from None
        try:
            return self._dispatch(
                parsed,
                verified.account_id,
                request_id,
                host,
                lambda session: self.authenticator.claim_nonce(verified, session),
            )
        except ApiError as error:
            if error.code not in CLAIM_ERRORS:  # a replay, or a key changed meanwhile
                self.authenticator.record_nonce(verified)
            raise
        except WouldBlock:
            raise  # nothing was written: the request runs again in a worker thread
        except Exception:
            self.authenticator.record_nonce(verified)
            raise

    def _dispatch(
        self,
        parsed: ParsedRequest,
        account_id: str,
        request_id: str,
        host: str,
        first: Callable[[Where], None] | None,
    ) -> dict[str, Any]:
        return dispatch(
            self.db,
            self.settings,
            self.authenticator.sealer,
            parsed.action,
            parsed.params,
            account_id=account_id,
            request_id=request_id,
            host=host,
            first=first,
        )

    async def _run(self, parsed: ParsedRequest, client: str, request_id: str, host: str) -> dict[str, Any]:
        """Authentication and the action: on the event loop itself for a short action on SQLite
        when no transaction of it has to wait (a thread hand-off cost as much as the action),
        else, or when one would have to wait (WouldBlock: nothing was written), in a worker
        thread. A read whose nonce claim would wait tries again on the loop first, for a
        moment (READ_CLAIM_WAIT_S): the write lock it met is usually the data plane's, held
        for a few milliseconds."""
        action = ACTIONS.get(parsed.action)
        verified: Verified | None = None
        if self.inline and action is not None and action.inline:
            read = not action.writes
            loop = asyncio.get_running_loop()
            give_up_at: float | None = None
            while True:
                # The request's writes join the loop's commit group (vpngw.store.group_commit): it
                # answers, success or error, only once the commit that holds them is done.
                joined = Joined()
                try:
                    with without_waiting(), grouping(joined) if self.group_commits else nullcontext():
                        if read and verified is None:
                            verified = self.authenticator.verify(parsed.signed, client)
                        fields = self._authenticated_dispatch(parsed, client, request_id, host, verified)
                except _ReadDeferred as deferred:
                    if await self._committed(joined):
                        return await run_in_threadpool(
                            self._dispatch, parsed, deferred.account_id, request_id, host, None
                        )
                except WouldBlock:
                    # Nothing was written. A read meets this only at its nonce claim (after
                    # it, a WouldBlock is _ReadDeferred): the claim is all it tries again.
                    if read:
                        give_up_at = give_up_at if give_up_at is not None else loop.time() + READ_CLAIM_WAIT_S
                        if loop.time() < give_up_at:
                            await asyncio.sleep(READ_CLAIM_POLL_S)
                            continue
                except ApiError:
                    if await self._committed(joined):
                        raise
                else:
                    if await self._committed(joined):
                        return fields
                break
        return await run_in_threadpool(
            self._authenticated_dispatch, parsed, client, request_id, host, verified
        )

    @staticmethod
    async def _committed(joined: Joined) -> bool:
        """False if a group the request joined was lost (nothing of it stored): the request
        then runs again, alone, in a worker thread. A full disk raises StorageFull."""
        try:
            await joined.committed()
        except GroupLost:
            return False
        return True

    async def rpc(self, request: Request) -> Response:
        return await self._serve(request, dialects.rpc_request, apsara=False)

    async def apsara(self, request: Request) -> Response:
        async def parse(req: Request) -> ParsedRequest:
            return await dialects.apsara_request(req, req.path_params)

        return await self._serve(request, parse, apsara=True)

    async def _serve(self, request: Request, parse: Parser, *, apsara: bool) -> Response:
        request_id = ids.new_request_id()
        started = time.perf_counter()
        action = "-"
        parsed: ParsedRequest | None = None
        try:
            parsed = await parse(request)
            action = parsed.action
            fields = await self._run(
                parsed,
                access_log.client_address(request),
                request_id,
                request.headers.get("host", self.settings.host_id),
            )
            response = render.success(fields, request_id, apsara=apsara)
            code = "-"
            if self.on_change is not None and find_action(parsed.action).writes:
                self.on_change()  # the data plane's wake-up: no data, it reads the store
        except ApiError as error:
            response = render.failure(error, request_id, self.settings.host_id, apsara=apsara)
            code = error.code
        except Exception:
            # Never a traceback (nor a parameter value) to the client; the log keeps the type.
            _log_failure(request_id, sys.exc_info()[1])
            response = render.failure(InternalError(), request_id, self.settings.host_id, apsara=apsara)
            code = "InternalError"
        elapsed = time.perf_counter() - started
        metrics.observe_request(action, code, elapsed, ACTIONS)
        access_log.write(
            request,
            request_id=request_id,
            access_key_id=access_log.claimed_access_key_id(request, parsed.signed if parsed else None),
            action=action,
            status=response.status_code,
            code=code,
            seconds=elapsed,
        )
        return response


# Starlette's pattern for the spec's route ("{product}" and "{action}": one path segment each).
_APSARA_PATH = re.compile(r"^/apsara/route/(?P<product>[^/]+)/(?P<action>[^/]+)$")


class ApiFront:
    """The ASGI application: the two API routes go straight to :class:`Api`, everything else
    (the console's files, unknown paths and methods, lifespan) to the Starlette application.

    Starlette's middleware and router cost about as much as a no-op's own work (issue 18);
    the API routes use none of them: ``Api._serve`` answers every error itself (its JSON
    errors, request id, metrics, access log), so the same ``Request`` and ``Response`` without
    the stack around them answer the same. The routes and methods here are exactly those of
    the Starlette routes below (``GET`` brings ``HEAD``); a path or method they do not match
    gets Starlette's 404/405 answer as before."""

    def __init__(self, api: Api, fallback: Starlette) -> None:
        self.api = api
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path, method = scope["path"], scope["method"]
            if path == "/":
                if method in ("POST", "GET", "HEAD"):
                    response = await self.api.rpc(Request(scope, receive))
                    await response(scope, receive, send)
                    return
            elif method == "POST" and (match := _APSARA_PATH.match(path)) is not None:
                scope["path_params"] = match.groupdict()
                response = await self.api.apsara(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


@asynccontextmanager
async def _warm_worker_threads(_app: Starlette) -> AsyncIterator[None]:
    """Hand one no-op to a worker thread before the first request: the first hand-off of a
    process imports and sets up anyio's worker threads, 15-30 ms, which the first request
    that needs a thread (a write lock the data plane holds, a deep page) paid
    (docs/benchmarks.md, "the API's tail beside the data plane")."""
    await run_in_threadpool(_nothing)
    yield


def _nothing() -> None:
    return None


def build_app(
    db: Database,
    settings: Settings,
    authenticator: Authenticator,
    *,
    on_change: Callable[[], None] | None = None,
    group_commits: bool = True,
) -> ApiFront:
    """The application. ``on_change`` is called after every successful write action
    (the data plane's reconciler wakes up on it and reads the store). ``group_commits``:
    SQLite writes of the requests of one loop turn share a commit (vpngw.store.group_commit);
    off for a server of several worker processes."""
    api = Api(db, settings, authenticator, on_change, group_commits=group_commits)

    async def no_route(request: Request, exc: Exception) -> Response:
        """Unknown paths and methods get the same JSON error body as everything else."""
        error: ApiError
        if getattr(exc, "status_code", 404) == 405:
            error = MethodNotAllowed(
                "UnsupportedHTTPMethod", f"{request.method} is not allowed on {request.url.path}."
            )
        else:
            error = NotFound(
                "InvalidAction.NotFound", f"No API is served at {request.method} {request.url.path}."
            )
        request_id = ids.new_request_id()
        access_log.write(
            request,
            request_id=request_id,
            access_key_id=access_log.claimed_access_key_id(request, None),
            action="-",
            status=error.status,
            code=error.code,
            seconds=0.0,
        )
        return render.failure(
            error, request_id, settings.host_id, apsara=request.url.path.startswith("/apsara/")
        )

    # No /metrics here: it names every tenant's resources; it is served on the operator's
    # own listener (vpngw serve --metrics HOST:PORT, metrics.OperatorListener).
    routes = [
        Route("/", api.rpc, methods=["GET", "POST"]),
        Route("/apsara/route/{product}/{action}", api.apsara, methods=["POST"]),
        # The web console: static files only, a client of the signed API (docs/console.md).
        *console_routes(),
    ]
    app = Starlette(
        routes=routes, exception_handlers={404: no_route, 405: no_route}, lifespan=_warm_worker_threads
    )
    # Starlette would answer a path with (or without) a trailing slash by a redirect to an
    # absolute URL built from the client's Host header: never echo a client's Host.
    app.router.redirect_slashes = False
    return ApiFront(api, app)
