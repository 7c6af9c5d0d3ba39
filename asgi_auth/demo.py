"""The demo API that ``asgi-auth demo`` serves: every decision of the middleware, visible.

Routes:
    ``GET /``                        what this server is and how to call it
    ``GET /me``                      the caller's principal (200), or 401 without a token
    ``GET /.well-known/jwks.json``   the public keys (asymmetric keys only; 404 for HMAC)
    ``WS  /ws``                      sends the principal as JSON, then closes; refused
                                     before ``accept`` without a valid token
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asgi_auth._http import Denial, Responder
from asgi_auth.middleware import AuthMiddleware
from asgi_auth.principal import get_principal
from asgi_auth.tokens import JWTVerifier, Key, TokenIssuer
from asgi_auth.types import ASGIApp, Receive, Scope, Send

__all__ = ["DemoConfig", "build_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo needs; the CLI builds it from flags and ``ASGI_AUTH_*`` variables.

    Attributes:
        key: the signing key (an HMAC secret or a private key).
        issuer: the ``iss`` written and required, if any.
        audience: the ``aud`` written and required, if any.
        realm: the challenge realm.
    """

    key: Key
    issuer: str | None = None
    audience: str | None = None
    realm: str = "asgi-auth demo"
    issuer_obj: TokenIssuer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        issuer = TokenIssuer(self.key, issuer=self.issuer, audience=self.audience)
        object.__setattr__(self, "issuer_obj", issuer)

    def verifier(self) -> JWTVerifier:
        """The verifier matching this configuration."""
        return JWTVerifier(
            self.key,
            algorithms=[self.issuer_obj.algorithm],
            issuer=self.issuer,
            audience=self.audience,
        )


def _response(denial: Denial) -> Response:
    return Response(denial.body, status_code=denial.status, headers=_headers(denial))


def _headers(denial: Denial) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in denial.headers}


class _PrincipalSocket:
    """``WS /ws``: a raw ASGI endpoint so that refusals happen before ``accept``."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = get_principal(scope)
        if not principal.is_authenticated:
            await self.responder.unauthenticated.send_websocket(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        await websocket.send_json(principal.to_dict())
        await websocket.close()


def build_demo(config: DemoConfig) -> ASGIApp:
    """The demo API as an ASGI app, protected by :class:`AuthMiddleware`."""
    responder = Responder(config.realm)
    issuer = config.issuer_obj

    async def index(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "service": "asgi-auth demo",
                "algorithm": issuer.algorithm,
                "issuer": config.issuer,
                "audience": config.audience,
                "routes": {
                    "GET /me": "your principal; send Authorization: Bearer <token>",
                    "GET /.well-known/jwks.json": "public keys (asymmetric keys only)",
                    "WS /ws": "sends your principal, then closes",
                },
                "get a token": "asgi-auth token --sub 1 (same secret or key as this server)",
            }
        )

    async def me(request: Request) -> Response:
        principal = get_principal(request.scope)
        if not principal.is_authenticated:
            return _response(responder.unauthenticated)
        return JSONResponse(principal.to_dict())

    async def jwks(request: Request) -> Response:
        document: dict[str, Any] = issuer.jwks()
        if not document["keys"]:
            return JSONResponse(
                {"error": "not_found", "error_description": "HMAC secrets are never published."},
                status_code=404,
            )
        return JSONResponse(document, headers={"cache-control": "public, max-age=300"})

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/me", me),
            Route("/.well-known/jwks.json", jwks),
            WebSocketRoute("/ws", _PrincipalSocket(responder)),
        ]
    )
    return AuthMiddleware(app, verifier=config.verifier(), realm=config.realm)
