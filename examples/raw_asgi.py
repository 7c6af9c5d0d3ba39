"""A raw ASGI app (no framework) behind AuthMiddleware.

Run: ASGI_AUTH_SECRET=$(asgi-auth secret) python -m examples.raw_asgi
Call: curl -H "Authorization: Bearer $(asgi-auth token --sub 1)" http://127.0.0.1:8000/
"""

from __future__ import annotations

import json
import os

from asgi_auth import AuthMiddleware, JWTVerifier, Key, get_principal
from asgi_auth.types import ASGIApp, Receive, Scope, Send


async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with the caller's principal."""
    if scope["type"] != "http":
        return
    principal = get_principal(scope)
    body = json.dumps(principal.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(key: Key) -> ASGIApp:
    """``whoami`` protected by bearer tokens signed with ``key``."""
    return AuthMiddleware(whoami, verifier=JWTVerifier(key))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(Key.from_secret(os.environ["ASGI_AUTH_SECRET"])))
