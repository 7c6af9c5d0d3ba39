"""Rights changes between instances that share one PostgreSQL store (``LISTEN/NOTIFY``).

Admin operations ``NOTIFY`` the channel inside their transaction, so a notification
is delivered exactly when the change commits. Every instance runs a
:class:`PostgresChangeFeed` that ``LISTEN``s on a dedicated connection and hands each
notification to :meth:`Store.changed`, which invalidates that instance's cached
rights. If the listening connection drops, the feed reconnects with a bounded
backoff and invalidates everything (it may have missed notifications meanwhile);
the cache TTL bounds staleness even then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from asgi_auth.store.admin import CHANGES_CHANNEL
from asgi_auth.store.database import Store

__all__ = ["PostgresChangeFeed"]

logger: Final = logging.getLogger("asgi_auth.store")
_EVERYONE: Final = "*"
# Query options that configure the databases pool, which asyncpg.connect would
# take for server settings and refuse.
_POOL_OPTIONS: Final = frozenset({"min_size", "max_size"})
#: Seconds between checks that the listening connection still answers: a network
#: that silently drops packets would otherwise go unnoticed until TCP gives up.
HEARTBEAT: Final = 15.0


class PostgresChangeFeed:
    """Listens for rights changes made by any instance and invalidates local caches.

    Args:
        store: a PostgreSQL :class:`Store`; its :meth:`~Store.changed` is called.
        channel: the notification channel.
        max_backoff: the longest wait between reconnection attempts, in seconds.
        heartbeat: seconds between liveness checks of the listening connection.

    Raises:
        ValueError: the store is not PostgreSQL.
    """

    def __init__(
        self,
        store: Store,
        *,
        channel: str = CHANGES_CHANNEL,
        max_backoff: float = 30.0,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        if not store.is_postgresql:
            raise ValueError("LISTEN/NOTIFY needs a PostgreSQL store")
        self.store = store
        self.channel = channel
        self.max_backoff = max_backoff
        self.heartbeat = heartbeat
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def dsn(self) -> str:
        """The store URL as asyncpg wants it: plain scheme, no pool options, and the
        pool's ``ssl`` option as libpq's ``sslmode`` (never silently dropped)."""
        _, sep, rest = self.store.url.partition("://")
        base, _, query = rest.partition("?")
        kept = []
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            if name == "ssl":
                mode = {"true": "require", "false": "disable"}.get(value.lower(), value)
                kept.append(f"sslmode={mode}")
            elif name not in _POOL_OPTIONS:
                kept.append(part)
        return f"postgresql{sep}{base}" + (f"?{'&'.join(kept)}" if kept else "")

    async def start(self) -> None:
        """Start listening; returns once the first connection listens (or 10 s passed)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="asgi_auth rights feed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._connected.wait()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def listening(self) -> bool:
        """True while a connection is listening."""
        return self._connected.is_set()

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.store.changed(None if payload == _EVERYONE else payload)

    async def _run(self) -> None:
        import asyncpg

        backoff = 0.5
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn, timeout=10)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                async with asyncio.timeout(10):
                    await connection.add_listener(self.channel, self._on_notify)
                # Anything may have changed while we were not listening.
                self.store.changed(None)
                self._connected.set()
                backoff = 0.5
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.heartbeat):
                            await lost.wait()
                    if not lost.is_set():
                        async with asyncio.timeout(5):  # a silent partition raises here
                            await connection.fetchval("SELECT 1")
                logger.warning("rights feed: connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                logger.warning("rights feed: cannot listen (%s); retrying in %.1f s", exc, backoff)
            finally:
                self._connected.clear()
                if connection is not None and not connection.is_closed():
                    try:
                        await connection.close(timeout=2)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                        connection.terminate()  # a half-dead connection: just drop it
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
