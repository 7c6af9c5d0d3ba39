"""SQLRightsLoader and cached_rights on SQLite and PostgreSQL: answers, subjects that name
no user, custom queries, one query per load, slow and failing stores, and the cache."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from asgi_auth.authz.rights import NO_RIGHTS, CachedRights, Rights
from asgi_auth.errors import StoreUnavailable
from asgi_auth.store import SQLRightsLoader, Store, StoreAdmin, cached_rights

FetchAll = Callable[..., Awaitable[Any]]


class FetchSpy:
    """Stands in for ``store.database.fetch_all``: counts calls, can delay, fail or hold."""

    def __init__(self, real: FetchAll) -> None:
        self.real = real
        self.calls = 0
        self.delay = 0.0
        self.errors: list[BaseException] = []
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fetched = asyncio.Event()

    async def __call__(self, query: Any, values: Any = None) -> Any:
        self.calls += 1
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.errors:
            raise self.errors.pop(0)
        rows = await self.real(query, values)
        self.fetched.set()
        if self.hold is not None:
            await self.hold.wait()
        return rows


def spy_on(store: Store, monkeypatch: pytest.MonkeyPatch) -> FetchSpy:
    spy = FetchSpy(store.database.fetch_all)
    monkeypatch.setattr(store.database, "fetch_all", spy)
    return spy


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class People:
    """Subjects (user ids as strings) of the seeded users."""

    alice: str  # role admin; claims a, b
    plain: str  # no role, no claims
    disabled: str  # role admin, claim a, disabled
    role_only: str  # role viewer
    claims_only: str  # claims b, c


ALICE = Rights(roles=frozenset({"admin"}), claims=frozenset({"a", "b"}))


def holds_nothing(rights: Rights) -> bool:
    """No roles, no claims, and marked unknown (NO_RIGHTS) or disabled (``active=False``)."""
    marked = not rights.known or not getattr(rights, "active", True)
    return marked and not rights.roles and not rights.claims


@pytest.fixture
async def people(store: Store) -> People:
    admin = StoreAdmin(store)
    await admin.create_role("admin")
    await admin.create_role("viewer")
    for claim in ("a", "b", "c"):
        await admin.create_claim(claim)
    alice = await admin.create_user("alice", role="admin", claims=("a", "b"))
    plain = await admin.create_user("plain")
    disabled = await admin.create_user("disabled", role="admin", claims=("a",), is_active=False)
    role_only = await admin.create_user("role-only", role="viewer")
    claims_only = await admin.create_user("claims-only", claims=("c", "b"))
    return People(*(str(i) for i in (alice, plain, disabled, role_only, claims_only)))


# -- answers ------------------------------------------------------------------------------------


async def test_a_user_with_a_role_and_claims(store: Store, people: People) -> None:
    rights = await SQLRightsLoader(store).load(people.alice)
    assert rights == ALICE
    assert rights.known is True


async def test_users_with_part_or_none_of_the_rights_are_known(
    store: Store, people: People
) -> None:
    loader = SQLRightsLoader(store)
    plain = await loader.load(people.plain)
    assert plain == Rights()
    assert plain.known is True
    assert plain != NO_RIGHTS
    assert await loader.load(people.role_only) == Rights(roles=frozenset({"viewer"}))
    assert await loader.load(people.claims_only) == Rights(claims=frozenset({"b", "c"}))


async def test_a_disabled_user_has_no_rights(store: Store, people: People) -> None:
    # The user holds role admin and claim a, but is disabled: none of it counts.
    rights = await SQLRightsLoader(store).load(people.disabled)
    assert holds_nothing(rights), rights


@pytest.mark.parametrize("subject", ["999999", "0", str(2**63 - 1)])
async def test_an_unknown_id_has_no_rights(store: Store, people: People, subject: str) -> None:
    assert await SQLRightsLoader(store).load(subject) == NO_RIGHTS


NON_IDS = [
    "abc",
    "1.0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "0x1",
    "1e3",
    "\u0661",  # ARABIC-INDIC DIGIT ONE: isdigit(), and int() accepts it
    "\u00b2",  # SUPERSCRIPT TWO: isdigit(), but int() refuses it
    "99999999999999999999999",
    str(2**63),
    "",
]


@pytest.fixture
async def aiosqlite_threads_settle() -> AsyncIterator[None]:
    """Let aiosqlite's worker threads end before the test's event loop closes.

    A connection that fails to open (missing directory) is stopped by its worker thread,
    which reports back to the loop a moment later: if the loop has closed by then, the
    thread dies with "Event loop is closed" and pytest fails an unrelated test.
    """
    before = set(threading.enumerate())
    yield
    for _ in range(200):
        workers = [
            t
            for t in threading.enumerate()
            if t not in before and "_connection_worker_thread" in t.name
        ]
        if not workers:
            return
        await asyncio.sleep(0.01)


@pytest.fixture(params=["postgresql", "sqlite"])
def unreachable_store(
    request: pytest.FixtureRequest, tmp_path: Path, aiosqlite_threads_settle: None
) -> Store:
    """A store that was never connected (PostgreSQL) or whose file cannot be opened."""
    if request.param == "postgresql":
        return Store("postgresql://postgres@127.0.0.1:1/x", timeout=0.5)
    return Store(f"sqlite:///{tmp_path / 'missing' / 'auth.db'}", timeout=0.5)


@pytest.mark.parametrize("subject", NON_IDS)
async def test_a_subject_that_is_no_user_id_costs_no_query(
    unreachable_store: Store, subject: str
) -> None:
    loader = SQLRightsLoader(unreachable_store)
    assert await loader.load(subject) == NO_RIGHTS


async def test_the_unreachable_stores_really_fail_a_query(unreachable_store: Store) -> None:
    # The control for the test above: a numeric subject does query, and fails.
    with pytest.raises((StoreUnavailable, AssertionError)):
        await SQLRightsLoader(unreachable_store).load("1")


async def test_non_ids_run_no_query_on_a_live_store_either(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    loader = SQLRightsLoader(store)
    for subject in NON_IDS:
        assert await loader.load(subject) == NO_RIGHTS, subject
    assert spy.calls == 0
    assert await loader.load(people.alice) == ALICE
    assert spy.calls == 1


@pytest.mark.parametrize("prefix", ["0", "00"])
async def test_a_non_canonical_id_names_no_user(store: Store, people: People, prefix: str) -> None:
    # The issuer writes user 1's sub as "1". "01" is another string: were it to load user
    # 1's rights, the cache would keep them under "01", where the admin operations'
    # invalidation (which names "1") never reaches.
    assert await SQLRightsLoader(store).load(prefix + people.alice) == NO_RIGHTS


async def test_an_alias_of_an_id_is_not_left_stale_by_a_revoke(
    store: Store, people: People
) -> None:
    cache = cached_rights(store, ttl=3600)
    alias = "0" + people.alice
    await cache.load(alias)
    await StoreAdmin(store).revoke("alice", "b")
    assert "b" not in (await cache.load(alias)).claims


# -- custom queries -------------------------------------------------------------------------------


@pytest.fixture
async def accounts(store: Store) -> AsyncIterator[Store]:
    """An existing schema of the application's own: one table of logins and grants."""
    await store.database.execute("DROP TABLE IF EXISTS accounts")
    await store.database.execute("CREATE TABLE accounts (login TEXT, grp TEXT, perm TEXT)")
    for login, grp, perm in [
        ("alice", "admin", "read"),
        ("alice", "admin", "write"),
        ("bob", None, "read"),
        ("carol", "ops", None),
        ("x' OR '1'='1", "evil", "evil"),
    ]:
        await store.database.execute(
            "INSERT INTO accounts (login, grp, perm) VALUES (:login, :grp, :perm)",
            {"login": login, "grp": grp, "perm": perm},
        )
    try:
        yield store
    finally:
        await store.database.execute("DROP TABLE accounts")


CUSTOM_QUERY = "SELECT grp AS role, perm AS claim FROM accounts WHERE login = :subject"


async def test_a_custom_query_for_an_existing_schema(accounts: Store) -> None:
    loader = SQLRightsLoader(accounts, query=CUSTOM_QUERY)
    assert await loader.load("alice") == Rights(
        roles=frozenset({"admin"}), claims=frozenset({"read", "write"})
    )
    assert await loader.load("bob") == Rights(claims=frozenset({"read"}))
    assert await loader.load("carol") == Rights(roles=frozenset({"ops"}))
    assert await loader.load("dave") == NO_RIGHTS
    # The subject is bound, never formatted into the SQL.
    assert await loader.load("nobody' OR '1'='1") == NO_RIGHTS
    assert await loader.load("x' OR '1'='1") == Rights(
        roles=frozenset({"evil"}), claims=frozenset({"evil"})
    )
    # Non-numeric subjects are the point of a custom query: they are looked up.
    cache = cached_rights(accounts, query=CUSTOM_QUERY)
    assert (await cache.load("alice")).roles == {"admin"}


def test_a_custom_query_needs_a_subject_parameter(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'auth.db'}")
    with pytest.raises(ValueError, match=":subject"):
        SQLRightsLoader(store, query="SELECT grp AS role, perm AS claim FROM accounts")
    with pytest.raises(ValueError, match=":subject"):
        cached_rights(store, query="SELECT NULL AS role, NULL AS claim WHERE 1 = :user")


# -- one query, bounded time, failures ------------------------------------------------------


async def test_each_load_runs_exactly_one_query(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    loader = SQLRightsLoader(store)
    for n, subject in enumerate(
        [people.alice, people.plain, people.disabled, people.claims_only, "424242"], start=1
    ):
        await loader.load(subject)
        assert spy.calls == n


@pytest.fixture
async def quick_store(store_url: str) -> AsyncIterator[Store]:
    async with Store(store_url, timeout=0.2) as store:
        yield store


async def test_a_slow_store_is_unavailable_within_its_timeout(
    quick_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(quick_store, monkeypatch)
    spy.delay = 5.0
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"no answer within 0\.2 s"):
        await SQLRightsLoader(quick_store).load("1")
    assert time.monotonic() - started < 1.0
    assert spy.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        OSError("connection reset"),
        ConnectionRefusedError(111, "refused"),
        sqlite3.OperationalError("disk I/O error"),
        sqlite3.DatabaseError("database disk image is malformed"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.UndefinedTableError('relation "users" does not exist'),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_failing_store_is_unavailable(
    quick_store: Store, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    spy = spy_on(quick_store, monkeypatch)
    spy.errors.append(error)
    with pytest.raises(StoreUnavailable, match="load rights") as raised:
        await SQLRightsLoader(quick_store).load("1")
    assert raised.value.__cause__ is error


# -- cached_rights ------------------------------------------------------------------------------


async def test_a_second_load_comes_from_the_cache(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    cache = cached_rights(store, ttl=60)
    assert await cache.load(people.alice) == ALICE
    assert await cache.load(people.alice) == ALICE
    assert spy.calls == 1
    assert await cache.load(people.plain) == Rights()
    assert spy.calls == 2
    assert len(cache) == 2


async def test_admin_changes_invalidate_the_cache_at_once(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    cache = cached_rights(store, ttl=3600)
    admin = StoreAdmin(store)
    assert await cache.load(people.alice) == ALICE
    assert await cache.load(people.plain) == Rights()
    await admin.revoke("alice", "b")
    assert await cache.load(people.alice) == Rights(
        roles=frozenset({"admin"}), claims=frozenset({"a"})
    )
    assert spy.calls == 3
    # Only alice was forgotten.
    assert await cache.load(people.plain) == Rights()
    assert spy.calls == 3
    await admin.set_active("alice", False)
    assert holds_nothing(await cache.load(people.alice))
    await admin.set_active("alice", True)
    await admin.set_role("alice", None)
    assert await cache.load(people.alice) == Rights(claims=frozenset({"a"}))
    assert spy.calls == 5


async def test_an_expired_entry_is_reloaded(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    clock = Clock()
    cache = CachedRights(SQLRightsLoader(store), ttl=10, clock=clock)
    assert await cache.load(people.alice) == ALICE
    # A change behind the cache's back (no invalidation): the TTL bounds the staleness.
    await store.database.execute(
        "DELETE FROM user_claims WHERE user_id = :id", {"id": int(people.alice)}
    )
    clock.now += 9.99
    assert await cache.load(people.alice) == ALICE
    assert spy.calls == 1
    clock.now += 0.01
    assert await cache.load(people.alice) == Rights(roles=frozenset({"admin"}))
    assert spy.calls == 2


async def test_ttl_zero_caches_nothing(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    cache = cached_rights(store, ttl=0)
    for _ in range(3):
        assert await cache.load(people.alice) == ALICE
    assert spy.calls == 3
    assert len(cache) == 0


async def test_concurrent_loads_of_one_subject_share_one_query(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    spy.delay = 0.1
    cache = cached_rights(store, ttl=60)
    async with asyncio.timeout(5):
        results = await asyncio.gather(*(cache.load(people.alice) for _ in range(20)))
    assert results == [ALICE] * 20
    assert spy.calls == 1


async def test_a_failure_is_shared_but_not_cached(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    spy.delay = 0.1
    spy.errors.append(OSError("down"))
    cache = cached_rights(store, ttl=60)
    async with asyncio.timeout(5):
        results = await asyncio.gather(
            *(cache.load(people.alice) for _ in range(5)), return_exceptions=True
        )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert spy.calls == 1
    assert len(cache) == 0
    spy.delay = 0.0
    assert await cache.load(people.alice) == ALICE  # retried
    assert spy.calls == 2
    assert await cache.load(people.alice) == ALICE  # and now cached
    assert spy.calls == 2


async def test_waiters_survive_the_cancellation_of_the_load_they_share(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    spy.delay = 0.2
    cache = cached_rights(store, ttl=60)
    async with asyncio.timeout(5):
        leader = asyncio.create_task(cache.load(people.alice))
        await spy.started.wait()  # the leader's query is in flight
        waiters = [asyncio.create_task(cache.load(people.alice)) for _ in range(3)]
        await asyncio.sleep(0.01)  # ...and the waiters wait for it
        assert spy.calls == 1
        leader.cancel()
        results = await asyncio.gather(*waiters)
    assert results == [ALICE] * 3
    assert leader.cancelled()
    assert await cache.load(people.alice) == ALICE
    assert len(cache) == 1


async def test_an_invalidation_during_a_load_keeps_the_stale_answer_out(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    spy.hold = asyncio.Event()
    cache = cached_rights(store, ttl=3600)
    async with asyncio.timeout(5):
        loading = asyncio.create_task(cache.load(people.alice))
        await spy.fetched.wait()  # the query has read alice's old rights...
        await StoreAdmin(store).revoke("alice", "b")  # ...and now they change
        spy.hold.set()
        stale = await loading
    assert stale == ALICE  # the in-flight answer predates the change
    assert len(cache) == 0  # so it was not kept
    spy.hold = None
    assert await cache.load(people.alice) == Rights(
        roles=frozenset({"admin"}), claims=frozenset({"a"})
    )
    assert spy.calls == 2


async def test_max_entries_bounds_the_cache(
    store: Store, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on(store, monkeypatch)
    cache = cached_rights(store, ttl=60, max_entries=2)
    subjects = [people.alice, people.plain, people.role_only, people.claims_only]
    for subject in subjects:
        await cache.load(subject)
        assert len(cache) <= 2
    assert len(cache) == 2
    assert spy.calls == 4
    # The two most recent stay; the least recently used went first.
    await cache.load(people.claims_only)
    await cache.load(people.role_only)
    assert spy.calls == 4
    assert await cache.load(people.alice) == ALICE
    assert spy.calls == 5
    assert len(cache) == 2
    await cache.load(people.role_only)  # was used after claims_only: still here
    assert spy.calls == 5
    await cache.load(people.claims_only)  # evicted by alice
    assert spy.calls == 6
