"""A Starlette app: AuthMiddleware in front, Starlette's own ``@requires`` on routes.

Run: ASGI_AUTH_SECRET=$(asgi-auth secret) python -m examples.starlette_app
Call: curl -H "Authorization: Bearer $(asgi-auth token --sub 1 --scope items:read)" \
           http://127.0.0.1:8000/items
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import AuthMiddleware, JWTVerifier, Key


async def hello(request: Request) -> JSONResponse:
    """Public: greets whoever calls, by name when authenticated."""
    name = request.user.display_name if request.user.is_authenticated else "stranger"
    return JSONResponse({"hello": name})


@requires("items:read")
async def items(request: Request) -> JSONResponse:
    """Needs the ``items:read`` scope (or permission) in the token."""
    return JSONResponse({"items": ["apple", "pear"], "for": request.user.identity})


def create_app(key: Key) -> Starlette:
    """The app, with tokens signed by ``key``."""
    return Starlette(
        routes=[Route("/", hello), Route("/items", items)],
        middleware=[Middleware(AuthMiddleware, verifier=JWTVerifier(key))],
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(Key.from_secret(os.environ["ASGI_AUTH_SECRET"])))
