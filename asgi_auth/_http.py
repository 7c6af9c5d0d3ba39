"""The one module that knows status codes, ``WWW-Authenticate`` and denial responses.

Answers follow RFC 6750 §3: 400 ``invalid_request`` for a malformed request, 401 with
``error="invalid_token"`` for a bad token, 401 with a bare challenge when credentials
are missing (§3.1: no error code then), 403 ``insufficient_scope`` for a caller who
lacks the right, and 503 when a dependency is down (failing closed). Bodies carry a
generic message; the precise reason goes to the log only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from asgi_auth.errors import (
    AuthenticationError,
    AuthError,
    InvalidToken,
    MalformedCredentials,
    NotAuthenticated,
    PermissionDenied,
    ServiceUnavailable,
)
from asgi_auth.types import Receive, Scope, Send

__all__ = ["Denial", "Responder", "check_realm"]

_QDTEXT: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3 scope-token
_MESSAGES: Final = {
    "invalid_request": "The request's credentials are malformed.",
    "invalid_token": "The access token is invalid or has expired.",
    "unauthorized": "This resource needs a bearer token.",
    "insufficient_scope": "The access token does not grant this request.",
    "temporarily_unavailable": "Authorization is temporarily unavailable; try again later.",
}
_BODY_HEADERS: Final = frozenset({b"content-type", b"content-length"})
WS_POLICY_VIOLATION: Final = 1008  # RFC 6455 §7.4.1
WS_TRY_AGAIN_LATER: Final = 1013


def check_realm(realm: str) -> str:
    """Validate a realm for use inside a quoted-string.

    Raises:
        ValueError: the realm has characters a quoted-string cannot carry unescaped.
    """
    if not isinstance(realm, str) or not realm or _QDTEXT.fullmatch(realm) is None:
        raise ValueError("realm must be non-empty printable ASCII without '\"' or '\\'")
    return realm


@dataclass(frozen=True, slots=True)
class Denial:
    """A complete refusal: status, headers and body, ready to send over HTTP or WebSocket."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def description(self) -> str:
        """The generic message of the body, for frameworks that write bodies their own way."""
        description: str = json.loads(self.body)["error_description"]
        return description

    def header_map(self, *, with_body_headers: bool = True) -> dict[str, str]:
        """The headers as a dict; without ``content-type``/``content-length`` for
        frameworks that write their own body."""
        return {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in self.headers
            if with_body_headers or name not in _BODY_HEADERS
        }

    async def send_http(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})

    async def send_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a WebSocket handshake before ``accept``.

        With the ``websocket.http.response`` extension the client gets this very HTTP
        response; otherwise the connection is closed (1008, or 1013 for a 503), which
        servers turn into an HTTP 403 during the handshake.
        """
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left already
        extensions = scope.get("extensions") or {}
        if "websocket.http.response" in extensions:
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": self.status,
                    "headers": self.headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": self.body})
        else:
            code = WS_TRY_AGAIN_LATER if self.status == 503 else WS_POLICY_VIOLATION
            await send({"type": "websocket.close", "code": code, "reason": ""})

    async def send(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send over whichever protocol the scope speaks."""
        if scope["type"] == "websocket":
            await self.send_websocket(scope, receive, send)
        else:
            await self.send_http(send)


def _challenge(realm: str, error: str | None, scopes: Iterable[str] = ()) -> bytes:
    parts = [f'Bearer realm="{realm}"']
    if error is not None:
        parts.append(f'error="{error}"')
    names = [s for s in scopes if _SCOPE_TOKEN.fullmatch(s)]
    if names:
        parts.append(f'scope="{" ".join(names)}"')
    return ", ".join(parts).encode("ascii")


def _denial(status: int, error: str, challenge: bytes | None) -> Denial:
    body = json.dumps({"error": error, "error_description": _MESSAGES[error]}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge))
    return Denial(status, tuple(headers), body)


class Responder:
    """Turns asgi_auth errors into denials for one realm, precomputed once."""

    __slots__ = ("_by_type", "realm", "unauthenticated")

    def __init__(self, realm: str) -> None:
        self.realm = check_realm(realm)
        # RFC 6750 §3.1: a request without credentials gets a challenge with no error code.
        self.unauthenticated = _denial(401, "unauthorized", _challenge(realm, None))
        self._by_type: dict[type[AuthError], Denial] = {
            MalformedCredentials: self._coded(400, "invalid_request"),
            InvalidToken: self._coded(401, "invalid_token"),
            # Any other failure to establish identity reads as a bad token.
            AuthenticationError: self._coded(401, "invalid_token"),
            NotAuthenticated: self.unauthenticated,
            PermissionDenied: self._coded(403, "insufficient_scope"),
            ServiceUnavailable: _denial(503, "temporarily_unavailable", None),
        }

    def _coded(self, status: int, error: str, scopes: Iterable[str] = ()) -> Denial:
        return _denial(status, error, _challenge(self.realm, error, scopes))

    def denial(self, error: AuthError) -> Denial:
        """The answer to ``error``.

        Raises:
            TypeError: an error class with no defined answer (a programming error).
        """
        if isinstance(error, PermissionDenied) and error.scopes:
            return self._coded(403, "insufficient_scope", error.scopes)
        for kind in type(error).__mro__:
            found = self._by_type.get(kind)
            if found is not None:
                return found
        raise TypeError(f"no HTTP answer is defined for {type(error).__name__}")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """A request's body, or None when it exceeds ``limit`` bytes (reading stops there)
    or the client disconnects first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
