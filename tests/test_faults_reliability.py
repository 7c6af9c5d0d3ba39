"""Dependencies taken away, end to end: the defined answers of the demo and the Redis
backends when the database, Redis or the identity provider is locked, gone, refusing,
slow, hanging or lying.

What every test checks, through a real app (the demo from ``asgi_auth.demo`` wherever it
has the parts; the smallest app wiring the Redis backends otherwise):

- routes that need the missing dependency fail closed with 503 ``temporarily_unavailable``
  (never 200, never a 401/403 that would blame the caller, never a 500), with no
  ``WWW-Authenticate`` challenge; the product sends no ``Retry-After`` with its 503s
  (only with the throttle's 429), so none is expected here;
- routes that need only the token keep answering;
- nothing is lost: a refresh token whose rotation could not be stored still works once,
  an acknowledged revocation holds through the outage and reaches a fresh instance,
  login throttling counts survive (each attempt is counted before its password is
  checked, and no password is checked while the throttle cannot count);
- service returns by itself when the dependency does (no restart);
- no answer waits past its configured bound (the store's operation timeout, 5x that
  for refresh-token writes, Redis's socket timeout, the verifier's ``max_wait``),
  plus :data:`~tests.fault_apps.MARGIN`.

Bounds are made test-sized: the demo is built by ``build_demo`` unchanged, with its
``Store`` timeout, deny-list sync interval and password hashing cost patched down (the
demo has no option for them). Existing fault tests (tests/test_authz_faults.py, the
provider tests in tests/test_oidc.py and tests/test_oidc_e2e.py, tests/test_redis_backends.py)
cover single components; these cover the login, refresh and logout flows and the demo
as a whole. Three tests here first failed and led to fixes: a slow PostgreSQL no longer
drains the connection pool (transactions hold their pooled connection themselves), a
logout answered 503 revokes nothing so its retry works (sessions first, token last), and
the deny-list's background sync survives a Redis outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

import asgi_auth.authn.login as login_module
import asgi_auth.demo as demo_module
from asgi_auth import JWTVerifier
from asgi_auth.demo import DemoConfig, build_demo, prepare_store
from asgi_auth.errors import ServiceUnavailable
from asgi_auth.store import RevocationList, Store, StoreAdmin
from asgi_auth.store.redis import RedisRevocationList
from asgi_auth.testing import IdentityProvider
from asgi_auth.types import ASGIApp
from tests.conftest import _reset, service_missing
from tests.fault_apps import (
    HASHER,
    KEY,
    MARGIN,
    PASSWORD,
    answered,
    bearer,
    eventually,
    login,
    logout,
    redis_app,
    refresh,
    running,
    seed_user,
    served,
    sqlite_lock,
    store_app,
    timed,
)
from tests.faults import FaultyProxy, faulty_proxy

#: The store's operation timeout in these tests (the default is 2 s).
TIMEOUT: Final = 0.5
#: Refresh-token writes get five times the store's timeout (asgi_auth/store/refresh.py).
WRITE_BOUND: Final = 5 * TIMEOUT
#: How often the demo's deny-list syncs with the store (the default is 5 s).
SYNC: Final = 0.5
#: Redis client socket and connect timeouts, with one retry (the README: short timeouts,
#: few retries); a command gives up after two tries, and we allow a third's worth.
REDIS_TIMEOUT: Final = 0.3
REDIS_BOUND: Final = 3 * REDIS_TIMEOUT
REDIS_URL: Final = os.environ.get("ASGI_AUTH_TEST_REDIS", "redis://127.0.0.1:6379/0")
#: How long a request may wait for the identity provider's keys.
MAX_WAIT: Final = 0.3
AUDIENCE: Final = "faults-api"
LOCAL_ISSUER: Final = "https://faults.local"


# -- helpers and fixtures ---------------------------------------------------------------


async def expect_503(
    call: Awaitable[httpx.Response], bound: float, *, no_store: bool = True
) -> httpx.Response:
    """Await a request and check the fail-closed answer, within ``bound`` (+ MARGIN)."""
    answer, took = await timed(call)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "temporarily_unavailable"
    assert "www-authenticate" not in answer.headers
    if no_store:
        assert answer.headers["cache-control"] == "no-store"
    assert took < bound + MARGIN, f"answered after {took:.2f} s; the bound is {bound} s"
    return answer


async def status_of(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> int:
    return (await http.get(path, headers=headers)).status_code


async def _is(http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int) -> bool:
    return await status_of(http, path, headers) == status


@pytest.fixture(autouse=True)
async def aiosqlite_threads_settle() -> AsyncIterator[None]:
    """Let aiosqlite's worker threads (some abandoned while the file was locked) end
    before the event loop closes, or they die reporting to a closed loop."""
    before = set(threading.enumerate())
    yield
    for _ in range(500):
        if not [
            t
            for t in threading.enumerate()
            if t not in before and "_connection_worker_thread" in t.name
        ]:
            return
        await asyncio.sleep(0.02)


@pytest.fixture
def quick_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """``build_demo`` as shipped, with test-sized bounds and cheap password hashing."""
    monkeypatch.setattr(demo_module, "Store", functools.partial(Store, timeout=TIMEOUT))
    monkeypatch.setattr(
        demo_module, "RevocationList", functools.partial(RevocationList, sync_interval=SYNC)
    )
    monkeypatch.setattr(login_module, "PasswordHasher", lambda: HASHER)


async def seed_demo(url: str) -> dict[str, int]:
    """The demo's seed (alice: admin, every claim; bob: can_read), with :data:`PASSWORD`."""
    async with Store(url) as store:
        ids = await prepare_store(store, seed=True)
        admin = StoreAdmin(store)
        hashed = await HASHER.hash(PASSWORD)
        for name in ids:
            await admin.set_password_hash(name, hashed)
    return ids


@pytest.fixture
async def pg_proxy(postgres_url: str) -> AsyncIterator[tuple[FaultyProxy, str]]:
    """An empty PostgreSQL database, reached through a proxy the test can cut and slow."""
    await _reset(postgres_url)
    parts = urlsplit(postgres_url)
    async with faulty_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
        yield proxy, parts._replace(netloc=netloc).geturl()


def sqlite_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "demo.db"
    return path, f"sqlite:///{path}"


def replace_file(path: Path, how: str) -> bytes:
    """Take the database file away: a directory or junk where it was. Its bytes."""
    original = path.read_bytes()
    path.unlink()
    if how == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not an SQLite database\n" * 64)
    return original


def put_back(path: Path, original: bytes) -> None:
    if path.is_dir():
        path.rmdir()
    else:
        path.unlink()
    path.write_bytes(original)


# -- SQLite ------------------------------------------------------------------------------


async def test_sqlite_held_exclusively_by_another_connection(
    quick_demo: None, tmp_path: Path
) -> None:
    path, url = sqlite_file(tmp_path)
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    issue = config.issuer_obj.issue
    alice, bob = bearer(issue(ids["alice"])), bearer(issue(ids["bob"]))
    async with running(build_demo(config)) as http:
        session = await login(http)
        assert session.status_code == 200
        tokens = session.json()
        with sqlite_lock(path, "EXCLUSIVE"):
            me, took = await timed(http.get("/me", headers=alice))
            assert me.status_code == 200
            assert me.json()["subject"] == str(ids["alice"])
            assert took < MARGIN
            await expect_503(http.get("/admin", headers=alice), TIMEOUT)
            await expect_503(http.get("/records", headers=bob), TIMEOUT)
            await expect_503(http.post("/records", json={"body": "x"}, headers=alice), TIMEOUT)
            await expect_503(login(http), TIMEOUT)
            await expect_503(refresh(http, tokens["refresh_token"]), WRITE_BOUND)
            await expect_503(logout(http, issue(ids["bob"])), TIMEOUT)
        # Released: back by itself, and the refresh token was not spent by the failure.
        await eventually(lambda: _is(http, "/admin", alice, 200))
        refreshed = await answered(lambda: refresh(http, tokens["refresh_token"]))
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
        replayed = await refresh(http, tokens["refresh_token"])
        assert replayed.json()["error"] == "invalid_grant"  # spent exactly once, now
        assert (await answered(lambda: login(http))).status_code == 200


async def test_sqlite_write_locked_by_another_connection(quick_demo: None, tmp_path: Path) -> None:
    path, url = sqlite_file(tmp_path)
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    issue = config.issuer_obj.issue
    alice, bob = bearer(issue(ids["alice"])), bearer(issue(ids["bob"]))
    async with running(build_demo(config)) as http:
        tokens = (await login(http)).json()
        with sqlite_lock(path, "IMMEDIATE"):
            # Readers are not blocked: whatever only reads keeps working.
            assert await status_of(http, "/admin", alice) == 200
            assert (await http.get("/records", headers=bob)).json() == {"records": []}
            # Writes fail closed, the demo's own records included (its handler's 503).
            await expect_503(
                http.post("/records", json={"body": "x"}, headers=alice), TIMEOUT, no_store=False
            )
            # Each attempt is counted (a write) before its password is checked: wrong and
            # right passwords alike get the same 503, and no password is checked.
            wrong = await expect_503(login(http, password="wrong"), TIMEOUT)
            right = await expect_503(login(http), TIMEOUT)
            assert wrong.json() == right.json()
            assert "access_token" not in right.json()
            await expect_503(refresh(http, tokens["refresh_token"]), WRITE_BOUND)
            await expect_503(logout(http, issue(ids["bob"])), TIMEOUT)
        refreshed = await answered(lambda: refresh(http, tokens["refresh_token"]))
        assert refreshed.status_code == 200, refreshed.text
        assert (await answered(lambda: login(http))).status_code == 200


@pytest.mark.parametrize("how", ["directory", "junk"])
async def test_sqlite_file_replaced(quick_demo: None, tmp_path: Path, how: str) -> None:
    path, url = sqlite_file(tmp_path)
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    issue = config.issuer_obj.issue
    alice = bearer(issue(ids["alice"]))
    async with running(build_demo(config)) as http:
        tokens = (await login(http)).json()
        original = replace_file(path, how)
        try:
            assert await status_of(http, "/me", alice) == 200
            await expect_503(http.get("/admin", headers=alice), TIMEOUT)
            await expect_503(login(http), TIMEOUT)
            await expect_503(refresh(http, tokens["refresh_token"]), WRITE_BOUND)
            await expect_503(logout(http, issue(ids["bob"])), TIMEOUT)
        finally:
            put_back(path, original)
        await eventually(lambda: _is(http, "/admin", alice, 200))
        refreshed = await answered(lambda: refresh(http, tokens["refresh_token"]))
        assert refreshed.status_code == 200, refreshed.text
        assert (await answered(lambda: login(http))).status_code == 200


# -- PostgreSQL ----------------------------------------------------------------------------


async def test_postgresql_refusing_connections(
    quick_demo: None, pg_proxy: tuple[FaultyProxy, str]
) -> None:
    proxy, url = pg_proxy
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    issue = config.issuer_obj.issue
    alice, bob = bearer(issue(ids["alice"])), bearer(issue(ids["bob"]))
    async with running(build_demo(config)) as http:
        try:
            tokens = (await login(http)).json()
            await proxy.cut()
            me, took = await timed(http.get("/me", headers=bob))
            assert me.status_code == 200
            assert took < MARGIN
            await expect_503(http.get("/admin", headers=alice), TIMEOUT)
            await expect_503(http.get("/records", headers=bob), TIMEOUT)
            await expect_503(login(http), TIMEOUT)
            await expect_503(refresh(http, tokens["refresh_token"]), WRITE_BOUND)
            await expect_503(logout(http, issue(ids["bob"])), TIMEOUT)
            await proxy.restore()
            await eventually(lambda: _is(http, "/admin", alice, 200))
            refreshed = await answered(lambda: refresh(http, tokens["refresh_token"]))
            assert refreshed.status_code == 200, refreshed.text
            assert (await refresh(http, tokens["refresh_token"])).json()["error"] == "invalid_grant"
            assert (await answered(lambda: login(http))).status_code == 200
        finally:
            await proxy.restore()


async def test_a_slow_postgresql_never_holds_a_client_past_the_bound(
    quick_demo: None, pg_proxy: tuple[FaultyProxy, str]
) -> None:
    """Over real HTTP (uvicorn): every chunk to and from the database is held 2 s, well
    past the store's bound; every answer still comes within the bound. (Logins and
    refreshes, which write in a transaction, are left out here: see the next test.)"""
    proxy, url = pg_proxy
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    issue = config.issuer_obj.issue
    alice, bob = bearer(issue(ids["alice"])), bearer(issue(ids["bob"]))
    async with served(build_demo(config)) as base, httpx.AsyncClient(base_url=base) as http:
        try:
            tokens = (await login(http)).json()
            proxy.delay = 2.0
            (me, took), *failed = await asyncio.gather(
                timed(http.get("/me", headers=alice)),
                timed(http.get("/admin", headers=alice)),
                timed(http.get("/records", headers=bob)),
                timed(http.post("/records", json={"body": "x"}, headers=alice)),
                timed(logout(http, issue(ids["bob"]))),
            )
            assert me.status_code == 200
            assert took < MARGIN
            for answer, took in failed:
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "temporarily_unavailable"
                assert "www-authenticate" not in answer.headers
                assert took < TIMEOUT + MARGIN, f"{answer.request.url}: {took:.2f} s"
            await proxy.restore()
            await eventually(lambda: _is(http, "/admin", alice, 200), within=30)
            assert (await answered(lambda: login(http))).status_code == 200
            refreshed = await answered(lambda: refresh(http, tokens["refresh_token"]))
            assert refreshed.status_code == 200, refreshed.text
        finally:
            await proxy.restore()


async def test_logins_abandoned_on_a_slow_postgresql_do_not_drain_the_pool(
    pg_proxy: tuple[FaultyProxy, str],
) -> None:
    """A login and a refresh on a slow database, with a pool of two (the default pool of
    ten drains the same way after ten): once the database is fast again, the store must
    answer again."""
    proxy, url = pg_proxy
    store = Store(f"{url}?min_size=2&max_size=2", timeout=TIMEOUT)
    await store.connect()
    try:
        await store.init_schema()
        await seed_user(store)
        transport = httpx.ASGITransport(app=store_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            tokens = (await login(http)).json()
            proxy.delay = 2.0  # a round trip now takes 4 s: past every bound
            await expect_503(login(http), TIMEOUT)
            await expect_503(refresh(http, tokens["refresh_token"]), WRITE_BOUND)
            await proxy.restore()
            await asyncio.sleep(2.5)  # what the proxy still held has gone through
            reader = bearer(tokens["access_token"])
            await eventually(lambda: _is(http, "/records", reader, 200), within=3)
    finally:
        await proxy.restore()
        # The leaked connections are never released: close() would wait for them forever.
        store.database._backend._pool.terminate()
        await store.disconnect()


async def test_an_acknowledged_logout_outlives_a_postgresql_outage(
    quick_demo: None, pg_proxy: tuple[FaultyProxy, str], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, url = pg_proxy
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    alice = bearer(config.issuer_obj.issue(ids["alice"]))
    other = bearer(config.issuer_obj.issue(ids["bob"]))
    async with running(build_demo(config)) as http:
        try:
            tokens = (await login(http)).json()
            gone = bearer(tokens["access_token"])
            assert (await logout(http, tokens["access_token"])).json() == {"revoked": True}
            await proxy.cut()
            with caplog.at_level(logging.WARNING, logger="asgi_auth.store"):
                await asyncio.sleep(SYNC * 2.5)  # the deny-list's syncs fail meanwhile
            assert any("revocations not synced" in r.getMessage() for r in caplog.records)
            refused = await http.get("/me", headers=gone)
            assert refused.status_code == 401
            assert refused.json()["error"] == "invalid_token"
            assert await status_of(http, "/me", other) == 200
            await proxy.restore()
            await eventually(lambda: _is(http, "/admin", alice, 200))
            assert await status_of(http, "/me", gone) == 401
            assert (await refresh(http, tokens["refresh_token"])).json()["error"] == "invalid_grant"
        finally:
            await proxy.restore()
    # A fresh instance on the same store knows of the revocation.
    async with running(build_demo(config)) as fresh:
        assert await status_of(fresh, "/me", gone) == 401
        assert await status_of(fresh, "/me", other) == 200
        assert (await refresh(fresh, tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_a_logout_answered_503_takes_effect_when_retried(
    quick_demo: None, pg_proxy: tuple[FaultyProxy, str]
) -> None:
    proxy, url = pg_proxy
    ids = await seed_demo(url)
    config = DemoConfig(KEY, database_url=url)
    alice = bearer(config.issuer_obj.issue(ids["alice"]))
    async with running(build_demo(config)) as http:
        try:
            tokens = (await login(http)).json()
            await proxy.cut()
            # 503 temporarily_unavailable: "try again later".
            await expect_503(logout(http, tokens["access_token"], tokens["refresh_token"]), TIMEOUT)
            await proxy.restore()
            await eventually(lambda: _is(http, "/admin", alice, 200))
            retried = await logout(http, tokens["access_token"], tokens["refresh_token"])
            after = await refresh(http, tokens["refresh_token"])
        finally:
            await proxy.restore()
    assert (retried.status_code, after.status_code) == (200, 400), (
        f"the retried logout answered {retried.status_code} and the session's refresh "
        f"token still answers {after.status_code}: the logout never took effect"
    )


# -- Redis ---------------------------------------------------------------------------------


@dataclass
class RedisRig:
    proxy: FaultyProxy
    #: Through the proxy, with short timeouts and one retry (as the README advises).
    client: redis_asyncio.Redis
    #: Straight to Redis, for checking what it holds.
    direct: redis_asyncio.Redis
    prefix: str


@pytest.fixture
async def redis_rig() -> AsyncIterator[RedisRig]:
    parts = urlsplit(REDIS_URL)
    direct = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await direct.ping()
    except (OSError, RedisError) as exc:
        await direct.aclose()
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"asgi_auth_test:{secrets.token_hex(6)}:"
    try:
        async with faulty_proxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
            client = redis_asyncio.Redis(
                host="127.0.0.1",
                port=proxy.port,
                db=int(parts.path.strip("/") or 0),
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
            )
            try:
                yield RedisRig(proxy, client, direct, prefix)
            finally:
                await proxy.restore()
                await client.aclose()
    finally:
        keys = [key async for key in direct.scan_iter(match=prefix + "*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[tuple[Store, int]]:
    """The SQL store of users, refresh tokens and rights (up throughout), and alice's id."""
    async with Store(f"sqlite:///{tmp_path / 'auth.db'}", timeout=TIMEOUT) as store:
        await store.init_schema()
        yield store, await seed_user(store)


async def refresh_sessions(store: Store) -> int:
    count: int = await store.database.fetch_val("SELECT COUNT(*) FROM refresh_tokens")
    return count


@pytest.mark.parametrize("fault", ["cut", "slow"])
async def test_redis_away_logins_fail_closed_and_the_count_survives(
    redis_rig: RedisRig, users: tuple[Store, int], fault: str
) -> None:
    store, _ = users
    rig = redis_app(store, redis_rig.client, redis_rig.prefix, per_user=3, sync_interval=SYNC)
    transport = httpx.ASGITransport(app=rig.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            tokens = (await login(http)).json()
            for _ in range(2):
                assert (await login(http, password="wrong")).json()["error"] == "invalid_grant"
            checked = rig.authenticator.calls
            if fault == "cut":
                await redis_rig.proxy.cut()
            else:
                redis_rig.proxy.delay = 1.0  # past the client's 0.3 s socket timeout
            wrong = await expect_503(login(http, password="wrong"), REDIS_BOUND)
            right = await expect_503(login(http), REDIS_BOUND)
            assert wrong.json() == right.json()
            # The throttle is asked before any password: none was checked meanwhile.
            assert rig.authenticator.calls == checked
            # What needs no Redis keeps working: tokens (revocations are held in
            # memory), store rights, and the refresh grant (the SQL store's).
            access = bearer(tokens["access_token"])
            assert await status_of(http, "/me", access) == 200
            assert await status_of(http, "/records", access) == 200
            refreshed = await refresh(http, tokens["refresh_token"])
            assert refreshed.status_code == 200
            await redis_rig.proxy.restore()
            # Back by itself, and the two failures from before the outage still count.
            if fault == "cut":
                # Nothing reached Redis meanwhile: one attempt left, then the limit.
                assert (await login(http, password="wrong")).json()["error"] == "invalid_grant"
                checked += 1
            else:
                # An attempt answered 503 was still counted once its delayed write
                # reached Redis: the count errs on the side of throttling.
                await asyncio.sleep(1.0)  # what the proxy still held has gone through
            throttled = await login(http)
            assert throttled.status_code == 429
            assert throttled.json()["error"] == "too_many_attempts"
            assert 0 < int(throttled.headers["retry-after"]) <= 901
            assert rig.authenticator.calls == checked
    finally:
        await redis_rig.proxy.restore()


async def test_redis_lost_while_a_password_is_checked(
    redis_rig: RedisRig, users: tuple[Store, int]
) -> None:
    """Each attempt is counted in Redis before its password is checked (and uncounted
    when it succeeds): Redis going away during the check loses no count."""
    store, _ = users
    rig = redis_app(store, redis_rig.client, redis_rig.prefix, per_user=3, sync_interval=SYNC)
    transport = httpx.ASGITransport(app=rig.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            assert (await login(http, password="wrong")).json()["error"] == "invalid_grant"
            sessions = await refresh_sessions(store)
            rig.authenticator.before = redis_rig.proxy.cut
            # A wrong password: refused as usual, and counted before Redis went.
            wrong = await login(http, password="wrong")
            assert wrong.json()["error"] == "invalid_grant"
            await redis_rig.proxy.restore()
            # The right password: the success cannot be recorded, so no token, no
            # session, and the attempt stays counted.
            right = await expect_503(login(http), REDIS_BOUND)
            assert "access_token" not in right.json()
            assert await refresh_sessions(store) == sessions
            await redis_rig.proxy.restore()
            rig.authenticator.before = None
            # Three counted attempts (the limit): even the right password now waits.
            throttled = await login(http)
            assert throttled.status_code == 429
            assert 0 < int(throttled.headers["retry-after"]) <= 901
    finally:
        await redis_rig.proxy.restore()


async def test_redis_away_revocations_hold(redis_rig: RedisRig, users: tuple[Store, int]) -> None:
    store, user = users
    rig = redis_app(store, redis_rig.client, redis_rig.prefix, per_user=5, sync_interval=SYNC)
    plain = JWTVerifier(KEY)  # no deny-list: reads a revoked token's jti

    def jti_of(token: str) -> str:
        jti = plain.verify_sync(token).token_id
        assert jti is not None
        return jti

    transport = httpx.ASGITransport(app=rig.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            tokens = (await login(http)).json()
            acknowledged = tokens["access_token"]
            assert (await logout(http, acknowledged)).json() == {"revoked": True}
            key = f"{redis_rig.prefix}rev:{jti_of(acknowledged)}"
            assert await redis_rig.direct.exists(key) == 1
            valid, unconfirmed = rig.issuer.issue(user), rig.issuer.issue(user)
            await redis_rig.proxy.cut()
            with pytest.raises(ServiceUnavailable):
                await rig.revocations.sync()  # what the background sync meets meanwhile
            assert await status_of(http, "/me", bearer(acknowledged)) == 401
            assert await status_of(http, "/me", bearer(valid)) == 200
            await expect_503(logout(http, unconfirmed), REDIS_BOUND)
            # A 503 revoked nothing: the client's retry finds its token as it was.
            assert await status_of(http, "/me", bearer(unconfirmed)) == 200
            await redis_rig.proxy.restore()
            assert await status_of(http, "/me", bearer(acknowledged)) == 401
            assert await status_of(http, "/me", bearer(valid)) == 200
            assert (await logout(http, unconfirmed)).json() == {"revoked": True}  # the retry
            assert await status_of(http, "/me", bearer(unconfirmed)) == 401
            assert (await refresh(http, tokens["refresh_token"])).json()["error"] == "invalid_grant"
    finally:
        await redis_rig.proxy.restore()
    # The acknowledged revocation outlived the outage in Redis: another instance sees it.
    assert await redis_rig.direct.exists(key) == 1
    elsewhere = RedisRevocationList(redis_rig.direct, prefix=redis_rig.prefix + "rev:")
    await elsewhere.sync()
    assert elsewhere.is_revoked(jti_of(acknowledged))
    assert not elsewhere.is_revoked(jti_of(valid))


async def test_the_redis_deny_list_keeps_syncing_after_an_outage(
    redis_rig: RedisRig, users: tuple[Store, int]
) -> None:
    """After Redis returns, a revocation made on another instance reaches this one within
    a few sync intervals, with no restart."""
    store, user = users
    rig = redis_app(store, redis_rig.client, redis_rig.prefix, per_user=5, sync_interval=0.1)
    await rig.revocations.start()
    token = rig.issuer.issue(user)
    transport = httpx.ASGITransport(app=rig.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            await redis_rig.proxy.cut()
            await asyncio.sleep(0.35)  # a few syncs fail
            await redis_rig.proxy.restore()
            assert await status_of(http, "/me", bearer(token)) == 200
            elsewhere = RedisRevocationList(redis_rig.direct, prefix=redis_rig.prefix + "rev:")
            jti = JWTVerifier(KEY).verify_sync(token).token_id
            assert jti is not None
            await elsewhere.revoke(jti, time.time() + 300)
            await eventually(lambda: _is(http, "/me", bearer(token), 401), within=3)
    finally:
        await redis_rig.proxy.restore()
        with contextlib.suppress(ServiceUnavailable):  # the dead sync task's error
            await rig.revocations.stop()


# -- the identity provider ------------------------------------------------------------------


def provider_demo(issuer: str, tmp_path: Path, **options: float) -> ASGIApp:
    config = DemoConfig(
        None,
        audience=AUDIENCE,
        oidc_issuer=issuer,
        database_url=f"sqlite:///{tmp_path / 'demo.db'}",
        oidc_options=options,
    )
    return build_demo(config)


async def test_a_slow_provider_at_cold_start(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    provider.outage = True  # the lifespan's first fetch fails: no keys held
    with provider.serve() as issuer:
        app = provider_demo(issuer, tmp_path, max_wait=MAX_WAIT, timeout=5, retry_interval=0.2)
        async with running(app) as http:
            assert provider.requests["discovery"] == 1
            provider.outage = False
            provider.delay = 0.8  # each of discovery and JWKS: far past max_wait
            await asyncio.sleep(0.25)  # past retry_interval
            token = bearer(provider.token("ada"))
            answers = await asyncio.gather(
                *(expect_503(http.get("/me", headers=token), MAX_WAIT) for _ in range(5))
            )
            assert len(answers) == 5
            assert provider.requests["discovery"] == 2  # one fetch, shared by all five
            # The fetch goes on; once it lands the same token is served, no restart.
            await eventually(lambda: _is(http, "/me", token, 200), within=10)
            assert (provider.requests["discovery"], provider.requests["jwks"]) == (2, 1)


async def test_a_hanging_provider_with_keys_held(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE, cache_control="no-store")
    with provider.serve() as issuer:
        # Keys are stale at once: every new token tries a refresh, which hangs.
        app = provider_demo(
            issuer,
            tmp_path,
            min_ttl=0,
            refresh_cooldown=0.1,
            retry_interval=0.1,
            timeout=1.0,
            max_wait=MAX_WAIT,
        )
        async with running(app) as http:
            assert await status_of(http, "/me", bearer(provider.token("first"))) == 200
            provider.hang = True
            await asyncio.sleep(0.15)  # past the cooldown
            fetches = provider.requests["discovery"]
            for n in range(5):
                answer, took = await timed(http.get("/me", headers=bearer(provider.token(f"u{n}"))))
                assert answer.status_code == 200
                assert answer.json()["subject"] == f"u{n}"
                assert took < MARGIN  # never waits for the hanging refresh
                await asyncio.sleep(0.05)
            assert provider.requests["discovery"] > fetches  # a refresh is hanging
            provider.rotate()
            rotated = bearer(provider.token("rotated"))  # a key we do not hold
            await expect_503(http.get("/me", headers=rotated), MAX_WAIT)
            provider.hang = False
            await eventually(lambda: _is(http, "/me", rotated, 200), within=10)
            old = bearer(provider.token("old", kid=provider.published_kids[0]))
            assert await status_of(http, "/me", old) == 200


LIES: Final = ["another issuer", "keys over plain http elsewhere", "junk keys", "empty answers"]


def lie(provider: IdentityProvider, how: str) -> None:
    if how == "another issuer":
        provider.discovery_overrides["issuer"] = "https://impostor.example"
    elif how == "keys over plain http elsewhere":
        provider.discovery_overrides["jwks_uri"] = "http://impostor.example/jwks.json"
    elif how == "junk keys":
        provider.jwks_body = b"<html>Internal error</html>"
    else:
        provider.status = 200  # every endpoint answers 200 with {}


@pytest.mark.parametrize("how", LIES)
async def test_a_lying_provider_is_never_believed(tmp_path: Path, how: str) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    impostor = IdentityProvider(algorithm="ES256")
    lie(provider, how)
    with provider.serve() as issuer:
        app = provider_demo(issuer, tmp_path, max_wait=MAX_WAIT, retry_interval=0.2)
        genuine = bearer(provider.token("ada"))
        forged = bearer(impostor.token("mallory", issuer=issuer, audience=AUDIENCE))
        async with running(app) as http:
            # Nothing can be verified: 503 for the genuine token (the caller is not at
            # fault) and for the forged one alike; never a 200.
            for token in (genuine, forged, genuine):
                await expect_503(http.get("/me", headers=token), MAX_WAIT)
            provider.discovery_overrides.clear()
            provider.jwks_body = None
            provider.status = None
            await eventually(lambda: _is(http, "/me", genuine, 200), within=10)
            refused = await http.get("/me", headers=forged)
            assert refused.status_code == 401
            assert refused.json()["error"] == "invalid_token"


async def test_mixed_demo_isolates_the_provider_and_the_store(
    quick_demo: None, tmp_path: Path
) -> None:
    """Local and provider tokens in one demo: each kind needs only its own dependency."""
    path, url = sqlite_file(tmp_path)
    ids = await seed_demo(url)
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    provider.outage = True
    with provider.serve() as issuer:
        config = DemoConfig(
            KEY,
            issuer=LOCAL_ISSUER,
            audience=AUDIENCE,
            database_url=url,
            oidc_issuer=issuer,
            oidc_options={"max_wait": MAX_WAIT, "retry_interval": 0.2},
        )
        issue = config.issuer_obj.issue
        alice, bob = bearer(issue(ids["alice"])), bearer(issue(ids["bob"]))
        admin_of_provider = bearer(provider.token("auth0|ada", roles=["admin"]))
        async with running(build_demo(config)) as http:
            # The provider is down: local logins, tokens and store roles are unaffected.
            tokens = (await login(http)).json()
            assert await status_of(http, "/me", bearer(tokens["access_token"])) == 200
            assert await status_of(http, "/admin", alice) == 200
            assert (await refresh(http, tokens["refresh_token"])).status_code == 200
            await expect_503(http.get("/me", headers=admin_of_provider), MAX_WAIT)
            await expect_503(http.get("/admin", headers=admin_of_provider), MAX_WAIT)
            provider.outage = False
            await eventually(lambda: _is(http, "/admin", admin_of_provider, 200), within=10)
            # The store is locked: provider tokens carry their roles and never ask it.
            with sqlite_lock(path, "EXCLUSIVE"):
                answer, took = await timed(http.get("/admin", headers=admin_of_provider))
                assert answer.status_code == 200
                assert took < MARGIN
                # alice's rights were cached before the outage (30 s TTL): still served.
                assert await status_of(http, "/admin", alice) == 200
                await expect_503(http.get("/admin", headers=bob), TIMEOUT)
                await expect_503(login(http), TIMEOUT)
            await eventually(lambda: _is(http, "/admin", bob, 403))
