"""StoreAdmin on SQLite and PostgreSQL: roles, claims, users, grants, validation,
hostile names, concurrent creation, change listeners, and a database that is down."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from asgi_auth.authz.rights import Rights
from asgi_auth.errors import StoreUnavailable
from asgi_auth.store import (
    AlreadyExists,
    NotFound,
    SQLRightsLoader,
    Store,
    StoreAdmin,
    UserRights,
)

HOSTILE = ["r'; DROP TABLE users; --", "rôle", "a%_b"]


@pytest.fixture
def admin(store: Store) -> StoreAdmin:
    return StoreAdmin(store)


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[Store]:
    """A connected PostgreSQL store with the schema and empty tables."""
    async with Store(postgres_url) as store:
        await store.init_schema()
        await store.database.execute(
            "TRUNCATE user_claims, users, roles, claims RESTART IDENTITY CASCADE"
        )
        yield store


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


async def count(store: Store, table: str) -> int:
    return int(await store.database.fetch_val(f"SELECT COUNT(*) FROM {table}"))  # noqa: S608


async def seed(admin: StoreAdmin) -> None:
    await admin.create_role("admin", "Administrators")
    await admin.create_role("editor")
    for claim in ("a", "b", "c"):
        await admin.create_claim(claim, f"claim {claim}")


# -- roles and claims --------------------------------------------------------------------


async def test_create_role_and_claim_keep_ids_and_descriptions(
    store: Store, admin: StoreAdmin
) -> None:
    admin_id = await admin.create_role("admin", "Administrators")
    editor_id = await admin.create_role("editor")
    read_id = await admin.create_claim("read", "may read")
    assert isinstance(admin_id, int)
    assert admin_id != editor_id
    assert await store.database.fetch_val("SELECT id FROM roles WHERE name = 'admin'") == admin_id
    assert await store.database.fetch_val("SELECT id FROM roles WHERE name = 'editor'") == editor_id
    assert await store.database.fetch_val("SELECT id FROM claims WHERE name = 'read'") == read_id
    assert await admin.list_names("role") == [("admin", "Administrators"), ("editor", "")]
    assert await admin.list_names("claim") == [("read", "may read")]


@pytest.mark.parametrize("kind", ["role", "claim"])
async def test_a_duplicate_name_is_already_exists(
    store: Store, admin: StoreAdmin, kind: str
) -> None:
    create = admin.create_role if kind == "role" else admin.create_claim
    await create("dup", "first")
    with pytest.raises(AlreadyExists) as raised:
        await create("dup", "second")
    assert raised.value.kind == kind
    assert raised.value.name == "dup"
    assert await admin.list_names(kind) == [("dup", "first")]


async def test_a_duplicate_username_is_already_exists(store: Store, admin: StoreAdmin) -> None:
    await admin.create_user("alice")
    with pytest.raises(AlreadyExists) as raised:
        await admin.create_user("alice")
    assert (raised.value.kind, raised.value.name) == ("user", "alice")
    assert await count(store, "users") == 1


BAD_NAMES = ["", "   ", "x" * 101, "a\x00b", "line\nbreak", "tab\there", "bell\x07"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_role_and_claim_names_are_value_errors(admin: StoreAdmin, name: str) -> None:
    with pytest.raises(ValueError, match="name") as role_error:
        await admin.create_role(name)
    with pytest.raises(ValueError, match="name") as claim_error:
        await admin.create_claim(name)
    assert type(role_error.value) is ValueError
    assert type(claim_error.value) is ValueError
    assert await admin.list_names("role") == []
    assert await admin.list_names("claim") == []


async def test_name_and_description_limits(store: Store, admin: StoreAdmin) -> None:
    await admin.create_role("r" * 100)
    await admin.create_claim("c" * 100, "d" * 500)
    with pytest.raises(ValueError, match="description"):
        await admin.create_role("long description", "d" * 501)
    await admin.create_user("u" * 150)
    with pytest.raises(ValueError, match="name"):
        await admin.create_user("u" * 151)
    with pytest.raises(ValueError, match="name"):
        await admin.create_user("")
    assert await admin.list_names("role") == [("r" * 100, "")]
    assert await count(store, "users") == 1


# -- users ---------------------------------------------------------------------------------


async def test_create_user_with_role_and_claims(store: Store, admin: StoreAdmin) -> None:
    await seed(admin)
    user_id = await admin.create_user(
        "alice", password_hash="hash", role="admin", claims=("c", "a", "c")
    )
    assert await admin.rights("alice") == UserRights(
        id=user_id, username="alice", role="admin", claims=("a", "c"), is_active=True
    )
    assert await count(store, "user_claims") == 2
    plain = await admin.create_user("bob")
    assert await admin.rights("bob") == UserRights(
        id=plain, username="bob", role=None, claims=(), is_active=True
    )
    assert plain != user_id


@pytest.mark.parametrize(
    ("role", "claims", "kind", "missing"),
    [
        ("ghost", ("a",), "role", "ghost"),
        ("admin", ("a", "ghost"), "claim", "ghost"),
        (None, ("b", "nope"), "claim", "nope"),
    ],
)
async def test_create_user_with_an_unknown_role_or_claim_writes_nothing(
    store: Store,
    admin: StoreAdmin,
    role: str | None,
    claims: tuple[str, ...],
    kind: str,
    missing: str,
) -> None:
    await seed(admin)
    heard: list[str | None] = []
    store.on_change(heard.append)
    with pytest.raises(NotFound) as raised:
        await admin.create_user("bob", role=role, claims=claims)
    assert (raised.value.kind, raised.value.name) == (kind, missing)
    with pytest.raises(NotFound):
        await admin.rights("bob")
    assert await count(store, "users") == 0
    assert await count(store, "user_claims") == 0
    assert heard == []
    # The name is still free.
    await admin.create_user("bob")


async def test_set_role(store: Store, admin: StoreAdmin) -> None:
    await seed(admin)
    await admin.create_user("alice", role="admin")
    await admin.set_role("alice", "editor")
    assert (await admin.rights("alice")).role == "editor"
    await admin.set_role("alice", None)
    assert (await admin.rights("alice")).role is None
    await admin.set_role("alice", "admin")
    with pytest.raises(NotFound) as raised:
        await admin.set_role("alice", "ghost")
    assert (raised.value.kind, raised.value.name) == ("role", "ghost")
    assert (await admin.rights("alice")).role == "admin"
    with pytest.raises(NotFound) as no_user:
        await admin.set_role("nobody", "admin")
    assert (no_user.value.kind, no_user.value.name) == ("user", "nobody")


async def test_grant_and_revoke(store: Store, admin: StoreAdmin) -> None:
    await seed(admin)
    await admin.create_user("alice")
    await admin.grant("alice", "b")
    await admin.grant("alice", "b")  # twice: harmless
    await admin.grant("alice", "a")
    assert (await admin.rights("alice")).claims == ("a", "b")
    assert await count(store, "user_claims") == 2
    await admin.revoke("alice", "c")  # not held: harmless
    assert (await admin.rights("alice")).claims == ("a", "b")
    await admin.revoke("alice", "a")
    assert (await admin.rights("alice")).claims == ("b",)
    for operation in (admin.grant, admin.revoke):
        with pytest.raises(NotFound) as no_user:
            await operation("nobody", "a")
        assert (no_user.value.kind, no_user.value.name) == ("user", "nobody")
        with pytest.raises(NotFound) as no_claim:
            await operation("alice", "ghost")
        assert (no_claim.value.kind, no_claim.value.name) == ("claim", "ghost")
    assert (await admin.rights("alice")).claims == ("b",)


async def test_set_active(store: Store, admin: StoreAdmin) -> None:
    user_id = await admin.create_user("alice")
    loader = SQLRightsLoader(store)
    await admin.set_active("alice", False)
    assert (await admin.rights("alice")).is_active is False
    disabled = await loader.load(str(user_id))
    assert not disabled.known or not getattr(disabled, "active", True)
    await admin.set_active("alice", True)
    assert (await admin.rights("alice")).is_active is True
    assert await loader.load(str(user_id)) == Rights()
    with pytest.raises(NotFound) as raised:
        await admin.set_active("nobody", True)
    assert raised.value.kind == "user"


async def test_create_user_inactive(admin: StoreAdmin) -> None:
    await admin.create_user("dormant", is_active=False)
    assert (await admin.rights("dormant")).is_active is False


async def password_hash(store: Store, username: str) -> object:
    return await store.database.fetch_val(
        "SELECT password_hash FROM users WHERE username = :name", {"name": username}
    )


async def test_set_password_hash(store: Store, admin: StoreAdmin) -> None:
    await admin.create_user("alice", password_hash="$argon2id$first")
    await admin.create_user("bob")
    assert await password_hash(store, "alice") == "$argon2id$first"
    assert await password_hash(store, "bob") is None
    await admin.set_password_hash("alice", "$argon2id$second")
    assert await password_hash(store, "alice") == "$argon2id$second"
    assert await password_hash(store, "bob") is None
    await admin.set_password_hash("alice", None)
    assert await password_hash(store, "alice") is None
    with pytest.raises(NotFound):
        await admin.set_password_hash("nobody", "x")


async def test_list_names_is_sorted_with_descriptions(admin: StoreAdmin) -> None:
    assert await admin.list_names("role") == []
    for name in ("zeta", "alpha", "mid"):
        await admin.create_role(name, name.upper())
        await admin.create_claim(f"claim-{name}")
    assert await admin.list_names("role") == [
        ("alpha", "ALPHA"),
        ("mid", "MID"),
        ("zeta", "ZETA"),
    ]
    assert [name for name, _ in await admin.list_names("claim")] == [
        "claim-alpha",
        "claim-mid",
        "claim-zeta",
    ]


# -- hostile names ---------------------------------------------------------------------------


async def test_sql_metacharacters_and_unicode_are_stored_verbatim(
    store: Store, admin: StoreAdmin
) -> None:
    for name in HOSTILE:
        await admin.create_role(name, f"role {name}")
        await admin.create_claim(name, f"claim {name}")
    for name in HOSTILE:
        await admin.create_user(name, role=name, claims=(name,))
        rights = await admin.rights(name)
        assert (rights.username, rights.role, rights.claims) == (name, name, (name,))
    assert sorted(await admin.list_names("role")) == sorted((n, f"role {n}") for n in HOSTILE)
    assert sorted(await admin.list_names("claim")) == sorted((n, f"claim {n}") for n in HOSTILE)
    # Names match exactly: "a%_b" is no LIKE pattern for "aXYb".
    await admin.create_role("aXYb")
    await admin.create_claim("aXYb")
    await admin.create_user("plain")
    await admin.set_role("plain", "aXYb")
    await admin.grant("plain", "a%_b")
    assert await admin.rights("plain") == UserRights(
        id=(await admin.rights("plain")).id,
        username="plain",
        role="aXYb",
        claims=("a%_b",),
        is_active=True,
    )
    with pytest.raises(NotFound):
        await admin.rights("a%")
    with pytest.raises(NotFound):
        await admin.set_role("plain", "a%")
    # Tables intact.
    assert await count(store, "users") == len(HOSTILE) + 1
    assert await count(store, "roles") == len(HOSTILE) + 1
    assert await count(store, "user_claims") == len(HOSTILE) + 1


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["role", "claim", "user"])
async def test_concurrent_duplicate_creates_on_postgresql(pg_store: Store, kind: str) -> None:
    admin = StoreAdmin(pg_store)
    create: dict[str, Callable[[str], Awaitable[int]]] = {
        "role": admin.create_role,
        "claim": admin.create_claim,
        "user": admin.create_user,
    }
    table = {"role": "roles", "claim": "claims", "user": "users"}[kind]
    column = "username" if kind == "user" else "name"
    for round_ in range(5):
        name = f"x{round_}"
        results = await asyncio.gather(
            create[kind](name), create[kind](name), return_exceptions=True
        )
        created = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, AlreadyExists)]
        assert len(created) == 1, results
        assert len(refused) == 1, results
        assert (refused[0].kind, refused[0].name) == (kind, name)
        rows = await pg_store.database.fetch_all(
            f"SELECT id FROM {table} WHERE {column} = :name",  # noqa: S608
            {"name": name},
        )
        assert [int(r["id"]) for r in rows] == created


async def test_concurrent_grants_of_one_claim_are_harmless(store: Store, admin: StoreAdmin) -> None:
    # "Granting it twice is harmless" holds when the two grants race, too.
    await seed(admin)
    await admin.create_user("alice")
    for _ in range(3):
        await admin.revoke("alice", "a")
        results = await asyncio.gather(
            admin.grant("alice", "a"), admin.grant("alice", "a"), return_exceptions=True
        )
        assert list(results) == [None, None]
        assert (await admin.rights("alice")).claims == ("a",)


async def test_concurrent_writes_on_different_names_all_succeed(
    store: Store, admin: StoreAdmin
) -> None:
    results = await asyncio.gather(
        admin.create_role("p"),
        admin.create_role("q"),
        admin.create_claim("r"),
        return_exceptions=True,
    )
    assert all(isinstance(r, int) for r in results), results
    assert [n for n, _ in await admin.list_names("role")] == ["p", "q"]


# -- change listeners ----------------------------------------------------------------------------


async def test_every_admin_change_tells_the_listeners(store: Store, admin: StoreAdmin) -> None:
    await seed(admin)
    heard: list[str | None] = []
    store.on_change(heard.append)
    user_id = await admin.create_user("alice", role="admin", claims=("a",))
    subject = str(user_id)
    assert heard == [subject]
    changes = [
        admin.set_role("alice", "editor"),
        admin.set_role("alice", None),
        admin.grant("alice", "b"),
        admin.revoke("alice", "b"),
        admin.set_active("alice", False),
        admin.set_active("alice", True),
        admin.set_password_hash("alice", "h"),
    ]
    for change in changes:
        heard.clear()
        await change
        assert heard == [subject]
    other = await admin.create_user("bob")
    heard.clear()
    await admin.grant("bob", "c")
    assert heard == [str(other)]
    # A refused change commits nothing and tells no one.
    heard.clear()
    with pytest.raises(NotFound):
        await admin.grant("alice", "ghost")
    with pytest.raises(NotFound):
        await admin.set_role("nobody", "admin")
    assert heard == []


# -- a database that is down -----------------------------------------------------------------------


async def test_connecting_to_a_postgresql_that_is_down_is_store_unavailable() -> None:
    store = Store("postgresql://postgres@127.0.0.1:1/x", timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match="connect"):
            await store.connect()
    finally:
        await store.disconnect()
    assert time.monotonic() - started < 5


async def test_a_sqlite_file_that_cannot_be_opened_is_store_unavailable(
    tmp_path: Path, aiosqlite_threads_settle: None
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'auth.db'}", timeout=0.5)
    admin = StoreAdmin(store)
    try:
        # SQLite opens files lazily, so connect() may succeed; failing there is fine too.
        with contextlib.suppress(StoreUnavailable):
            await store.connect()
        with pytest.raises(StoreUnavailable):
            await store.init_schema()
        with pytest.raises(StoreUnavailable):
            await admin.create_role("admin")
        with pytest.raises(StoreUnavailable):
            await admin.rights("alice")
        with pytest.raises(StoreUnavailable):
            await admin.list_names("role")
        with pytest.raises(StoreUnavailable):
            await SQLRightsLoader(store).load("1")
    finally:
        await store.disconnect()
    assert not (tmp_path / "missing").exists()
