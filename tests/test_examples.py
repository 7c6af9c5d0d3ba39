"""Every example in examples/ runs and answers as its docstring says."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from asgi_auth import Key, TokenIssuer
from asgi_auth.types import ASGIApp
from examples import fastapi_app, raw_asgi, starlette_app

KEY = Key.from_secret("an-example-secret-of-at-least-32-bytes!")
ISSUER = TokenIssuer(KEY)


@pytest.fixture
def token() -> str:
    return ISSUER.issue(7, claims={"scope": "items:read", "name": "Ada"})


async def _client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        yield client


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(raw_asgi.create_app(KEY)):
        yield client


@pytest.fixture
async def star() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(starlette_app.create_app(KEY)):
        yield client


@pytest.fixture
async def fast() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(fastapi_app.create_app(KEY)):
        yield client


async def test_raw_asgi_example_echoes_the_principal(raw: httpx.AsyncClient, token: str) -> None:
    answer = await raw.get("/", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["subject"] == "7"
    assert answer.json()["scopes"] == ["items:read"]


async def test_raw_asgi_example_is_anonymous_without_a_token(raw: httpx.AsyncClient) -> None:
    answer = await raw.get("/")
    assert answer.status_code == 200
    assert answer.json()["subject"] is None


async def test_raw_asgi_example_refuses_a_forged_token(raw: httpx.AsyncClient) -> None:
    forged = TokenIssuer(Key.generate("HS256")).issue(7)
    answer = await raw.get("/", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'


async def test_starlette_example_requires_works_through_our_middleware(
    star: httpx.AsyncClient, token: str
) -> None:
    answer = await star.get("/items", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json() == {"items": ["apple", "pear"], "for": "7"}


async def test_starlette_example_requires_refuses_a_token_without_the_scope(
    star: httpx.AsyncClient,
) -> None:
    answer = await star.get("/items", headers={"Authorization": f"Bearer {ISSUER.issue(7)}"})
    assert answer.status_code == 403


async def test_starlette_example_greets_by_name(star: httpx.AsyncClient, token: str) -> None:
    assert (await star.get("/")).json() == {"hello": "stranger"}
    named = await star.get("/", headers={"Authorization": f"Bearer {token}"})
    assert named.json() == {"hello": "Ada"}


async def test_fastapi_example_dependency_gives_the_principal(
    fast: httpx.AsyncClient, token: str
) -> None:
    answer = await fast.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["subject"] == "7"


async def test_fastapi_example_dependency_is_401_with_a_challenge_for_anonymous(
    fast: httpx.AsyncClient,
) -> None:
    answer = await fast.get("/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="api"'
    assert (await fast.get("/public")).status_code == 200


async def test_fastapi_example_bad_token_is_401_invalid_token(fast: httpx.AsyncClient) -> None:
    answer = await fast.get("/public", headers={"Authorization": "Bearer not.a.token"})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


async def test_rbac_starlette_example_guards_by_role_and_by_method(store_url: str) -> None:
    from asgi_auth.store import Store, StoreAdmin
    from examples import rbac_starlette
    from tests.lifespan import lifespan

    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_role("admin")
        for claim in ("can_read", "can_write", "can_delete"):
            await admin.create_claim(claim)
        alice = await admin.create_user("alice", role="admin", claims=("can_read", "can_delete"))
        bob = await admin.create_user("bob", claims=("can_read",))
    app = rbac_starlette.create_app(KEY, store_url)
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://example"
        ) as client,
    ):

        async def status(method: str, path: str, user: int | None) -> int:
            headers = {} if user is None else {"Authorization": f"Bearer {ISSUER.issue(user)}"}
            return (await client.request(method, path, headers=headers)).status_code

        assert await status("GET", "/admin", alice) == 200
        assert await status("GET", "/admin", bob) == 403
        assert await status("GET", "/admin", None) == 401
        # alice may read and delete, but not create or update
        assert [await status(m, "/records/7", alice) for m in ("GET", "DELETE", "POST", "PUT")] == [
            200,
            200,
            403,
            403,
        ]
        assert [await status(m, "/records/7", bob) for m in ("GET", "DELETE")] == [200, 403]


async def test_rbac_fastapi_example_guards_by_role_and_claim(store_url: str) -> None:
    from asgi_auth.store import Store, StoreAdmin
    from examples import rbac_fastapi
    from tests.lifespan import lifespan

    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_role("admin")
        for claim in ("can_read", "can_write", "can_delete"):
            await admin.create_claim(claim)
        alice = await admin.create_user("alice", role="admin", claims=("can_read", "can_delete"))
        bob = await admin.create_user("bob", claims=("can_read",))
    app = rbac_fastapi.create_app(KEY, store_url)
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://example"
        ) as client,
    ):

        async def status(method: str, path: str, user: int | None) -> int:
            headers = {} if user is None else {"Authorization": f"Bearer {ISSUER.issue(user)}"}
            return (await client.request(method, path, headers=headers)).status_code

        assert await status("GET", "/admin", alice) == 200
        assert await status("GET", "/admin", bob) == 403
        assert await status("GET", "/admin", None) == 401
        assert [await status(m, "/records/7", alice) for m in ("GET", "DELETE", "PUT")] == [
            200,
            200,
            403,
        ]
        assert [await status(m, "/records/7", bob) for m in ("GET", "DELETE")] == [200, 403]
        schema = app.openapi()
        assert "bearer" in schema["components"]["securitySchemes"]
        assert schema["paths"]["/records/{record_id}"]["delete"]["security"] == [{"bearer": []}]
