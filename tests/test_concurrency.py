"""Concurrency: the races that matter, on real stores (SQLite and PostgreSQL), Redis, and
over real HTTP (uvicorn on 127.0.0.1).

What other modules prove already, and is not repeated here:

- ``tests/test_refresh.py::test_one_refresh_token_used_concurrently_wins_exactly_once``:
  8 concurrent refreshes in-process (``httpx.ASGITransport``), status codes only;
  ``test_a_reused_refresh_token_revokes_its_whole_family``: the sequential replay.
- ``tests/test_store_loader.py``: ``CachedRights`` on its own: the TTL with a manual clock
  (``test_an_expired_entry_is_reloaded``), admin changes invalidating at once, an
  invalidation during one load keeping its stale answer out, concurrent loads sharing
  one query.
- ``tests/test_store_feed.py``: a change through instance A reaching B's cache through
  ``NOTIFY``, one load at a time, no traffic.
- ``tests/test_oidc.py::test_rotation_many_concurrent_new_kid_requests_cause_one_fetch``:
  50 concurrent ``verify()`` calls against an in-process fake provider;
  ``tests/test_oidc_e2e.py::test_demo_accepts_a_rotated_key_after_one_refresh``: 8
  new-key requests (and 8 old) through the demo.
- ``tests/test_login.py::test_many_concurrent_logins_of_one_user_all_succeed``: 12
  concurrent logins in-process, status codes only; ``tests/test_throttle.py`` and
  ``tests/test_redis_backends.py``: throttle counting, one attempt at a time.

Added here:

1. Refresh-token races: 30 concurrent refreshes of one token through the token endpoint
   over real HTTP, and 40 concurrent ``RefreshTokens.rotate`` calls spread over four store
   instances (separate connection pools, so the database really runs them in parallel)
   mixed with 10 rotations of other families, on SQLite and PostgreSQL: exactly one winner
   with a new pair, every other a 400 ``invalid_grant`` (``InvalidCredentials``), the
   losers count as replays so the family is revoked and the winner's new refresh token
   is refused too, exactly one successor row is written, and other families are untouched.
2. A role revoked while cached, through guards and ``AuthMiddleware`` under concurrent
   traffic: without invalidation it is honoured until exactly the TTL (manual clock) and
   no longer; with invalidation (``StoreAdmin`` on the same instance, or another instance
   through ``PostgresChangeFeed``) no request that starts after the invalidation is
   allowed, even while loads that read the old rights are held in flight across the
   revocation (their stale answers go to the requests that started before, and are
   never cached).
3. A key rotation at an ``IdentityProvider`` served over HTTP while 60 requests with
   tokens of the new key (plus 20 of the old key and 20 with unknown ``kid`` values) hit
   an app served over HTTP: exactly one discovery and one JWKS request, every valid token
   200, the unknown ones 401, no 5xx.
4. Logins of one user, 20 at once over HTTP, on the SQL throttle (SQLite, PostgreSQL) and
   the Redis one: within the limit all 200 with distinct access tokens, sessions and
   refresh tokens, failure counts untouched by the successes (except the username's,
   which a success clears, as documented); past the limit 429s with ``Retry-After``,
   never a 5xx; 20 concurrent wrong passwords counted exactly, the throttle then kicking
   in at the configured count; a burst of 20 guesses with a limit of 5 gets exactly 5
   password checks.

These tests found four bugs, fixed since: refresh rotations and logins from two store
instances on one SQLite file got 503s, and so did concurrent correct logins with the SQL
throttle on one instance (SQLite transactions now begin IMMEDIATE, in WAL mode); concurrent
successes left phantom failures on the address on PostgreSQL (a success now uncounts
exactly the rows its attempt added); the Redis throttle lost admitted failures when a
burst was refused (a refused attempt now removes only its own entry).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import pytest
import redis
import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_auth import AuthMiddleware, InvalidCredentials, JWTVerifier, Key, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.authn.login import StoreAuthenticator, Throttle, TokenEndpoint
from asgi_auth.authz import Authorizer, CachedRights, Rights, guard, has_role
from asgi_auth.store import PostgresChangeFeed, SQLRightsLoader, Store, StoreAdmin
from asgi_auth.store.redis import RedisLoginThrottle
from asgi_auth.store.refresh import RefreshTokens, Rotation
from asgi_auth.store.throttle import LoginThrottle
from asgi_auth.testing import IdentityProvider
from asgi_auth.tokens.oidc import OIDCVerifier
from asgi_auth.types import ASGIApp, Receive, Scope, Send
from tests.conftest import service_missing
from tests.live import serve

KEY: Final = Key.from_secret("concurrency-tests-secret-that-is-32-bytes")
VERIFIER: Final = JWTVerifier(KEY)
HASHER: Final = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
PASSWORD: Final = "correct horse battery staple"
REDIS_URL: Final = os.environ.get("ASGI_AUTH_TEST_REDIS", "redis://127.0.0.1:6379/0")
INVALID_GRANT: Final = {
    "error": "invalid_grant",
    "error_description": "The credentials or the refresh token are not valid.",
}
AUDIENCE: Final = "https://api.concurrency.test"
# Everything a test awaits is bounded: a hang fails the test instead of the run.
LIMIT: Final = 60.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ManualClock:
    """A clock the test moves by hand (read from any thread)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- serving an app over real HTTP, with its resources opened in the server's own loop ---------


class Hosted:
    """An ASGI app whose lifespan opens ``setup()`` (stores, clients…) in the server's event
    loop and serves the app it yields; closed at shutdown."""

    def __init__(self, setup: Callable[[], AbstractAsyncContextManager[ASGIApp]]) -> None:
        self._setup = setup
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self._app is not None, "served before startup"
        await self._app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with contextlib.AsyncExitStack() as stack:
            message = await receive()
            assert message["type"] == "lifespan.startup"
            try:
                self._app = await stack.enter_async_context(self._setup())
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})


def served(app: ASGIApp) -> contextlib.AbstractContextManager[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread, its lifespan on; the base URL.
    Startup and shutdown are bounded; the server stops when the block ends."""
    return serve(
        app,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def http_client(base_url: str) -> httpx.AsyncClient:
    """A client that opens as many connections as the test sends requests at once."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )


# -- stores, users and the token endpoint -----------------------------------------------------


async def _reset_postgres(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


async def seed(url: str, *, role: str | None = None) -> str:
    """The schema and user alice (with a password, and ``role`` if given); her subject."""
    async with Store(url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        if role is not None:
            await admin.create_role(role)
        user_id = await admin.create_user(
            "alice", password_hash=await HASHER.hash(PASSWORD), role=role
        )
    return str(user_id)


@dataclass(frozen=True)
class Backend:
    """Where failed logins are counted: ``kind`` "sql" (the store at ``url``) or "redis"
    (under ``prefix``); the users are in the store at ``url`` either way."""

    name: str
    url: str
    kind: str
    prefix: str = ""

    @contextlib.asynccontextmanager
    async def throttle(
        self, store: Store, *, per_user: int, per_address: int = 50
    ) -> AsyncIterator[Throttle]:
        """A throttle of this backend, opened in the running event loop."""
        if self.kind == "sql":
            yield LoginThrottle(store, per_user=per_user, per_address=per_address)
            return
        client = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
        try:
            yield RedisLoginThrottle(
                client, prefix=self.prefix, per_user=per_user, per_address=per_address
            )
        finally:
            await client.aclose()

    async def failures(self, key: str) -> int:
        """Failed logins counted under ``key`` (``user:alice``, ``addr:127.0.0.1``)."""
        if self.kind == "sql":
            async with Store(self.url) as store:
                found = await store.database.fetch_val(
                    "SELECT COUNT(*) FROM login_failures WHERE key = :key", {"key": key}
                )
            return int(found)
        client = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            return int(await client.zcard(self.prefix + key))
        finally:
            await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The SQL throttle on SQLite and on PostgreSQL, and the Redis throttle."""
    sqlite_url = f"sqlite:///{tmp_path / 'auth.db'}"
    if request.param == "sqlite":
        yield Backend("sqlite", sqlite_url, "sql")
        return
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        asyncio.run(_reset_postgres(url))
        yield Backend("postgresql", url, "sql")
        return
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (OSError, RedisError) as exc:
        client.close()
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"asgi_auth_test:{secrets.token_hex(6)}:"
    try:
        yield Backend("redis", sqlite_url, "redis", prefix)
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@contextlib.asynccontextmanager
async def token_service(
    url: str, *, backend: Backend | None = None, per_user: int = 5, per_address: int = 50
) -> AsyncIterator[ASGIApp]:
    """The token endpoint with refresh tokens (and a throttle of ``backend``) on its own
    store instance, opened in the serving loop."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(url))
        authenticator = StoreAuthenticator(store, HASHER)
        refresh = RefreshTokens(store, is_active=authenticator.is_active)
        throttle = None
        if backend is not None:
            throttle = await stack.enter_async_context(
                backend.throttle(store, per_user=per_user, per_address=per_address)
            )
        yield TokenEndpoint(TokenIssuer(KEY), authenticator, refresh=refresh, throttle=throttle)


async def login(http: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    form = {"grant_type": "password", "username": "alice", "password": password}
    return await http.post("/token", data=form)


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": token})


# == 1. one refresh token, used concurrently ====================================================


async def family_rows(url: str, family: str) -> list[tuple[bool, bool]]:
    """(used, revoked) of each refresh token of ``family``, in order of issue."""
    async with Store(url) as store:
        rows = await store.database.fetch_all(
            "SELECT used, revoked FROM refresh_tokens WHERE family = :family ORDER BY id",
            {"family": family},
        )
    return [(bool(row["used"]), bool(row["revoked"])) for row in rows]


async def test_one_refresh_token_used_30_times_at_once_over_http(store_url: str) -> None:
    await seed(store_url)
    with served(Hosted(lambda: token_service(store_url))) as base:
        async with http_client(base) as http, asyncio.timeout(LIMIT):
            first = await login(http)
            assert first.status_code == 200
            presented = first.json()["refresh_token"]
            family = VERIFIER.verify_sync(first.json()["access_token"]).claims["sid"]

            answers = await asyncio.gather(*(refresh(http, presented) for _ in range(30)))

            statuses = collections.Counter(a.status_code for a in answers)
            assert statuses == {200: 1, 400: 29}, statuses
            [won] = [a for a in answers if a.status_code == 200]
            assert all(a.json() == INVALID_GRANT for a in answers if a is not won)
            assert all(a.headers["cache-control"] == "no-store" for a in answers)
            pair = won.json()
            assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
            principal = VERIFIER.verify_sync(pair["access_token"])
            assert (principal.subject, principal.claims["sid"]) == ("1", family)
            assert pair["refresh_token"] != presented
            # The 29 losers presented a token already used: replays, so the family is
            # revoked, and the winner's brand-new refresh token is refused as well.
            again = await refresh(http, pair["refresh_token"])
            assert (again.status_code, again.json()) == (400, INVALID_GRANT)
    # One successor only (no second winner wrote one), and the whole family revoked.
    assert await family_rows(store_url, family) == [(True, True), (False, True)]


REUSED_OR_REVOKED: Final = ("refresh token reused", "refresh token of a revoked family")


async def test_rotate_races_across_four_store_instances(store_url: str) -> None:
    """40 rotations of one token (and 10 of other families) at once. On PostgreSQL they
    come from four store instances, each with its own pool: real parallel transactions
    in the database. (An SQLite store serializes its own writes; several instances on one
    SQLite file are the two tests below.)"""
    instances = 4 if store_url.startswith("postgresql") else 1
    async with contextlib.AsyncExitStack() as stack, asyncio.timeout(LIMIT):
        stores = [await stack.enter_async_context(Store(store_url)) for _ in range(instances)]
        await stores[0].init_schema()
        tokens = [RefreshTokens(store) for store in stores]
        contested = await tokens[0].start("7")
        others = [await tokens[0].start(f"other-{n}") for n in range(10)]
        calls: list[Awaitable[Rotation]] = []
        for n in range(40):
            calls.append(tokens[n % instances].rotate(contested.token))
            if n % 4 == 3:  # the other families' rotations interleaved with the race
                calls.append(tokens[n % instances].rotate(others[n // 4].token))

        results = await asyncio.gather(*calls, return_exceptions=True)

        # Every fifth call is another family's rotation.
        mine = [r for i, r in enumerate(results) if i % 5 != 4]
        theirs = [r for i, r in enumerate(results) if i % 5 == 4]
        assert (len(mine), len(theirs)) == (40, 10)
        winners = [r for r in mine if isinstance(r, Rotation)]
        assert len(winners) == 1, winners
        refused = [r for r in mine if not isinstance(r, Rotation)]
        assert all(isinstance(r, InvalidCredentials) for r in refused), refused
        reasons = collections.Counter(
            str(r).split(":")[0] if isinstance(r, InvalidCredentials) else "?" for r in refused
        )
        assert set(reasons) <= set(REUSED_OR_REVOKED), reasons
        assert reasons["refresh token reused"] >= 1  # at least one loser revoked the family
        [winner] = winners
        assert (winner.subject, winner.family) == ("7", contested.family)
        assert winner.token != contested.token
        # Every other family rotated, once each, untouched by the race next to it.
        assert all(isinstance(r, Rotation) for r in theirs), theirs
        assert [(r.subject, r.family) for r in theirs if isinstance(r, Rotation)] == [
            (f"other-{n}", others[n].family) for n in range(10)
        ]
        # Reuse detection holds afterwards: the winner's successor is refused on any instance.
        with pytest.raises(InvalidCredentials, match="revoked family"):
            await tokens[-1].rotate(winner.token)
        for rotation in theirs:
            assert isinstance(rotation, Rotation)
            assert (await tokens[-1].rotate(rotation.token)).family == rotation.family
    assert await family_rows(store_url, contested.family) == [(True, True), (False, True)]


async def test_two_sqlite_instances_rotate_different_families_at_once(sqlite_url: str) -> None:
    """Two workers on one SQLite file, ten users refreshing at once (five per worker):
    no two of them share anything but the file, and each must get its new token."""
    async with Store(sqlite_url) as one, Store(sqlite_url) as two, asyncio.timeout(LIMIT):
        await one.init_schema()
        tokens = [RefreshTokens(one), RefreshTokens(two)]
        families = [await tokens[0].start(f"user-{n}") for n in range(10)]
        results = await asyncio.gather(
            *(tokens[n % 2].rotate(f.token) for n, f in enumerate(families)),
            return_exceptions=True,
        )
    assert [type(r).__name__ for r in results] == ["Rotation"] * 10, results


async def test_two_sqlite_instances_race_one_refresh_token_through_the_endpoint(
    sqlite_url: str,
) -> None:
    """The refresh race of the first test, with two token endpoints (two store instances)
    on one SQLite file: still exactly one winner, and the losers are 400s, not 503s."""
    await seed(sqlite_url)
    async with contextlib.AsyncExitStack() as stack, asyncio.timeout(LIMIT):
        clients = []
        for _ in range(2):
            app = await stack.enter_async_context(token_service(sqlite_url))
            clients.append(await stack.enter_async_context(in_process(app)))
        first = await login(clients[0])
        presented = first.json()["refresh_token"]
        answers = await asyncio.gather(*(refresh(clients[n % 2], presented) for n in range(20)))
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 400: 19}, statuses


# == 2. a role revoked while cached =============================================================


class GatedLoader:
    """The SQL loader, counting loads; while ``gate`` is set, a load that has read its rows
    waits for the gate before answering: an answer in flight while the store changes."""

    def __init__(self, inner: SQLRightsLoader) -> None:
        self.inner = inner
        self.calls = 0
        self.delay = 0.0
        self.gate: asyncio.Event | None = None
        self.held = 0

    async def load(self, subject: str) -> Rights:
        self.calls += 1
        gate = self.gate
        rights = await self.inner.load(subject)
        if gate is not None:
            self.held += 1
            await gate.wait()
        elif self.delay:
            await asyncio.sleep(self.delay)
        return rights


def admin_app(cache: CachedRights) -> ASGIApp:
    @guard(has_role("admin"))
    async def admin(request: Request) -> Response:
        return JSONResponse({"admin": request.user.identity})

    return AuthMiddleware(
        Starlette(routes=[Route("/admin", admin)]),
        verifier=VERIFIER,
        authorizer=Authorizer(cache),
    )


def in_process(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def statuses_of(http: httpx.AsyncClient, token: str, n: int) -> list[int]:
    answers = await asyncio.gather(*(http.get("/admin", headers=bearer(token)) for _ in range(n)))
    return [a.status_code for a in answers]


async def test_without_invalidation_a_revoked_role_lasts_exactly_the_ttl(store_url: str) -> None:
    """A revocation made through another instance, with nothing to tell this one (SQLite
    has no change feed; on PostgreSQL none runs here): the TTL alone bounds staleness."""
    alice = await seed(store_url, role="admin")
    clock = ManualClock(1000.0)
    async with Store(store_url) as here, Store(store_url) as elsewhere, asyncio.timeout(LIMIT):
        loader = GatedLoader(SQLRightsLoader(here))
        cache = CachedRights(loader, ttl=30, clock=clock)
        here.on_change(cache.invalidate)
        token = TokenIssuer(KEY).issue(alice)
        async with in_process(admin_app(cache)) as http:
            assert await statuses_of(http, token, 20) == [200] * 20
            assert loader.calls == 1  # 20 concurrent misses shared one query

            await StoreAdmin(elsewhere).set_role("alice", None)

            clock.now = 1029.999  # stale but within the TTL: still honoured, from the cache
            assert await statuses_of(http, token, 20) == [200] * 20
            assert loader.calls == 1
            clock.now = 1030.0  # the TTL is up: refused at once, by every request
            assert await statuses_of(http, token, 20) == [403] * 20
            assert loader.calls == 2  # one shared reload for the 20


@dataclass
class Traffic:
    """Requests to /admin, each logged with the phase it *started* in: "before" the
    revocation began, "during" it, or "after" its invalidation reached the cache."""

    phase: str = "before"
    log: list[tuple[str, int]] = field(default_factory=list)
    after_started: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self, phase: str) -> None:
        self.phase = phase
        if phase == "after":
            self.after_started.set()

    async def ask(self, http: httpx.AsyncClient, token: str) -> int:
        phase = self.phase
        status = (await http.get("/admin", headers=bearer(token))).status_code
        self.log.append((phase, status))
        return status

    async def keep_asking(self, http: httpx.AsyncClient, token: str, *, after: int) -> None:
        """Ask in a loop until ``after`` requests started after the invalidation."""
        asked_after = 0
        for _ in range(100_000):
            phase = self.phase
            await self.ask(http, token)
            asked_after += phase == "after"
            if asked_after >= after:
                return
            await asyncio.sleep(0)
        raise AssertionError("the after phase never came")

    def statuses(self, phase: str) -> collections.Counter[int]:
        return collections.Counter(status for p, status in self.log if p == phase)


async def wait_for(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        await asyncio.sleep(0.002)


async def revocation_under_traffic(
    traffic: Traffic,
    cache: CachedRights,
    loader: GatedLoader,
    http: httpx.AsyncClient,
    token: str,
    alice: str,
    revoke: Callable[[Traffic], Awaitable[None]],
) -> None:
    """Workers ask without pause while loads are forced to miss the cache (churn); then
    loads that have read alice's old rights are held in flight, ``revoke`` runs (and moves
    ``traffic`` to "after" when the invalidation has reached the cache), and 25 fresh
    requests ask while those loads are still held; then they are released."""
    stop_churn = asyncio.Event()

    async def churn() -> None:
        while not stop_churn.is_set():
            cache.invalidate(alice)  # an unrelated change to alice: the next load misses
            await asyncio.sleep(0.001)

    loader.delay = 0.002
    workers = [asyncio.create_task(traffic.keep_asking(http, token, after=5)) for _ in range(12)]
    churning = asyncio.create_task(churn())
    try:
        await wait_for(lambda: len(traffic.log) >= 60, "warm-up traffic")
        stop_churn.set()
        await churning
        gate = asyncio.Event()
        loader.gate = gate
        cache.invalidate(alice)
        await wait_for(lambda: loader.held >= 1, "a load holding alice's old rights")
        loader.gate = None  # loads from now on answer at once
        traffic.enter("during")
        await revoke(traffic)
        async with asyncio.timeout(5):  # the invalidation reaches the cache within 5 s
            await traffic.after_started.wait()
        # Old rights are in flight; fresh requests must neither join those loads (they
        # would hang on the gate) nor find them cached.
        fresh = [await traffic.ask(http, token) for _ in range(5)]
        fresh += await asyncio.gather(*(traffic.ask(http, token) for _ in range(20)))
        assert fresh == [403] * 25
        assert not gate.is_set()
        gate.set()  # the held loads answer the old rights to the requests that waited
        await asyncio.gather(*workers)
    finally:
        stop_churn.set()
        for task in (*workers, churning):
            task.cancel()
        await asyncio.gather(*workers, churning, return_exceptions=True)


def check_traffic(traffic: Traffic) -> None:
    before, during, after = (traffic.statuses(p) for p in ("before", "during", "after"))
    assert set(before) == {200}, before  # the role is held: always allowed
    assert set(during) <= {200, 403}, during
    assert set(after) == {403}, after  # no request after the invalidation is allowed
    assert after.total() >= 12 * 5 + 25
    assert before.total() >= 60
    # Requests that started before the revocation and waited on a held load answered 200
    # after the first post-invalidation refusal: the race really spanned the revocation.
    first_after = next(i for i, (p, _) in enumerate(traffic.log) if p == "after")
    assert ("before", 200) in traffic.log[first_after:]


async def test_invalidation_stops_a_revoked_role_at_once_under_traffic(store_url: str) -> None:
    alice = await seed(store_url, role="admin")
    async with Store(store_url) as store, asyncio.timeout(LIMIT):
        loader = GatedLoader(SQLRightsLoader(store))
        cache = CachedRights(loader, ttl=3600)
        store.on_change(cache.invalidate)
        token = TokenIssuer(KEY).issue(alice)

        async def revoke(traffic: Traffic) -> None:
            await StoreAdmin(store).set_role("alice", None)  # invalidates on return
            traffic.enter("after")

        traffic = Traffic()
        async with in_process(admin_app(cache)) as http:
            await revocation_under_traffic(traffic, cache, loader, http, token, alice, revoke)
        assert loader.held >= 1
    check_traffic(traffic)


async def test_a_revocation_on_another_instance_stops_the_role_once_notified(
    postgres_url: str,
) -> None:
    """Two instances on one PostgreSQL store: the role is revoked through B; A's feed
    delivers the change. Before delivery A may still honour its cache (the allowed
    window, measured); from the moment A's cache is invalidated nothing is allowed."""
    await _reset_postgres(postgres_url)
    alice = await seed(postgres_url, role="admin")
    async with contextlib.AsyncExitStack() as stack, asyncio.timeout(LIMIT):
        a = await stack.enter_async_context(Store(postgres_url))
        b = await stack.enter_async_context(Store(postgres_url))
        loader = GatedLoader(SQLRightsLoader(a))
        cache = CachedRights(loader, ttl=3600)
        a.on_change(cache.invalidate)
        traffic = Traffic()
        heard: list[float] = []

        def on_change(subject: str | None) -> None:  # runs after cache.invalidate
            if subject == alice and traffic.phase == "during":
                heard.append(time.monotonic())
                traffic.enter("after")

        a.on_change(on_change)
        feed = PostgresChangeFeed(a)
        await feed.start()
        stack.push_async_callback(feed.stop)
        assert feed.listening
        token = TokenIssuer(KEY).issue(alice)
        committed: list[float] = []

        async def revoke(traffic: Traffic) -> None:
            await StoreAdmin(b).set_role("alice", None)  # B's own cache: none here
            committed.append(time.monotonic())

        async with in_process(admin_app(cache)) as http:
            await revocation_under_traffic(traffic, cache, loader, http, token, alice, revoke)
        assert loader.held >= 1
    check_traffic(traffic)
    assert len(heard) == 1  # the one notification, delivered once
    assert heard[0] - committed[0] < 5.0  # the window in which A may still honour its cache


# == 3. a key rotation under concurrent requests ================================================


async def test_a_rotation_under_100_concurrent_requests_fetches_the_keys_once() -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    impostor = IdentityProvider(algorithm="ES256", audience=AUDIENCE)  # kids nobody publishes
    clock = ManualClock(1000.0)
    verifiers: list[OIDCVerifier] = []

    async def me(request: Request) -> Response:
        return JSONResponse({"sub": request.user.subject})

    @contextlib.asynccontextmanager
    async def setup() -> AsyncIterator[ASGIApp]:
        client = provider.http_client(limits=httpx.Limits(max_keepalive_connections=0))
        verifier = provider.verifier(
            audience=AUDIENCE, http_client=client, monotonic=clock, timeout=10, max_wait=10
        )
        verifiers.append(verifier)
        try:
            await verifier.start()
            yield AuthMiddleware(Starlette(routes=[Route("/me", me)]), verifier=verifier)
        finally:
            await verifier.aclose()
            await client.aclose()

    async def subject_of(http: httpx.AsyncClient, token: str) -> tuple[int, str | None]:
        answer = await http.get("/me", headers=bearer(token))
        return answer.status_code, answer.json().get("sub") if answer.status_code == 200 else None

    with provider.serve(), served(Hosted(setup)) as base:
        async with http_client(base) as http, asyncio.timeout(LIMIT):
            old = provider.current_kid
            assert await subject_of(http, provider.token("warm")) == (200, "warm")
            assert provider.requests == {"discovery": 1, "jwks": 1}  # at startup only
            provider.reset_counts()

            new = provider.rotate()
            provider.delay = 0.2  # each answer takes a while: requests pile up on the fetch
            clock.now += 31  # past the refresh cooldown of the startup fetch
            calls = [
                *(subject_of(http, provider.token(f"new-{n}")) for n in range(60)),
                *(subject_of(http, provider.token(f"old-{n}", kid=old)) for n in range(20)),
                *(
                    subject_of(http, impostor.token(f"bad-{n}", issuer=provider.issuer))
                    for n in range(20)
                ),
            ]
            answers = await asyncio.gather(*calls)

            assert answers[:60] == [(200, f"new-{n}") for n in range(60)]
            assert answers[60:80] == [(200, f"old-{n}") for n in range(20)]
            assert answers[80:] == [(401, None)] * 20
            assert provider.requests == {"discovery": 1, "jwks": 1}  # exactly one refresh
            assert verifiers[0].fetches == 2
            assert verifiers[0].keys is not None
            assert {k.kid for k in verifiers[0].keys} == {old, new}

            provider.delay = 0.0
            more = await asyncio.gather(
                *(subject_of(http, provider.token(f"more-{n}")) for n in range(60))
            )
            assert more == [(200, f"more-{n}") for n in range(60)]
            assert provider.requests == {"discovery": 1, "jwks": 1}  # the new key is held


# == 4. logins of one user, concurrently ========================================================

KEYS: Final = ("user:alice", "user:nobody", "addr:127.0.0.1")
SQLITE_THROTTLE_LOCKED: Final = (
    "LoginThrottle.attempt (asgi_auth/store/throttle.py, since 7a16f32) is a deferred SQLite "
    "transaction (SELECT COUNT, then INSERT) under the store's write lock, but succeeded() "
    "deletes with autocommit statements outside that lock, on other connections: one that "
    "writes between the transaction's read and its write makes SQLite answer 'database is "
    "locked' at once (deadlock avoidance, no busy wait): StoreUnavailable, a 503 for a "
    "correct login, with a single store instance"
)


async def earlier_failures(http: httpx.AsyncClient, backend: Backend) -> None:
    """Two failed logins of alice and two of nobody, from this address."""
    assert [(await login(http, "wrong")).status_code for _ in range(2)] == [400, 400]
    for _ in range(2):
        form = {"grant_type": "password", "username": "nobody", "password": "x"}
        assert (await http.post("/token", data=form)).status_code == 400
    assert [await backend.failures(key) for key in KEYS] == [2, 2, 4]


async def test_20_concurrent_logins_of_one_user(
    backend: Backend,
) -> None:
    """Within the limit (25 attempts per username: each attempt is counted while its
    password is checked), 20 logins at once all succeed, with 20 sessions."""
    await seed(backend.url)
    service = Hosted(lambda: token_service(backend.url, backend=backend, per_user=25))
    with served(service) as base:
        async with http_client(base) as http, asyncio.timeout(LIMIT):
            await earlier_failures(http, backend)

            answers = await asyncio.gather(*(login(http) for _ in range(20)))

            assert [a.status_code for a in answers] == [200] * 20
            pairs = [a.json() for a in answers]
            principals = [VERIFIER.verify_sync(p["access_token"]) for p in pairs]
            assert {p.subject for p in principals} == {"1"}
            assert len({p["access_token"] for p in pairs}) == 20
            assert len({p.claims["jti"] for p in principals}) == 20
            assert len({p.claims["sid"] for p in principals}) == 20  # 20 sessions
            assert len({p["refresh_token"] for p in pairs}) == 20
            # The 20 sessions are independent: each refresh token rotates once, all at once.
            rotated = await asyncio.gather(*(refresh(http, p["refresh_token"]) for p in pairs))
            assert [r.status_code for r in rotated] == [200] * 20
            sids = {VERIFIER.verify_sync(r.json()["access_token"]).claims["sid"] for r in rotated}
            assert sids == {p.claims["sid"] for p in principals}
            # The successes leave no count behind: alice's is cleared (documented), the
            # address keeps exactly its two users' four failures, nobody's are untouched.
            assert [await backend.failures(key) for key in KEYS] == [0, 2, 4]


async def test_concurrent_logins_past_the_limit_are_429_never_5xx(
    backend: Backend,
) -> None:
    """At the default limit (5) with two earlier failures, 20 correct logins at once: an
    attempt counts from before its password check, so only the attempts that fit under
    the limit (3, plus any arriving after a success cleared the count) are checked; the
    others are refused with 429 and Retry-After, and leave no count behind."""
    await seed(backend.url)
    with served(Hosted(lambda: token_service(backend.url, backend=backend))) as base:
        async with http_client(base) as http, asyncio.timeout(LIMIT):
            await earlier_failures(http, backend)

            answers = await asyncio.gather(*(login(http) for _ in range(20)))

            statuses = collections.Counter(a.status_code for a in answers)
            assert set(statuses) <= {200, 429}, statuses
            assert statuses[200] >= 3
            for answer in answers:
                if answer.status_code == 429:
                    assert answer.json()["error"] == "too_many_attempts"
                    assert 0 < int(answer.headers["retry-after"]) <= 901
            assert (await login(http)).status_code == 200  # nothing left to wait for
            assert [await backend.failures(key) for key in KEYS] == [0, 2, 4]


async def test_concurrent_wrong_passwords_are_counted_exactly(backend: Backend) -> None:
    await seed(backend.url)
    service = Hosted(
        lambda: token_service(backend.url, backend=backend, per_user=25, per_address=100)
    )
    with served(service) as base:
        async with http_client(base) as http, asyncio.timeout(LIMIT):
            answers = await asyncio.gather(*(login(http, f"wrong-{n}") for n in range(20)))
            assert [(a.status_code, a.json()) for a in answers] == [(400, INVALID_GRANT)] * 20
            # Each failure counted once: none lost, none doubled, per username and address.
            assert await backend.failures("user:alice") == 20
            assert await backend.failures("addr:127.0.0.1") == 20
            # The limit is 25: exactly five more tries, then 429 (even for the right password).
            assert [(await login(http, "wrong")).status_code for _ in range(5)] == [400] * 5
            throttled = await login(http)
            assert throttled.status_code == 429
            assert throttled.json()["error"] == "too_many_attempts"
            assert 0 < int(throttled.headers["retry-after"]) <= 901


async def test_a_burst_of_wrong_passwords_is_stopped_at_the_limit(
    backend: Backend,
) -> None:
    """20 guesses at once with per_user=5: exactly five password checks and fifteen 429s,
    five failures counted; a second burst within the window gets no check at all.
    (Before 7a16f32 every guess passed a check made before any failure was counted.)"""
    await seed(backend.url)
    async with (
        Store(backend.url) as store,
        backend.throttle(store, per_user=5, per_address=100) as throttle,
        asyncio.timeout(LIMIT),
    ):
        endpoint = TokenEndpoint(
            TokenIssuer(KEY), StoreAuthenticator(store, HASHER), throttle=throttle
        )
        async with in_process(endpoint) as http:
            first = await asyncio.gather(*(login(http, f"guess-{n}") for n in range(20)))
            assert collections.Counter(a.status_code for a in first) == {400: 5, 429: 15}
            assert await backend.failures("user:alice") == 5
            second = await asyncio.gather(*(login(http, f"again-{n}") for n in range(20)))
            assert collections.Counter(a.status_code for a in second) == {429: 20}
            assert await backend.failures("user:alice") == 5


async def test_one_sqlite_instance_takes_concurrent_logins_with_the_throttle(
    sqlite_url: str,
) -> None:
    """One store instance on SQLite, the SQL throttle, bursts of 20 correct logins at once
    (up to five bursts: one burst misses the race now and then)."""
    await seed(sqlite_url)
    async with Store(sqlite_url) as store, asyncio.timeout(LIMIT):
        throttle = LoginThrottle(store, per_user=50, per_address=100)
        endpoint = TokenEndpoint(
            TokenIssuer(KEY), StoreAuthenticator(store, HASHER), throttle=throttle
        )
        async with in_process(endpoint) as http:
            for _ in range(5):
                answers = await asyncio.gather(*(login(http) for _ in range(20)))
                statuses = collections.Counter(a.status_code for a in answers)
                assert statuses == {200: 20}, statuses


async def test_concurrent_successes_leave_no_count_on_postgresql(postgres_url: str) -> None:
    """20 attempts from one address, all of which succeed, concurrently: nothing stays
    counted against the address."""
    await _reset_postgres(postgres_url)
    async with Store(postgres_url) as store, asyncio.timeout(LIMIT):
        await store.init_schema()
        throttle = LoginThrottle(store, per_user=100, per_address=100)
        admitted = await asyncio.gather(*(throttle.attempt("alice", "10.0.0.1") for _ in range(20)))
        assert [a.retry_after for a in admitted] == [None] * 20
        await asyncio.gather(*(throttle.succeeded("alice", a) for a in admitted))
        left = await store.database.fetch_val(
            "SELECT COUNT(*) FROM login_failures WHERE key = 'addr:10.0.0.1'"
        )
    assert left == 0


async def test_two_sqlite_instances_take_logins_at_once(sqlite_url: str) -> None:
    """Two token endpoints (two store instances, as two worker processes) on one SQLite
    file with the SQL throttle; twenty logins at once, ten through each."""
    await seed(sqlite_url)
    async with contextlib.AsyncExitStack() as stack, asyncio.timeout(LIMIT):
        backend = Backend("sqlite", sqlite_url, "sql")
        clients = []
        for _ in range(2):
            app = await stack.enter_async_context(
                token_service(sqlite_url, backend=backend, per_user=50, per_address=100)
            )
            clients.append(await stack.enter_async_context(in_process(app)))
        answers = await asyncio.gather(*(login(clients[n % 2]) for n in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
