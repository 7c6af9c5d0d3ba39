"""Store outages seen through guarded routes: real PostgreSQL behind a proxy we cut and
slow down, and a real SQLite file removed. Guarded routes fail closed with 503 (never
200, never a misleading 401/403, never a 500), token-only routes keep working, and
service returns by itself when the database does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import AuthMiddleware, JWTVerifier, Key, TokenIssuer
from asgi_auth.authz import Authorizer, authenticated, guard, has_claim, has_role
from asgi_auth.store import Store, StoreAdmin, cached_rights
from tests.faults import FaultyProxy, faulty_proxy

KEY = Key.from_secret("fault-tests-secret-that-is-32-bytes-long")
ISSUER = TokenIssuer(KEY)


@guard(has_claim("can_read"))
async def guarded(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@guard(authenticated)
async def token_only(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _app(store: Store, *, ttl: float = 0) -> AuthMiddleware:
    routes = [Route("/guarded", guarded), Route("/token-only", token_only)]
    authorizer = Authorizer(cached_rights(store, ttl=ttl))
    return AuthMiddleware(
        Starlette(routes=routes), verifier=JWTVerifier(KEY), authorizer=authorizer
    )


async def _seed(url: str) -> int:
    async with Store(url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_claim("can_read")
        return await admin.create_user("reader", claims=("can_read",))


@pytest.fixture
async def proxied(postgres_url: str) -> AsyncIterator[tuple[FaultyProxy, str]]:
    from tests.conftest import _reset

    await _reset(postgres_url)
    parts = urlsplit(postgres_url)
    async with faulty_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
        yield proxy, parts._replace(netloc=netloc).geturl()


async def test_postgresql_cut_gives_503_then_recovers_by_itself(
    proxied: tuple[FaultyProxy, str],
) -> None:
    proxy, url = proxied
    user = await _seed(url)
    headers = {"Authorization": f"Bearer {ISSUER.issue(user)}"}
    store = Store(url, timeout=0.5)
    await store.connect()
    try:
        transport = httpx.ASGITransport(app=_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/guarded", headers=headers)).status_code == 200
            await proxy.cut()
            statuses = [
                (await client.get("/guarded", headers=headers)).status_code for _ in range(5)
            ]
            assert statuses == [503] * 5
            # Routes the token alone decides keep working while the store is down.
            assert (await client.get("/token-only", headers=headers)).status_code == 200
            await proxy.restore()
            deadline = time.monotonic() + 15
            status = 503
            while status == 503 and time.monotonic() < deadline:
                status = (await client.get("/guarded", headers=headers)).status_code
                await asyncio.sleep(0.1)
            assert status == 200
    finally:
        await proxy.restore()
        await store.disconnect()


async def test_a_slow_postgresql_answers_503_within_the_bound(
    proxied: tuple[FaultyProxy, str],
) -> None:
    proxy, url = proxied
    user = await _seed(url)
    headers = {"Authorization": f"Bearer {ISSUER.issue(user)}"}
    store = Store(url, timeout=0.3)
    await store.connect()
    try:
        transport = httpx.ASGITransport(app=_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/guarded", headers=headers)).status_code == 200
            proxy.delay = 2.0
            started = time.monotonic()
            answer = await client.get("/guarded", headers=headers)
            elapsed = time.monotonic() - started
            assert answer.status_code == 503
            assert "www-authenticate" not in answer.headers
            assert elapsed < 1.5  # the configured bound (0.3 s) plus scheduling, not 2 s
    finally:
        await proxy.restore()
        await store.disconnect()


async def test_a_removed_sqlite_file_gives_503_not_access(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    url = f"sqlite:///{path}"
    user = await _seed(url)
    headers = {"Authorization": f"Bearer {ISSUER.issue(user)}"}
    async with Store(url, timeout=0.5) as store:
        transport = httpx.ASGITransport(app=_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/guarded", headers=headers)).status_code == 200
            await store.disconnect()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - test setup
            await store.connect()  # a fresh, empty file: no tables at all
            answer = await client.get("/guarded", headers=headers)
            assert answer.status_code == 503
            assert (await client.get("/token-only", headers=headers)).status_code == 200


async def test_a_role_renamed_while_cached_takes_effect_at_once(store_url: str) -> None:
    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_role("admin")
        user = await admin.create_user("root", role="admin")

        @guard(has_role("admin"))
        async def panel(request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

        app = AuthMiddleware(
            Starlette(routes=[Route("/panel", panel)]),
            verifier=JWTVerifier(KEY),
            authorizer=Authorizer(cached_rights(store, ttl=3600)),
        )
        headers = {"Authorization": f"Bearer {ISSUER.issue(user)}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/panel", headers=headers)).status_code == 200
            await admin.rename_role("admin", "superuser")
            assert (await client.get("/panel", headers=headers)).status_code == 403
            await admin.rename_role("superuser", "admin")
            assert (await client.get("/panel", headers=headers)).status_code == 200
            await admin.set_active("root", False)
            assert (await client.get("/panel", headers=headers)).status_code == 403
