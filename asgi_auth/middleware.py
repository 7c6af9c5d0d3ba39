"""``AuthMiddleware``: from an ``Authorization: Bearer`` header to a principal on the scope.

Pure ASGI. It establishes who is calling and nothing more: it never refuses a
request for *lacking* credentials (that is a guard's call) and never reads the
store. ``http`` and ``websocket`` scopes are handled; every other scope type
(``lifespan``…) passes through untouched.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from logging import ERROR, INFO
from typing import Final

from asgi_auth._http import Denial, Responder
from asgi_auth.audit import refusal
from asgi_auth.authz.guards import AUTHORIZER_KEY, Authorizer
from asgi_auth.credentials import BearerExtractor, authorization_header, parse_authorization
from asgi_auth.errors import AuthError, InvalidToken, MalformedCredentials, ServiceUnavailable
from asgi_auth.principal import ANONYMOUS, AnonymousPrincipal, AuthContext, Principal
from asgi_auth.tokens.verifier import JWTVerifier, TokenVerifier
from asgi_auth.types import ASGIApp, Receive, Scope, Send

__all__ = ["AuthMiddleware"]

logger: Final = logging.getLogger("asgi_auth.authn")


class AuthMiddleware:
    """Puts the caller's principal on ``scope["user"]`` and an :class:`AuthContext` on
    ``scope["auth"]`` (so ``request.user`` and Starlette's ``@requires`` work).

    No bearer token: the anonymous principal. A malformed ``Authorization`` header:
    400 ``invalid_request``. A bad token: 401 with
    ``WWW-Authenticate: Bearer realm="…", error="invalid_token"`` (or the anonymous
    principal with ``anonymous_on_invalid=True``). A verifier that cannot reach a
    dependency: 503. WebSocket handshakes are refused before ``accept``.

    Args:
        app: the ASGI app to protect.
        verifier: turns a token into a principal (:class:`~asgi_auth.JWTVerifier`…).
        realm: the ``realm`` of every challenge.
        anonymous_on_invalid: treat a bad token as no token instead of refusing it.
        cookie: also read the token from this cookie (browser clients); honoured only
            for requests from the request's own origin or ``trusted_origins``.
        trusted_origins: other origins whose requests the cookie may authenticate.
        authorizer: how guards downstream decide (where roles and claims come from);
            guards without their own use this one. Default: token only.
        query_param: also read the token from this query parameter on WebSocket
            handshakes (``"access_token"`` is RFC 6750's name). Off by default.

    Raises:
        TypeError: ``verifier`` has no async ``verify``.
        ValueError: an invalid realm, cookie or parameter name.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        realm: str = "api",
        anonymous_on_invalid: bool = False,
        cookie: str | None = None,
        query_param: str | None = None,
        trusted_origins: Iterable[str] = (),
        authorizer: Authorizer | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(getattr(verifier, "verify", None)):
            raise TypeError("verifier must have an async verify(token) method")
        self.app = app
        self.verifier = verifier
        self.anonymous_on_invalid = anonymous_on_invalid
        self.responder = Responder(realm)
        # Guards downstream answer with this middleware's realm unless told otherwise.
        self.authorizer = authorizer if authorizer is not None else Authorizer(realm=realm)
        self.extractor = BearerExtractor(
            cookie=cookie, query_param=query_param, trusted_origins=trusted_origins
        )

    @property
    def verifier(self) -> TokenVerifier:
        """The verifier tokens go to."""
        return self._verifier

    @verifier.setter
    def verifier(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        self._prepare()

    @property
    def extractor(self) -> BearerExtractor:
        """Where tokens are read from (header, cookie, query parameter)."""
        return self._extractor

    @extractor.setter
    def extractor(self, extractor: BearerExtractor) -> None:
        self._extractor = extractor
        self._prepare()

    def _prepare(self) -> None:
        # A local JWTVerifier's verify() is verify_sync() in a coroutine: call it directly.
        verifier = self.__dict__.get("_verifier")
        local = verifier if type(verifier) is JWTVerifier else None
        self._verify_sync = None if local is None else local.verify_sync
        # With the token in the Authorization header only, a token the verifier already
        # knows is looked up before the header is parsed (see __call__).
        extractor = self.__dict__.get("_extractor")
        plain = extractor is not None and extractor.cookie is None and extractor.query_param is None
        self._cached = local.cached if local is not None and plain else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        principal: Principal | AnonymousPrincipal = ANONYMOUS
        denial: Denial | None = None
        try:
            cached = self._cached
            if cached is None:
                token = self._extractor.extract(scope)
            else:
                header = authorization_header(scope["headers"])
                token = None
                if header is not None:
                    # A token the verifier has verified is well formed: the full parse
                    # would give it back unchanged, so its cache entry answers first.
                    known = (
                        cached(header[7:].decode("ascii"))
                        if header.startswith(b"Bearer ") and header.isascii()
                        else None
                    )
                    if known is not None:
                        principal = known
                    else:
                        token = parse_authorization(header)
            if token is not None:
                verify_sync = self._verify_sync
                if verify_sync is not None:  # skips a coroutine per request
                    principal = verify_sync(token)
                else:
                    principal = await self._verifier.verify(token)
        except MalformedCredentials as exc:
            denial = self.responder.denial(exc)
            refusal(logger, INFO, "credentials.malformed", exc, scope=scope, status=denial.status)
        except InvalidToken as exc:
            if not self.anonymous_on_invalid:
                denial = self.responder.denial(exc)
            status = None if denial is None else denial.status  # None: on as anonymous
            refusal(logger, INFO, "token.refused", exc, scope=scope, status=status)
        except ServiceUnavailable as exc:
            denial = self.responder.denial(exc)
            refusal(logger, ERROR, "token.unverifiable", exc, scope=scope, status=denial.status)
        except AuthError as exc:  # a custom verifier's other refusals keep their meaning
            denial = self.responder.denial(exc)
            refusal(logger, INFO, "token.refused", exc, scope=scope, status=denial.status)
        if denial is not None:
            await denial.send(scope, receive, send)
            return
        # The ASGI spec asks middleware to copy the scope, never mutate the caller's.
        scope = {
            **scope,
            "user": principal,
            "auth": AuthContext(principal),
            AUTHORIZER_KEY: self.authorizer,
        }
        if kind == "websocket" and self._extractor.query_param is not None:
            # The app need not see (nor log) a token that travelled in the URL.
            scope["query_string"] = self._extractor.without_token(scope.get("query_string", b""))
        await self.app(scope, receive, send)
