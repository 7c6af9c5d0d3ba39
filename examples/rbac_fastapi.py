"""Roles and claims from the store, guarding FastAPI routes as dependencies.

Run (after creating roles, claims and users with ``asgi-auth``, see rbac_starlette.py):
    ASGI_AUTH_SECRET=$(asgi-auth secret) python -m examples.rbac_fastapi
The OpenAPI docs at http://127.0.0.1:8000/docs show the bearer scheme on every guarded route.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security

from asgi_auth import AuthMiddleware, JWTVerifier, Key, Principal
from asgi_auth.authz import Authorizer, has_claim, has_role
from asgi_auth.integrations.fastapi import Authorize
from asgi_auth.store import Store, cached_rights


def create_app(key: Key, database_url: str) -> FastAPI:
    """The app: tokens signed by ``key``, roles and claims from ``database_url``."""
    store = Store(database_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with store:
            await store.init_schema()
            yield

    app = FastAPI(title="asgi_auth RBAC example", lifespan=lifespan)
    app.add_middleware(
        AuthMiddleware, verifier=JWTVerifier(key), authorizer=Authorizer(cached_rights(store))
    )

    @app.get("/admin")  # the seed's: if (user.role_id != ADMIN) → 403
    async def admin_panel(
        principal: Annotated[Principal, Depends(Authorize(has_role("admin")))],
    ) -> dict[str, Any]:
        return {"welcome": principal.display_name}

    # The seed's "may delete a record, but not create or update it".
    @app.get("/records/{record_id}", dependencies=[Security(Authorize(has_claim("can_read")))])
    async def read_record(record_id: int) -> dict[str, Any]:
        return {"record": record_id}

    @app.put("/records/{record_id}", dependencies=[Security(Authorize(has_claim("can_write")))])
    async def update_record(record_id: int) -> dict[str, Any]:
        return {"record": record_id, "updated": True}

    @app.delete("/records/{record_id}", dependencies=[Security(Authorize(has_claim("can_delete")))])
    async def delete_record(record_id: int) -> dict[str, Any]:
        return {"record": record_id, "deleted": True}

    return app


if __name__ == "__main__":
    import uvicorn

    url = os.environ.get("ASGI_AUTH_DATABASE_URL", "sqlite:///./asgi_auth.db")
    uvicorn.run(create_app(Key.from_secret(os.environ["ASGI_AUTH_SECRET"]), url))
