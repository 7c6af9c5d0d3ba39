"""Defences added after reviewing the authorization layer: status checks, issuer-bound
store lookups, invalidation races, hostile subjects and bodies, SQLite writers in two
processes' worth of stores, the change feed's heartbeat."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import (
    AuthMiddleware,
    JWTVerifier,
    Key,
    PermissionDenied,
    StoreUnavailable,
    TokenIssuer,
)
from asgi_auth.authz import (
    NO_RIGHTS,
    Authorizer,
    CachedRights,
    Rights,
    authenticated,
    check,
    has_role,
    not_,
)
from asgi_auth.demo import DemoConfig, build_demo, prepare_store
from asgi_auth.store import (
    AlreadyExists,
    NotFound,
    PostgresChangeFeed,
    SQLRightsLoader,
    Store,
    StoreAdmin,
    cached_rights,
)
from asgi_auth.types import Scope
from tests.faults import faulty_proxy
from tests.lifespan import lifespan

KEY = Key.from_secret("review-tests-secret-that-is-32-bytes-long")
ISSUER = TokenIssuer(KEY, issuer="https://local")


class Fixed:
    """A loader with fixed answers, counting calls."""

    def __init__(self, rights: Rights) -> None:
        self.rights = rights
        self.calls = 0

    async def load(self, subject: str) -> Rights:
        self.calls += 1
        return self.rights


def _scope(token: str, kind: str = "http") -> Scope:
    principal = JWTVerifier(KEY, issuer="https://local").verify_sync(token)
    return {"type": kind, "method": "GET", "user": principal}


async def test_a_disabled_user_is_refused_wherever_the_store_is_consulted() -> None:
    disabled = Fixed(Rights(roles=frozenset({"admin"}), active=False))
    token = ISSUER.issue(1, claims={"roles": ["admin"]})
    lazy = Authorizer(disabled)
    # The token alone settles has_role here, so the default does not ask the store ...
    assert (await lazy.check(_scope(token), has_role("admin"))).subject == "1"
    # ... a policy that needs the store refuses a disabled user outright, even not_(…).
    with pytest.raises(PermissionDenied, match="disabled"):
        await lazy.check(_scope(token), not_(has_role("banned")))
    strict = Authorizer(disabled, require_active=True)
    for policy in (authenticated, has_role("admin")):
        with pytest.raises(PermissionDenied, match="disabled"):
            await strict.check(_scope(token), policy)


async def test_require_active_refuses_unknown_subjects_only_for_store_sources() -> None:
    token = ISSUER.issue(99)
    unknown = Fixed(NO_RIGHTS)
    assert await Authorizer(unknown, require_active=True).check(_scope(token), authenticated)
    with pytest.raises(PermissionDenied, match="unknown"):
        await Authorizer(unknown, source="store", require_active=True).check(
            _scope(token), authenticated
        )


async def test_the_store_is_consulted_only_for_its_own_issuer() -> None:
    admin_in_store = Fixed(Rights(roles=frozenset({"admin"})))
    authorizer = Authorizer(admin_in_store, store_issuer="https://local")
    local = ISSUER.issue(1)
    assert (await authorizer.check(_scope(local), has_role("admin"))).subject == "1"
    foreign_key = Key.from_secret("another-issuers-secret-of-32-bytes-long!")
    foreign = TokenIssuer(foreign_key, issuer="https://idp.example").issue(1)
    principal = JWTVerifier(foreign_key, issuer="https://idp.example").verify_sync(foreign)
    with pytest.raises(PermissionDenied):
        await authorizer.check(
            {"type": "http", "method": "GET", "user": principal}, has_role("admin")
        )
    assert admin_in_store.calls == 1  # the foreign "1" never reached the store


async def test_websocket_scopes_do_not_memoize_rights_for_the_whole_connection() -> None:
    loader = Fixed(Rights(roles=frozenset({"admin"})))
    authorizer = Authorizer(loader)
    scope = _scope(ISSUER.issue(1), kind="websocket")
    for _ in range(3):
        await authorizer.check(scope, has_role("admin"))
    assert loader.calls == 3
    http = _scope(ISSUER.issue(1))
    for _ in range(3):
        await authorizer.check(http, has_role("admin"))
    assert loader.calls == 4  # one per HTTP request


async def test_a_load_started_after_an_invalidation_never_joins_the_stale_one() -> None:
    release = asyncio.Event()
    answers = [Rights(claims=frozenset({"old"})), Rights(claims=frozenset({"new"}))]

    class Slow:
        async def load(self, subject: str) -> Rights:
            answer = answers.pop(0)
            if answer.claims == {"old"}:
                await release.wait()
            return answer

    cache = CachedRights(Slow(), ttl=3600)
    stale = asyncio.create_task(cache.load("7"))
    await asyncio.sleep(0)
    cache.invalidate("7")
    fresh = await cache.load("7")
    release.set()
    assert (await stale).claims == {"old"}
    assert fresh.claims == {"new"}
    assert (await cache.load("7")).claims == {"new"}


async def test_overlong_numeric_subjects_name_no_user(sqlite_url: str) -> None:
    async with Store(sqlite_url) as store:
        await store.init_schema()
        loader = SQLRightsLoader(store)
        for subject in ("9" * 4301, "1" * 20, "9223372036854775808"):
            assert await loader.load(subject) == NO_RIGHTS


async def test_a_custom_query_cache_is_invalidated_by_admin_changes(store_url: str) -> None:
    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_claim("can_delete")
        await admin.create_user("bob", claims=("can_delete",))
        query = (
            "SELECT NULL AS role, c.name AS claim FROM users u "
            "JOIN user_claims uc ON uc.user_id = u.id JOIN claims c ON c.id = uc.claim_id "
            "WHERE u.username = :subject"
        )
        cache = cached_rights(store, query=query, ttl=3600)
        assert (await cache.load("bob")).claims == {"can_delete"}
        await admin.revoke("bob", "can_delete")
        assert (await cache.load("bob")).claims == frozenset()


async def test_a_write_with_an_unknown_outcome_forgets_cached_rights(sqlite_url: str) -> None:
    async with Store(sqlite_url, timeout=0.05) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_user("carol")
        changes: list[str | None] = []
        store.on_change(changes.append)
        real = store.database.execute

        async def slow(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(1)
            return await real(*args, **kwargs)

        store.database.execute = slow  # type: ignore[method-assign]
        try:
            with pytest.raises(StoreUnavailable, match="no answer"):
                await admin.set_active("carol", False)
        finally:
            store.database.execute = real  # type: ignore[method-assign]
        assert changes == [None]
        await asyncio.sleep(0.3)  # let the abandoned operation finish rolling back


async def test_two_sqlite_stores_writing_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with Store(url) as first, Store(url) as second:
        await first.init_schema()
        names = [f"r{n}" for n in range(20)]
        await asyncio.gather(
            *(
                StoreAdmin(first if n % 2 else second).create_role(name)
                for n, name in enumerate(names)
            )
        )
        assert sorted(n for n, _ in await StoreAdmin(first).list_names("role")) == sorted(names)


async def test_concurrent_renames_to_one_name_are_clear_errors(store_url: str) -> None:
    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        for n in range(5):
            await admin.create_role(f"role{n}")
        results = await asyncio.gather(
            *(admin.rename_role(f"role{n}", "winner") for n in range(5)), return_exceptions=True
        )
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, AlreadyExists) for r in results if r is not None)


@pytest.mark.parametrize("claim", ["x\x00y", "\ud800", "a" * 1000])
async def test_names_no_store_could_hold_are_simply_not_found(store_url: str, claim: str) -> None:
    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_user("dan")
        with pytest.raises(NotFound):
            await admin.grant("dan", claim)


def test_the_feed_keeps_ssl_settings_and_drops_pool_options() -> None:
    store = Store("postgresql://u:p@db.example/app?ssl=verify-full&min_size=1&max_size=2")
    assert PostgresChangeFeed(store).dsn == "postgresql://u:p@db.example/app?sslmode=verify-full"
    assert store.safe_url == (
        "postgresql://u:********@db.example/app?ssl=verify-full&min_size=1&max_size=2"
    )


async def test_the_feed_notices_a_silent_partition_and_recovers(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    async with faulty_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        async with Store(url) as store:
            feed = PostgresChangeFeed(store, heartbeat=0.3, max_backoff=0.5)
            await feed.start()
            try:
                assert feed.listening
                proxy.delay = 3600.0  # packets vanish; no connection is closed
                deadline = time.monotonic() + 10
                while feed.listening and time.monotonic() < deadline:  # noqa: ASYNC110 - polls
                    await asyncio.sleep(0.05)
                assert not feed.listening
                await proxy.cut()
                await proxy.restore()
                deadline = time.monotonic() + 10
                while not feed.listening and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                assert feed.listening
            finally:
                await feed.stop()


async def test_demo_answers_hostile_ids_and_bodies_without_a_500(sqlite_url: str) -> None:
    async with Store(sqlite_url) as store:
        ids = await prepare_store(store, seed=True)
    config = DemoConfig(Key.generate("HS256"), database_url=sqlite_url)
    app = build_demo(config)
    alice = {"Authorization": f"Bearer {config.issuer_obj.issue(ids['alice'])}"}
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client,
    ):
        for path in ("/records/" + "9" * 4301, "/records/-1", "/records/01", "/records/x"):
            assert (await client.delete(path, headers=alice)).status_code == 404
            assert (await client.delete(path)).status_code == 401
        bodies = [b"[" * 100_000, b'{"body": "\\ud800"}', b'{"body": "a\\u0000b"}', b"x" * 20_000]
        for body in bodies:
            answer = await client.post("/records", content=body, headers=alice)
            assert answer.status_code == 422


async def test_check_inside_a_handler_uses_the_middlewares_authorizer() -> None:
    loader = Fixed(Rights(roles=frozenset({"admin"})))

    async def handler(request: Request) -> JSONResponse:
        principal = await check(request.scope, has_role("admin"))
        return JSONResponse({"sub": principal.identity})

    app = AuthMiddleware(
        Starlette(routes=[Route("/", handler)]),
        verifier=JWTVerifier(KEY, issuer="https://local"),
        authorizer=Authorizer(loader),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/", headers={"Authorization": f"Bearer {ISSUER.issue(5)}"})
    assert answer.json() == {"sub": "5"}
    assert loader.calls == 1
