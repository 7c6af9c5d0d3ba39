"""An API protected by Auth0 access tokens (the routes of Auth0's own API quickstart).

Configure an API in the Auth0 dashboard (its identifier is the audience), enable
"RBAC" and "Add Permissions in the Access Token" for permission checks, then:

    AUTH0_DOMAIN=your-tenant.eu.auth0.com AUTH0_AUDIENCE=https://api.example.com \\
        python -m examples.auth0_app

Call it with a token from Auth0 (for a machine-to-machine test, the API's "Test" tab
gives one from the client-credentials grant):

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/private

``AUTH0_ROLES_CLAIM`` names a namespaced claim an Auth0 Action adds with the user's
roles (e.g. ``https://example.com/roles``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_auth import AuthError, AuthMiddleware, OIDCVerifier, ProviderUnavailable
from asgi_auth.authz import authenticated, guard, has_claim, has_role, has_scope
from asgi_auth.credentials import BearerExtractor
from asgi_auth.tokens.presets import auth0
from asgi_auth.types import ASGIApp


async def public(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello from a public endpoint! No token needed."})


@guard(authenticated)
async def private(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello from a private endpoint!", "sub": request.user.identity})


# The scope (client-credentials tokens) or the RBAC permission (user tokens).
@guard(has_scope("read:messages") | has_claim("read:messages"))
async def private_scoped(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello from a private endpoint with read:messages!"})


@guard(has_role("admin"))  # roles from AUTH0_ROLES_CLAIM
async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello, admin."})


@guard(authenticated)
async def profile(request: Request) -> Response:
    # The profile comes from Auth0's /userinfo (cached per token), only on this route.
    verifier: OIDCVerifier = request.app.state.verifier
    token = BearerExtractor().extract(request.scope)
    assert token is not None  # the guard let an authenticated caller through
    try:
        info = await verifier.userinfo(token, principal=request.user)
    except AuthError as error:
        # Auth0 is unreachable (503) or refused the token (401): answer as the
        # middleware does for the same errors, rather than with a 500.
        denial = request.app.state.responder.denial(error)
        return Response(denial.body, denial.status, headers=denial.header_map())
    return JSONResponse(dict(info))


def create_app(env: Mapping[str, str] | None = None, **options: Any) -> ASGIApp:
    """The API, configured from ``AUTH0_DOMAIN``, ``AUTH0_AUDIENCE`` and optionally
    ``AUTH0_ROLES_CLAIM``; ``options`` go to the verifier (e.g. an ``http_client``)."""
    env = os.environ if env is None else env
    verifier = auth0(
        env["AUTH0_DOMAIN"],
        env["AUTH0_AUDIENCE"],
        roles_claim=env.get("AUTH0_ROLES_CLAIM") or None,
        **options,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with contextlib.suppress(ProviderUnavailable):  # requests will fetch on demand
            await verifier.start()
        yield
        await verifier.aclose()

    app = Starlette(
        routes=[
            Route("/api/public", public),
            Route("/api/private", private),
            Route("/api/private-scoped", private_scoped),
            Route("/api/admin", admin),
            Route("/api/profile", profile),
        ],
        lifespan=lifespan,
    )
    middleware = AuthMiddleware(app, verifier=verifier, realm=env["AUTH0_AUDIENCE"])
    app.state.verifier = verifier
    app.state.responder = middleware.responder  # its answers to errors, for /api/profile
    return middleware


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app())
