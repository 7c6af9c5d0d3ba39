"""A FastAPI app: AuthMiddleware in front, the principal through a dependency.

Run: ASGI_AUTH_SECRET=$(asgi-auth secret) python -m examples.fastapi_app
Call: curl -H "Authorization: Bearer $(asgi-auth token --sub 1)" http://127.0.0.1:8000/me
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request

from asgi_auth import AuthMiddleware, JWTVerifier, Key, Principal, get_principal


def current_principal(request: Request) -> Principal:
    """The authenticated caller; 401 with a bare Bearer challenge for anonymous ones."""
    principal = get_principal(request.scope)
    if not isinstance(principal, Principal):
        raise HTTPException(
            status_code=401,
            detail="This resource needs a bearer token.",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    return principal


def create_app(key: Key) -> FastAPI:
    """The app, with tokens signed by ``key``."""
    app = FastAPI(title="asgi_auth FastAPI example")
    app.add_middleware(AuthMiddleware, verifier=JWTVerifier(key))

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
        return principal.to_dict()

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"status": "open to everyone"}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(Key.from_secret(os.environ["ASGI_AUTH_SECRET"])))
