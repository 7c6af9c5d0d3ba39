"""asgi_auth: authentication and authorization for ASGI apps.

Authentication says who is calling: :class:`AuthMiddleware` turns the bearer token
of each request into a :class:`Principal` on the scope. Tokens are verified by a
:class:`JWTVerifier` (local keys) or an :class:`OIDCVerifier` (an identity
provider's published keys) and issued by a :class:`TokenIssuer`.
"""

from asgi_auth.errors import (
    AuthenticationError,
    AuthError,
    ExpiredToken,
    InvalidCredentials,
    InvalidToken,
    MalformedCredentials,
    NotAuthenticated,
    PermissionDenied,
    ProviderUnavailable,
    RevokedToken,
    ServiceUnavailable,
    StoreUnavailable,
    UnknownKey,
)
from asgi_auth.middleware import AuthMiddleware
from asgi_auth.principal import (
    ANONYMOUS,
    AnonymousPrincipal,
    AuthContext,
    ClaimMapping,
    Principal,
    get_principal,
)
from asgi_auth.tokens import (
    IssuerRouter,
    JWTVerifier,
    Key,
    KeySet,
    OIDCVerifier,
    TokenIssuer,
    TokenVerifier,
)

__version__ = "0.1.0"

__all__ = [
    "ANONYMOUS",
    "AnonymousPrincipal",
    "AuthContext",
    "AuthError",
    "AuthMiddleware",
    "AuthenticationError",
    "ClaimMapping",
    "ExpiredToken",
    "InvalidCredentials",
    "InvalidToken",
    "IssuerRouter",
    "JWTVerifier",
    "Key",
    "KeySet",
    "MalformedCredentials",
    "NotAuthenticated",
    "OIDCVerifier",
    "PermissionDenied",
    "Principal",
    "ProviderUnavailable",
    "RevokedToken",
    "ServiceUnavailable",
    "StoreUnavailable",
    "TokenIssuer",
    "TokenVerifier",
    "UnknownKey",
    "get_principal",
]
