"""Finding the bearer token of a request, from raw ASGI header bytes.

RFC 6750 §2.1: ``credentials = "Bearer" 1*SP b64token``, the scheme compared
case-insensitively (RFC 7235 §2.1). A request with no ``Authorization`` header, or
one with another scheme (``Basic``), carries no bearer token: the caller is
anonymous. A bearer header that is malformed is a bad request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_plus

from asgi_auth.errors import MalformedCredentials

__all__ = ["BearerExtractor", "authorization_header", "parse_authorization"]

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN: Final = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_B64TOKEN_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
_COOKIE_VALUE: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS: Final = b" \t"
_ORIGIN: Final = re.compile(rb"[a-z][a-z0-9+.-]*://[^/?#\s]+")
# RFC 9110 §5.6.2 token: the auth-scheme.
_SCHEME: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class BearerExtractor:
    """Extracts the bearer token from a request scope.

    Args:
        cookie: also read the token from this cookie when there is no
            ``Authorization`` header (for browser clients). Off by default.
        query_param: also read the token from this query parameter, on WebSocket
            handshakes only (browsers cannot set headers there; RFC 6750 §2.3 calls it
            ``access_token``; the value is form-encoded, so a ``+`` must travel as
            ``%2B``). Off by default: URLs end up in logs.
        trusted_origins: origins (``https://app.example.com``) besides the request's
            own host whose browser requests may be authenticated by the cookie. A
            cookie arrives with cross-site requests too, so a request whose ``Origin``
            is neither its own host nor trusted does not get the cookie's identity
            (cross-site request forgery, cross-site WebSocket hijacking).

    Raises:
        ValueError: an empty cookie or parameter name, or a malformed origin.
    """

    __slots__ = ("cookie", "query_param", "trusted_origins")

    def __init__(
        self,
        *,
        cookie: str | None = None,
        query_param: str | None = None,
        trusted_origins: Iterable[str] = (),
    ) -> None:
        if cookie is not None and (not cookie or not cookie.isascii() or "=" in cookie):
            raise ValueError("cookie must be a non-empty ASCII cookie name")
        if query_param is not None and not query_param:
            raise ValueError("query_param must be a non-empty name")
        if isinstance(trusted_origins, str):
            raise TypeError("trusted_origins must be a list of origins, not a string")
        origins = frozenset(o.rstrip("/").lower().encode("ascii") for o in trusted_origins)
        if not all(_ORIGIN.fullmatch(o) for o in origins):
            raise ValueError("trusted origins look like https://host[:port]")
        self.cookie = cookie
        self.query_param = query_param
        self.trusted_origins = origins  # set last: from here on, read-only

    def __setattr__(self, name: str, value: object) -> None:
        # A middleware chooses its fast path by what the extractor reads: swap the
        # extractor (AuthMiddleware.extractor = ...), never change one in place.
        if hasattr(self, "trusted_origins"):
            raise AttributeError(f"BearerExtractor is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    def extract(self, scope: Mapping[str, Any]) -> str | None:
        """The request's bearer token, or None when it carries none.

        Raises:
            MalformedCredentials: two ``Authorization`` headers, an empty or
                ill-formed bearer token, or a token sent by two methods at once.
        """
        header: bytes | None
        if self.cookie is None and self.query_param is None:
            header = authorization_header(scope["headers"])
            return None if header is None else parse_authorization(header)
        header = None
        cookies: list[bytes] = []
        origin = host = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if header is not None:
                    raise MalformedCredentials("more than one Authorization header")
                header = value
            elif self.cookie is not None:
                if name == b"cookie":
                    cookies.append(value)
                elif name == b"origin":
                    origin = value
                elif name == b"host":
                    host = value
        token = None if header is None else parse_authorization(header)
        if self.query_param is not None and scope["type"] == "websocket":
            from_query = self._from_query(scope.get("query_string", b""))
            if from_query is not None:
                if token is not None:
                    # RFC 6750 §2: clients MUST NOT use more than one method.
                    raise MalformedCredentials("token sent in the header and the query")
                return from_query
        if token is None and header is None and cookies and self._same_site(origin, host):
            return self._from_cookies(cookies)
        return token

    def _same_site(self, origin: bytes | None, host: bytes | None) -> bool:
        if origin is None:
            return True  # not a cross-origin browser request
        origin = origin.strip(_OWS).lower()
        if origin in self.trusted_origins:
            return True
        _, sep, netloc = origin.partition(b"://")
        return bool(sep) and host is not None and netloc == host.strip(_OWS).lower()

    def without_token(self, query_string: bytes) -> bytes:
        """``query_string`` without the token parameter, other parameters untouched."""
        if not query_string or self.query_param is None:
            return query_string
        kept = [
            part
            for part in query_string.split(b"&")
            if unquote_plus(part.partition(b"=")[0].decode("latin-1")) != self.query_param
        ]
        return b"&".join(kept)

    def _from_query(self, query_string: bytes) -> str | None:
        found = [
            v
            for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
            if k == self.query_param
        ]
        if not found:
            return None
        if len(found) > 1:
            raise MalformedCredentials("the token parameter appears more than once")
        if _COOKIE_VALUE.fullmatch(found[0]) is None:
            raise MalformedCredentials("the token parameter is empty or has illegal characters")
        return found[0]

    def _from_cookies(self, headers: list[bytes]) -> str | None:
        wanted = self.cookie.encode("ascii") if self.cookie else b""
        for header in headers:
            for pair in header.split(b";"):
                name, sep, value = pair.strip(_OWS).partition(b"=")
                if sep and name == wanted:
                    if len(value) >= 2 and value[:1] == value[-1:] == b'"':
                        value = value[1:-1]  # RFC 6265 §4.1.1: a quoted cookie-value
                    text = value.decode("latin-1")
                    return text if _COOKIE_VALUE.fullmatch(text) else None
        return None


def authorization_header(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The value of the one ``Authorization`` header among raw ASGI headers, if any.

    Raises:
        MalformedCredentials: more than one ``Authorization`` header.
    """
    found = None
    for name, value in headers:
        if name == b"authorization":
            if found is not None:
                raise MalformedCredentials("more than one Authorization header")
            found = value
    return found


def parse_authorization(value: bytes) -> str | None:
    """The bearer token of an ``Authorization`` header value; None for another scheme.

    Raises:
        MalformedCredentials: a ``Bearer`` value without a well-formed token.
    """
    # The usual spelling first: "Bearer " and a token of b64token characters without
    # "=" (which a JWT never has). Anything else takes the full parse below, so the
    # answers (400, 401, another scheme) are the same either way.
    if value.startswith(b"Bearer "):
        token = value[7:]
        if token and not token.translate(None, _B64TOKEN_CHARS):
            return token.decode("ascii")
    value = value.strip(_OWS)
    match = _SCHEME.match(value)
    if match is None or match.group().lower() != b"bearer":
        return None  # another scheme (Basic, Digest…) is not ours to judge
    rest = value[match.end() :]
    if not rest.startswith(b" "):
        # "Bearer", or "Bearer" followed by a tab or a control byte: RFC 6750 §2.1
        # separates scheme and token with spaces only.
        raise MalformedCredentials("Bearer scheme not followed by a space and a token")
    token = rest.lstrip(b" ")
    if not token:
        raise MalformedCredentials("Bearer scheme without a token")
    if _B64TOKEN.fullmatch(token) is None:
        raise MalformedCredentials("bearer token has illegal characters or is not one credential")
    return token.decode("ascii")
