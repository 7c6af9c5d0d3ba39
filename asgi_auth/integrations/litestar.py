"""Litestar: policies as route guards.

::

    app = AuthMiddleware(
        Litestar(
            route_handlers=[items, admin_router],
            guards=[guard_for(authenticated)],  # every route needs a caller
        ),
        verifier=JWTVerifier(key),
    )

    @get("/items/{id:int}", guards=[guard_for(has_claim("can_read"))])
    async def item(id: int, request: Request[Principal, AuthContext, State]) -> Item: ...

:class:`~asgi_auth.AuthMiddleware` is pure ASGI, so it wraps the Litestar app (or goes
in ``middleware=[DefineMiddleware(AuthMiddleware, verifier=...)]``). It sets
``scope["user"]`` and ``scope["auth"]``, which Litestar exposes as
``connection.user`` and ``connection.auth``.

A guard decides with :meth:`~asgi_auth.authz.Authorizer.check`, exactly as
:class:`~asgi_auth.authz.Guard` does, and refuses with Litestar's HTTP exceptions
carrying the guard's status and headers (``WWW-Authenticate``, ``Cache-Control:
no-store``), which Litestar's exception responses keep; the body is Litestar's
``{"status_code": …, "detail": …}`` with the same generic message.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ServiceUnavailableException,
    WebSocketException,
)
from litestar.handlers import BaseRouteHandler

from asgi_auth._http import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER
from asgi_auth.authz.guards import Authorizer, authorizer_of, log_refusal
from asgi_auth.authz.policies import Policy
from asgi_auth.errors import AuthError
from asgi_auth.types import Scope

__all__ = ["PolicyGuard", "guard_for"]

# Headers that describe the denial's own body; Litestar writes a body of its own.
_EXCEPTIONS: Final[dict[int, type[HTTPException]]] = {
    401: NotAuthorizedException,
    403: PermissionDeniedException,
    503: ServiceUnavailableException,
}


class PolicyGuard:
    """A Litestar guard enforcing one policy; build it with :func:`guard_for`.

    Args:
        policy: the rule to enforce.
        authorizer: decides where roles and claims come from; by default the one
            :class:`~asgi_auth.AuthMiddleware` was given, else token only.

    Raises:
        TypeError: ``policy`` is not a policy, or ``authorizer`` not an ``Authorizer``.
    """

    __slots__ = ("authorizer", "policy")

    def __init__(self, policy: Policy, *, authorizer: Authorizer | None = None) -> None:
        if not isinstance(policy, Policy):
            raise TypeError("policy must be an asgi_auth policy")
        if authorizer is not None and not isinstance(authorizer, Authorizer):
            raise TypeError("authorizer must be an asgi_auth Authorizer")
        self.policy = policy
        self.authorizer = authorizer

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        """Let the request through, or raise the refusal (Litestar calls this).

        Raises:
            NotAuthorizedException: 401, anonymous caller refused (bare challenge).
            PermissionDeniedException: 403 ``insufficient_scope``.
            ServiceUnavailableException: 503, the store could not answer.
            WebSocketException: a WebSocket handshake refused: code 1008 (1013 for a
                503), before ``accept``; servers answer it with an HTTP 403.
            RuntimeError: ``AuthMiddleware`` is not installed.
        """
        # Litestar types its scope as a TypedDict; at run time it is the ASGI dict.
        scope: Scope = connection.scope  # type: ignore[assignment]
        chosen = authorizer_of(scope, self.authorizer)
        try:
            await chosen.check(scope, self.policy)
        except AuthError as error:
            log_refusal(error, scope)
            denial = chosen.responder.denial(error)
            detail = denial.description
            if scope["type"] == "websocket":
                # Litestar closes with a WebSocketException's code; any other exception
                # would become 4500 ("internal error").
                code = WS_TRY_AGAIN_LATER if denial.status == 503 else WS_POLICY_VIOLATION
                raise WebSocketException(detail=detail, code=code) from error
            kind = _EXCEPTIONS.get(denial.status, HTTPException)
            raise kind(
                detail=detail,
                status_code=denial.status,
                headers=denial.header_map(with_body_headers=False),
            ) from error

    def __repr__(self) -> str:
        return f"guard_for({self.policy!r})"


def guard_for(policy: Policy, *, authorizer: Authorizer | None = None) -> PolicyGuard:
    """A Litestar guard admitting a request only when ``policy`` holds.

    Use it at any layer: ``@get(..., guards=[guard_for(has_role("admin"))])``, a
    ``Router``, a ``Controller`` or ``Litestar(guards=[...])``. Refusals are logged on
    ``asgi_auth.authz``, like the guards'.

    Raises:
        TypeError: ``policy`` is not a policy, or ``authorizer`` not an ``Authorizer``.
    """
    return PolicyGuard(policy, authorizer=authorizer)
