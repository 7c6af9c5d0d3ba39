"""Roles and claims from the store, guarding Starlette routes.

Run:
    asgi-auth db init && asgi-auth role create admin && asgi-auth claim create can_read
    asgi-auth claim create can_delete
    asgi-auth user create alice --role admin --claim can_read --claim can_delete
    ASGI_AUTH_SECRET=$(asgi-auth secret) python -m examples.rbac_starlette
Call (alice is user 1):
    curl -X DELETE -H "Authorization: Bearer $(asgi-auth token --sub 1)" \
         http://127.0.0.1:8000/records/7
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import AuthMiddleware, JWTVerifier, Key
from asgi_auth.authz import Authorizer, by_method, guard, has_claim, has_role
from asgi_auth.store import Store, cached_rights
from asgi_auth.types import ASGIApp


@guard(has_role("admin"))  # the seed's: if (user.role_id != ADMIN) → 403
async def admin_panel(request: Request) -> JSONResponse:
    return JSONResponse({"welcome": request.user.display_name})


# The seed's "may delete a record, but not create or update it": one rule per method.
@guard(
    by_method(
        GET=has_claim("can_read"),
        POST=has_claim("can_write"),
        PUT=has_claim("can_write"),
        DELETE=has_claim("can_delete"),
    )
)
async def record(request: Request) -> JSONResponse:
    return JSONResponse({"record": request.path_params["id"], "method": request.method})


def create_app(key: Key, database_url: str) -> ASGIApp:
    """The app: tokens signed by ``key``, roles and claims from ``database_url``."""
    store = Store(database_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with store:
            await store.init_schema()
            yield

    app = Starlette(
        routes=[
            Route("/admin", admin_panel),
            Route("/records/{id:int}", record, methods=["GET", "POST", "PUT", "DELETE"]),
        ],
        lifespan=lifespan,
    )
    # Roles and claims from the store (cached 30 s, invalidated by admin changes),
    # together with any roles/permissions the token itself carries.
    authorizer = Authorizer(cached_rights(store))
    return AuthMiddleware(app, verifier=JWTVerifier(key), authorizer=authorizer)


if __name__ == "__main__":
    import uvicorn

    url = os.environ.get("ASGI_AUTH_DATABASE_URL", "sqlite:///./asgi_auth.db")
    uvicorn.run(create_app(Key.from_secret(os.environ["ASGI_AUTH_SECRET"]), url))
