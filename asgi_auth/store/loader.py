"""Loading a subject's roles and claims from SQL: one indexed query for both."""

from __future__ import annotations

from typing import Final

from asgi_auth.authz.rights import DEFAULT_RIGHTS_TTL, NO_RIGHTS, CachedRights, Rights
from asgi_auth.store.database import Store, store_call

__all__ = ["DEFAULT_RIGHTS_QUERY", "SQLRightsLoader", "cached_rights"]

#: Roles and claims of one active user, by primary key: an index seek on ``users`` and
#: on ``user_claims``' primary key. One row per claim (or one row with no claim).
DEFAULT_RIGHTS_QUERY: Final = """
SELECT r.name AS role, c.name AS claim
FROM users u
LEFT JOIN roles r ON r.id = u.role_id
LEFT JOIN user_claims uc ON uc.user_id = u.id
LEFT JOIN claims c ON c.id = uc.claim_id
WHERE u.id = :user_id AND u.is_active = :active
"""
_MAX_ID: Final = 2**63 - 1


class SQLRightsLoader:
    """A :class:`~asgi_auth.authz.RightsLoader` over the store's tables.

    With the default schema the token's ``sub`` is the user's id. For an existing
    schema, pass ``query``: SQL with a ``:subject`` bind parameter (the ``sub``
    string) that returns columns ``role`` and ``claim`` (either may be NULL), one
    row per pair; no row means the subject has no rights. Values are always bound,
    never formatted into the SQL.

    Raises:
        ValueError: a custom query without ``:subject``.
    """

    def __init__(self, store: Store, *, query: str | None = None) -> None:
        if query is not None and ":subject" not in query:
            raise ValueError("a custom rights query needs a :subject bind parameter")
        self.store = store
        self.query = query

    async def load(self, subject: str) -> Rights:
        """The subject's roles and claims (``NO_RIGHTS`` when unknown or disabled).

        Raises:
            StoreUnavailable: the database failed or was too slow.
        """
        if self.query is None:
            # Subjects are user ids: anything else names no user (and costs no query).
            if not (subject.isascii() and subject.isdigit()) or int(subject) > _MAX_ID:
                return NO_RIGHTS
            sql = DEFAULT_RIGHTS_QUERY
            values: dict[str, object] = {"user_id": int(subject), "active": True}
        else:
            sql, values = self.query, {"subject": subject}
        rows = await store_call(
            self.store.database.fetch_all(sql, values),
            timeout=self.store.timeout,
            what="load rights",
        )
        if not rows:
            return NO_RIGHTS
        roles = frozenset(r["role"] for r in rows if r["role"] is not None)
        claims = frozenset(r["claim"] for r in rows if r["claim"] is not None)
        return Rights(roles=roles, claims=claims)


def cached_rights(
    store: Store,
    *,
    ttl: float = DEFAULT_RIGHTS_TTL,
    max_entries: int = 10_000,
    query: str | None = None,
) -> CachedRights:
    """The usual loader: SQL behind a TTL cache that the store's changes invalidate."""
    cache = CachedRights(SQLRightsLoader(store, query=query), ttl=ttl, max_entries=max_entries)
    store.on_change(cache.invalidate)
    return cache
