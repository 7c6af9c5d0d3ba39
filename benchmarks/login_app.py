"""The app ``benchmarks.login`` serves: the token endpoint and a guarded ``GET /me``.

Configured by ``ASGI_AUTH_BENCH_DATABASE_URL`` and ``ASGI_AUTH_BENCH_SECRET``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_auth import AuthMiddleware, JWTVerifier, Key, TokenIssuer
from asgi_auth.authn.login import StoreAuthenticator, TokenEndpoint
from asgi_auth.authz import authenticated, guard
from asgi_auth.store import Store
from asgi_auth.types import ASGIApp


def build_app(database_url: str, secret: str) -> ASGIApp:
    """Logins (argon2id with the production parameters) and ``GET /me`` on one server."""
    store = Store(database_url)
    key = Key.from_secret(secret)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with store:
            yield

    @guard(authenticated)
    async def me(request: Request) -> Response:
        return JSONResponse({"sub": request.user.identity})

    routes = [
        Route("/token", TokenEndpoint(TokenIssuer(key), StoreAuthenticator(store))),
        Route("/me", me),
    ]
    return AuthMiddleware(Starlette(routes=routes, lifespan=lifespan), verifier=JWTVerifier(key))


app = build_app(
    os.environ.get("ASGI_AUTH_BENCH_DATABASE_URL", "sqlite:///./bench-login.db"),
    os.environ.get("ASGI_AUTH_BENCH_SECRET", "benchmark-secret-of-at-least-32-bytes!"),
)
