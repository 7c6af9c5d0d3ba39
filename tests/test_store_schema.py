"""The store's schema: creation, idempotence, concurrent creation, indexes, query plans."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_auth.store import DEFAULT_RIGHTS_QUERY, Store
from asgi_auth.store.schema import SCHEMA_VERSION, TABLES

STORE_TABLES = {
    "roles",
    "users",
    "claims",
    "user_claims",
    "asgi_auth_schema",
    "refresh_tokens",
    "revoked_tokens",
    "login_failures",
}
N_USERS = 2000


async def _admin_sql(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (the session one may hold the schema already)."""
    name = f"asgi_auth_fresh_{secrets.token_hex(4)}"
    asyncio.run(_admin_sql(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_admin_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


async def table_names(store: Store) -> set[str]:
    if store.is_postgresql:
        rows = await store.database.fetch_all(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()"
        )
    else:
        rows = await store.database.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(r["name"]) for r in rows}


async def index_definitions(store: Store) -> dict[str, str]:
    """Index name -> its table and definition text."""
    if store.is_postgresql:
        rows = await store.database.fetch_all(
            "SELECT indexname AS name, tablename AS tbl, indexdef AS sql FROM pg_indexes "
            "WHERE schemaname = current_schema()"
        )
    else:
        rows = await store.database.fetch_all(
            "SELECT name, tbl_name AS tbl, sql FROM sqlite_master WHERE type = 'index'"
        )
    return {str(r["name"]): f"{r['tbl']}: {r['sql']}" for r in rows}


def rights_query_values(user_id: int) -> dict[str, object]:
    """The values DEFAULT_RIGHTS_QUERY binds: ``:user_id`` (and ``:active`` if it has one)."""
    values: dict[str, object] = {"user_id": user_id}
    if ":active" in DEFAULT_RIGHTS_QUERY:
        values["active"] = True
    return values


async def versions(store: Store) -> list[int]:
    rows = await store.database.fetch_all("SELECT version FROM asgi_auth_schema")
    return [int(r["version"]) for r in rows]


async def test_init_schema_creates_the_tables_and_is_idempotent(fresh_url: str) -> None:
    async with Store(fresh_url) as store:
        assert not (await table_names(store) & STORE_TABLES)
        for _ in range(3):
            await store.init_schema()
            assert await table_names(store) >= STORE_TABLES
            assert await versions(store) == [SCHEMA_VERSION]
        assert SCHEMA_VERSION == 1
        assert set(TABLES) == STORE_TABLES
        # The tables work and a repeated init_schema keeps their rows.
        await store.database.execute("INSERT INTO roles (name) VALUES ('kept')")
        await store.init_schema()
        assert await store.database.fetch_val("SELECT name FROM roles") == "kept"


async def test_init_schema_runs_on_the_fixture_store_again(store: Store) -> None:
    for _ in range(3):
        await store.init_schema()
    assert await table_names(store) >= STORE_TABLES
    assert await versions(store) == [1]


async def test_two_instances_create_the_schema_concurrently_on_postgresql(
    fresh_postgres_url: str,
) -> None:
    first, second = Store(fresh_postgres_url), Store(fresh_postgres_url)
    async with first, second:
        results = await asyncio.gather(
            first.init_schema(), second.init_schema(), return_exceptions=True
        )
        assert list(results) == [None, None]
        assert await table_names(first) >= STORE_TABLES
        # Exactly one version row: the second creator saw the first one's.
        assert await versions(second) == [SCHEMA_VERSION]
        # And once more, both at once, on the existing schema.
        again = await asyncio.gather(
            first.init_schema(), second.init_schema(), return_exceptions=True
        )
        assert list(again) == [None, None]
        assert await versions(first) == [SCHEMA_VERSION]


async def test_the_reverse_indexes_exist(store: Store) -> None:
    indexes = await index_definitions(store)
    assert "users_role_id" in indexes
    assert indexes["users_role_id"].startswith("users: ")
    assert "(role_id)" in indexes["users_role_id"].replace(" (", "(")
    assert "user_claims_claim_id" in indexes
    assert indexes["user_claims_claim_id"].startswith("user_claims: ")
    assert "(claim_id)" in indexes["user_claims_claim_id"].replace(" (", "(")


def _sqlite_line(details: list[str], table: str, alias: str) -> str:
    """The plan line for ``table AS alias`` (SQLite >= 3.36 prints the alias alone)."""
    pattern = re.compile(rf"^(SEARCH|SCAN) (TABLE )?({table} AS )?{alias}\b")
    lines = [d for d in details if pattern.match(d)]
    assert len(lines) == 1, details
    return lines[0]


async def test_rights_query_is_an_index_seek_on_sqlite(sqlite_url: str) -> None:
    async with Store(sqlite_url) as store:
        await store.init_schema()
        # Populated and analyzed, so the plan is the one a real store gets. (No "%" in
        # this SQL: the SQLite backend of `databases` formats it with %-style params.)
        await store.database.execute("INSERT INTO roles (name) VALUES ('r1'), ('r2')")
        await store.database.execute("INSERT INTO claims (name) VALUES ('c1'), ('c2'), ('c3')")
        await store.database.execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :n) "
            "INSERT INTO users (username, role_id) SELECT 'user' || n, 1 + (n & 1) FROM g",
            {"n": N_USERS},
        )
        await store.database.execute(
            "INSERT INTO user_claims (user_id, claim_id) "
            "SELECT u.id, c.id FROM users u, claims c WHERE ((u.id + c.id) & 1) = 0"
        )
        await store.database.execute("ANALYZE")
        rows = await store.database.fetch_all(
            "EXPLAIN QUERY PLAN " + DEFAULT_RIGHTS_QUERY, rights_query_values(1000)
        )
        details = [str(r["detail"]) for r in rows]
        users = _sqlite_line(details, "users", "u")
        assert users.startswith("SEARCH")
        assert "USING INTEGER PRIMARY KEY" in users
        grants = _sqlite_line(details, "user_claims", "uc")
        assert grants.startswith("SEARCH")
        assert re.search(r"USING (COVERING )?INDEX \w+ \(user_id=\?", grants), grants
        assert not any(re.match(r"SCAN (TABLE )?(users|user_claims|u|uc)\b", d) for d in details)


async def test_rights_query_is_an_index_seek_on_postgresql(fresh_postgres_url: str) -> None:
    # No enable_seqscan tricks: enough rows that an honest, analyzed planner prefers the
    # primary keys. On a table of a few rows (one page) PostgreSQL rightly reads the page
    # sequentially, which says nothing about the index; with 2000 users and ~20000 grants
    # a sequential scan costs far more than a seek.
    async with Store(fresh_postgres_url) as store:
        await store.init_schema()
        await store.database.execute(
            "INSERT INTO roles (name) SELECT 'role' || g FROM generate_series(1, 5) g"
        )
        await store.database.execute(
            "INSERT INTO claims (name) SELECT 'claim' || g FROM generate_series(1, 20) g"
        )
        await store.database.execute(
            "INSERT INTO users (username, role_id) "
            "SELECT 'user' || g, 1 + g % 5 FROM generate_series(1, :n) g",
            {"n": N_USERS},
        )
        await store.database.execute(
            "INSERT INTO user_claims (user_id, claim_id) SELECT u.id, c.id "
            "FROM users u, claims c WHERE (u.id + c.id) % 2 = 0"
        )
        for table in ("roles", "claims", "users", "user_claims"):
            await store.database.execute(f"ANALYZE {table}")
        rows = await store.database.fetch_all(
            "EXPLAIN " + DEFAULT_RIGHTS_QUERY, rights_query_values(1000)
        )
        plan = "\n".join(str(next(iter(r._mapping.values()))) for r in rows)
        assert re.search(r"Index (Only )?Scan using users_pkey on users u\b", plan), plan
        # A plain index scan or a bitmap index scan: both seek user_claims_pkey on user_id.
        assert re.search(
            r"(Index (Only )?Scan using user_claims_pkey on user_claims uc\b"
            r"|Bitmap Index Scan on user_claims_pkey)",
            plan,
        ), plan
        assert re.search(r"Index Cond: \(\(?(uc\.)?user_id = ", plan), plan
        assert "Seq Scan on users" not in plan
        assert "Seq Scan on user_claims" not in plan


@pytest.mark.parametrize(
    "url",
    ["mysql://user@127.0.0.1/db", "mysql+aiomysql://user@127.0.0.1/db", "oracle://u@h/db"],
)
def test_an_unsupported_database_url_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Store(url)


def test_supported_urls_name_their_dialect(tmp_path: Path) -> None:
    assert Store(f"sqlite:///{tmp_path / 'x.db'}").dialect == "sqlite"
    assert Store("postgres://u@127.0.0.1/db").dialect == "postgresql"
    assert Store("postgresql://u@127.0.0.1/db").is_postgresql
    with pytest.raises(ValueError, match="timeout"):
        Store(f"sqlite:///{tmp_path / 'x.db'}", timeout=0)


async def test_a_sqlite_file_store_writes_ahead_and_waits_for_other_writers(
    sqlite_url: str,
) -> None:
    """WAL mode, and write transactions that take the write lock at BEGIN: a second
    instance on the same file queues for it (no "database is locked")."""
    async with Store(sqlite_url) as first, Store(sqlite_url) as second:
        await first.init_schema()
        assert await first.database.fetch_val("PRAGMA journal_mode") == "wal"

        async def insert(store: Store, n: int) -> None:
            async with store.transaction() as db:
                count = await db.fetch_val("SELECT COUNT(*) FROM login_failures")
                await db.execute(
                    "INSERT INTO login_failures (key, at) VALUES (:key, :at)",
                    {"key": f"k{n}", "at": count},
                )

        await asyncio.gather(*(insert((first, second)[n % 2], n) for n in range(20)))
        rows = await first.database.fetch_all("SELECT at FROM login_failures ORDER BY at")
    # Each transaction read the count and wrote it back: serialized, the values are 0…19.
    assert [r["at"] for r in rows] == list(range(20))
