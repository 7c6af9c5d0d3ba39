"""Refresh tokens: opaque, stored hashed, rotated on every use, with reuse detection.

Each login starts a *family*. Using a refresh token marks it used and issues the next
one of the same family; presenting a used token again (a replay: someone else holds
a copy) revokes the whole family, so neither the thief nor the owner can refresh
again and the owner must log in. A family also has an absolute lifetime, however
often it is refreshed. Only SHA-256 digests of tokens are stored: a leaked table
holds nothing usable (the tokens are 256-bit random, so a fast hash suffices).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple

from asgi_auth.errors import InvalidCredentials
from asgi_auth.store.database import Store

__all__ = ["DEFAULT_FAMILY_LIFETIME", "REUSED", "RefreshTokens"]

#: A login's refresh tokens stop working 30 days after the login, however used.
DEFAULT_FAMILY_LIFETIME: Final = 30 * 86_400
_MAX_TOKEN: Final = 200
#: The reason of a refusal for a refresh token used twice: its whole family is revoked
#: (whoever holds either copy may have stolen it).
REUSED: Final = "refresh token reused: its family is revoked"


class Rotation(NamedTuple):
    """A refresh token handed out: for whom, the token, and its family (session) id."""

    subject: str
    token: str
    family: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class RefreshTokens:
    """Issues and rotates refresh tokens kept in the store.

    Args:
        store: a connected :class:`Store` (``init_schema`` creates the table).
        family_lifetime: seconds a login's refresh tokens live, in all.
        is_active: ``await is_active(subject)``: whether the subject may still
            refresh (a disabled user may not). Default: everyone may.
        clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        *,
        family_lifetime: int = DEFAULT_FAMILY_LIFETIME,
        is_active: Callable[[str], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(family_lifetime, int) or family_lifetime < 60:
            raise ValueError("family_lifetime must be at least 60 seconds")
        self.store = store
        self.family_lifetime = family_lifetime
        self.is_active = is_active
        self._clock = clock

    async def _call(self, what: str, work: Any) -> Any:
        return await self.store.run(work, what=what, timeout=self.store.timeout * 5)

    async def issue(self, subject: str) -> str:
        """A refresh token starting a new family (at login).

        Raises:
            ValueError: an empty subject or one over 255 characters.
            StoreUnavailable: the store cannot answer.
        """
        return (await self.start(subject)).token

    async def start(self, subject: str) -> Rotation:
        """A new family (a login session): its first refresh token and its id, which
        access tokens carry as ``sid`` so that logging out ends the session.

        Raises:
            ValueError: an empty subject or one over 255 characters.
            StoreUnavailable: the store cannot answer.
        """
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise ValueError("a refresh token's subject is 1 to 255 characters")
        token = secrets.token_urlsafe(32)
        family = secrets.token_hex(16)
        expires = int(self._clock()) + self.family_lifetime
        await self.store.write(
            "INSERT INTO refresh_tokens (family, token_hash, subject, family_expires_at) "
            "VALUES (:family, :hash, :subject, :expires)",
            {"family": family, "hash": _digest(token), "subject": subject, "expires": expires},
            what="issue refresh token",
            timeout=self.store.timeout * 5,
        )
        return Rotation(subject, token, family)

    async def rotate(self, token: str) -> Rotation:
        """Use a refresh token: returns the subject, the next token and the family.

        Raises:
            InvalidCredentials: unknown, expired, revoked or reused (a reuse revokes
                the whole family), or the subject may no longer refresh.
            StoreUnavailable: the store cannot answer.
        """
        if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN:
            raise InvalidCredentials("refresh token of impossible length")
        digest = _digest(token)

        async def work() -> Rotation | tuple[str, str | None]:
            async with self.store.transaction() as db:
                row = await db.fetch_one(
                    "SELECT id, family, subject, family_expires_at, used, revoked "
                    "FROM refresh_tokens WHERE token_hash = :hash",
                    {"hash": digest},
                )
                if row is None:
                    return "unknown refresh token", None
                subject = str(row["subject"])
                if row["revoked"]:
                    return "refresh token of a revoked family", subject
                if row["family_expires_at"] <= int(self._clock()):
                    return "refresh token family has expired", subject
                # Exactly one use wins: the update succeeds only while unused.
                won = None
                if not row["used"]:
                    won = await db.fetch_val(
                        "UPDATE refresh_tokens SET used = :yes WHERE id = :id AND used = :no "
                        "RETURNING id",
                        {"yes": True, "no": False, "id": row["id"]},
                    )
                if won is None:
                    await db.execute(
                        "UPDATE refresh_tokens SET revoked = :yes WHERE family = :family",
                        {"yes": True, "family": row["family"]},
                    )
                    return REUSED, subject
                following = secrets.token_urlsafe(32)
                await db.execute(
                    "INSERT INTO refresh_tokens (family, token_hash, subject, family_expires_at) "
                    "VALUES (:family, :hash, :subject, :expires)",
                    {
                        "family": row["family"],
                        "hash": _digest(following),
                        "subject": row["subject"],
                        "expires": row["family_expires_at"],
                    },
                )
                return Rotation(str(row["subject"]), following, str(row["family"]))

        outcome: Rotation | tuple[str, str | None] = await self._call(
            "rotate refresh token", work()
        )
        if not isinstance(outcome, Rotation):
            raise InvalidCredentials(outcome[0], subject=outcome[1])
        if self.is_active is not None and not await self.is_active(outcome.subject):
            await self.revoke_family(outcome.family)
            raise InvalidCredentials("the subject may no longer refresh", subject=outcome.subject)
        return outcome

    async def revoke(self, token: str) -> bool:
        """Revoke the family of ``token`` (logout). Returns whether it was known.

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN:
            return False
        family = await self._call(
            "find refresh family",
            self.store.database.fetch_val(
                "SELECT family FROM refresh_tokens WHERE token_hash = :hash",
                {"hash": _digest(token)},
            ),
        )
        if family is None:
            return False
        await self.revoke_family(str(family))
        return True

    async def revoke_family(self, family: str) -> None:
        """End a session: no refresh token of the family works any more.

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        await self.store.write(
            "UPDATE refresh_tokens SET revoked = :yes WHERE family = :family",
            {"yes": True, "family": family},
            what="revoke refresh family",
            timeout=self.store.timeout * 5,
        )
