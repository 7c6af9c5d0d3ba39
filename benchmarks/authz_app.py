"""The ASGI app that ``python -m benchmarks.authz`` serves under uvicorn.

Configured by environment variables (read on the first ASGI event, the lifespan
startup), so that ``python -m uvicorn benchmarks.authz_app:app`` needs no flags:

- ``ASGI_AUTH_BENCH_DATABASE_URL``: the roles/claims store (schema and users made
  by the benchmark beforehand);
- ``ASGI_AUTH_BENCH_SECRET``: the HS256 secret the benchmark signs its tokens with.

Routes, all ``GET``, all answering the same small JSON ``{"ok": true}``:

- ``/open``: behind :class:`~asgi_auth.AuthMiddleware` (the token is verified), no
  guard: the baseline;
- ``/cached``: ``@guard(has_role("admin"))`` with rights from a
  :class:`~asgi_auth.authz.CachedRights` (TTL :data:`CACHE_TTL`) over
  :class:`~asgi_auth.store.SQLRightsLoader`: after the first request, a cache hit;
- ``/db``: the same guard with rights from the bare ``SQLRightsLoader`` on every
  request. (Not ``CachedRights(ttl=0)``: that one still shares one query among
  concurrent requests for the same subject, so it would not show the cost of one
  query per request.)
- ``/_stats`` (answered before the middleware, never counted): the counters below as
  JSON.

Counters: requests and response statuses per path, requests in flight, calls of
each route's loader (a counting wrapper around ``SQLRightsLoader``), and queries
sent through the store's ``databases.Database`` (its query methods wrapped on the
instance). Both stores' loaders share one ``Store``; the benchmark runs one route at
a time, so a run's deltas belong to that route.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_auth.authz import Authorizer, CachedRights, Rights, RightsLoader, guard, has_role
from asgi_auth.middleware import AuthMiddleware
from asgi_auth.store import SQLRightsLoader, Store
from asgi_auth.tokens import JWTVerifier, Key
from asgi_auth.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "AUDIENCE",
    "CACHE_TTL",
    "ENV_DATABASE_URL",
    "ENV_SECRET",
    "ISSUER",
    "ROUTES",
    "STATS_PATH",
    "CountingLoader",
    "Dispatch",
    "Stats",
    "app",
    "build_app",
]

ENV_DATABASE_URL: Final = "ASGI_AUTH_BENCH_DATABASE_URL"
ENV_SECRET: Final = "ASGI_AUTH_BENCH_SECRET"
ISSUER: Final = "https://auth.example.com"
AUDIENCE: Final = "bench-api"
REALM: Final = "bench"
#: Long enough that no entry expires during a run: every request after the first is a hit.
CACHE_TTL: Final = 3600.0
#: The benchmarked routes, in table order.
ROUTES: Final = ("/open", "/cached", "/db")
STATS_PATH: Final = "/_stats"
_QUERY_METHODS: Final = ("fetch_all", "fetch_one", "fetch_val", "execute", "execute_many")


class CountingLoader:
    """A :class:`~asgi_auth.authz.RightsLoader` that counts the calls it passes on."""

    def __init__(self, loader: RightsLoader) -> None:
        self.loader = loader
        self.calls = 0

    async def load(self, subject: str) -> Rights:
        self.calls += 1
        return await self.loader.load(subject)


class Stats:
    """What ``/_stats`` reports."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.statuses: dict[str, Counter[int]] = {}
        self.in_flight = 0
        self.queries = 0
        self.loaders: dict[str, CountingLoader] = {}

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": {
                path: {str(status): n for status, n in counts.items()}
                for path, counts in self.statuses.items()
            },
            "in_flight": self.in_flight,
            "queries": self.queries,
            "loads": {route: loader.calls for route, loader in self.loaders.items()},
        }


def count_queries(database: Any, stats: Stats) -> None:
    """Count every query sent through ``database`` (a ``databases.Database``)."""

    def counted(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            stats.queries += 1
            return await method(*args, **kwargs)

        return call

    for name in _QUERY_METHODS:
        setattr(database, name, counted(getattr(database, name)))


async def _send_json(send: Send, document: object, status: int = 200) -> None:
    body = json.dumps(document).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Instrumented:
    """Counts requests and statuses per path, and answers ``/_stats`` itself."""

    def __init__(self, app: ASGIApp, stats: Stats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        stats = self.stats
        if path == STATS_PATH:
            await _send_json(send, stats.snapshot())
            return
        statuses = stats.statuses.setdefault(path, Counter())

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1
            await send(message)

        stats.requests[path] += 1
        stats.in_flight += 1
        try:
            await self.app(scope, receive, counting_send)
        finally:
            stats.in_flight -= 1


class Dispatch:
    """Routes ``http`` requests by exact path to one app each (404 otherwise); every
    other scope (the lifespan) goes to ``lifespan``."""

    def __init__(self, routes: dict[str, ASGIApp], *, lifespan: ASGIApp) -> None:
        self.routes = routes
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.lifespan(scope, receive, send)
            return
        app = self.routes.get(scope["path"])
        if app is None:
            await _send_json(send, {"error": "not_found"}, 404)
            return
        await app(scope, receive, send)


def build_app(database_url: str, secret: str) -> ASGIApp:
    """The benchmark app over the store at ``database_url``, verifying HS256 tokens
    signed with ``secret`` (issuer :data:`ISSUER`, audience :data:`AUDIENCE`)."""
    store = Store(database_url)
    stats = Stats()
    count_queries(store.database, stats)
    cached_loader = CountingLoader(SQLRightsLoader(store))
    cache = CachedRights(cached_loader, ttl=CACHE_TTL)
    store.on_change(cache.invalidate)  # as cached_rights() does
    db_loader = CountingLoader(SQLRightsLoader(store))
    stats.loaders = {"/cached": cached_loader, "/db": db_loader}
    cached_authorizer = Authorizer(cache, realm=REALM)
    db_authorizer = Authorizer(db_loader, realm=REALM)
    admin = has_role("admin")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.connect()
        try:
            yield
        finally:
            await store.disconnect()

    async def open_(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @guard(admin, authorizer=cached_authorizer)
    async def cached(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @guard(admin, authorizer=db_authorizer)
    async def db(request: Request) -> Response:
        return JSONResponse({"ok": True})

    # One single-route Starlette app per path, chosen by an exact-path lookup: in one
    # router, /cached and /db would pay for matching the routes listed before them.
    endpoints = {"/open": open_, "/cached": cached, "/db": db}
    starlette = Dispatch(
        {path: Starlette(routes=[Route(path, endpoint)]) for path, endpoint in endpoints.items()},
        lifespan=Starlette(lifespan=lifespan),
    )
    verifier = JWTVerifier(
        Key.from_secret(secret), algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE
    )
    protected = AuthMiddleware(
        starlette, verifier=verifier, realm=REALM, authorizer=cached_authorizer
    )
    return Instrumented(protected, stats)


_built: ASGIApp | None = None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app uvicorn serves, built from the environment on first use.

    Raises:
        KeyError: ``ASGI_AUTH_BENCH_DATABASE_URL`` or ``ASGI_AUTH_BENCH_SECRET`` is unset.
    """
    global _built
    if _built is None:
        _built = build_app(os.environ[ENV_DATABASE_URL], os.environ[ENV_SECRET])
    await _built(scope, receive, send)
