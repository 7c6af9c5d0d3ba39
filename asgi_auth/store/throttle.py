"""Login throttling: failed logins counted per username and per client address in a
sliding window, in the store so that every instance shares the count.

Past a limit, the token endpoint answers 429 with ``Retry-After`` before checking
any password. Each attempt is counted before its password is checked (and uncounted
if it succeeds), so concurrent guesses cannot slip past the limit. Unknown usernames
are counted exactly like known ones, so the answers say nothing about which usernames
exist. A success clears its username's count (not its address's: one address trying
many accounts stays throttled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from asgi_auth.store.database import Store

__all__ = ["Attempt", "LoginThrottle"]

_MAX_KEY: Final = 300
#: The first key of the PostgreSQL advisory locks that serialize attempts per key.
_LOCK_SPACE: Final = 0x61_61_74  # "aat"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt as a throttle counted it.

    Attributes:
        retry_after: None when the attempt may go on; else the seconds to wait (the
            attempt was refused and is not counted).
        counted: what the throttle recorded for it, so that :meth:`succeeded` uncounts
            exactly this attempt.
    """

    retry_after: int | None
    counted: tuple[Any, ...] = ()


def _keys(username: str, address: str | None) -> list[str]:
    keys = [f"user:{username.casefold()}"[:_MAX_KEY]]
    if address:
        keys.append(f"addr:{address}"[:_MAX_KEY])
    return keys


class LoginThrottle:
    """Counts failed logins and says when to stop trying.

    Args:
        store: a connected :class:`Store` (``init_schema`` creates the table).
        per_user: failures allowed per username within the window.
        per_address: failures allowed per client address within the window.
        window: the sliding window, in seconds.
        clock: seconds since the epoch; injectable for tests.

    Raises:
        ValueError: a limit or window below 1.
    """

    def __init__(
        self,
        store: Store,
        *,
        per_user: int = 5,
        per_address: int = 50,
        window: int = 900,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min(per_user, per_address, window) < 1:
            raise ValueError("limits and window must be at least 1")
        self.store = store
        self.limits = {"user": per_user, "addr": per_address}
        self.window = window
        self._clock = clock

    async def attempt(self, username: str, address: str | None) -> Attempt:
        """Count a login attempt before its password is checked, as a failure until
        :meth:`succeeded` says otherwise; or, past a limit, refuse it (uncounted).

        The check and the count are one transaction (serialized per username and
        address: an advisory lock on PostgreSQL, the file's write lock on SQLite), so
        the limit holds for concurrent attempts too: a burst of guesses sent at once
        gets exactly the limit's worth of password checks.

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        now = int(self._clock())
        keys = _keys(username, address)

        async def work() -> Attempt:
            async with self.store.transaction() as db:
                if self.store.is_postgresql:
                    for key in keys:  # always user first, then address: no lock cycle
                        await db.execute(
                            "SELECT pg_advisory_xact_lock(:space, hashtext(:key))",
                            {"space": _LOCK_SPACE, "key": key},
                        )
                wait = 0
                for key in keys:
                    row = await db.fetch_one(
                        "SELECT COUNT(*) AS n, MIN(at) AS first FROM login_failures "
                        "WHERE key = :key AND at > :since",
                        {"key": key, "since": now - self.window},
                    )
                    if row is not None and row["n"] >= self.limits[key.split(":", 1)[0]]:
                        wait = max(wait, int(row["first"]) + self.window - now + 1)
                if wait:
                    return Attempt(wait)
                counted = []
                for key in keys:
                    counted.append(
                        await db.fetch_val(
                            "INSERT INTO login_failures (key, at) VALUES (:key, :at) RETURNING id",
                            {"key": key, "at": now},
                        )
                    )
                # Forget what left the window (an index range: the table stays small).
                await db.execute(
                    "DELETE FROM login_failures WHERE at <= :before", {"before": now - self.window}
                )
                return Attempt(None, tuple(counted))

        return await self.store.run(work(), what="count a login attempt")

    async def retry_after(self, username: str, address: str | None) -> int | None:
        """Seconds to wait before trying again, or None when a try is allowed.

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        now = int(self._clock())
        wait = 0
        for key in _keys(username, address):
            row = await self.store.run(
                self.store.database.fetch_one(
                    "SELECT COUNT(*) AS n, MIN(at) AS first FROM login_failures "
                    "WHERE key = :key AND at > :since",
                    {"key": key, "since": now - self.window},
                ),
                what="read login failures",
            )
            if row is not None and row["n"] >= self.limits[key.split(":", 1)[0]]:
                # The oldest failure in the window must age out before the next try.
                wait = max(wait, int(row["first"]) + self.window - now + 1)
        return wait or None

    async def failed(self, username: str, address: str | None) -> None:
        """Count a failed login (and forget failures older than the window).

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        now = int(self._clock())
        for key in _keys(username, address):
            await self.store.run(
                self.store.database.execute(
                    "INSERT INTO login_failures (key, at) VALUES (:key, :at)",
                    {"key": key, "at": now},
                ),
                what="count a login failure",
            )
        await self.store.run(
            self.store.database.execute(
                "DELETE FROM login_failures WHERE at <= :before", {"before": now - self.window}
            ),
            what="forget old login failures",
        )

    async def succeeded(self, username: str, attempt: Attempt | None = None) -> None:
        """Clear the username's failures after a successful login, and uncount the
        successful ``attempt`` (its address's count).

        Raises:
            StoreUnavailable: the store cannot answer.
        """

        async def work() -> None:
            async with self.store.transaction() as db:
                await db.execute(
                    "DELETE FROM login_failures WHERE key = :key",
                    {"key": _keys(username, None)[0]},
                )
                for row_id in attempt.counted if attempt is not None else ():
                    await db.execute("DELETE FROM login_failures WHERE id = :id", {"id": row_id})

        await self.store.run(work(), what="clear login failures")
