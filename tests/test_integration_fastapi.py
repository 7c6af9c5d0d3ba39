"""The FastAPI integration: Authorize dependencies, their refusals and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Annotated, Any, Final

import httpx
import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from fastapi.security import HTTPBearer, OAuth2PasswordBearer
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from asgi_auth import (
    AuthMiddleware,
    JWTVerifier,
    Key,
    Principal,
    StoreUnavailable,
    TokenIssuer,
)
from asgi_auth.authz import (
    Authorizer,
    Guard,
    Policy,
    Rights,
    authenticated,
    by_method,
    has_claim,
    has_role,
    has_scope,
)
from asgi_auth.integrations.fastapi import BEARER, Authorize, current_principal
from asgi_auth.types import ASGIApp, Message, Receive, Scope, Send
from tests.live import serve

CHALLENGE: Final = 'Bearer realm="api"'
INSUFFICIENT: Final = 'Bearer realm="api", error="insufficient_scope"'
TIMEOUT: Final = 5.0


# --- fixtures, loaders and the app ---------------------------------------------------


class FakeRights:
    """A rights loader over a dict; records every subject it is asked about."""

    def __init__(self, rights: Mapping[str, Rights]) -> None:
        self.rights = dict(rights)
        self.calls: list[str] = []

    async def load(self, subject: str) -> Rights:
        self.calls.append(subject)
        return self.rights.get(subject, Rights(known=False))


class DownRights:
    """A rights loader whose store is down."""

    async def load(self, subject: str) -> Rights:
        raise StoreUnavailable(f"cannot load {subject}: connection refused")


@pytest.fixture
def key() -> Key:
    return Key.generate("HS256")


@pytest.fixture
def issuer(key: Key) -> TokenIssuer:
    return TokenIssuer(key)


@pytest.fixture
def verifier(key: Key) -> JWTVerifier:
    return JWTVerifier(key)


@pytest.fixture
def rights() -> FakeRights:
    return FakeRights(
        {
            "alice": Rights(roles=frozenset({"admin"}), claims=frozenset({"can_read", "b"})),
            "bob": Rights(claims=frozenset({"a"})),
        }
    )


OAUTH: Final = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)


def create_app(
    verifier: JWTVerifier, *, loader: Any = None, ran: list[str] | None = None
) -> FastAPI:
    """The app under test; WebSocket handlers that run append the subject to ``ran``."""
    app = FastAPI()
    authorizer = Authorizer(loader) if loader is not None else None
    app.add_middleware(AuthMiddleware, verifier=verifier, authorizer=authorizer)
    seen = ran if ran is not None else []

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
        return {"subject": principal.subject, "scopes": sorted(principal.scopes)}

    @app.get("/read")
    async def read(
        principal: Annotated[Principal, Depends(Authorize(has_claim("can_read")))],
    ) -> dict[str, str]:
        return {"reader": principal.display_name}

    @app.get("/scoped", dependencies=[Security(Authorize(has_scope("items:read")))])
    async def scoped() -> dict[str, bool]:
        return {"scoped": True}

    @app.get("/declared", dependencies=[Security(Authorize(authenticated), scopes=["items:write"])])
    async def declared() -> dict[str, bool]:
        return {"declared": True}

    @app.get("/both")
    async def both(
        first: Annotated[Principal, Depends(Authorize(has_claim("a")))],
        second: Annotated[Principal, Depends(Authorize(has_claim("b")))],
    ) -> dict[str, bool]:
        return {"same": first is second}

    items = Authorize(by_method(GET=authenticated, DELETE=has_role("admin")))

    @app.get("/items/{item_id}", dependencies=[Depends(items)])
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.delete("/items/{item_id}", dependencies=[Depends(items)])
    async def delete_item(item_id: int) -> dict[str, int]:
        return {"deleted": item_id}

    @app.get("/oauth")
    async def oauth(
        principal: Annotated[Principal, Depends(Authorize(authenticated, scheme=OAUTH))],
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"public": "yes"}

    @app.websocket("/ws")
    async def chat(
        websocket: WebSocket,
        principal: Annotated[Principal, Depends(Authorize(has_scope("chat")))],
    ) -> None:
        seen.append(principal.subject)
        await websocket.accept()
        await websocket.send_json({"subject": principal.subject})
        await websocket.close()

    return app


async def call(
    app: ASGIApp, path: str, token: str | None = None, method: str = "GET"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://testserver"
    ) as client:
        return await client.request(method, path, headers=headers)


# --- HTTP: statuses, challenges, bodies ----------------------------------------------


async def test_anonymous_caller_is_401_with_a_bare_challenge(verifier: JWTVerifier) -> None:
    response = await call(create_app(verifier), "/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"detail": "This resource needs a bearer token."}
    # FastAPI wrote its own body: the length is its body's, not the denial's.
    assert int(response.headers["content-length"]) == len(response.content)


async def test_the_dependency_hands_the_principal_to_the_handler(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    token = issuer.issue("carol", claims={"scope": "x y", "name": "Carol"})
    me = await call(create_app(verifier), "/me", token)
    assert me.status_code == 200
    assert me.json() == {"subject": "carol", "scopes": ["x", "y"]}


async def test_a_claim_from_the_store_admits_the_caller(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    response = await call(create_app(verifier, loader=rights), "/read", issuer.issue("alice"))
    assert response.status_code == 200
    assert response.json() == {"reader": "alice"}
    assert rights.calls == ["alice"]


async def test_a_caller_without_the_claim_is_403_insufficient_scope(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    response = await call(create_app(verifier, loader=rights), "/read", issuer.issue("bob"))
    assert response.status_code == 403
    # A claim is not an OAuth scope: no scope attribute.
    assert response.headers["www-authenticate"] == INSUFFICIENT
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"detail": "The access token does not grant this request."}


async def test_a_missing_scope_is_named_in_the_challenge(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    app = create_app(verifier)
    refused = await call(app, "/scoped", issuer.issue("dave", claims={"scope": "other"}))
    admitted = await call(app, "/scoped", issuer.issue("dave", claims={"scope": "items:read"}))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == f'{INSUFFICIENT}, scope="items:read"'
    assert admitted.status_code == 200
    assert admitted.json() == {"scoped": True}


async def test_scopes_declared_with_security_are_enforced(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    app = create_app(verifier)
    refused = await call(app, "/declared", issuer.issue("erin"))
    admitted = await call(app, "/declared", issuer.issue("erin", claims={"scope": "items:write"}))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == f'{INSUFFICIENT}, scope="items:write"'
    assert admitted.status_code == 200


async def test_a_store_that_is_down_is_503_without_a_challenge(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    response = await call(create_app(verifier, loader=DownRights()), "/read", issuer.issue("bob"))
    assert response.status_code == 503
    assert "www-authenticate" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "detail": "Authorization is temporarily unavailable; try again later."
    }


async def test_two_dependencies_share_one_store_query(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    response = await call(create_app(verifier, loader=rights), "/both", issuer.issue("alice"))
    assert response.status_code == 403  # alice holds "b" but not "a"
    response = await call(create_app(verifier, loader=rights), "/both", issuer.issue("bob"))
    assert response.status_code == 403  # bob holds "a" but not "b"
    assert rights.calls == ["alice", "bob"]  # one query per request, not per dependency


async def test_by_method_lets_anyone_read_and_only_admins_delete(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    app = create_app(verifier, loader=rights)
    bob, alice = issuer.issue("bob"), issuer.issue("alice")
    assert (await call(app, "/items/7", bob)).json() == {"item": 7}
    refused = await call(app, "/items/7", bob, method="DELETE")
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == INSUFFICIENT
    admitted = await call(app, "/items/7", alice, method="DELETE")
    assert admitted.status_code == 200
    assert admitted.json() == {"deleted": 7}
    anonymous = await call(app, "/items/7", method="DELETE")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == CHALLENGE


async def test_a_role_in_the_token_is_enough_without_a_store(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    token = issuer.issue("frank", claims={"roles": ["admin"]})
    response = await call(create_app(verifier), "/items/1", token, method="DELETE")
    assert response.status_code == 200


async def test_an_authorizer_given_to_the_dependency_wins(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    app = FastAPI()
    app.add_middleware(AuthMiddleware, verifier=verifier)  # token only

    own = Authorize(has_claim("can_read"), authorizer=Authorizer(rights))

    @app.get("/own", dependencies=[Depends(own)])
    async def own_route() -> str:
        return "ok"

    assert (await call(app, "/own", issuer.issue("alice"))).status_code == 200
    assert (await call(app, "/own", issuer.issue("bob"))).status_code == 403


@pytest.mark.parametrize(
    ("subject", "scope", "loader"),
    [
        (None, "", "fake"),
        ("bob", "", "fake"),
        ("bob", "items:read", "fake"),
        ("alice", "items:read", "fake"),
        ("bob", "items:read", "down"),
    ],
)
async def test_statuses_and_challenges_are_the_asgi_guards(
    verifier: JWTVerifier,
    issuer: TokenIssuer,
    rights: FakeRights,
    subject: str | None,
    scope: str,
    loader: str,
) -> None:
    policy: Policy = has_scope("items:read") & has_claim("can_read")
    authorizer = Authorizer(rights if loader == "fake" else DownRights())

    app = FastAPI()
    app.add_middleware(AuthMiddleware, verifier=verifier, authorizer=authorizer)

    @app.get("/r", dependencies=[Depends(Authorize(policy))])
    async def endpoint() -> str:
        return "ok"

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse('"ok"')(scope, receive, send)

    guarded = AuthMiddleware(
        Starlette(routes=[Route("/r", Guard(ok, policy))]), verifier=verifier, authorizer=authorizer
    )
    token = issuer.issue(subject, claims={"scope": scope}) if subject else None
    ours, theirs = await call(app, "/r", token), await call(guarded, "/r", token)
    assert ours.status_code == theirs.status_code
    for header in ("www-authenticate", "cache-control"):
        assert ours.headers.get(header) == theirs.headers.get(header)
    if theirs.status_code != 200:
        assert ours.json()["detail"] == theirs.json()["error_description"]


async def test_without_the_middleware_the_dependency_fails_loudly(
    issuer: TokenIssuer,
) -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> str:
        return principal.subject

    with pytest.raises(RuntimeError, match="AuthMiddleware"):
        await call(app, "/me", issuer.issue("alice"))


def test_configuration_is_checked() -> None:
    with pytest.raises(TypeError, match="policy"):
        Authorize("can_read")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Authorizer"):
        Authorize(authenticated, authorizer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scheme"):
        Authorize(authenticated, scheme=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="auto_error"):
        Authorize(authenticated, scheme=HTTPBearer())
    assert repr(Authorize(has_role("admin"))) == "Authorize(has_role('admin'))"


# --- the OpenAPI document -------------------------------------------------------------


def test_openapi_declares_the_bearer_scheme_on_every_guarded_operation(
    verifier: JWTVerifier,
) -> None:
    document = create_app(verifier).openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": BEARER.model.description,
    }
    paths = document["paths"]
    assert paths["/me"]["get"]["security"] == [{"bearer": []}]
    assert paths["/read"]["get"]["security"] == [{"bearer": []}]
    assert paths["/items/{item_id}"]["get"]["security"] == [{"bearer": []}]
    assert paths["/items/{item_id}"]["delete"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/public"]["get"]


def test_openapi_lists_the_scopes_a_policy_requires(verifier: JWTVerifier) -> None:
    paths = create_app(verifier).openapi()["paths"]
    assert paths["/scoped"]["get"]["security"] == [{"bearer": ["items:read"]}]
    assert paths["/declared"]["get"]["security"] == [{"bearer": ["items:write"]}]

    app = FastAPI()
    combined = Authorize(has_scope("a") & has_scope("b") & has_claim("c"))
    either = Authorize(has_scope("a") | has_scope("b"))

    @app.get("/combined", dependencies=[Depends(combined)])
    async def combined_route() -> None: ...

    @app.get("/either", dependencies=[Depends(either)])
    async def either_route() -> None: ...

    paths = app.openapi()["paths"]
    assert paths["/combined"]["get"]["security"] == [{"bearer": ["a", "b"]}]
    # Neither scope alone is required: none is listed.
    assert paths["/either"]["get"]["security"] == [{"bearer": []}]


def test_openapi_declares_an_oauth2_password_flow_when_given_one(verifier: JWTVerifier) -> None:
    document = create_app(verifier).openapi()
    flow = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert flow["type"] == "oauth2"
    assert flow["flows"]["password"]["tokenUrl"] == "/token"
    assert document["paths"]["/oauth"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]


async def test_an_oauth2_scheme_guards_like_the_default(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    app = create_app(verifier)
    assert (await call(app, "/oauth", issuer.issue("gina"))).json() == {"subject": "gina"}
    refused = await call(app, "/oauth")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == CHALLENGE


# --- WebSocket ------------------------------------------------------------------------


def ws_url(base: str, path: str = "/ws") -> str:
    return "ws" + base.removeprefix("http") + path


def bearer(token: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {token}"} if token else None


async def receive_json(url: str, token: str) -> Any:
    async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=bearer(token)) as ws:
        return json.loads(await ws.recv())


async def refused(url: str, token: str | None = None) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=bearer(token)):
            pass
    return info.value


def without_extensions(app: ASGIApp) -> ASGIApp:
    """A server without the ``websocket.http.response`` extension."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        await app({k: v for k, v in scope.items() if k != "extensions"}, receive, send)

    return wrapper


async def test_websocket_refusals_are_the_http_answers_before_accept(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    ran: list[str] = []
    with serve(create_app(verifier, ran=ran)) as base:
        anonymous = await refused(ws_url(base))
        lacking = await refused(ws_url(base), issuer.issue("hank"))
        admitted = await receive_json(ws_url(base), issuer.issue("ivy", claims={"scope": "chat"}))
    assert anonymous.response.status_code == 401
    assert anonymous.response.headers["WWW-Authenticate"] == CHALLENGE
    assert lacking.response.status_code == 403
    assert lacking.response.headers["WWW-Authenticate"] == f'{INSUFFICIENT}, scope="chat"'
    assert json.loads(bytes(lacking.response.body)) == {
        "detail": "The access token does not grant this request."
    }
    assert admitted == {"subject": "ivy"}
    assert ran == ["ivy"]  # the refused handshakes never reached the endpoint


async def test_websocket_without_the_extension_is_closed_before_accept(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    ran: list[str] = []
    with serve(without_extensions(create_app(verifier, ran=ran))) as base:
        anonymous = await refused(ws_url(base))
        lacking = await refused(ws_url(base), issuer.issue("hank"))
        admitted = await receive_json(ws_url(base), issuer.issue("ivy", claims={"scope": "chat"}))
    # A pre-accept websocket.close: uvicorn answers the handshake with a bare 403.
    assert anonymous.response.status_code == 403
    assert lacking.response.status_code == 403
    assert "WWW-Authenticate" not in anonymous.response.headers
    assert admitted == {"subject": "ivy"}
    assert ran == ["ivy"]


@pytest.mark.parametrize(("subject", "code"), [(None, 1008), ("ivy", 1013)])
async def test_websocket_close_codes_without_the_extension(
    verifier: JWTVerifier, issuer: TokenIssuer, subject: str | None, code: int
) -> None:
    """Anonymous: 1008 (policy violation); the store down: 1013 (try again later)."""
    ran: list[str] = []
    app = FastAPI()
    app.add_middleware(AuthMiddleware, verifier=verifier, authorizer=Authorizer(DownRights()))

    @app.websocket("/ws")
    async def socket(
        websocket: WebSocket,
        principal: Annotated[Principal, Depends(Authorize(has_claim("chat")))],
    ) -> None:
        ran.append(principal.subject)
        await websocket.accept()

    headers = [(b"authorization", f"Bearer {issuer.issue(subject)}".encode())] if subject else []
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == code
    assert ran == []


def test_current_principal_is_the_authenticated_policy() -> None:
    assert current_principal.policy == authenticated
    assert current_principal.authorizer is None
    assert current_principal.scheme is BEARER
