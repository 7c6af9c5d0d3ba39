"""Login throttling: per username and per address, sliding window, shared by instances,
the same for unknown usernames — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from asgi_auth import Key, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.authn.login import StoreAuthenticator, TokenEndpoint
from asgi_auth.store import Store, StoreAdmin
from asgi_auth.store.throttle import LoginThrottle

KEY = Key.from_secret("throttle-tests-secret-that-is-32-bytes-long")
HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _endpoint(store: Store, clock: Clock, **limits: int) -> httpx.AsyncClient:
    throttle = LoginThrottle(store, window=600, clock=clock, **limits)
    endpoint = TokenEndpoint(TokenIssuer(KEY), StoreAuthenticator(store, HASHER), throttle=throttle)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=endpoint), base_url="http://auth")


async def _login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    return await http.post("/token", data=form)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with Store(store_url) as connected:
        await connected.init_schema()
        await StoreAdmin(connected).create_user("alice", password_hash=await HASHER.hash("pw"))
        yield connected


@pytest.mark.parametrize("username", ["alice", "nobody"])
async def test_failures_past_the_limit_get_429_known_user_or_not(
    store: Store, username: str
) -> None:
    clock = Clock()
    async with _endpoint(store, clock, per_user=3) as http:
        statuses = [(await _login(http, username, "wrong")).status_code for _ in range(3)]
        assert statuses == [400, 400, 400]
        throttled = await _login(http, username, "pw")  # even the right password waits
        assert throttled.status_code == 429
        assert throttled.json()["error"] == "too_many_attempts"
        assert 0 < int(throttled.headers["retry-after"]) <= 601
        clock.now += 601  # the window slides past the failures
        assert (await _login(http, username, "wrong")).status_code == 400


async def test_a_success_clears_the_username_count(store: Store) -> None:
    clock = Clock()
    async with _endpoint(store, clock, per_user=3) as http:
        for _ in range(2):
            await _login(http, "alice", "wrong")
        assert (await _login(http, "alice", "pw")).status_code == 200
        for _ in range(2):
            assert (await _login(http, "alice", "wrong")).status_code == 400
        assert (await _login(http, "alice", "pw")).status_code == 200


async def test_one_address_trying_many_usernames_is_throttled(store: Store) -> None:
    clock = Clock()
    async with _endpoint(store, clock, per_user=100, per_address=4) as http:
        for n in range(4):
            assert (await _login(http, f"user{n}", "x")).status_code == 400
        assert (await _login(http, "someone-else", "x")).status_code == 429


async def test_instances_sharing_a_store_share_the_count(store_url: str, store: Store) -> None:
    clock = Clock()
    async with (
        Store(store_url) as other,
        _endpoint(store, clock, per_user=2) as first,
        _endpoint(other, clock, per_user=2) as second,
    ):
        assert (await _login(first, "alice", "wrong")).status_code == 400
        assert (await _login(second, "alice", "wrong")).status_code == 400
        assert (await _login(first, "alice", "pw")).status_code == 429


def test_limits_below_one_are_refused(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LoginThrottle(Store(sqlite_url), per_user=0)


async def test_attempts_older_than_the_window_leave_the_table(store: Store) -> None:
    clock = Clock()
    throttle = LoginThrottle(
        store, per_user=3, per_address=100, window=600, clock=lambda: clock.now
    )
    for n in range(3):
        assert (await throttle.attempt(f"user{n}", "10.9.9.9")).retry_after is None
    clock.now += 601
    assert (await throttle.attempt("someone", "10.9.9.9")).retry_after is None
    keys = await store.database.fetch_all("SELECT key FROM login_failures ORDER BY id")
    assert [r["key"] for r in keys] == ["user:someone", "addr:10.9.9.9"]
