"""The token endpoint: RFC 6749 §4.3's password grant, as a pure ASGI app.

``POST`` a form (``grant_type=password&username=…&password=…``) or the same as JSON;
get ``{"access_token", "token_type": "Bearer", "expires_in"}`` with
``Cache-Control: no-store`` (§5.1), or an RFC 6749 §5.2 error:
``invalid_request`` (malformed, missing or repeated parameters, wrong content type,
oversized body), ``unsupported_grant_type``, ``invalid_grant`` (wrong username or
password, unknown or disabled user: all alike). A backend that cannot answer is a
503, never an ``invalid_grant``. FastAPI's ``OAuth2PasswordBearer(tokenUrl=…)``
works against it (the docs' *Authorize* dialog posts exactly this form).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from asgi_auth._http import read_body
from asgi_auth.audit import audit, refusal
from asgi_auth.authn.passwords import PasswordHasher
from asgi_auth.errors import InvalidCredentials, ServiceUnavailable, StoreUnavailable
from asgi_auth.store.admin import AdminError, StoreAdmin
from asgi_auth.store.database import Store
from asgi_auth.store.loader import SQLRightsLoader
from asgi_auth.store.refresh import REUSED, RefreshTokens
from asgi_auth.store.throttle import Attempt
from asgi_auth.tokens.issuer import TokenIssuer
from asgi_auth.types import Receive, Scope, Send

__all__ = [
    "AuthenticatedUser",
    "ChainAuthenticator",
    "PasswordAuthenticator",
    "StoreAuthenticator",
    "Throttle",
    "TokenEndpoint",
]

logger: Final = logging.getLogger("asgi_auth.login")
#: Largest request body read, in bytes: credentials are small.
MAX_BODY: Final = 16_384
_FORM: Final = b"application/x-www-form-urlencoded"
_JSON: Final = b"application/json"
_MESSAGES: Final = {
    "invalid_request": "The request is malformed or misses a parameter.",
    "unsupported_grant_type": "This grant type is not supported.",
    "invalid_grant": "The credentials or the refresh token are not valid.",
    "temporarily_unavailable": "Login is temporarily unavailable; try again later.",
    "too_many_attempts": "Too many failed logins; try again after the Retry-After delay.",
}


@runtime_checkable
class Throttle(Protocol):
    """Failed-login counting (:class:`~asgi_auth.store.LoginThrottle`, or the Redis one)."""

    async def attempt(self, username: str, address: str | None) -> Attempt:
        """Count an attempt (as a failure until it succeeds), or refuse it past a limit
        (``retry_after`` set; the attempt is then not counted)."""
        ...

    async def succeeded(self, username: str, attempt: Attempt) -> None:
        """Clear the username's failures and uncount this successful attempt."""
        ...


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """Who logged in: the token subject and any claims to put in the access token."""

    subject: str
    username: str
    claims: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class PasswordAuthenticator(Protocol):
    """Checks a username and password (the store, a directory…)."""

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser | None:
        """The user, or None for any refusal (unknown, disabled, wrong password).

        Raises:
            ServiceUnavailable: the backend cannot answer.
        """
        ...


class StoreAuthenticator:
    """Passwords against the store's ``users`` table (argon2id; bcrypt and PBKDF2 hashes
    verify and are upgraded to argon2id on the next successful login).

    Args:
        store: a connected :class:`~asgi_auth.store.Store`.
        hasher: the password hasher (argon2-cffi defaults unless given).
    """

    def __init__(self, store: Store, hasher: PasswordHasher | None = None) -> None:
        self.admin = StoreAdmin(store)
        self.hasher = hasher or PasswordHasher()
        self._status = SQLRightsLoader(store)

    async def is_active(self, subject: str) -> bool:
        """Whether ``subject`` names an active user (for :class:`RefreshTokens`).

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        rights = await self._status.load(subject)
        return rights.known and rights.active

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser | None:
        """The user when the password matches an active account, else None.

        Raises:
            StoreUnavailable: the store cannot answer.
        """
        found = await self.admin.credentials(username)
        stored = found[1] if found is not None and found[2] else None
        result = await self.hasher.verify(stored, password)
        if not result.ok or found is None:
            return None
        if result.needs_rehash:
            await self._rehash(username, password)
        return AuthenticatedUser(subject=str(found[0]), username=username)

    async def _rehash(self, username: str, password: str) -> None:
        try:
            await self.admin.set_password_hash(username, await self.hasher.hash(password))
        except (StoreUnavailable, AdminError, ValueError) as exc:  # the login stands
            logger.warning("could not upgrade the password hash of %r: %s", username, exc)


class ChainAuthenticator:
    """Several authenticators in order: the directory after the database, say.

    The first that accepts the credentials wins; a refusal passes to the next. A
    backend that cannot answer stops the chain with a 503 (never a login through a
    later backend that would not have been asked had the first one answered).
    """

    def __init__(self, *authenticators: PasswordAuthenticator) -> None:
        if not authenticators or not all(
            isinstance(a, PasswordAuthenticator) for a in authenticators
        ):
            raise TypeError("expected one or more authenticators")
        self.authenticators = authenticators

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser | None:
        """The first acceptance, or None.

        Raises:
            ServiceUnavailable: a backend asked could not answer.
        """
        for authenticator in self.authenticators:
            user = await authenticator.authenticate(username, password)
            if user is not None:
                return user
        return None


class TokenEndpoint:
    """``POST /token``: the password grant, answering per RFC 6749 §5.

    Args:
        issuer: signs the access tokens.
        authenticator: checks usernames and passwords.
    """

    def __init__(
        self,
        issuer: TokenIssuer,
        authenticator: PasswordAuthenticator,
        *,
        refresh: RefreshTokens | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        if not isinstance(authenticator, PasswordAuthenticator):
            raise TypeError("authenticator must have an async authenticate(username, password)")
        self.issuer = issuer
        self.authenticator = authenticator
        self.refresh = refresh
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, {"error": "invalid_request"}, [(b"allow", b"POST")])
            return
        kind = _content_type(scope)
        body = await read_body(receive, MAX_BODY)
        params = None if body is None or kind is None else _parse(kind, body)
        if params is None:
            await _error(send, 400, "invalid_request")
            return
        grant = params.get("grant_type")
        if grant is None:
            await _error(send, 400, "invalid_request")
            return
        try:
            if grant == "password":
                await self._password(scope, send, params)
            elif grant == "refresh_token" and self.refresh is not None:
                await self._refresh(scope, send, params)
            else:
                await _error(send, 400, "unsupported_grant_type")
        except ServiceUnavailable as exc:
            event = "refresh.unavailable" if grant == "refresh_token" else "login.unavailable"
            refusal(logger, logging.ERROR, event, exc, scope=scope, status=503)
            await _error(send, 503, "temporarily_unavailable")

    async def _password(self, scope: Scope, send: Send, params: dict[str, str]) -> None:
        username, password = params.get("username"), params.get("password")
        if not username or password is None:
            await _error(send, 400, "invalid_request")
            return
        client = scope.get("client")
        address = client[0] if client else None
        named = username[:150]
        attempt: Attempt | None = None
        if self.throttle is not None:
            # Counted before the password check, so that concurrent guesses cannot all
            # pass a check made before any of them failed.
            attempt = await self.throttle.attempt(username, address)
            wait = attempt.retry_after
            if wait is not None:
                audit(
                    logger,
                    logging.WARNING,
                    "login.throttled",
                    "login throttled for %r (retry after %d s)",
                    named,
                    wait,
                    scope=scope,
                    username=named,
                    retry_after=wait,
                    status=429,
                )
                retry = [(b"retry-after", str(wait).encode())]
                await _answer(send, 429, _body("too_many_attempts"), retry)
                return
        user = await self.authenticator.authenticate(username, password)
        if user is None:
            audit(
                logger,
                logging.INFO,
                "login.failed",
                "login failed for %r",
                named,
                scope=scope,
                username=named,
                status=400,
            )
            await _error(send, 400, "invalid_grant")  # the attempt stays counted
            return
        if self.throttle is not None and attempt is not None:  # (set whenever throttling)
            await self.throttle.succeeded(username, attempt)
        audit(
            logger,
            logging.INFO,
            "login.succeeded",
            "login succeeded for %r (sub %s)",
            named,
            user.subject,
            scope=scope,
            username=named,
            subject=user.subject,
            status=200,
        )
        claims = dict(user.claims)
        refresh = None
        if self.refresh is not None:
            session = await self.refresh.start(user.subject)
            refresh, claims["sid"] = session.token, session.family
        await self._tokens(send, user.subject, claims, refresh)

    async def _refresh(self, scope: Scope, send: Send, params: dict[str, str]) -> None:
        assert self.refresh is not None  # only routed here with refresh tokens on
        presented = params.get("refresh_token")
        if not presented:
            await _error(send, 400, "invalid_request")
            return
        try:
            rotation = await self.refresh.rotate(presented)
        except InvalidCredentials as exc:
            # A reuse may be a theft: the family is revoked, and the owner should know.
            reused = exc.reason == REUSED
            level, event = (
                (logging.WARNING, "refresh.reused") if reused else (logging.INFO, "refresh.refused")
            )
            refusal(logger, level, event, exc, scope=scope, status=400, said="refresh refused")
            await _error(send, 400, "invalid_grant")
            return
        audit(
            logger,
            logging.INFO,
            "refresh.succeeded",
            "refresh succeeded (sub %s)",
            rotation.subject,
            scope=scope,
            subject=rotation.subject,
            status=200,
        )
        await self._tokens(send, rotation.subject, {"sid": rotation.family}, rotation.token)

    async def _tokens(
        self, send: Send, subject: str, claims: dict[str, Any], refresh: str | None
    ) -> None:
        document: dict[str, Any] = {
            "access_token": self.issuer.issue(subject, claims=claims),
            "token_type": "Bearer",
            "expires_in": int(self.issuer.lifetime),
        }
        if refresh is not None:
            document["refresh_token"] = refresh
        await _answer(send, 200, document)


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media if media in (_FORM, _JSON) else None
    return None


def _parse(kind: bytes, body: bytes) -> dict[str, str] | None:
    """Parameters as strings; None when malformed or a parameter repeats (§3.2)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if kind == _FORM:
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError:
            return None
    else:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(document, dict):
            return None
        pairs = list(document.items())
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params or not isinstance(value, str) or "\x00" in value:
            return None
        if not value.isascii():
            try:  # JSON can spell a lone surrogate ("\ud800"), which no store can keep
                value.encode("utf-8")
            except UnicodeEncodeError:
                return None
        params[name] = value
    return params


def _body(error: str) -> dict[str, Any]:
    return {"error": error, "error_description": _MESSAGES[error]}


async def _error(send: Send, status: int, error: str) -> None:
    await _answer(send, status, _body(error))


async def _answer(
    send: Send,
    status: int,
    document: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # RFC 6749 §5.1: responses carrying tokens (and their errors) are never cached.
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
