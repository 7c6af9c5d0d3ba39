"""pytest fixtures for testing apps protected by asgi_auth.

pytest loads this plugin by itself once asgi_auth is installed (the ``asgi_auth``
entry point of the ``pytest11`` group); ``-p no:asgi_auth`` turns it off. The
fixtures:

- ``identity_provider``: a fresh in-process :class:`~asgi_auth.testing.IdentityProvider`;
- ``served_identity_provider``: the same, served over real HTTP for the test;
- ``mint_token``: HS256 tokens from a random local key, with a matching verifier;
- ``override_principal``: say who the caller is, with no token at all.

Importing this module costs little: what the fixtures need is imported when they run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from asgi_auth.middleware import AuthMiddleware
    from asgi_auth.principal import AnonymousPrincipal, Principal
    from asgi_auth.testing.provider import IdentityProvider
    from asgi_auth.tokens.keys import Key
    from asgi_auth.tokens.verifier import JWTVerifier
    from asgi_auth.types import Receive, Scope, Send

__all__ = [
    "PrincipalOverride",
    "TokenMinter",
    "identity_provider",
    "mint_token",
    "override_principal",
    "served_identity_provider",
]


def _strings(value: str | Iterable[str], what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) and name for name in names):
        raise TypeError(f"{what} must be non-empty strings")
    return names


class TokenMinter:
    """Mints HS256 tokens with one random local key, for quick tests.

    Call it to get a token; build the matching verifier with :meth:`verifier`.

    Attributes:
        key: the HMAC key (``Key.from_secret`` of 64 random bytes).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, key: Key | None = None) -> None:
        from asgi_auth.tokens.keys import Key

        self.key: Key = key if key is not None else Key.from_secret(secrets.token_bytes(64))

    def verifier(self, **options: Any) -> JWTVerifier:
        """A :class:`~asgi_auth.JWTVerifier` for :attr:`key`; ``options`` go to its constructor."""
        from asgi_auth.tokens.verifier import JWTVerifier

        return JWTVerifier(self.key, **options)

    def __call__(
        self,
        subject: str | int = "user",
        *,
        scopes: str | Iterable[str] = (),
        roles: str | Iterable[str] = (),
        permissions: str | Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
        expires_in: float = 300,
    ) -> str:
        """A token for ``subject``, signed by :class:`~asgi_auth.TokenIssuer`.

        Args:
            subject: the ``sub`` (an int becomes its decimal string).
            scopes: the ``scope`` claim, space-joined (a string is used as is).
            roles: the ``roles`` claim (a string is one role).
            permissions: the ``permissions`` claim (a string is one permission).
            claims: more claims. The registered claims (``iss sub aud exp nbf iat jti``)
                are the issuer's: use ``identity_provider.token`` to set those.
            expires_in: seconds until ``exp``; zero or negative for an expired token.

        Raises:
            ValueError: a registered claim among ``claims``, or a bad ``expires_in``.
        """
        from asgi_auth.tokens.issuer import TokenIssuer

        extra: dict[str, Any] = {}
        if scopes:
            extra["scope"] = scopes if isinstance(scopes, str) else " ".join(scopes)
        if roles:
            extra["roles"] = _strings(roles, "roles")
        if permissions:
            extra["permissions"] = _strings(permissions, "permissions")
        extra.update(claims or {})
        if expires_in >= 1:
            issuer = TokenIssuer(self.key, lifetime=expires_in)
        else:
            # The issuer's lifetimes are at least one second: issue a one-second token
            # in the past instead, so that exp lands expires_in seconds from now.
            now = time.time()
            issuer = TokenIssuer(self.key, lifetime=1, clock=lambda: now + expires_in - 1)
        return issuer.issue(subject, claims=extra)


class PrincipalOverride:
    """Makes every :class:`~asgi_auth.AuthMiddleware` skip the token and present a principal.

    While a principal is set, each middleware (any instance, any thread: Starlette's
    ``TestClient`` included) calls its app for ``http`` and ``websocket`` scopes with
    that principal on ``scope["user"]``, its :class:`~asgi_auth.AuthContext` on
    ``scope["auth"]`` and the middleware's authorizer, exactly where the middleware puts
    them, without reading any ``Authorization`` header. Guards then decide as usual.

    Attributes:
        principal: the principal presented, or ``None`` for normal behaviour.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from asgi_auth.middleware import AuthMiddleware

        self._monkeypatch = monkeypatch
        self._original = AuthMiddleware.__call__
        self._patched = False
        self.principal: Principal | AnonymousPrincipal | None = None

    def __call__(
        self,
        principal: Principal | AnonymousPrincipal | str | None,
        *,
        roles: str | Iterable[str] = (),
        scopes: str | Iterable[str] = (),
        permissions: str | Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
        issuer: str | None = None,
    ) -> Principal | AnonymousPrincipal | None:
        """Present ``principal`` from now on; ``None`` restores normal behaviour.

        Args:
            principal: a :class:`~asgi_auth.Principal` (or ``ANONYMOUS``), or a subject
                to build one from with the keywords below.
            roles: the principal's roles (a string is one role).
            scopes: its scopes (a string is space-separated scopes).
            permissions: its permissions (a string is one permission).
            claims: its claims.
            issuer: its issuer.

        Returns:
            The principal now presented.

        Raises:
            TypeError: keywords given with a principal object, or of the wrong type.
        """
        from asgi_auth.middleware import AuthMiddleware
        from asgi_auth.principal import Principal

        if isinstance(principal, str):
            scope_names = scopes.split(" ") if isinstance(scopes, str) else scopes
            principal = Principal(
                principal,
                issuer=issuer,
                claims=dict(claims or {}),
                scopes=frozenset(_strings([s for s in scope_names if s], "scopes")),
                roles=frozenset(_strings(roles, "roles")),
                permissions=frozenset(_strings(permissions, "permissions")),
            )
        elif roles or scopes or permissions or claims is not None or issuer is not None:
            raise TypeError("roles, scopes, permissions, claims and issuer go with a subject")
        self.principal = principal
        if principal is None and self._patched:
            self._monkeypatch.setattr(AuthMiddleware, "__call__", self._original)
            self._patched = False
        elif principal is not None and not self._patched:
            self._monkeypatch.setattr(AuthMiddleware, "__call__", self._overriding_call())
            self._patched = True
        return principal

    def _overriding_call(self) -> Any:
        from asgi_auth.authz.guards import AUTHORIZER_KEY
        from asgi_auth.principal import AuthContext

        override = self
        original = self._original

        async def __call__(  # replaces AuthMiddleware.__call__
            middleware: AuthMiddleware, scope: Scope, receive: Receive, send: Send
        ) -> None:
            principal = override.principal
            kind = scope["type"]
            if principal is None or (kind != "http" and kind != "websocket"):
                await original(middleware, scope, receive, send)
                return
            scope = {
                **scope,
                "user": principal,
                "auth": AuthContext(principal),
                AUTHORIZER_KEY: middleware.authorizer,
            }
            await middleware.app(scope, receive, send)

        return __call__


@pytest.fixture
def identity_provider() -> IdentityProvider:
    """A fresh in-process OpenID Connect provider (issuer ``https://idp.test``).

    Mint tokens with ``identity_provider.token(...)``, verify them with
    ``identity_provider.verifier(...)``, reach its endpoints with
    ``identity_provider.http_client()``; see :class:`~asgi_auth.testing.IdentityProvider`.
    """
    from asgi_auth.testing.provider import IdentityProvider

    return IdentityProvider()


@pytest.fixture
def served_identity_provider() -> Iterator[IdentityProvider]:
    """A fresh OpenID Connect provider served over real HTTP on 127.0.0.1 for the test.

    Its ``issuer`` is the served URL (``http://127.0.0.1:PORT``). Needs uvicorn.
    """
    from asgi_auth.testing.provider import IdentityProvider

    provider = IdentityProvider()
    with provider.serve():
        yield provider


@pytest.fixture
def mint_token() -> TokenMinter:
    """Mints local HS256 tokens: ``mint_token("alice", roles=["admin"])``.

    ``mint_token.key`` is the random key and ``mint_token.verifier(**options)`` a
    ``JWTVerifier`` for it; see :class:`TokenMinter`.
    """
    return TokenMinter()


@pytest.fixture
def override_principal(monkeypatch: pytest.MonkeyPatch) -> PrincipalOverride:
    """Say who the caller is without a token: ``override_principal(Principal("alice"))`` or
    ``override_principal("alice", roles=["admin"])``; ``override_principal(None)`` ends it.

    Every ``AuthMiddleware`` then presents that principal for HTTP and WebSocket requests,
    in any thread (Starlette's ``TestClient`` too). Undone at the end of the test.
    """
    return PrincipalOverride(monkeypatch)
