"""Redis backends for the revocation deny-list and the login throttle.

Drop-in alternatives to :class:`~asgi_auth.store.revocation.RevocationList` and
:class:`~asgi_auth.store.throttle.LoginThrottle` for deployments that share a Redis
(``pip install 'asgi-auth[redis]'``), with the same public methods and guarantees:

* :class:`RedisRevocationList` keeps one key per revoked ``jti`` (``prefix + jti``),
  set to expire one second after the token does, and mirrors the unexpired ones in
  memory so that :meth:`~RedisRevocationList.is_revoked` stays a set lookup. Other
  instances learn of a revocation at their next sync (every ``sync_interval``
  seconds), exactly as with the SQL deny-list.
* :class:`RedisLoginThrottle` keeps a sorted set of failure times per key
  (``user:<casefolded username>``, ``addr:<address>``, the keys of
  :class:`~asgi_auth.store.throttle.LoginThrottle`), trimmed to the window and to the
  limit, and expiring with the window.

Any Redis error (connection refused, timeout, a refused command) is raised as
:class:`~asgi_auth.errors.ServiceUnavailable`, so that the endpoints fail closed with
a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Final

import redis.asyncio
from redis.exceptions import RedisError

from asgi_auth.errors import ServiceUnavailable
from asgi_auth.store.revocation import DEFAULT_SYNC_INTERVAL, PeriodicSync
from asgi_auth.store.throttle import Attempt, _keys

__all__ = ["RedisLoginThrottle", "RedisRevocationList"]

logger: Final = logging.getLogger("asgi_auth.store")
_MAX_JTI: Final = 255
#: Keys asked per SCAN step while syncing the deny-list.
_SCAN_COUNT: Final = 1000


@contextlib.contextmanager
def _guard(what: str) -> Iterator[None]:
    """Turn a Redis failure into :class:`ServiceUnavailable`."""
    try:
        yield
    except (RedisError, OSError) as exc:  # OSError: a socket error redis-py let through
        raise ServiceUnavailable(f"redis: cannot {what}: {type(exc).__name__}: {exc}") from exc


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class RedisRevocationList(PeriodicSync):
    """Revoked token ids, in Redis and in memory.

    Args:
        client: a ``redis.asyncio.Redis`` client (``decode_responses`` either way).
        prefix: the key prefix; one key per revoked ``jti``.
        sync_interval: seconds between syncs with Redis (by :meth:`start`).
        clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str = "asgi_auth:revoked:",
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not sync_interval > 0:
            raise ValueError("sync_interval must be positive")
        if not prefix:
            raise ValueError("prefix must not be empty")
        self.client = client
        self.prefix = prefix
        self.sync_interval = sync_interval
        self._clock = clock
        self._revoked: dict[str, float] = {}
        #: Revocations made here that no sync has found in Redis yet.
        self._pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def is_revoked(self, jti: str) -> bool:
        """Whether the token with this ``jti`` is revoked (an in-memory lookup)."""
        return jti in self._revoked

    async def revoke(self, jti: str, expires_at: float) -> None:
        """Revoke a token until it expires anyway.

        Raises:
            ValueError: an empty or over-long ``jti``.
            ServiceUnavailable: Redis cannot answer: nothing is revoked, so that a
                retry (a client's logout retried after a 503) finds the token as it was.
        """
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
            raise ValueError("a jti is 1 to 255 characters")
        await self._write({jti: expires_at})
        # Pending until a sync sees it in Redis: a sync that scanned before this write
        # must not drop it from memory.
        self._revoked[jti] = expires_at
        self._pending[jti] = expires_at

    async def _write(self, revocations: dict[str, float]) -> None:
        """Set the keys of these revocations (NX: writing one twice is harmless)."""
        now = self._clock()
        for jti, expires_at in revocations.items():
            until = int(expires_at) + 1
            if until > now:  # else already expired: nothing left to deny elsewhere
                with _guard("revoke token"):
                    await self.client.set(self.prefix + jti, 1, exat=until, nx=True)

    async def sync(self) -> None:
        """Load the unexpired revocations from Redis and drop expired ones.

        Raises:
            ServiceUnavailable: Redis cannot answer (the set in memory stays, revocations
                no scan has seen yet included).
        """
        await self._write(dict(self._pending))  # (re)write those no sync has seen yet
        now = self._clock()
        skip = len(self.prefix)
        with _guard("sync revocations"):
            keys = [
                key
                async for key in self.client.scan_iter(
                    match=_glob_escape(self.prefix) + "*", count=_SCAN_COUNT
                )
            ]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpiretime(key)
                expiries = await pipe.execute()
        fresh: dict[str, float] = {}
        for key, expiry in zip(keys, expiries, strict=True):
            if expiry == -2:  # expired or deleted since the scan
                continue
            # -1: a key without expiry (not written by us): revoked until removed.
            fresh[_text(key)[skip:]] = float("inf") if expiry == -1 else expiry / 1000
        # Redis is the truth, except for local revocations no scan has seen yet (a
        # failed write, or one landing after this scan): those stay, and are retried.
        self._pending = {j: e for j, e in self._pending.items() if e > now and j not in fresh}
        fresh.update(self._pending)
        self._revoked = fresh


class RedisLoginThrottle:
    """Counts failed logins in Redis and says when to stop trying.

    Args:
        client: a ``redis.asyncio.Redis`` client.
        per_user: failures allowed per username within the window.
        per_address: failures allowed per client address within the window.
        window: the sliding window, in seconds.
        prefix: the key prefix.
        clock: seconds since the epoch; injectable for tests.

    Raises:
        ValueError: a limit or window below 1.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        per_user: int = 5,
        per_address: int = 50,
        window: int = 900,
        prefix: str = "asgi_auth:login:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min(per_user, per_address, window) < 1:
            raise ValueError("limits and window must be at least 1")
        self.client = client
        self.limits = {"user": per_user, "addr": per_address}
        self.window = window
        self.prefix = prefix
        self._clock = clock

    def _limit(self, key: str) -> int:
        return self.limits[key.split(":", 1)[0]]

    async def attempt(self, username: str, address: str | None) -> Attempt:
        """Count a login attempt before its password is checked, as a failure until
        :meth:`succeeded` says otherwise; or, past a limit, refuse it (uncounted).
        Each key's add and count are one ``MULTI``: the n-th concurrent attempt counts
        n. See :meth:`asgi_auth.store.LoginThrottle.attempt`.

        Raises:
            ServiceUnavailable: Redis cannot answer.
        """
        now = int(self._clock())
        member = f"{now}:{secrets.token_hex(8)}"
        keys = _keys(username, address)
        with _guard("count a login attempt"):
            async with self.client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.zremrangebyscore(self.prefix + key, "-inf", now - self.window)
                    pipe.zadd(self.prefix + key, {member: now})
                    pipe.zcard(self.prefix + key)
                    pipe.zrange(self.prefix + key, 0, 0, withscores=True)
                    pipe.expire(self.prefix + key, self.window)
                replies = await pipe.execute()
        wait = 0
        for n, key in enumerate(keys):
            count, oldest = replies[5 * n + 2], replies[5 * n + 3]
            if count > self._limit(key) and oldest:
                wait = max(wait, int(oldest[0][1]) + self.window - now + 1)
        if not wait:
            # The username's entries go at a success; the address's entry is this one.
            return Attempt(None, tuple((self.prefix + key, member) for key in keys[1:]))
        # Refused: uncount it. (No trimming here: the entries of attempts admitted in
        # the same second must all stay; refused ones never do, so sets stay bounded.)
        with _guard("uncount a refused attempt"):
            async with self.client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.zrem(self.prefix + key, member)
                await pipe.execute()
        return Attempt(wait)

    async def retry_after(self, username: str, address: str | None) -> int | None:
        """Seconds to wait before trying again, or None when a try is allowed.

        Raises:
            ServiceUnavailable: Redis cannot answer.
        """
        now = int(self._clock())
        keys = _keys(username, address)
        with _guard("read login failures"):
            async with self.client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.zremrangebyscore(self.prefix + key, "-inf", now - self.window)
                    pipe.zcard(self.prefix + key)
                    pipe.zrange(self.prefix + key, 0, 0, withscores=True)
                replies = await pipe.execute()
        wait = 0
        for n, key in enumerate(keys):
            count, oldest = replies[3 * n + 1], replies[3 * n + 2]
            if count >= self._limit(key) and oldest:
                # The oldest failure kept must age out before the next try.
                wait = max(wait, int(oldest[0][1]) + self.window - now + 1)
        return wait or None

    async def failed(self, username: str, address: str | None) -> None:
        """Count a failed login (and forget failures older than the window).

        Raises:
            ServiceUnavailable: Redis cannot answer.
        """
        now = int(self._clock())
        member = f"{now}:{secrets.token_hex(8)}"
        with _guard("count a login failure"):
            async with self.client.pipeline(transaction=True) as pipe:
                for key in _keys(username, address):
                    pipe.zadd(self.prefix + key, {member: now})
                    pipe.zremrangebyscore(self.prefix + key, "-inf", now - self.window)
                    # Only the newest `limit` failures matter: the set stays bounded.
                    pipe.zremrangebyrank(self.prefix + key, 0, -self._limit(key) - 1)
                    pipe.expire(self.prefix + key, self.window)
                await pipe.execute()

    async def succeeded(self, username: str, attempt: Attempt | None = None) -> None:
        """Clear the username's failures after a successful login, and uncount the
        successful ``attempt`` (its address's count).

        Raises:
            ServiceUnavailable: Redis cannot answer.
        """
        with _guard("clear login failures"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.prefix + _keys(username, None)[0])
                for key, member in attempt.counted if attempt is not None else ():
                    pipe.zrem(key, member)
                await pipe.execute()
