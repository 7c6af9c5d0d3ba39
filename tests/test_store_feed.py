"""PostgresChangeFeed: rights changes reach every instance sharing one PostgreSQL store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asgi_auth.authz.rights import CachedRights, Rights
from asgi_auth.store import PostgresChangeFeed, Store, StoreAdmin, cached_rights
from asgi_auth.store.admin import CHANGES_CHANNEL

FetchAll = Callable[..., Awaitable[Any]]
LISTENERS_SQL = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE query LIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid()"
)
BOB = Rights(roles=frozenset({"staff"}), claims=frozenset({"read", "write"}))
BOB_AFTER = Rights(roles=frozenset({"staff"}), claims=frozenset({"read"}))


class FetchCounter:
    """Stands in for ``store.database.fetch_all`` and counts the queries."""

    def __init__(self, real: FetchAll) -> None:
        self.real = real
        self.calls = 0

    async def __call__(self, query: Any, values: Any = None) -> Any:
        self.calls += 1
        return await self.real(query, values)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 5.0, step: float = 0.05
) -> float:
    """Poll ``check`` until true; returns the seconds it took. Fails after ``within``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


@dataclass
class Instance:
    """One "app instance": its own store, cache and change feed."""

    store: Store
    cache: CachedRights
    feed: PostgresChangeFeed
    heard: list[str | None]


@pytest.fixture
async def shared_url(postgres_url: str) -> str:
    """The session database with the schema, emptied, and bob (staff; read, write) in it."""
    async with Store(postgres_url) as store:
        await store.init_schema()
        await store.database.execute(
            "TRUNCATE user_claims, users, roles, claims RESTART IDENTITY CASCADE"
        )
        admin = StoreAdmin(store)
        await admin.create_role("staff")
        for claim in ("read", "write"):
            await admin.create_claim(claim)
        await admin.create_user("bob", role="staff", claims=("read", "write"))
        await admin.create_user("carol", claims=("read",))
    return postgres_url


@pytest.fixture
async def instances(shared_url: str) -> AsyncIterator[tuple[Instance, Instance]]:
    """Two instances on the same database, feeds started."""
    made: list[Instance] = []
    try:
        for _ in range(2):
            store = Store(shared_url)
            feed = PostgresChangeFeed(store)
            heard: list[str | None] = []
            made.append(Instance(store, cached_rights(store, ttl=3600), feed, heard))
            await store.connect()
            store.on_change(heard.append)
            await feed.start()
        yield made[0], made[1]
    finally:
        for instance in made:
            await instance.feed.stop()
            await instance.store.disconnect()


async def subject_of(store: Store, username: str) -> str:
    found = await store.database.fetch_val(
        "SELECT id FROM users WHERE username = :name", {"name": username}
    )
    return str(found)


async def listening_pids(store: Store) -> list[int]:
    return [int(r["pid"]) for r in await store.database.fetch_all(LISTENERS_SQL)]


async def test_a_change_on_one_instance_reaches_the_other_through_notify(
    instances: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = instances
    assert a.feed.listening
    assert b.feed.listening
    bob = await subject_of(a.store, "bob")
    counter = FetchCounter(b.store.database.fetch_all)
    monkeypatch.setattr(b.store.database, "fetch_all", counter)
    assert await b.cache.load(bob) == BOB
    assert await b.cache.load(bob) == BOB
    assert counter.calls == 1  # cached on B
    b.heard.clear()

    await StoreAdmin(a.store).revoke("bob", "write")  # through instance A only

    async def b_sees_it() -> bool:
        return await b.cache.load(bob) == BOB_AFTER

    took = await eventually(b_sees_it, within=5.0)
    assert took < 5.0  # and the TTL is an hour: only the notification explains it
    assert b.heard == [bob]  # B heard exactly bob's id, from the feed
    assert counter.calls == 2  # B reloaded once, on the invalidation
    assert len(b.cache) == 1
    # A's own cache was invalidated directly as well.
    assert await a.cache.load(bob) == BOB_AFTER


async def test_a_change_invalidates_only_that_subject_elsewhere(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    bob, carol = await subject_of(a.store, "bob"), await subject_of(a.store, "carol")
    await b.cache.load(bob)
    await b.cache.load(carol)
    assert len(b.cache) == 2
    b.heard.clear()
    await StoreAdmin(a.store).grant("carol", "write")

    async def heard_carol() -> bool:
        return b.heard == [carol]

    await eventually(heard_carol)
    assert len(b.cache) == 1  # bob stays cached
    assert await b.cache.load(carol) == Rights(claims=frozenset({"read", "write"}))


@pytest.fixture
async def one(shared_url: str) -> AsyncIterator[Instance]:
    """One instance whose feed the test starts itself."""
    store = Store(shared_url)
    feed = PostgresChangeFeed(store, max_backoff=1.0)
    instance = Instance(store, cached_rights(store, ttl=3600), feed, [])
    store.on_change(instance.heard.append)
    await store.connect()
    try:
        yield instance
    finally:
        await feed.stop()
        await store.disconnect()


async def test_listening_after_start_and_a_clean_stop(one: Instance) -> None:
    assert not one.feed.listening
    assert await listening_pids(one.store) == []
    await one.feed.start()
    assert one.feed.listening
    assert one.heard == [None]  # connecting invalidates everything once
    assert len(await listening_pids(one.store)) == 1
    await one.feed.stop()
    assert not one.feed.listening

    async def no_listener_left() -> bool:
        return await listening_pids(one.store) == []

    await eventually(no_listener_left)
    await one.feed.stop()  # a second stop is harmless
    # Stopped means deaf: a notification no longer reaches the store.
    one.heard.clear()
    await one.store.database.execute(
        "SELECT pg_notify(:channel, :payload)", {"channel": CHANGES_CHANNEL, "payload": "*"}
    )
    await asyncio.sleep(0.3)
    assert one.heard == []


async def test_start_is_idempotent(one: Instance) -> None:
    await one.feed.start()
    await one.feed.start()
    assert one.feed.listening
    assert len(await listening_pids(one.store)) == 1


async def test_a_star_notification_clears_every_entry(one: Instance) -> None:
    await one.feed.start()
    bob, carol = await subject_of(one.store, "bob"), await subject_of(one.store, "carol")
    await one.cache.load(bob)
    await one.cache.load(carol)
    assert len(one.cache) == 2
    one.heard.clear()
    async with Store(one.store.url) as other:
        await other.database.execute(
            "SELECT pg_notify(:channel, '*')", {"channel": CHANGES_CHANNEL}
        )

    async def cleared() -> bool:
        return one.heard == [None]

    await eventually(cleared)
    assert len(one.cache) == 0


async def test_the_feed_reconnects_after_its_connection_is_killed(one: Instance) -> None:
    await one.feed.start()
    assert one.feed.listening
    bob = await subject_of(one.store, "bob")
    await one.cache.load(bob)
    assert len(one.cache) == 1
    [old_pid] = await listening_pids(one.store)
    one.heard.clear()
    async with Store(one.store.url) as killer:
        killed = await killer.database.fetch_all(
            "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
    assert [bool(r["done"]) for r in killed] == [True]

    async def listening_again() -> bool:
        pids = await listening_pids(one.store)
        return one.feed.listening and len(pids) == 1 and pids[0] != old_pid and None in one.heard

    await eventually(listening_again, within=8.0)
    assert len(one.cache) == 0  # everything invalidated: notifications may have been missed
    # And the new connection delivers notifications.
    await one.cache.load(bob)
    one.heard.clear()
    await StoreAdmin(one.store).revoke("bob", "write")
    assert one.heard[0] == bob  # the direct call

    async def notified() -> bool:
        return one.heard == [bob, bob]  # ...and the same change through the feed

    await eventually(notified)
    assert await one.cache.load(bob) == BOB_AFTER


async def test_the_feed_listens_with_a_url_that_carries_pool_options(shared_url: str) -> None:
    # `databases` takes pool sizes in the URL's query (?min_size=&max_size=); the store
    # works with such a URL, and so must its feed.
    store = Store(f"{shared_url}?min_size=1&max_size=2")
    feed = PostgresChangeFeed(store, max_backoff=0.5)
    async with store:
        try:
            assert await store.database.fetch_val("SELECT 1") == 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await feed.start()
            assert feed.listening, f"the feed cannot connect to {feed.dsn}"
        finally:
            await feed.stop()


def test_a_sqlite_store_has_no_feed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        PostgresChangeFeed(Store(f"sqlite:///{tmp_path / 'auth.db'}"))


def test_the_dsn_is_what_asyncpg_takes() -> None:
    assert PostgresChangeFeed(Store("postgres://u@h/db")).dsn == "postgresql://u@h/db"
    assert PostgresChangeFeed(Store("postgresql://u@h:5/db")).dsn == "postgresql://u@h:5/db"
