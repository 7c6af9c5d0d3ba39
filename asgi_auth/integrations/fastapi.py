"""FastAPI: policies as dependencies, declared in the OpenAPI document.

::

    app = FastAPI()
    app.add_middleware(AuthMiddleware, verifier=JWTVerifier(key))

    @app.get("/items")
    async def items(
        principal: Annotated[Principal, Depends(Authorize(has_claim("can_read")))],
    ) -> list[Item]: ...

    @app.delete("/items/{id}", dependencies=[Security(Authorize(has_role("admin")))])
    async def delete(id: int) -> None: ...

:class:`Authorize` decides with :meth:`~asgi_auth.authz.Authorizer.check`, exactly as
:class:`~asgi_auth.authz.Guard` does, and refuses through FastAPI's own
``HTTPException`` so that the status and ``WWW-Authenticate`` challenge are the
guard's (401 bare challenge, 403 ``insufficient_scope``, 503 without a challenge); the
body is FastAPI's ``{"detail": …}`` carrying the same generic message.

The token itself is verified by :class:`~asgi_auth.AuthMiddleware`, which must be
installed on the app; the security scheme sub-dependency is there for the OpenAPI
document (and the docs' *Authorize* button), never to read the token again.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Final

from fastapi import HTTPException, Security, WebSocketException
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPBearer, SecurityScopes
from fastapi.security.base import SecurityBase

from asgi_auth._http import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER
from asgi_auth.authz.guards import Authorizer, authorizer_of, log_refusal
from asgi_auth.authz.policies import AllOf, HasScope, Policy, all_of, authenticated, has_scope
from asgi_auth.errors import AuthError
from asgi_auth.principal import AnonymousPrincipal, Principal

__all__ = ["BEARER", "Authorize", "current_principal"]

#: The default security scheme: an ``Authorization: Bearer`` header, as OpenAPI's
#: ``http``/``bearer`` scheme. ``auto_error=False``: refusals are :class:`Authorize`'s.
BEARER: Final = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An access token in the Authorization header (RFC 6750).",
    auto_error=False,
)
_DENIAL_EXTENSION: Final = "websocket.http.response"


class Authorize(SecurityBase):
    """A FastAPI dependency that admits a request only when ``policy`` holds.

    ``Depends(Authorize(policy))`` or ``Security(Authorize(policy))`` resolves to the
    caller's principal. Scopes given to ``Security(..., scopes=[...])`` are required
    too (every one of them), as FastAPI's ``SecurityScopes`` convention has it, so
    the OpenAPI document never lists a scope that is not enforced.

    The operation's OpenAPI ``security`` requirement names ``scheme`` with the scopes
    the policy requires (those of ``has_scope`` alone or inside ``all_of``; scopes
    under ``any_of``, ``not_`` or ``by_method`` are not unconditionally required and
    are not listed).

    Refusals (logged on ``asgi_auth.authz``, like the guards'):

    - HTTP: ``HTTPException`` with the guard's status and headers
      (``WWW-Authenticate``, ``Cache-Control: no-store``) and the generic
      ``error_description`` as ``detail``.
    - WebSocket, before ``accept``: when the server offers the
      ``websocket.http.response`` extension, the same HTTP answer as a denial
      response (FastAPI sends an ``HTTPException`` raised in a WebSocket route that
      way); otherwise ``WebSocketException`` with code 1008 (1013 for a 503), which
      servers answer with an HTTP 403. The endpoint never runs.

    Args:
        policy: the rule to enforce (``has_claim("can_read")``, ``has_scope(...)``…).
        authorizer: decides where roles and claims come from; by default the one
            :class:`~asgi_auth.AuthMiddleware` was given, else token only.
        scheme: the security scheme to declare: a FastAPI ``HTTPBearer`` (the default,
            :data:`BEARER`), or e.g. ``OAuth2PasswordBearer(tokenUrl="/token",
            auto_error=False)`` for the docs' login dialog. It must be built with
            ``auto_error=False``: its own refusals would differ from the RFC 6750 ones.

    Raises:
        TypeError: ``policy`` is not a policy, ``authorizer`` not an ``Authorizer``,
            or ``scheme`` not a FastAPI security scheme.
        ValueError: ``scheme`` was built with ``auto_error=True``.
    """

    scheme: SecurityBase

    def __init__(
        self,
        policy: Policy,
        *,
        authorizer: Authorizer | None = None,
        scheme: SecurityBase = BEARER,
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError("policy must be an asgi_auth policy")
        if authorizer is not None and not isinstance(authorizer, Authorizer):
            raise TypeError("authorizer must be an asgi_auth Authorizer")
        if not isinstance(scheme, SecurityBase) or not callable(scheme):
            raise TypeError("scheme must be a fastapi.security scheme (HTTPBearer…)")
        if getattr(scheme, "auto_error", False):
            raise ValueError("scheme must be built with auto_error=False")
        self.policy = policy
        self.authorizer = authorizer
        self.scheme = scheme
        # FastAPI lists a dependency that is a SecurityBase as a security scheme in
        # OpenAPI: this one stands for `scheme` there (its model and name), so a policy
        # that requires no scope costs no sub-dependency on each request.
        self.model = scheme.model
        self.scheme_name = scheme.scheme_name
        # FastAPI reads a dependency's parameters from its signature (inspect.signature()
        # honours __signature__ on any callable).
        parameters = [
            inspect.Parameter(
                "connection", inspect.Parameter.KEYWORD_ONLY, annotation=HTTPConnection
            ),
            inspect.Parameter(
                "security_scopes", inspect.Parameter.KEYWORD_ONLY, annotation=SecurityScopes
            ),
        ]
        required = _required_scopes(policy)
        if required:
            # The policy's scopes must show in OpenAPI: a sub-dependency on the scheme
            # with those scopes says so (FastAPI merges both entries under one name).
            parameters.append(
                inspect.Parameter(
                    "credentials",
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[Any, Security(scheme, scopes=list(required))],
                )
            )
        self.__signature__ = inspect.Signature(
            parameters, return_annotation=Principal | AnonymousPrincipal
        )

    async def __call__(
        self,
        *,
        connection: HTTPConnection,
        security_scopes: SecurityScopes,
        credentials: object = None,
    ) -> Principal | AnonymousPrincipal:
        """Decide for this request (FastAPI calls this; ``credentials`` is unused).

        Returns:
            the principal, when the policy holds.

        Raises:
            HTTPException: the request is refused (401, 403 or 503).
            WebSocketException: a WebSocket handshake is refused on a server without
                the denial-response extension.
            RuntimeError: ``AuthMiddleware`` is not installed.
        """
        policy = self.policy
        if security_scopes.scopes:
            policy = all_of(policy, *map(has_scope, security_scopes.scopes))
        scope = connection.scope
        chosen = authorizer_of(scope, self.authorizer)
        try:
            return await chosen.check(scope, policy)
        except AuthError as error:
            log_refusal(error, scope)
            denial = chosen.responder.denial(error)
            if scope["type"] == "websocket" and _DENIAL_EXTENSION not in (
                scope.get("extensions") or {}
            ):
                code = WS_TRY_AGAIN_LATER if denial.status == 503 else WS_POLICY_VIOLATION
                raise WebSocketException(code=code, reason=denial.description) from error
            raise HTTPException(
                status_code=denial.status,
                detail=denial.description,
                headers=denial.header_map(with_body_headers=False),
            ) from error

    def __repr__(self) -> str:
        return f"Authorize({self.policy!r})"


def _required_scopes(policy: Policy) -> tuple[str, ...]:
    """The scopes every request must carry for ``policy`` to hold."""
    if isinstance(policy, HasScope):
        return (policy.scope,)
    if isinstance(policy, AllOf):
        return tuple(dict.fromkeys(s for p in policy.policies for s in _required_scopes(p)))
    return ()


#: Any authenticated caller (anonymous ones get a 401 with a bare Bearer challenge):
#: ``principal: Annotated[Principal, Depends(current_principal)]``.
current_principal: Final = Authorize(authenticated)
