"""The SQL store of roles and claims: schema, admin operations, loaders, change feed.

The only package (with the loaders in it) that imports ``databases``.
"""

from asgi_auth.store.admin import AdminError, AlreadyExists, NotFound, StoreAdmin, UserRights
from asgi_auth.store.database import DEFAULT_DATABASE_URL, Store
from asgi_auth.store.feed import PostgresChangeFeed
from asgi_auth.store.loader import DEFAULT_RIGHTS_QUERY, SQLRightsLoader, cached_rights
from asgi_auth.store.refresh import RefreshTokens
from asgi_auth.store.revocation import RevocationList

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_RIGHTS_QUERY",
    "AdminError",
    "AlreadyExists",
    "NotFound",
    "PostgresChangeFeed",
    "RefreshTokens",
    "RevocationList",
    "SQLRightsLoader",
    "Store",
    "StoreAdmin",
    "UserRights",
    "cached_rights",
]
