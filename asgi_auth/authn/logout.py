"""``POST /logout``: revoke the presented access token (until it expires) and its login
session's refresh tokens (the ``sid`` claim the token endpoint writes), and the family of
a ``refresh_token`` the body names.

The request authenticates with the access token it revokes (``Authorization:
Bearer``); answers: 200 ``{"revoked": true}``, 401 for a missing or bad token (RFC 6750),
400 for a malformed request or a token without a ``jti``, 503 when the store is down.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from asgi_auth._http import Responder, read_body
from asgi_auth.audit import audit, refusal
from asgi_auth.authn.login import MAX_BODY, _answer, _content_type, _error, _parse
from asgi_auth.credentials import BearerExtractor
from asgi_auth.errors import (
    AuthError,
    InvalidToken,
    MalformedCredentials,
    NotAuthenticated,
    ServiceUnavailable,
)
from asgi_auth.store.refresh import RefreshTokens
from asgi_auth.tokens.verifier import TokenVerifier
from asgi_auth.types import Receive, Scope, Send

__all__ = ["LogoutEndpoint"]

logger: Final = logging.getLogger("asgi_auth.login")


class Revocations(Protocol):
    """Where revoked ``jti``s go (:class:`~asgi_auth.store.RevocationList`, or Redis's)."""

    async def revoke(self, jti: str, expires_at: float) -> None:
        """Revoke the token with this ``jti`` until ``expires_at``."""
        ...


class LogoutEndpoint:
    """Logs a caller out: revokes the bearer token's ``jti`` and, optionally, the
    refresh family of a ``refresh_token`` sent in the body (form or JSON).

    Args:
        verifier: the verifier the app's middleware uses (it must be given the same
            ``revocations``, so that revoked tokens are refused everywhere).
        revocations: where revoked ``jti``s go.
        refresh: the refresh tokens, to revoke a family too.
        realm: the challenge realm of refusals.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        revocations: Revocations,
        *,
        refresh: RefreshTokens | None = None,
        realm: str = "api",
    ) -> None:
        self.verifier = verifier
        self.revocations = revocations
        self.refresh = refresh
        self.responder = Responder(realm)
        self._extractor = BearerExtractor()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, {"error": "invalid_request"}, [(b"allow", b"POST")])
            return
        try:
            token = self._extractor.extract(scope)
            if token is None:
                raise NotAuthenticated("logout without a bearer token")
            principal = await self.verifier.verify(token)
        except (MalformedCredentials, InvalidToken, NotAuthenticated, ServiceUnavailable) as exc:
            await self._refuse(exc, scope, receive, send)
            return
        jti, exp = principal.token_id, principal.claims.get("exp")
        if jti is None or not isinstance(exp, int | float):
            await _error(send, 400, "invalid_request")
            return
        body = await read_body(receive, MAX_BODY)
        kind = _content_type(scope)
        params = _parse(kind, body) if body and kind is not None else {}
        if params is None:
            await _error(send, 400, "invalid_request")
            return
        try:
            # The sessions first, the access token last: each step may be repeated, and
            # after a 503 the client's retry still holds a token that is accepted.
            if self.refresh is not None:
                session = principal.claims.get("sid")
                if isinstance(session, str) and session:  # the login session it came from
                    await self.refresh.revoke_family(session)
                refresh = params.get("refresh_token")
                if refresh:
                    await self.refresh.revoke(refresh)
            await self.revocations.revoke(jti, exp)
        except ServiceUnavailable as exc:
            refusal(
                logger,
                logging.ERROR,
                "logout.unavailable",
                exc,
                scope=scope,
                status=503,
                subject=principal.subject,
                jti=jti,
            )
            await _error(send, 503, "temporarily_unavailable")
            return
        audit(
            logger,
            logging.INFO,
            "logout.succeeded",
            "logout of sub %s (token %s revoked)",
            principal.subject,
            jti,
            scope=scope,
            subject=principal.subject,
            jti=jti,
            status=200,
        )
        await _answer(send, 200, {"revoked": True})

    async def _refuse(self, error: AuthError, scope: Scope, receive: Receive, send: Send) -> None:
        denial = self.responder.denial(error)
        level = logging.ERROR if isinstance(error, ServiceUnavailable) else logging.INFO
        refusal(logger, level, "logout.refused", error, scope=scope, status=denial.status)
        await denial.send_http(send)
