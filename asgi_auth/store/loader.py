"""Loading a subject's roles and claims from SQL: one indexed query for both."""

from __future__ import annotations

from typing import Final

from asgi_auth.authz.rights import DEFAULT_RIGHTS_TTL, DISABLED, NO_RIGHTS, CachedRights, Rights
from asgi_auth.errors import StoreUnavailable
from asgi_auth.store.database import Store, store_call

__all__ = ["DEFAULT_RIGHTS_QUERY", "SQLRightsLoader", "cached_rights"]

#: Status, role and claims of one user, by primary key: an index seek on ``users`` and
#: on ``user_claims``' primary key. One row per claim (or one row with no claim).
DEFAULT_RIGHTS_QUERY: Final = """
SELECT u.is_active AS active, r.name AS role, c.name AS claim
FROM users u
LEFT JOIN roles r ON r.id = u.role_id
LEFT JOIN user_claims uc ON uc.user_id = u.id
LEFT JOIN claims c ON c.id = uc.claim_id
WHERE u.id = :user_id
"""
_MAX_ID: Final = 2**63 - 1


class SQLRightsLoader:
    """A :class:`~asgi_auth.authz.RightsLoader` over the store's tables.

    With the default schema the token's ``sub`` is the user's id. For an existing
    schema, pass ``query``: SQL with a ``:subject`` bind parameter (the ``sub``
    string) that returns columns ``role`` and ``claim`` (either may be NULL), one
    row per pair, and optionally ``active`` (false: the user is disabled); no row
    means the store does not know the subject. Values are always bound, never
    formatted into the SQL. (On SQLite a literal ``%`` in the SQL text is misread by
    ``databases``: pass LIKE patterns as bound values.)

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
            # Subjects are user ids in canonical form: anything else ("007", "+7", "7.0")
            # names no user and costs no query; an alias would also dodge invalidation.
            if len(subject) > 19 or not (subject.isascii() and subject.isdigit()):
                return NO_RIGHTS  # (19 digits hold any BIGINT; int() refuses > 4300)
            if subject != str(int(subject)):
                return NO_RIGHTS
            if not 0 < int(subject) <= _MAX_ID:
                return NO_RIGHTS
            sql = DEFAULT_RIGHTS_QUERY
            values: dict[str, object] = {"user_id": int(subject)}
        else:
            sql, values = self.query, {"subject": subject}
        if not self.store.is_connected:
            raise StoreUnavailable("load rights: the store is not connected")
        rows = await store_call(
            self.store.database.fetch_all(sql, values),
            timeout=self.store.timeout,
            what="load rights",
        )
        if not rows:
            return NO_RIGHTS
        first = dict(rows[0])
        if "active" in first and not first["active"]:
            return DISABLED
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
    if query is None:
        store.on_change(cache.invalidate)
    else:
        # A custom schema's subjects need not be user ids: any change forgets everyone.
        store.on_change(lambda _subject: cache.invalidate(None))
    return cache
