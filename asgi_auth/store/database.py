"""The SQL store: one ``databases.Database``, its dialect, schema creation, and the one
place where database errors become :class:`~asgi_auth.StoreUnavailable`.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) the production
store. URLs: ``sqlite:///./auth.db``, ``postgresql://user@host/db``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, TypeVar

from databases import Database

from asgi_auth.errors import StoreUnavailable
from asgi_auth.store.schema import SCHEMA_VERSION, statements

__all__ = ["DEFAULT_DATABASE_URL", "INTEGRITY_ERRORS", "STORE_ERRORS", "Store", "store_call"]

#: The embedded default: an SQLite file in the working directory.
DEFAULT_DATABASE_URL: Final = "sqlite:///./asgi_auth.db"
#: Seconds a store operation on the request path may take before it counts as down.
DEFAULT_TIMEOUT: Final = 2.0
_DIALECTS: Final = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
# A PostgreSQL advisory lock key, so that two instances starting together do not
# race on CREATE TABLE IF NOT EXISTS (which is not atomic in PostgreSQL).
_SCHEMA_LOCK: Final = 0x61736769
T = TypeVar("T")


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, sqlite3.Error, TimeoutError]
    try:
        import asyncpg

        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    except ImportError:  # PostgreSQL support is optional
        pass
    return tuple(errors)


#: What the database drivers raise when the store cannot answer.
STORE_ERRORS: Final = _driver_errors()


def _integrity_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.IntegrityError]
    try:
        import asyncpg

        errors.append(asyncpg.IntegrityConstraintViolationError)
    except ImportError:
        pass
    return tuple(errors)


#: What the drivers raise when a write breaks a constraint (a duplicate name…).
INTEGRITY_ERRORS: Final = _integrity_errors()


async def store_call(operation: Awaitable[T], *, timeout: float, what: str) -> T:  # noqa: ASYNC109 - the bound is the point
    """Await a store operation, translating driver errors and slowness.

    The operation runs in a task of its own (with its own pooled connection). When
    ``timeout`` passes it is cancelled but not awaited: cancelling a query on a slow
    or half-dead connection can take the driver many seconds of cleanup, and no
    request should wait for that.

    Raises:
        StoreUnavailable: the driver failed, or ``timeout`` seconds passed.
    """
    task = asyncio.ensure_future(operation)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_settle)
        raise StoreUnavailable(f"{what}: no answer within {timeout} s")
    try:
        return task.result()
    except TimeoutError as exc:
        raise StoreUnavailable(f"{what}: the driver timed out") from exc
    except STORE_ERRORS as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def _settle(task: asyncio.Future[Any]) -> None:
    # An abandoned operation's outcome is of no interest; retrieving it keeps asyncio
    # from reporting "exception was never retrieved".
    if not task.cancelled():
        task.exception()


class Store:
    """The roles/claims store.

    Args:
        url: a ``databases`` URL (``sqlite:///./asgi_auth.db``,
            ``postgresql://postgres@127.0.0.1/app``).
        timeout: seconds a request-path query may take before failing closed.
        options: passed to ``databases.Database`` (pool sizes…).

    Use ``async with Store(url) as store:`` or ``await store.connect()`` at startup
    and ``await store.disconnect()`` at shutdown.

    Raises:
        ValueError: a URL for a database other than SQLite or PostgreSQL.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> None:
        scheme = url.partition("://")[0].partition("+")[0].lower() if "://" in url else ""
        if scheme not in _DIALECTS:
            raise ValueError(f"unsupported database URL {url[:40]!r}: use sqlite or postgresql")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.dialect = _DIALECTS[scheme]
        self.database = Database(url, **options)
        self.url = url
        self.timeout = timeout
        self._listeners: list[Callable[[str | None], None]] = []
        # SQLite cannot upgrade two readers to writers at once ("database is locked",
        # at once, without waiting): this instance's write transactions take turns.
        self._write_lock = asyncio.Lock()

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs and messages."""
        return str(self.database.url.obscure_password)

    @property
    def is_postgresql(self) -> bool:
        """True for PostgreSQL stores."""
        return self.dialect == "postgresql"

    async def connect(self) -> None:
        """Open the connection pool.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        await store_call(self.database.connect(), timeout=self.timeout * 5, what="connect")

    async def disconnect(self) -> None:
        """Close the connection pool."""
        await self.database.disconnect()

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def init_schema(self) -> None:
        """Create the tables and indexes if they do not exist. Idempotent.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """

        async def create() -> None:
            if not self.is_postgresql and ":memory:" not in str(self.database.url):
                # Write-ahead logging (kept by the file): readers and the one writer stop
                # waiting for each other, which concurrent logins and refreshes need. A
                # file another process holds keeps its mode; everything works in either.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self.database.execute("PRAGMA journal_mode=WAL")
            async with self.transaction():
                if self.is_postgresql:
                    await self.database.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                for statement in statements(self.dialect):
                    await self.database.execute(statement)
                have = await self.database.fetch_val("SELECT MAX(version) FROM asgi_auth_schema")
                if have is None:
                    await self.database.execute(
                        "INSERT INTO asgi_auth_schema (version) VALUES (:version)",
                        {"version": SCHEMA_VERSION},
                    )

        await store_call(create(), timeout=self.timeout * 15, what="create schema")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """A write transaction: everything inside commits together or not at all."""
        if self.is_postgresql:
            # The pooled connection is held here, and the transaction is the driver's
            # own: when a slow store's operation is cancelled in the middle of BEGIN,
            # leaving this block still releases the connection (databases' Transaction
            # would keep it, and a slow spell would drain the pool for good).
            async with (
                self.database.connection() as connection,
                connection.raw_connection.transaction(),
            ):
                yield self.database
            return
        # SQLite: BEGIN IMMEDIATE takes the file's write lock at once, waiting for
        # another process's (the driver's busy timeout) instead of failing when a read
        # inside a deferred transaction would have to turn into a write; the lock
        # serializes this instance's own transactions.
        async with self._write_lock, self.database.connection() as connection:
            raw = connection.raw_connection
            await raw.execute("BEGIN IMMEDIATE")
            try:
                yield self.database
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to tell
                    await raw.execute("ROLLBACK")
                raise
            await raw.execute("COMMIT")

    async def write(
        self,
        sql: str,
        values: dict[str, Any] | None = None,
        *,
        what: str,
        returning: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound per operation is the point
    ) -> Any:
        """One write statement in a transaction of its own, within this store's bound: on
        SQLite it queues behind this instance's other writes instead of polling the
        file's lock (which loses to them under load). ``returning``: the first column of
        the statement's ``RETURNING`` row, or None.

        Raises:
            StoreUnavailable: the store is not connected, failed or was too slow.
        """

        async def work() -> Any:
            async with self.transaction() as db:
                if returning:
                    return await db.fetch_val(sql, values)
                await db.execute(sql, values)
                return None

        return await self.run(work(), what=what, timeout=timeout)

    @property
    def is_connected(self) -> bool:
        """True between :meth:`connect` and :meth:`disconnect`."""
        return bool(self.database.is_connected)

    async def run(
        self,
        operation: Awaitable[T],
        *,
        what: str,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound per operation is the point
    ) -> T:
        """Await a database operation within this store's bound (``store_call``).

        Raises:
            StoreUnavailable: the store is not connected, failed or was too slow.
        """
        if not self.is_connected:
            if inspect.iscoroutine(operation):
                operation.close()  # never awaited: close it quietly
            raise StoreUnavailable(f"{what}: the store is not connected")
        return await store_call(operation, timeout=timeout or self.timeout, what=what)

    def on_change(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(subject)`` (``None``: everyone) after a change to rights commits."""
        self._listeners.append(listener)

    def changed(self, subject: str | None) -> None:
        """Tell this instance's listeners that ``subject``'s rights changed."""
        for listener in self._listeners:
            listener(subject)
