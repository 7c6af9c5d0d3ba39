"""The Redis deny-list and login throttle, against a real Redis (127.0.0.1:6379).

Each test uses a key prefix of its own and deletes its keys. Without a server the
tests skip, unless ASGI_AUTH_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from asgi_auth import Key, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.authn.login import StoreAuthenticator, TokenEndpoint
from asgi_auth.errors import ServiceUnavailable
from asgi_auth.store import Store, StoreAdmin
from asgi_auth.store.redis import RedisLoginThrottle, RedisRevocationList
from tests.conftest import service_missing

REDIS_URL = os.environ.get("ASGI_AUTH_TEST_REDIS", "redis://127.0.0.1:6379/0")
KEY = Key.from_secret("redis-tests-secret-that-is-32-bytes-long")
HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client() -> AsyncIterator[redis_asyncio.Redis]:
    connection = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await connection.ping()
    except (OSError, RedisError) as exc:
        await connection.aclose()
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield connection
    await connection.aclose()


@pytest.fixture
async def prefix(client: redis_asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix for this test only; its keys are deleted afterwards."""
    mine = f"asgi_auth_test:{secrets.token_hex(6)}:"
    yield mine
    keys = [key async for key in client.scan_iter(match=mine + "*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def down() -> AsyncIterator[redis_asyncio.Redis]:
    """A client pointed at a closed port (no retries: redis-py's default ones cost ~4 s
    per command, see the 503 test, which keeps them)."""
    connection = redis_asyncio.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    yield connection
    await connection.aclose()


# The deny-list


async def test_a_revocation_holds_at_once_and_reaches_other_instances_at_sync(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    first = RedisRevocationList(client, prefix=prefix + "rev:")
    second = RedisRevocationList(client, prefix=prefix + "rev:")
    await first.revoke("jti-1", time.time() + 300)
    assert first.is_revoked("jti-1")
    assert not first.is_revoked("jti-2")
    assert not second.is_revoked("jti-1")  # not before its sync
    await second.sync()
    assert second.is_revoked("jti-1")
    assert not second.is_revoked("jti-2")


async def test_a_revocation_key_expires_with_its_token(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    revocations = RedisRevocationList(client, prefix=prefix)
    before = time.time()
    expires = before + 120
    await revocations.revoke("jti-ttl", expires)
    ttl = await client.pttl(prefix + "jti-ttl") / 1000
    assert 0 < ttl <= expires - before + 1
    assert ttl > 100  # not a short default


async def test_sync_replaces_the_view_with_what_redis_holds(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    writer = RedisRevocationList(client, prefix=prefix)
    reader = RedisRevocationList(client, prefix=prefix)
    await writer.revoke("gone-later", time.time() + 300)
    await reader.sync()
    assert reader.is_revoked("gone-later")
    await client.delete(prefix + "gone-later")  # removed from Redis (say, by an admin)
    await reader.sync()
    assert not reader.is_revoked("gone-later")


async def test_a_revocation_redis_refused_is_not_half_made_and_can_be_retried(
    client: redis_asyncio.Redis, down: redis_asyncio.Redis, prefix: str
) -> None:
    revocations = RedisRevocationList(down, prefix=prefix)
    with pytest.raises(ServiceUnavailable):
        await revocations.revoke("retried", time.time() + 300)
    assert not revocations.is_revoked("retried")  # a 503 revoked nothing
    revocations.client = client  # Redis is back: the caller retries
    await revocations.revoke("retried", time.time() + 300)
    assert revocations.is_revoked("retried")
    assert await client.exists(prefix + "retried") == 1
    other = RedisRevocationList(client, prefix=prefix)
    await other.sync()
    assert other.is_revoked("retried")


async def test_a_revocation_a_concurrent_sync_missed_stays_until_a_sync_sees_it(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    revocations = RedisRevocationList(client, prefix=prefix)
    scan = client.scan_iter

    def late_scan(*args: object, **kwargs: object) -> object:
        # The revocation lands after this sync's scan: the scan cannot see it.
        return scan(match=prefix + "nothing-matches-*")

    await revocations.revoke("landed-late", time.time() + 300)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client, "scan_iter", late_scan)
        await revocations.sync()
    assert revocations.is_revoked("landed-late")
    await revocations.sync()
    assert revocations.is_revoked("landed-late")


async def test_expired_revocations_leave_memory_at_sync(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    clock = Clock()
    clock.now = time.time()
    revocations = RedisRevocationList(client, prefix=prefix, clock=clock)
    await revocations.revoke("short", clock.now + 2)
    assert revocations.is_revoked("short")
    clock.now += 3
    await client.delete(prefix + "short")  # as Redis does once the key expires
    await revocations.sync()
    assert not revocations.is_revoked("short")


async def test_the_prefix_is_matched_literally(client: redis_asyncio.Redis, prefix: str) -> None:
    literal = RedisRevocationList(client, prefix=prefix + "[ab]*:")
    other = RedisRevocationList(client, prefix=prefix + "a-x:")
    await other.revoke("elsewhere", time.time() + 300)
    await literal.revoke("mine", time.time() + 300)
    fresh = RedisRevocationList(client, prefix=prefix + "[ab]*:")
    await fresh.sync()
    assert set(fresh._revoked) == {"mine"}


async def test_the_background_sync_picks_up_revocations(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    writer = RedisRevocationList(client, prefix=prefix)
    reader = RedisRevocationList(client, prefix=prefix, sync_interval=0.05)
    await reader.start()
    try:
        await writer.revoke("background", time.time() + 300)
        for _ in range(100):
            if reader.is_revoked("background"):
                break
            await asyncio.sleep(0.02)
        assert reader.is_revoked("background")
    finally:
        await reader.stop()
    assert reader._task is None


async def test_bad_arguments_are_refused(client: redis_asyncio.Redis, prefix: str) -> None:
    revocations = RedisRevocationList(client, prefix=prefix)
    with pytest.raises(ValueError, match="1 to 255"):
        await revocations.revoke("", time.time() + 60)
    with pytest.raises(ValueError, match="1 to 255"):
        await revocations.revoke("x" * 256, time.time() + 60)
    with pytest.raises(ValueError, match="positive"):
        RedisRevocationList(client, sync_interval=0)
    with pytest.raises(ValueError, match="at least 1"):
        RedisLoginThrottle(client, per_user=0)


# The throttle


async def test_failures_past_the_limit_give_a_bounded_retry_after(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    clock = Clock()
    throttle = RedisLoginThrottle(client, per_user=3, window=600, prefix=prefix, clock=clock)
    for _ in range(3):
        assert await throttle.retry_after("Alice", "10.0.0.1") is None
        await throttle.failed("Alice", "10.0.0.1")
    wait = await throttle.retry_after("alice", "10.0.0.2")  # casefolded: the same user
    assert wait is not None
    assert 0 < wait <= 601
    clock.now += 300
    later = await throttle.retry_after("alice", None)
    assert later is not None
    assert later == wait - 300
    clock.now += 301  # the window slides past the failures
    assert await throttle.retry_after("alice", None) is None
    assert not await client.exists(prefix + "user:alice")  # emptied, so gone


async def test_throttle_keys_expire_with_the_window(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    throttle = RedisLoginThrottle(client, window=120, prefix=prefix)
    await throttle.failed("erin", "10.2.2.2")
    for key in ("user:erin", "addr:10.2.2.2"):
        assert 0 < await client.ttl(prefix + key) <= 120


async def test_a_success_clears_the_username_not_the_address(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    clock = Clock()
    throttle = RedisLoginThrottle(
        client, per_user=2, per_address=3, window=600, prefix=prefix, clock=clock
    )
    await throttle.failed("bob", "10.0.0.9")
    await throttle.failed("bob", "10.0.0.9")
    assert await throttle.retry_after("bob", None) is not None
    await throttle.succeeded("BOB")
    assert await throttle.retry_after("bob", None) is None
    await throttle.failed("bob", "10.0.0.9")
    assert await throttle.retry_after("carol", "10.0.0.9") is not None  # address: 3


async def test_one_address_is_limited_across_usernames(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    throttle = RedisLoginThrottle(client, per_user=100, per_address=4, prefix=prefix)
    for n in range(4):
        assert await throttle.retry_after(f"user{n}", "10.1.1.1") is None
        await throttle.failed(f"user{n}", "10.1.1.1")
    assert await throttle.retry_after("someone-else", "10.1.1.1") is not None
    assert await throttle.retry_after("someone-else", "10.1.1.2") is None


async def test_instances_share_the_count_and_sets_stay_bounded(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    clock = Clock()
    first = RedisLoginThrottle(client, per_user=2, prefix=prefix, clock=clock)
    second = RedisLoginThrottle(client, per_user=2, prefix=prefix, clock=clock)
    await first.failed("dave", None)
    assert await second.retry_after("dave", None) is None
    await second.failed("dave", None)
    assert await first.retry_after("dave", None) is not None
    for _ in range(10):
        await first.failed("dave", None)
    assert await client.zcard(prefix + "user:dave") == 2


def _endpoint(throttle: RedisLoginThrottle, store: Store) -> httpx.AsyncClient:
    # TokenEndpoint is annotated with LoginThrottle; RedisLoginThrottle has its interface.
    endpoint = TokenEndpoint(
        TokenIssuer(KEY),
        StoreAuthenticator(store, HASHER),
        throttle=throttle,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=endpoint), base_url="http://auth")


async def _login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    return await http.post("/token", data=form)


async def test_the_token_endpoint_answers_429_with_retry_after(
    client: redis_asyncio.Redis, prefix: str, sqlite_url: str
) -> None:
    throttle = RedisLoginThrottle(client, per_user=3, window=600, prefix=prefix)
    async with Store(sqlite_url) as store:
        await store.init_schema()
        await StoreAdmin(store).create_user("alice", password_hash=await HASHER.hash("pw"))
        async with _endpoint(throttle, store) as http:
            assert (await _login(http, "alice", "pw")).status_code == 200
            statuses = [(await _login(http, "alice", "wrong")).status_code for _ in range(3)]
            assert statuses == [400, 400, 400]
            throttled = await _login(http, "alice", "pw")  # even the right password waits
            assert throttled.status_code == 429
            assert throttled.json()["error"] == "too_many_attempts"
            assert 0 < int(throttled.headers["retry-after"]) <= 601


# Redis down: fail closed


async def test_an_unreachable_redis_is_service_unavailable(
    down: redis_asyncio.Redis,
) -> None:
    revocations = RedisRevocationList(down)
    with pytest.raises(ServiceUnavailable) as revoking:
        await revocations.revoke("jti-down", time.time() + 60)
    assert isinstance(revoking.value.__cause__, RedisError | OSError)
    assert not revocations.is_revoked("jti-down")  # nothing half-made: the caller retries
    revocations._revoked["held"] = time.time() + 60
    with pytest.raises(ServiceUnavailable):
        await revocations.sync()
    assert revocations.is_revoked("held")  # the view in memory stays
    throttle = RedisLoginThrottle(down)
    with pytest.raises(ServiceUnavailable):
        await throttle.retry_after("alice", "10.0.0.1")
    with pytest.raises(ServiceUnavailable):
        await throttle.failed("alice", "10.0.0.1")
    with pytest.raises(ServiceUnavailable):
        await throttle.succeeded("alice")


async def test_the_token_endpoint_answers_503_when_redis_is_down(sqlite_url: str) -> None:
    async with Store(sqlite_url) as store:
        await store.init_schema()
        await StoreAdmin(store).create_user("alice", password_hash=await HASHER.hash("pw"))
        # redis-py's default retries here: still a 503, after them.
        default = redis_asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
        try:
            async with _endpoint(RedisLoginThrottle(default), store) as http:
                answer = await _login(http, "alice", "pw")
        finally:
            await default.aclose()
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
