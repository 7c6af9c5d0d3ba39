"""Roles and claims from the store: the loader protocol and the cache in front of it.

A loader answers "what roles and claims does this subject hold?" with one query. The
:class:`CachedRights` wrapper keeps answers for a TTL (bounded in entries), shares one
query among concurrent requests for the same subject, and forgets entries when told
(the admin operations and cross-instance notifications call :meth:`invalidate`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_RIGHTS_TTL",
    "DISABLED",
    "NO_RIGHTS",
    "CachedRights",
    "Rights",
    "RightsLoader",
]

#: Seconds a subject's roles and claims are trusted without asking the store again.
DEFAULT_RIGHTS_TTL: Final = 30.0
_EMPTY: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Rights:
    """A subject's roles and claims as the store has them.

    Attributes:
        roles: role names.
        claims: claim names.
        known: False when the store has no user for the subject (unknown or
            deleted): the subject holds no store rights, though with ``source="both"``
            roles and permissions carried by its token still count (a machine client
            of an identity provider has no row in the store).
        active: False when the store has the user but disabled: then nothing counts,
            not even the token's roles.
    """

    roles: frozenset[str] = _EMPTY
    claims: frozenset[str] = _EMPTY
    known: bool = True
    active: bool = True


#: The rights of a subject the store does not know.
NO_RIGHTS: Final = Rights(known=False)
#: The rights of a user the store has disabled.
DISABLED: Final = Rights(active=False)


@runtime_checkable
class RightsLoader(Protocol):
    """Loads a subject's roles and claims. Implement it to plug in another store."""

    async def load(self, subject: str) -> Rights:
        """The subject's rights (``NO_RIGHTS`` for an unknown or disabled subject).

        Raises:
            StoreUnavailable: the store cannot answer (down, slow, broken).
        """
        ...


class CachedRights:
    """A bounded, TTL-limited cache in front of a :class:`RightsLoader`.

    Args:
        loader: where misses go.
        ttl: seconds an answer is reused; a change made elsewhere takes effect within
            it even when no invalidation arrives. 0 disables caching.
        max_entries: the most subjects remembered (least recently used go first).
        clock: monotonic seconds; injectable for tests.

    Raises:
        ValueError: a negative ttl or a max_entries below 1.
    """

    def __init__(
        self,
        loader: RightsLoader,
        *,
        ttl: float = DEFAULT_RIGHTS_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(loader, RightsLoader):
            raise TypeError("loader must have an async load(subject) method")
        if not 0 <= ttl < float("inf"):
            raise ValueError("ttl must be a non-negative number of seconds")
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive int")
        self.loader = loader
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Rights, float]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Rights]] = {}
        self._generation = 0

    def peek(self, subject: str) -> Rights | None:
        """The cached rights of ``subject`` when fresh, else None; never queries."""
        entry = self._entries.get(subject)
        if entry is not None and entry[1] > self._clock():
            try:  # noqa: SIM105 - the hot path: try costs nothing, suppress() does
                self._entries.move_to_end(subject)  # least recently used goes first
            except KeyError:
                pass
            return entry[0]
        return None

    async def load(self, subject: str) -> Rights:
        """The subject's rights, from the cache when fresh.

        Raises:
            StoreUnavailable: as the loader does (failures are never cached).
        """
        entry = self._entries.get(subject)
        if entry is not None:
            if entry[1] > self._clock():
                self._entries.move_to_end(subject)
                return entry[0]
            self._entries.pop(subject, None)
        pending = self._pending.get(subject)
        if pending is not None:  # one query per subject in flight, shared
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this request itself was cancelled
                # the request that ran the query went away: run our own below
        future: asyncio.Future[Rights] = asyncio.get_running_loop().create_future()
        self._pending[subject] = future
        generation = self._generation
        try:
            rights = await self.loader.load(subject)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when unshared
            raise
        else:
            future.set_result(rights)
        finally:
            if self._pending.get(subject) is future:
                del self._pending[subject]
        # An invalidation that arrived while the query ran makes its answer suspect.
        if self.ttl > 0 and generation == self._generation:
            while len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
            self._entries[subject] = (rights, self._clock() + self.ttl)
        return rights

    def invalidate(self, subject: str | None = None) -> None:
        """Forget one subject's rights, or everyone's (``None``)."""
        self._generation += 1
        # A query already in flight may have read the old rights: later requests must
        # not join it (its own waiters get its answer; it is not cached, see load()).
        if subject is None:
            self._entries.clear()
            self._pending.clear()
        else:
            self._entries.pop(subject, None)
            self._pending.pop(subject, None)

    def __len__(self) -> int:
        return len(self._entries)
