"""Administering the store: users, roles, claims and grants.

Every operation runs in one transaction (no partial writes: all or nothing), raises
:class:`NotFound` or :class:`AlreadyExists` with the name at fault (having written
nothing), and, once committed, invalidates the cached rights of whoever it touched:
on this instance at once, and on every instance sharing a PostgreSQL store through
``NOTIFY`` (see :mod:`asgi_auth.store.feed`). When the store fails mid-operation
(``StoreUnavailable``) the outcome is unknown, all or nothing, and every cached
right on this instance is forgotten.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from databases import Database

from asgi_auth.errors import StoreUnavailable
from asgi_auth.store.database import INTEGRITY_ERRORS, Store, store_call

__all__ = ["AdminError", "AlreadyExists", "NotFound", "StoreAdmin", "UserRights"]

#: The PostgreSQL channel that carries rights changes between instances.
CHANGES_CHANNEL: Final = "asgi_auth_rights"
_EVERYONE: Final = "*"
T = TypeVar("T")
_LIMITS: Final = {"role": 100, "claim": 100, "user": 150, "description": 500}


class AdminError(Exception):
    """An administrative operation was refused; nothing was written."""


class NotFound(AdminError, LookupError):
    """The named user, role or claim does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {name!r}")
        self.kind, self.name = kind, name


class AlreadyExists(AdminError, ValueError):
    """A user, role or claim with that name exists already."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"a {kind} named {name!r} exists already")
        self.kind, self.name = kind, name


@dataclass(frozen=True, slots=True)
class UserRights:
    """A user's effective rights as the store holds them."""

    id: int
    username: str
    role: str | None
    claims: tuple[str, ...]
    is_active: bool


def _checked(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a {kind} name must be a non-empty string")
    if len(value) > _LIMITS[kind] or not value.isprintable():
        raise ValueError(f"a {kind} name is printable text of at most {_LIMITS[kind]} characters")
    return value


def _password_hash(value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > _LIMITS["description"]):
        raise ValueError("a password hash is text of at most 500 characters")


def _description(value: str) -> str:
    if not isinstance(value, str) or len(value) > _LIMITS["description"]:
        raise ValueError(f"a description is text of at most {_LIMITS['description']} characters")
    return value


class StoreAdmin:
    """Administrative operations on a connected :class:`Store`.

    All methods are async and raise ``StoreUnavailable`` when the database fails.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- helpers -----------------------------------------------------------------------

    async def _run(self, what: str, work: Any) -> Any:
        if not self.store.is_connected:
            work.close()  # never awaited: close the coroutine quietly
            raise StoreUnavailable(f"{what}: the store is not connected")
        return await store_call(work, timeout=self.store.timeout * 5, what=what)

    async def _write(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run a write transaction (on SQLite it waits for another process's write lock:
        :meth:`Store.transaction` begins IMMEDIATE)."""
        try:
            result: T = await self._run(what, work())
        except StoreUnavailable:
            # The outcome is unknown (a commit may have landed before the answer was
            # lost): forget every cached right rather than guess.
            self.store.changed(None)
            raise
        return result

    async def _id(self, db: Database, kind: str, table: str, column: str, name: str) -> int:
        if not isinstance(name, str) or not name.isprintable() or len(name) > _LIMITS["user"]:
            raise NotFound(kind, name)  # no stored name looks like this
        found = await db.fetch_val(f"SELECT id FROM {table} WHERE {column} = :name", {"name": name})  # noqa: S608 - constant identifiers
        if found is None:
            raise NotFound(kind, name)
        return int(found)

    async def _notify(self, db: Database, subject: str | None) -> None:
        if self.store.is_postgresql:
            # Delivered on commit only, to every instance listening (LISTEN/NOTIFY).
            await db.execute(
                "SELECT pg_notify(:channel, :payload)",
                {"channel": CHANGES_CHANNEL, "payload": subject or _EVERYONE},
            )

    async def _create(self, kind: str, table: str, name: str, description: str) -> int:
        _checked(kind, name)
        _description(description)

        async def work() -> int:
            async with self.store.transaction() as db:
                exists = await db.fetch_val(
                    f"SELECT id FROM {table} WHERE name = :name",  # noqa: S608 - constant
                    {"name": name},
                )
                if exists is not None:
                    raise AlreadyExists(kind, name)
                try:
                    new_id = await db.fetch_val(
                        f"INSERT INTO {table} (name, description) "  # noqa: S608 - constant
                        "VALUES (:name, :description) RETURNING id",
                        {"name": name, "description": description},
                    )
                except INTEGRITY_ERRORS as exc:  # created concurrently since the check
                    raise AlreadyExists(kind, name) from exc
                return int(new_id)

        created: int = await self._write(f"create {kind}", work)
        return created

    # -- roles and claims ----------------------------------------------------------------

    async def create_role(self, name: str, description: str = "") -> int:
        """Create a role; returns its id.

        Raises:
            AlreadyExists: a role with that name exists.
            ValueError: an empty or over-long name or description.
        """
        return await self._create("role", "roles", name, description)

    async def create_claim(self, name: str, description: str = "") -> int:
        """Create a claim; returns its id.

        Raises:
            AlreadyExists: a claim with that name exists.
            ValueError: an empty or over-long name or description.
        """
        return await self._create("claim", "claims", name, description)

    async def rename_role(self, name: str, new_name: str) -> None:
        """Rename a role; every cached right is invalidated (anyone may hold it).

        Raises:
            NotFound: no such role.
            AlreadyExists: ``new_name`` is taken.
        """
        await self._rename("role", "roles", name, new_name)

    async def rename_claim(self, name: str, new_name: str) -> None:
        """Rename a claim; every cached right is invalidated.

        Raises:
            NotFound: no such claim.
            AlreadyExists: ``new_name`` is taken.
        """
        await self._rename("claim", "claims", name, new_name)

    async def _rename(self, kind: str, table: str, name: str, new_name: str) -> None:
        _checked(kind, new_name)

        async def work() -> None:
            async with self.store.transaction() as db:
                found = await self._id(db, kind, table, "name", name)
                taken = await db.fetch_val(
                    f"SELECT id FROM {table} WHERE name = :name",  # noqa: S608 - constant
                    {"name": new_name},
                )
                if taken is not None:
                    raise AlreadyExists(kind, new_name)
                try:
                    await db.execute(
                        f"UPDATE {table} SET name = :name WHERE id = :id",  # noqa: S608
                        {"name": new_name, "id": found},
                    )
                except INTEGRITY_ERRORS as exc:  # taken concurrently since the check
                    raise AlreadyExists(kind, new_name) from exc
                await self._notify(db, None)

        await self._write(f"rename {kind}", work)
        self.store.changed(None)

    # -- users -----------------------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        role: str | None = None,
        claims: tuple[str, ...] = (),
        is_active: bool = True,
    ) -> int:
        """Create a user (with a role and claims, in one transaction); returns the id,
        which is the ``sub`` of the user's tokens.

        Raises:
            AlreadyExists: the username is taken.
            NotFound: the role or a claim does not exist (nothing is created).
        """
        _checked("user", username)
        _password_hash(password_hash)

        async def work() -> int:
            async with self.store.transaction() as db:
                taken = await db.fetch_val(
                    "SELECT id FROM users WHERE username = :name", {"name": username}
                )
                if taken is not None:
                    raise AlreadyExists("user", username)
                role_id = (
                    None if role is None else await self._id(db, "role", "roles", "name", role)
                )
                claim_ids = [await self._id(db, "claim", "claims", "name", c) for c in claims]
                try:
                    user_id = int(
                        await db.fetch_val(
                            "INSERT INTO users (username, password_hash, role_id, is_active) "
                            "VALUES (:username, :password_hash, :role_id, :is_active) "
                            "RETURNING id",
                            {
                                "username": username,
                                "password_hash": password_hash,
                                "role_id": role_id,
                                "is_active": bool(is_active),
                            },
                        )
                    )
                except INTEGRITY_ERRORS as exc:  # created concurrently since the check
                    raise AlreadyExists("user", username) from exc
                for claim_id in dict.fromkeys(claim_ids):
                    await db.execute(
                        "INSERT INTO user_claims (user_id, claim_id) VALUES (:user_id, :claim_id)",
                        {"user_id": user_id, "claim_id": claim_id},
                    )
                await self._notify(db, str(user_id))
                return user_id

        user_id: int = await self._write("create user", work)
        self.store.changed(str(user_id))
        return user_id

    async def _update_user(self, what: str, username: str, change: Any) -> int:
        """Run ``change(db, user_id)`` for an existing user in one transaction."""

        async def work() -> int:
            async with self.store.transaction() as db:
                user_id = await self._id(db, "user", "users", "username", username)
                await change(db, user_id)
                await self._notify(db, str(user_id))
                return user_id

        user_id: int = await self._write(what, work)
        self.store.changed(str(user_id))
        return user_id

    async def set_active(self, username: str, active: bool) -> None:
        """Enable or disable a user; a disabled user holds no rights.

        Raises:
            NotFound: no such user.
        """

        async def change(db: Database, user_id: int) -> None:
            await db.execute(
                "UPDATE users SET is_active = :active WHERE id = :user_id",
                {"active": bool(active), "user_id": user_id},
            )

        await self._update_user("set active", username, change)

    async def set_password_hash(self, username: str, password_hash: str | None) -> None:
        """Store a password hash (or clear it).

        Raises:
            NotFound: no such user.
            ValueError: a hash longer than 500 characters.
        """
        _password_hash(password_hash)

        async def change(db: Database, user_id: int) -> None:
            await db.execute(
                "UPDATE users SET password_hash = :password_hash WHERE id = :user_id",
                {"password_hash": password_hash, "user_id": user_id},
            )

        await self._update_user("set password", username, change)

    async def set_role(self, username: str, role: str | None) -> None:
        """Give a user a role, or none.

        Raises:
            NotFound: no such user or role.
        """

        async def change(db: Database, user_id: int) -> None:
            role_id = None if role is None else await self._id(db, "role", "roles", "name", role)
            await db.execute(
                "UPDATE users SET role_id = :role_id WHERE id = :user_id",
                {"role_id": role_id, "user_id": user_id},
            )

        await self._update_user("set role", username, change)

    async def grant(self, username: str, claim: str) -> None:
        """Grant a claim to a user (granting it twice is harmless).

        Raises:
            NotFound: no such user or claim.
        """

        async def change(db: Database, user_id: int) -> None:
            claim_id = await self._id(db, "claim", "claims", "name", claim)
            # Atomic "grant unless held": concurrent grants of one claim both succeed.
            await db.execute(
                "INSERT INTO user_claims (user_id, claim_id) VALUES (:user_id, :claim_id) "
                "ON CONFLICT DO NOTHING",
                {"user_id": user_id, "claim_id": claim_id},
            )

        await self._update_user("grant claim", username, change)

    async def revoke(self, username: str, claim: str) -> None:
        """Revoke a claim from a user (revoking one not held is harmless).

        Raises:
            NotFound: no such user or claim.
        """

        async def change(db: Database, user_id: int) -> None:
            claim_id = await self._id(db, "claim", "claims", "name", claim)
            await db.execute(
                "DELETE FROM user_claims WHERE user_id = :user_id AND claim_id = :claim_id",
                {"user_id": user_id, "claim_id": claim_id},
            )

        await self._update_user("revoke claim", username, change)

    async def rights(self, username: str) -> UserRights:
        """A user's role, claims and status.

        Raises:
            NotFound: no such user.
        """

        async def work() -> UserRights:
            row = await self.store.database.fetch_one(
                "SELECT u.id, u.username, u.is_active, r.name AS role FROM users u "
                "LEFT JOIN roles r ON r.id = u.role_id WHERE u.username = :name",
                {"name": username},
            )
            if row is None:
                raise NotFound("user", username)
            claims = await self.store.database.fetch_all(
                "SELECT c.name FROM user_claims uc JOIN claims c ON c.id = uc.claim_id "
                "WHERE uc.user_id = :user_id ORDER BY c.name",
                {"user_id": row["id"]},
            )
            return UserRights(
                id=int(row["id"]),
                username=row["username"],
                role=row["role"],
                claims=tuple(c["name"] for c in claims),
                is_active=bool(row["is_active"]),
            )

        found: UserRights = await self._run("read rights", work())
        return found

    async def credentials(self, username: str) -> tuple[int, str | None, bool] | None:
        """``(id, password_hash, is_active)`` of a user, or None (for logins).

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        if not isinstance(username, str) or not username.isprintable() or len(username) > 150:
            return None  # no stored username looks like this
        if not self.store.is_connected:
            raise StoreUnavailable("read credentials: the store is not connected")
        row = await store_call(
            self.store.database.fetch_one(
                "SELECT id, password_hash, is_active FROM users WHERE username = :name",
                {"name": username},
            ),
            timeout=self.store.timeout,
            what="read credentials",
        )
        if row is None:
            return None
        return int(row["id"]), row["password_hash"], bool(row["is_active"])

    async def list_names(self, kind: str) -> list[tuple[str, str]]:
        """``(name, description)`` of every role (``kind="role"``) or claim (``"claim"``)."""
        table = {"role": "roles", "claim": "claims"}[kind]
        rows = await self._run(
            f"list {kind}s",
            self.store.database.fetch_all(f"SELECT name, description FROM {table} ORDER BY name"),  # noqa: S608
        )
        return [(r["name"], r["description"]) for r in rows]
