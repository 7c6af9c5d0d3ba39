"""Guards: deciding a policy for one request, and refusing it the RFC 6750 way.

Every guard shares one decision procedure (:meth:`Authorizer.check`):

- the policy is evaluated on what the token says; only when that cannot settle it
  (a role or claim the token does not carry) are the subject's roles and claims
  loaded from the store, once per request (memoized on the scope);
- anonymous and refused → 401 with a bare ``Bearer`` challenge;
- authenticated and refused → 403 ``insufficient_scope`` (with ``scope="…"`` when
  the failed requirements name scopes);
- the store cannot answer → 503, failing closed.

Forms: the ASGI wrapper :class:`Guard` (any ASGI app, a route, a mount), the
:func:`guard` decorator (Starlette endpoints, ``HTTPEndpoint`` methods, WebSocket
endpoints), and :func:`check` inside a handler. FastAPI and Litestar adapters live
in :mod:`asgi_auth.integrations`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, ParamSpec, TypeVar

from asgi_auth._http import Responder
from asgi_auth.audit import refusal
from asgi_auth.authz.policies import Facts, IsAuthenticated, Policy
from asgi_auth.authz.rights import Rights, RightsLoader
from asgi_auth.errors import AuthError, NotAuthenticated, PermissionDenied, ServiceUnavailable
from asgi_auth.principal import AnonymousPrincipal, Principal, get_principal
from asgi_auth.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "AUTHORIZER_KEY",
    "Authorizer",
    "Guard",
    "authorizer_of",
    "check",
    "guard",
    "log_refusal",
]

logger: Final = logging.getLogger("asgi_auth.authz")

#: Where :class:`~asgi_auth.AuthMiddleware` puts its authorizer on the scope.
AUTHORIZER_KEY: Final = "asgi_auth.authorizer"
_RIGHTS_KEY: Final = "asgi_auth.rights"
_NOTHING: Final[frozenset[str]] = frozenset()
Source = Literal["token", "store", "both"]
P = ParamSpec("P")
R = TypeVar("R")


class Authorizer:
    """Decides policies for requests: where roles and claims come from, and the realm.

    Args:
        loader: the store's roles and claims (a :class:`~asgi_auth.authz.CachedRights`
            over a SQL loader, usually). Without one, only the token counts.
        source: ``"token"`` (roles and permissions carried in the token only),
            ``"store"`` (roles and claims from the store only) or ``"both"`` (their
            union; the default when a loader is given).
        require_active: the store is consulted only when a policy needs its roles or
            claims, and then a user it has disabled is refused (and with
            ``source="store"`` a subject it does not know). A route the token alone
            decides (``authenticated``, ``has_scope``) keeps admitting a disabled
            user until the token expires or is revoked, and keeps working while the
            store is down. ``True`` checks the caller's status on every guarded
            request too (a cached lookup; a query on a miss).
        store_issuer: consult the store only for tokens with this ``iss`` (the
            issuer whose ``sub`` values are the store's user ids); tokens of other
            issuers then count by what they carry. ``None``: every token.
        realm: the challenge realm of refusals.

    Raises:
        ValueError: a source that needs a loader without one, or an unknown source.
        TypeError: a loader without an async ``load``.
    """

    __slots__ = (
        "_peek",
        "loader",
        "realm",
        "require_active",
        "responder",
        "source",
        "store_issuer",
        "use_token",
    )

    def __init__(
        self,
        loader: RightsLoader | None = None,
        *,
        source: Source | None = None,
        require_active: bool = False,
        store_issuer: str | None = None,
        realm: str = "api",
    ) -> None:
        if loader is not None and not isinstance(loader, RightsLoader):
            raise TypeError("loader must have an async load(subject) method")
        source = source or ("both" if loader is not None else "token")
        if source not in ("token", "store", "both"):
            raise ValueError("source must be 'token', 'store' or 'both'")
        if source != "token" and loader is None:
            raise ValueError(f"source={source!r} needs a loader")
        self.loader = loader if source != "token" else None
        self.source: Source = source
        self.use_token = source != "store"
        self.require_active = bool(require_active)
        self.store_issuer = store_issuer
        peek = getattr(self.loader, "peek", None)
        self._peek: Callable[[str], Rights | None] | None = peek if callable(peek) else None
        self.realm = realm
        self.responder = Responder(realm)

    async def check(self, scope: Scope, policy: Policy) -> Principal | AnonymousPrincipal:
        """Allow the request or raise why not.

        Returns:
            the principal, when the policy holds.

        Raises:
            NotAuthenticated: an anonymous caller was refused.
            PermissionDenied: an authenticated caller was refused.
            StoreUnavailable: the store could not answer (fail closed).
        """
        principal = get_principal(scope)
        # The token alone decides `authenticated` (unless status is checked): no facts.
        token_decides = type(policy) is IsAuthenticated and not self.require_active
        if token_decides and principal.is_authenticated:
            return principal
        method = "WEBSOCKET" if scope["type"] == "websocket" else scope.get("method", "GET")
        if self.use_token:
            roles, claims = principal.roles, principal.permissions
        else:
            roles = claims = _NOTHING
        authenticated = principal.is_authenticated
        in_store = (
            self.loader is not None
            and isinstance(principal, Principal)
            and (self.store_issuer is None or principal.issuer == self.store_issuer)
        )
        facts = Facts(authenticated, principal.scopes, roles, claims, not in_store, method)
        allowed = policy.evaluate(facts)
        if in_store and (allowed is None or (allowed and self.require_active)):
            assert isinstance(principal, Principal)  # in_store implies it
            rights = self._known_rights(scope, principal)
            if rights is None:  # not memoized, not cached: one query
                rights = await self._load(scope, principal)
            if not rights.active or (not rights.known and self.source == "store"):
                reason = (
                    f"{principal!r} is {'disabled' if rights.known else 'unknown'} in the store"
                )
                lacking = "an active account" if rights.known else "a known account"
                raise PermissionDenied(reason, policy=repr(policy), unmet=(lacking,))
            if allowed is None:
                roles, claims = roles | rights.roles, claims | rights.claims
                facts = Facts(authenticated, principal.scopes, roles, claims, True, method)
                allowed = policy.evaluate(facts)
        if allowed:
            return principal
        failed = policy.failures(facts)
        unmet = tuple(map(repr, failed))
        reason = f"{policy!r} refused {principal!r}: unmet {', '.join(unmet)}"
        if not principal.is_authenticated:
            raise NotAuthenticated(reason, policy=repr(policy), unmet=unmet)
        scopes = tuple(dict.fromkeys(s for f in failed for s in f.scopes()))
        raise PermissionDenied(reason, scopes=scopes, policy=repr(policy), unmet=unmet)

    def _known_rights(self, scope: Scope, principal: Principal) -> Rights | None:
        # Memoized for the rest of an HTTP request (routers pass this same scope down),
        # per loader: a guard with its own loader never reuses another's answer.
        memo = scope.get(_RIGHTS_KEY)
        if memo is not None and memo[0] is principal and memo[1] is self.loader:
            rights: Rights = memo[2]
            return rights
        # A fresh cache entry is read without awaiting (the common case by far).
        return self._peek(principal.subject) if self._peek is not None else None

    async def _load(self, scope: Scope, principal: Principal) -> Rights:
        loader = self.loader
        if loader is None:  # cannot happen when in_store; refuse rather than guess
            raise PermissionDenied("no rights loader")
        rights = await loader.load(principal.subject)
        if scope["type"] == "http":  # not on WebSockets: that scope lives as long as the socket
            scope[_RIGHTS_KEY] = (principal, loader, rights)
        return rights


_TOKEN_ONLY: Final = Authorizer()


def authorizer_of(scope: Scope, override: Authorizer | None = None) -> Authorizer:
    """The guard's own authorizer, else the middleware's, else token-only."""
    if override is not None:
        return override
    found = scope.get(AUTHORIZER_KEY)
    return found if isinstance(found, Authorizer) else _TOKEN_ONLY


async def check(
    scope: Scope, policy: Policy, *, authorizer: Authorizer | None = None
) -> Principal | AnonymousPrincipal:
    """``await check(request.scope, has_claim("can_read"))`` inside a handler.

    Raises:
        NotAuthenticated, PermissionDenied, StoreUnavailable: see :meth:`Authorizer.check`.
    """
    return await authorizer_of(scope, authorizer).check(scope, policy)


def log_refusal(error: AuthError, scope: Scope) -> None:
    """Log a refusal on ``asgi_auth.authz`` (an audit event, see :mod:`asgi_auth.audit`):
    the policy and the unmet requirements, the caller, the client and the path; never a
    token."""
    if isinstance(error, ServiceUnavailable):
        level, event, status, said = logging.ERROR, "access.unavailable", 503, "unavailable"
    else:
        status = 401 if isinstance(error, NotAuthenticated) else 403
        level, event, said = logging.INFO, "access.denied", "denied"
    refusal(
        logger,
        level,
        event,
        error,
        scope=scope,
        status=status,
        said=f"authorization {said}",
        subject=getattr(scope.get("user"), "subject", None),
        policy=error.policy,
        unmet=list(error.unmet),
    )


class Guard:
    """An ASGI wrapper that lets a request through only when ``policy`` holds.

    Wrap any ASGI app, a Starlette ``Route``'s endpoint, or a ``Mount``:
    ``Mount("/admin", app=Guard(admin_app, has_role("admin")))``. WebSocket
    handshakes are refused before ``accept``. Other scope types pass through.
    """

    def __init__(self, app: ASGIApp, policy: Policy, *, authorizer: Authorizer | None = None):
        if not isinstance(policy, Policy):
            raise TypeError("policy must be an asgi_auth policy")
        self.app = app
        self.policy = policy
        self.authorizer = authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            authorizer = authorizer_of(scope, self.authorizer)
            try:
                await authorizer.check(scope, self.policy)
            except AuthError as error:
                log_refusal(error, scope)
                await authorizer.responder.denial(error).send(scope, receive, send)
                return
        await self.app(scope, receive, send)


def guard(
    policy: Policy, *, authorizer: Authorizer | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R | None]]]:
    """Decorate a Starlette endpoint (function or ``HTTPEndpoint`` method, HTTP or
    WebSocket) so that it runs only when ``policy`` holds.

    The request is found by type (the first ``Request``/``WebSocket`` argument), not
    by parameter name. Refusals are the same responses as :class:`Guard`'s.

    Raises:
        TypeError: the endpoint is not async, or ``policy`` is not a policy.
    """
    from starlette.requests import HTTPConnection
    from starlette.responses import Response

    if not isinstance(policy, Policy):
        raise TypeError("policy must be an asgi_auth policy")

    def decorate(endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
        if not _is_async(endpoint):
            raise TypeError("guard() decorates async endpoints")

        @functools.wraps(endpoint)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
            connection = args[0] if args and isinstance(args[0], HTTPConnection) else None
            if connection is None:  # an HTTPEndpoint method (self, request), or by keyword
                connection = next(
                    (a for a in (*args, *kwargs.values()) if isinstance(a, HTTPConnection)), None
                )
            if connection is None:
                raise TypeError(f"{endpoint.__qualname__} got no Request or WebSocket argument")
            chosen = authorizer_of(connection.scope, authorizer)
            try:
                await chosen.check(connection.scope, policy)
            except AuthError as error:
                log_refusal(error, connection.scope)
                denial = chosen.responder.denial(error)
                if connection.scope["type"] == "websocket":
                    await denial.send_websocket(
                        connection.scope,
                        connection.receive,  # type: ignore[attr-defined]
                        connection.send,  # type: ignore[attr-defined]
                    )
                    return None
                return Response(denial.body, denial.status, headers=denial.header_map())  # type: ignore[return-value]
            return await endpoint(*args, **kwargs)

        return guarded

    return decorate


def _is_async(function: Any) -> bool:
    import inspect

    while isinstance(function, functools.partial):
        function = function.func
    return inspect.iscoroutinefunction(function)
