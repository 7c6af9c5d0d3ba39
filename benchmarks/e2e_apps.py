"""The ASGI apps that ``python -m benchmarks.e2e`` serves under uvicorn, one per server.

uvicorn builds the app with ``--factory benchmarks.e2e_apps:from_environment``, which
reads two environment variables:

- ``ASGI_AUTH_BENCH_E2E_APP``: which app (a key of :data:`APPS`);
- ``ASGI_AUTH_BENCH_SECRET``: the HS256 secret the benchmark signs its tokens with.

Each app serves one route, ``GET /me``, answering ``{"sub": <the caller's subject>}``
(``"anonymous"`` for the apps without authentication), and nothing wraps it but its
own framework and its own authentication: no counters, no dispatcher, so a server
pays only for what its contender is.

The hand-written contenders check what :class:`~asgi_auth.JWTVerifier` checks by
default: an HS256 signature, ``exp`` (required, not passed) and ``sub`` (required),
with PyJWT's ``jwt.decode(token, secret, algorithms=["HS256"], options={"require":
["exp", "sub"]})``, which also refuses an ``aud`` nobody configured, as ours does.
Every refusal is a 401. The Starlette endpoints behind a middleware that admits
anonymous callers (``AuthMiddleware``, Starlette's ``AuthenticationMiddleware``)
refuse them with one test of ``request.user.is_authenticated``, the cheapest way
there is, so that those rows compare the middlewares (Starlette's ``@requires``
would add its own cost to both; ``@guard`` has a row of its own).
"""

# No ``from __future__ import annotations``: FastAPI and Litestar evaluate the endpoints'
# annotations, which name classes imported inside the functions below.
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

import jwt
import jwt.types
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_auth.authz import authenticated, guard
from asgi_auth.middleware import AuthMiddleware
from asgi_auth.principal import Principal
from asgi_auth.tokens import JWTVerifier, Key
from asgi_auth.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "APPS",
    "ENV_APP",
    "ENV_SECRET",
    "PATH",
    "from_environment",
]

ENV_APP: Final = "ASGI_AUTH_BENCH_E2E_APP"
ENV_SECRET: Final = "ASGI_AUTH_BENCH_SECRET"
PATH: Final = "/me"
REALM: Final = "bench"
ANONYMOUS: Final = "anonymous"
_OPTIONS: Final[jwt.types.Options] = {"require": ["exp", "sub"]}
_CHALLENGE: Final = 'Bearer realm="bench", error="invalid_token"'


def decode(token: str, secret: str) -> dict[str, Any]:
    """What each hand-written contender does per request: PyJWT's ``jwt.decode``.

    Raises:
        jwt.InvalidTokenError: a bad signature, an expired token, a missing ``exp``
            or ``sub``, an unexpected ``aud``…
    """
    return jwt.decode(token, secret, algorithms=["HS256"], options=_OPTIONS)


def _verifier(secret: str) -> JWTVerifier:
    return JWTVerifier(Key.from_secret(secret), algorithms=["HS256"])


# -- Starlette -------------------------------------------------------------------------


def bare(secret: str) -> ASGIApp:
    """Starlette, no authentication: the baseline."""

    async def me(request: Request) -> Response:
        return JSONResponse({"sub": ANONYMOUS})

    return Starlette(routes=[Route(PATH, me)])


def empty_middleware(secret: str) -> ASGIApp:
    """Bare Starlette behind the least an ASGI middleware that sets ``user`` and ``auth``
    can do: a new scope (the ASGI spec asks middleware to copy it) and one more call.
    No authentication: the floor under any authenticating middleware's row."""
    inner = bare(secret)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await inner({**scope, "user": None, "auth": None}, receive, send)

    return app


_NOT_AUTHENTICATED: Final = {"WWW-Authenticate": 'Bearer realm="bench"'}


def _anonymous() -> Response:
    return JSONResponse({"error": "unauthorized"}, 401, headers=_NOT_AUTHENTICATED)


def asgi_auth_middleware(secret: str) -> ASGIApp:
    """``AuthMiddleware(JWTVerifier(key))`` around Starlette; the endpoint refuses an
    anonymous caller itself."""

    async def me(request: Request) -> Response:
        user = request.user
        if not user.is_authenticated:
            return _anonymous()
        return JSONResponse({"sub": user.subject})

    return AuthMiddleware(
        Starlette(routes=[Route(PATH, me)]), verifier=_verifier(secret), realm=REALM
    )


def asgi_auth_guard(secret: str) -> ASGIApp:
    """``AuthMiddleware`` around Starlette, the endpoint decorated with
    ``@guard(authenticated)``."""

    @guard(authenticated)
    async def me(request: Request) -> Response:
        return JSONResponse({"sub": request.user.subject})

    return AuthMiddleware(
        Starlette(routes=[Route(PATH, me)]), verifier=_verifier(secret), realm=REALM
    )


class PyJWTBackend(AuthenticationBackend):
    """A Starlette ``AuthenticationBackend`` as its documentation shows one: no
    ``Authorization: Bearer`` header, no user; a bad token, an error."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims = decode(token, self.secret)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("invalid token") from exc
        return AuthCredentials(["authenticated"]), SimpleUser(claims["sub"])


def _refuse(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    # Starlette's default answers 400 with the exception's text.
    return JSONResponse(
        {"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": _CHALLENGE}
    )


def starlette_authentication(secret: str) -> ASGIApp:
    """Starlette's ``AuthenticationMiddleware`` with :class:`PyJWTBackend`; the endpoint
    refuses an anonymous caller itself."""

    async def me(request: Request) -> Response:
        user = request.user
        if not user.is_authenticated:
            return _anonymous()
        return JSONResponse({"sub": user.username})

    return AuthenticationMiddleware(
        Starlette(routes=[Route(PATH, me)]), backend=PyJWTBackend(secret), on_error=_refuse
    )


_UNAUTHORIZED: Final = b'{"error":"unauthorized"}'
_INVALID: Final = b'{"error":"invalid_token"}'


async def _send_401(send: Send, body: bytes, challenge: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"www-authenticate", challenge),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PyJWTMiddleware:
    """A minimal pure-ASGI middleware: a bearer token is required and decoded with
    PyJWT on every request; the subject goes on ``scope["user"]``."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = credentials
                break
        if token is None:
            await _send_401(send, _UNAUTHORIZED, b'Bearer realm="bench"')
            return
        try:
            claims = decode(token, self.secret)
        except jwt.InvalidTokenError:
            await _send_401(send, _INVALID, _CHALLENGE.encode("ascii"))
            return
        scope["user"] = SimpleUser(claims["sub"])
        await self.app(scope, receive, send)


def pure_asgi(secret: str) -> ASGIApp:
    """:class:`PyJWTMiddleware` around Starlette."""

    async def me(request: Request) -> Response:
        return JSONResponse({"sub": request.user.username})

    return PyJWTMiddleware(Starlette(routes=[Route(PATH, me)]), secret)


# -- FastAPI ---------------------------------------------------------------------------


def fastapi_bare(secret: str) -> ASGIApp:
    """FastAPI, no authentication: the FastAPI contenders' own reference."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(PATH)
    async def me() -> dict[str, str]:
        return {"sub": ANONYMOUS}

    return app


def fastapi_http_bearer(secret: str) -> ASGIApp:
    """The pattern of FastAPI's documentation: ``HTTPBearer()`` and an async dependency
    that decodes the token with PyJWT."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    app = FastAPI()
    security = HTTPBearer()

    async def current_user(
        credentials: Annotated[HTTPAuthorizationCredentials, Depends(security)],
    ) -> str:
        try:
            claims = decode(credentials.credentials, secret)
        except jwt.InvalidTokenError as exc:
            raise HTTPException(
                status_code=401,
                detail="Could not validate credentials",
                headers={"WWW-Authenticate": "Bearer"},
            ) from exc
        subject: str = claims["sub"]
        return subject

    @app.get(PATH)
    async def me(subject: Annotated[str, Depends(current_user)]) -> dict[str, str]:
        return {"sub": subject}

    return app


def fastapi_asgi_auth(secret: str) -> ASGIApp:
    """FastAPI with ``AuthMiddleware`` added as the integration's documentation shows,
    the route depending on ``current_principal`` (``Authorize(authenticated)``)."""
    from fastapi import Depends, FastAPI

    from asgi_auth.integrations.fastapi import current_principal

    app = FastAPI()

    @app.get(PATH)
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        return {"sub": principal.subject}

    app.add_middleware(AuthMiddleware, verifier=_verifier(secret), realm=REALM)
    return app


# -- Litestar --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """What Litestar's ``retrieve_user_handler`` returns."""

    sub: str


def litestar_jwt(secret: str) -> ASGIApp:
    """Litestar's ``JWTAuth`` (HS256), ``retrieve_user_handler`` returning a user for the
    token's ``sub``; ``exp`` and ``sub`` required as for the others."""
    from litestar import Litestar, Request, get
    from litestar.connection import ASGIConnection
    from litestar.security.jwt import JWTAuth, Token

    async def retrieve_user(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> User:
        return User(token.sub)

    auth = JWTAuth[User](
        retrieve_user_handler=retrieve_user,
        token_secret=secret,
        algorithm="HS256",
        require_claims=["exp", "sub"],
    )

    @get(PATH)
    async def me(request: Request[User, Token, Any]) -> dict[str, str]:
        return {"sub": request.user.sub}

    return Litestar(route_handlers=[me], on_app_init=[auth.on_app_init])


#: Every app, by the name ``ASGI_AUTH_BENCH_E2E_APP`` gives.
APPS: Final[Mapping[str, Callable[[str], ASGIApp]]] = {
    "bare": bare,
    "empty_middleware": empty_middleware,
    "asgi_auth": asgi_auth_middleware,
    "asgi_auth_guard": asgi_auth_guard,
    "starlette_authentication": starlette_authentication,
    "pure_asgi": pure_asgi,
    "fastapi_bare": fastapi_bare,
    "fastapi_http_bearer": fastapi_http_bearer,
    "fastapi_asgi_auth": fastapi_asgi_auth,
    "litestar_jwt": litestar_jwt,
}


def from_environment() -> ASGIApp:
    """The app uvicorn serves (``--factory``).

    Raises:
        KeyError: ``ASGI_AUTH_BENCH_E2E_APP`` or ``ASGI_AUTH_BENCH_SECRET`` is unset, or
            names no app.
    """
    return APPS[os.environ[ENV_APP]](os.environ[ENV_SECRET])
