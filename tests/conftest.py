"""Shared fixtures: real SQLite and PostgreSQL stores.

PostgreSQL runs at 127.0.0.1:5432 (trust auth) on the development and CI machines;
each test session gets a fresh database of its own, dropped at the end. Without a
server the PostgreSQL tests skip, unless ASGI_AUTH_REQUIRE_SERVICES=1 (as in CI),
which makes a missing service a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from asgi_auth.store import Store

# Property tests run a fixed budget by default (CI included); the fuzzing profile is
# for longer runs on demand: ASGI_AUTH_HYPOTHESIS=fuzz pytest tests/test_fuzz.py
# (or pytest --hypothesis-profile=fuzz). Tests that set max_examples keep their own.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("ASGI_AUTH_HYPOTHESIS", "ci"))

POSTGRES_ADMIN_URL = os.environ.get(
    "ASGI_AUTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("ASGI_AUTH_REQUIRE_SERVICES") == "1"


def service_missing(what: str) -> None:
    """Skip, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"ASGI_AUTH_REQUIRE_SERVICES=1 but {what}", pytrace=False)
    pytest.skip(what)


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for this test session."""
    name = f"asgi_auth_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, ImportError) as exc:
        service_missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'auth.db'}"


async def _reset(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL, on an empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auth.db'}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_reset(url))  # every test starts from nothing, as with a new SQLite file
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A connected store with the schema and empty tables."""
    store = Store(store_url)
    await store.connect()
    await store.init_schema()
    try:
        yield store
    finally:
        await store.disconnect()
