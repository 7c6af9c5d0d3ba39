"""Apps, rigs and measuring helpers for tests/test_faults_reliability.py.

The demo (``asgi_auth.demo``) is the app under test wherever it can be: these helpers
run it in-process (httpx's ``ASGITransport`` with its lifespan) or on a real uvicorn
server on 127.0.0.1, and time every answer. The Redis backends are not in the demo, so
:func:`redis_app` builds the smallest app that wires them as the README says.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Final

import httpx
import redis.asyncio as redis_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import AuthMiddleware, JWTVerifier, Key, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.authn.login import AuthenticatedUser, StoreAuthenticator, TokenEndpoint
from asgi_auth.authn.logout import LogoutEndpoint
from asgi_auth.authz import Authorizer, authenticated, guard, has_claim
from asgi_auth.principal import get_principal
from asgi_auth.store import RefreshTokens, Store, StoreAdmin, cached_rights
from asgi_auth.store.redis import RedisLoginThrottle, RedisRevocationList
from asgi_auth.store.throttle import LoginThrottle
from asgi_auth.types import ASGIApp
from tests.lifespan import lifespan

__all__ = [
    "HASHER",
    "KEY",
    "MARGIN",
    "PASSWORD",
    "CountingAuthenticator",
    "RedisApp",
    "answered",
    "bearer",
    "eventually",
    "login",
    "logout",
    "redis_app",
    "refresh",
    "running",
    "seed_user",
    "served",
    "sqlite_lock",
    "store_app",
    "timed",
]

KEY: Final = Key.from_secret("fault-reliability-tests-secret-of-32-bytes+")
#: Cheap argon2id parameters (the OWASP floor the hasher enforces): logins stay fast.
HASHER: Final = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
PASSWORD: Final = "correct horse battery staple"
#: What an answer may take beyond its configured bound: scheduling on a loaded
#: 2-CPU machine, argon2 and the like. A bound, not a performance target.
MARGIN: Final = 2.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The answer and the seconds it took."""
    started = time.monotonic()
    answer = await call
    return answer, time.monotonic() - started


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 15.0) -> float:
    """Poll ``check`` until it holds (bounded); the seconds it took.

    Raises:
        AssertionError: it did not hold within ``within`` seconds.
    """
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"no recovery within {within} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def answered(
    request: Callable[[], Awaitable[httpx.Response]], *, within: float = 15.0
) -> httpx.Response:
    """The first answer to ``request()`` that is not a 503, polling (bounded): for
    requests that a 503 leaves undone, so that repeating them is harmless.

    Raises:
        AssertionError: still 503 after ``within`` seconds.
    """
    started = time.monotonic()
    while (answer := await request()).status_code == 503:
        if time.monotonic() - started > within:
            raise AssertionError(f"still 503 after {within} s: {answer.text}")
        await asyncio.sleep(0.05)
    return answer


async def login(
    http: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    return await http.post("/token", data=form)


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": token})


async def logout(
    http: httpx.AsyncClient, access: str, refresh_token: str | None = None
) -> httpx.Response:
    form = {} if refresh_token is None else {"refresh_token": refresh_token}
    return await http.post("/logout", headers=bearer(access), data=form)


@contextlib.asynccontextmanager
async def running(app: ASGIApp, base_url: str = "http://demo") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an in-process httpx client."""
    async with lifespan(app, limit=20):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on uvicorn (lifespan on) in a thread on 127.0.0.1; its base URL.

    Waiting for startup and shutdown never blocks this event loop, which may be running
    the fault proxy the app talks to. Both are bounded.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, ws="none")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="faults uvicorn"
    )
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 20)
        sock.close()


@contextlib.contextmanager
def sqlite_lock(path: Path, mode: str) -> Iterator[None]:
    """Another process's view of the file: a stdlib connection holding ``BEGIN <mode>``
    (``EXCLUSIVE``: nobody reads or writes; ``IMMEDIATE``: others read, nobody writes).
    The store keeps its file in WAL mode, where readers pass an exclusive transaction:
    the holder takes the exclusive locking mode too, which shuts them out."""
    if mode not in ("EXCLUSIVE", "IMMEDIATE"):
        raise ValueError(mode)
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        if mode == "EXCLUSIVE":
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute(f"BEGIN {mode}")
        if mode == "EXCLUSIVE":  # the lock is taken at the first access
            holder.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()


class CountingAuthenticator:
    """Delegates to the store's authenticator, counting password checks; ``before`` runs
    first (a test uses it to take Redis away while a password is being checked)."""

    def __init__(self, inner: StoreAuthenticator) -> None:
        self.inner = inner
        self.calls = 0
        self.before: Callable[[], Awaitable[None]] | None = None

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser | None:
        self.calls += 1
        if self.before is not None:
            await self.before()
        return await self.inner.authenticate(username, password)


class RedisApp:
    """The parts of :func:`redis_app`, for the test to reach."""

    def __init__(
        self,
        app: ASGIApp,
        issuer: TokenIssuer,
        revocations: RedisRevocationList,
        authenticator: CountingAuthenticator,
    ) -> None:
        self.app = app
        self.issuer = issuer
        self.revocations = revocations
        self.authenticator = authenticator


@guard(authenticated)
async def _me(request: Request) -> JSONResponse:
    return JSONResponse({"subject": get_principal(request.scope).identity})


@guard(has_claim("can_read"))
async def _records(request: Request) -> JSONResponse:
    return JSONResponse({"records": []})


def redis_app(
    store: Store,
    client: redis_asyncio.Redis,
    prefix: str,
    *,
    per_user: int,
    sync_interval: float,
) -> RedisApp:
    """The token and logout endpoints with the Redis throttle and deny-list, the SQL
    store for users, refresh tokens and rights, and two routes: ``/me`` (the token
    decides) and ``/records`` (claim ``can_read`` from the store)."""
    issuer = TokenIssuer(KEY)
    revocations = RedisRevocationList(client, prefix=prefix + "rev:", sync_interval=sync_interval)
    verifier = JWTVerifier(KEY, revocations=revocations)
    authenticator = CountingAuthenticator(StoreAuthenticator(store, HASHER))
    tokens = RefreshTokens(store)
    throttle = RedisLoginThrottle(client, per_user=per_user, prefix=prefix + "login:")
    routes = [
        Route("/token", TokenEndpoint(issuer, authenticator, refresh=tokens, throttle=throttle)),
        Route("/logout", LogoutEndpoint(verifier, revocations, refresh=tokens)),
        Route("/me", _me),
        Route("/records", _records),
    ]
    app = AuthMiddleware(
        Starlette(routes=routes),
        verifier=verifier,
        authorizer=Authorizer(cached_rights(store, ttl=0)),
    )
    return RedisApp(app, issuer, revocations, authenticator)


def store_app(store: Store) -> ASGIApp:
    """The token endpoint (password and refresh grants, the store's throttle) on the SQL
    store alone, as the demo wires it, with ``/me`` (the token decides) and ``/records``
    (claim ``can_read`` from the store)."""
    issuer = TokenIssuer(KEY)
    authenticator = StoreAuthenticator(store, HASHER)
    endpoint = TokenEndpoint(
        issuer, authenticator, refresh=RefreshTokens(store), throttle=LoginThrottle(store)
    )
    routes = [
        Route("/token", endpoint),
        Route("/me", _me),
        Route("/records", _records),
    ]
    return AuthMiddleware(
        Starlette(routes=routes),
        verifier=JWTVerifier(KEY),
        authorizer=Authorizer(cached_rights(store, ttl=0)),
    )


async def seed_user(store: Store, username: str = "alice") -> int:
    """A user with the claim ``can_read`` and :data:`PASSWORD`."""
    admin = StoreAdmin(store)
    await admin.create_claim("can_read")
    return await admin.create_user(
        username, claims=("can_read",), password_hash=await HASHER.hash(PASSWORD)
    )
