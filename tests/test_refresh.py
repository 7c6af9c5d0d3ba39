"""Refresh tokens: rotation, reuse detection, absolute family lifetime, hashed storage,
concurrent use (exactly one wins), through the token endpoint, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from asgi_auth import InvalidCredentials, JWTVerifier, Key, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.authn.login import StoreAuthenticator, TokenEndpoint
from asgi_auth.store import Store, StoreAdmin
from asgi_auth.store.refresh import RefreshTokens

KEY = Key.from_secret("refresh-tests-secret-that-is-32-bytes-long")
HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def setup(store_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Store, Clock]]:
    clock = Clock()
    async with Store(store_url) as store:
        await store.init_schema()
        await StoreAdmin(store).create_user("alice", password_hash=await HASHER.hash("pw"))
        authenticator = StoreAuthenticator(store, HASHER)
        refresh = RefreshTokens(
            store, family_lifetime=3600, is_active=authenticator.is_active, clock=clock
        )
        endpoint = TokenEndpoint(TokenIssuer(KEY), authenticator, refresh=refresh)
        transport = httpx.ASGITransport(app=endpoint)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as http:
            yield http, store, clock


async def _login(http: httpx.AsyncClient) -> str:
    answer = await http.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": "pw"}
    )
    assert answer.status_code == 200
    token: str = answer.json()["refresh_token"]
    return token


async def _refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": token})


async def test_each_use_rotates_the_refresh_token(
    setup: tuple[httpx.AsyncClient, Store, Clock],
) -> None:
    http, _, _ = setup
    first = await _login(http)
    answer = await _refresh(http, first)
    assert answer.status_code == 200
    body = answer.json()
    assert body["refresh_token"] != first
    assert JWTVerifier(KEY).verify_sync(body["access_token"]).subject == "1"
    assert answer.headers["cache-control"] == "no-store"
    second = await _refresh(http, body["refresh_token"])
    assert second.status_code == 200


async def test_a_reused_refresh_token_revokes_its_whole_family(
    setup: tuple[httpx.AsyncClient, Store, Clock],
) -> None:
    http, _, _ = setup
    first = await _login(http)
    following = (await _refresh(http, first)).json()["refresh_token"]
    replay = await _refresh(http, first)  # a thief (or the owner) replays the used one
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert (await _refresh(http, following)).status_code == 400  # the family is gone
    other_login = await _login(http)  # another login is another family
    assert (await _refresh(http, other_login)).status_code == 200


async def test_one_refresh_token_used_concurrently_wins_exactly_once(
    setup: tuple[httpx.AsyncClient, Store, Clock],
) -> None:
    http, _, _ = setup
    token = await _login(http)
    answers = await asyncio.gather(*(_refresh(http, token) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 7


async def test_a_family_has_an_absolute_lifetime(
    setup: tuple[httpx.AsyncClient, Store, Clock],
) -> None:
    http, _, clock = setup
    token = await _login(http)
    for _ in range(3):
        clock.now += 1000
        answer = await _refresh(http, token)
        assert answer.status_code == 200
        token = answer.json()["refresh_token"]
    clock.now += 1000  # 4000 s after the login: past the 3600 s family lifetime
    assert (await _refresh(http, token)).json()["error"] == "invalid_grant"


async def test_only_digests_are_stored(setup: tuple[httpx.AsyncClient, Store, Clock]) -> None:
    http, store, _ = setup
    token = await _login(http)
    rows = await store.database.fetch_all("SELECT token_hash, subject FROM refresh_tokens")
    assert rows
    assert all(token not in str(dict(row)) for row in rows)
    assert all(len(row["token_hash"]) == 64 for row in rows)


async def test_a_disabled_user_cannot_refresh(
    setup: tuple[httpx.AsyncClient, Store, Clock],
) -> None:
    http, store, _ = setup
    token = await _login(http)
    await StoreAdmin(store).set_active("alice", False)
    assert (await _refresh(http, token)).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("token", ["", "x", "A" * 201, "not-a-real-token-" * 5])
async def test_unknown_refresh_tokens_are_invalid_grant_or_request(
    setup: tuple[httpx.AsyncClient, Store, Clock], token: str
) -> None:
    http, _, _ = setup
    answer = await _refresh(http, token)
    assert answer.status_code == 400
    assert answer.json()["error"] == ("invalid_request" if not token else "invalid_grant")


async def test_revoke_ends_a_family(setup: tuple[httpx.AsyncClient, Store, Clock]) -> None:
    http, store, _ = setup
    token = await _login(http)
    refresh = RefreshTokens(store)
    assert await refresh.revoke(token) is True
    assert await refresh.revoke("unknown") is False
    with pytest.raises(InvalidCredentials, match="revoked"):
        await refresh.rotate(token)


async def test_without_refresh_tokens_the_grant_is_unsupported(store_url: str) -> None:
    async with Store(store_url) as store:
        await store.init_schema()
        endpoint = TokenEndpoint(TokenIssuer(KEY), StoreAuthenticator(store, HASHER))
        transport = httpx.ASGITransport(app=endpoint)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as http:
            answer = await _refresh(http, "anything")
    assert answer.json()["error"] == "unsupported_grant_type"
