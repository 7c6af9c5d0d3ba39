"""Revoked access tokens: a deny-list of ``jti`` values in the store, mirrored in memory.

The verifier asks :meth:`RevocationList.is_revoked` on every request, cache hits
included, so the check must cost a set lookup: each instance keeps the unexpired
revoked ``jti``s in memory. A revocation made here is in that set at once; other
instances sharing the store pick it up at their next sync (every
``sync_interval`` seconds, 5 by default), so a revoked token stops working
everywhere within that bound. Entries leave the table once their token has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Final

from asgi_auth.errors import ServiceUnavailable
from asgi_auth.store.database import Store

__all__ = ["DEFAULT_SYNC_INTERVAL", "PeriodicSync", "RevocationList"]

logger: Final = logging.getLogger("asgi_auth.store")
#: Seconds between syncs of the in-memory deny-list with the store.
DEFAULT_SYNC_INTERVAL: Final = 5.0
_MAX_JTI: Final = 255


class PeriodicSync(ABC):
    """A deny-list mirrored in memory and re-read every ``sync_interval`` seconds.

    Subclasses set ``sync_interval`` and ``_task = None`` and implement ``sync()``.
    """

    sync_interval: float
    _task: asyncio.Task[None] | None
    _stopping: asyncio.Event

    @abstractmethod
    async def sync(self) -> None:
        """Re-read the deny-list.

        Raises:
            StoreUnavailable: the backend cannot answer (the set in memory stays).
        """

    async def start(self) -> None:
        """Sync now, then every ``sync_interval`` seconds in the background."""
        await self.sync()
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="asgi_auth revocations")

    async def stop(self) -> None:
        """Stop the background sync, letting a sync under way finish (the store bounds
        how long it may take): a query cancelled half-way would leave the database
        driver answering a task that is gone."""
        task = self._task
        if task is not None:
            self._stopping.set()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            finally:
                self._task = None

    async def _run(self) -> None:
        stopping = self._stopping
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.sync_interval)
            if stopping.is_set():
                return
            try:
                await self.sync()
            except ServiceUnavailable as exc:  # keep serving what we know; retry later
                logger.warning("revocations not synced: %s", exc.reason)


class RevocationList(PeriodicSync):
    """Revoked token ids, in the store and in memory.

    Args:
        store: a connected :class:`Store` (``init_schema`` creates the table).
        sync_interval: seconds between syncs with the store (by :meth:`start`).
        clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        *,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not sync_interval > 0:
            raise ValueError("sync_interval must be positive")
        self.store = store
        self.sync_interval = sync_interval
        self._clock = clock
        self._revoked: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def is_revoked(self, jti: str) -> bool:
        """Whether the token with this ``jti`` is revoked (an in-memory lookup)."""
        return jti in self._revoked

    async def revoke(self, jti: str, expires_at: float) -> None:
        """Revoke a token until it expires anyway.

        Raises:
            ValueError: an empty or over-long ``jti``.
            StoreUnavailable: the store cannot answer: nothing is revoked, so that a
                retry (a client's logout retried after a 503) finds the token as it was.
        """
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
            raise ValueError("a jti is 1 to 255 characters")
        await self.store.write(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES (:jti, :expires) "
            "ON CONFLICT DO NOTHING",
            {"jti": jti, "expires": int(expires_at) + 1},
            what="revoke token",
        )
        self._revoked[jti] = expires_at

    async def sync(self) -> None:
        """Load the unexpired revocations from the store and drop expired ones.

        Raises:
            StoreUnavailable: the store cannot answer (the set in memory stays).
        """
        now = int(self._clock())
        rows = await self.store.run(
            self.store.database.fetch_all(
                "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > :now",
                {"now": now},
            ),
            what="sync revocations",
        )
        fresh = {str(r["jti"]): float(r["expires_at"]) for r in rows}
        # Keep local revocations the store has not confirmed yet (a failed write).
        fresh.update({j: e for j, e in self._revoked.items() if e > now and j not in fresh})
        self._revoked = fresh
        await self.store.write(
            "DELETE FROM revoked_tokens WHERE expires_at <= :now",
            {"now": now},
            what="purge revocations",
        )
