"""The Litestar integration: guard_for() guards behind AuthMiddleware."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final, cast

import httpx
import pytest
from litestar import Litestar, Request, Router, WebSocket, delete, get, websocket
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.types import Guard
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from asgi_auth import (
    AuthContext,
    AuthMiddleware,
    JWTVerifier,
    Key,
    Principal,
    StoreUnavailable,
    TokenIssuer,
)
from asgi_auth.authz import (
    Authorizer,
    Policy,
    Rights,
    authenticated,
    has_claim,
    has_role,
    has_scope,
)
from asgi_auth.authz.guards import Guard as AsgiGuard
from asgi_auth.integrations.litestar import PolicyGuard, guard_for
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
            "alice": Rights(roles=frozenset({"admin"}), claims=frozenset({"can_read"})),
            "bob": Rights(claims=frozenset({"other"})),
        }
    )


UserRequest = Request[Principal, AuthContext, State]


@get("/me", guards=[guard_for(authenticated)])
async def me(request: UserRequest) -> dict[str, Any]:
    return {
        "subject": request.user.subject,
        "is_principal": isinstance(request.user, Principal),
        "auth_scopes": list(request.auth.scopes),
    }


@get("/read", guards=[guard_for(has_claim("can_read"))])
async def read(request: UserRequest) -> dict[str, str]:
    return {"reader": request.user.subject}


@get("/scoped", guards=[guard_for(has_scope("items:read"))])
async def scoped() -> dict[str, bool]:
    return {"scoped": True}


# No path parameter: Litestar 2.25 deprecates the plain `item_id: int` style, and the
# FromPath[int] it asks for does not exist in older 2.x releases.
@delete("/items", guards=[guard_for(has_role("admin"))], status_code=200)
async def delete_item() -> dict[str, bool]:
    return {"deleted": True}


@get("/public")
async def public() -> dict[str, str]:
    return {"public": "yes"}


def litestar(
    handlers: list[Any] | None = None, *, guards: list[Guard] | None = None, **config: Any
) -> Litestar:
    # logging_config=None: Litestar's default would configure the root logger for the
    # whole test session.
    return Litestar(
        route_handlers=handlers or [me, read, scoped, delete_item, public],
        guards=guards,
        logging_config=None,
        **config,
    )


def protect(app: Litestar, verifier: JWTVerifier, *, loader: Any = None) -> AuthMiddleware:
    # A typing gap only: AuthMiddleware types its app with MutableMapping scopes, and
    # Litestar's __call__ takes its TypedDict scopes, which mypy will not accept in
    # their place. At run time both are the same ASGI dict.
    authorizer = Authorizer(loader) if loader is not None else None
    return AuthMiddleware(cast("ASGIApp", app), verifier=verifier, authorizer=authorizer)


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
    response = await call(protect(litestar(), verifier), "/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"status_code": 401, "detail": "This resource needs a bearer token."}
    assert int(response.headers["content-length"]) == len(response.content)


async def test_litestar_sees_our_principal_as_its_user(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    token = issuer.issue("carol", claims={"scope": "x"})
    response = await call(protect(litestar(), verifier), "/me", token)
    assert response.status_code == 200
    assert response.json() == {
        "subject": "carol",
        "is_principal": True,
        "auth_scopes": ["x", "authenticated"],
    }


async def test_a_claim_from_the_store_admits_the_caller(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    app = protect(litestar(), verifier, loader=rights)
    response = await call(app, "/read", issuer.issue("alice"))
    assert response.status_code == 200
    assert response.json() == {"reader": "alice"}
    assert rights.calls == ["alice"]


async def test_a_caller_without_the_claim_is_403_insufficient_scope(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    app = protect(litestar(), verifier, loader=rights)
    response = await call(app, "/read", issuer.issue("bob"))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == INSUFFICIENT
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status_code": 403,
        "detail": "The access token does not grant this request.",
    }


async def test_a_missing_scope_is_named_in_the_challenge(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    app = protect(litestar(), verifier)
    refused = await call(app, "/scoped", issuer.issue("dave", claims={"scope": "other"}))
    admitted = await call(app, "/scoped", issuer.issue("dave", claims={"scope": "items:read"}))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == f'{INSUFFICIENT}, scope="items:read"'
    assert admitted.status_code == 200


async def test_a_store_that_is_down_is_503_without_a_challenge(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    app = protect(litestar(), verifier, loader=DownRights())
    response = await call(app, "/read", issuer.issue("bob"))
    assert response.status_code == 503
    assert "www-authenticate" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["detail"] == (
        "Authorization is temporarily unavailable; try again later."
    )


async def test_only_an_admin_may_delete(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    app = protect(litestar(), verifier, loader=rights)
    refused = await call(app, "/items", issuer.issue("bob"), method="DELETE")
    admitted = await call(app, "/items", issuer.issue("alice"), method="DELETE")
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == INSUFFICIENT
    assert admitted.status_code == 200
    assert admitted.json() == {"deleted": True}


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
    store = rights if loader == "fake" else DownRights()

    @get("/r", guards=[guard_for(policy)])
    async def endpoint() -> str:
        return "ok"

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    ours = protect(litestar([endpoint]), verifier, loader=store)
    theirs = AuthMiddleware(AsgiGuard(ok, policy), verifier=verifier, authorizer=Authorizer(store))
    token = issuer.issue(subject, claims={"scope": scope}) if subject else None
    mine, guard = await call(ours, "/r", token), await call(theirs, "/r", token)
    assert mine.status_code == guard.status_code
    for header in ("www-authenticate", "cache-control"):
        assert mine.headers.get(header) == guard.headers.get(header)
    if guard.status_code != 200:
        assert mine.json()["detail"] == guard.json()["error_description"]


# --- guards at every layer ------------------------------------------------------------


async def test_an_app_level_guard_covers_every_route_and_route_guards_add_to_it(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    @get("/health")
    async def health() -> str:
        return "up"

    @get("/admin", guards=[guard_for(has_role("admin"))])
    async def admin() -> str:
        return "welcome"

    app = protect(
        litestar([health, admin], guards=[guard_for(authenticated)]), verifier, loader=rights
    )
    anonymous_health = await call(app, "/health")
    bob_health = await call(app, "/health", issuer.issue("bob"))
    bob_admin = await call(app, "/admin", issuer.issue("bob"))
    alice_admin = await call(app, "/admin", issuer.issue("alice"))
    anonymous_admin = await call(app, "/admin")
    # The app-level guard alone protects a route that has none of its own.
    assert anonymous_health.status_code == 401
    assert anonymous_health.headers["www-authenticate"] == CHALLENGE
    assert bob_health.status_code == 200
    # The route's guard adds its own requirement.
    assert bob_admin.status_code == 403
    assert bob_admin.headers["www-authenticate"] == INSUFFICIENT
    assert alice_admin.status_code == 200
    assert alice_admin.text == "welcome"
    assert anonymous_admin.status_code == 401
    # Anonymous callers never reach the store; bob once per request that needed it.
    assert rights.calls == ["bob", "alice"]


async def test_a_router_level_guard_covers_only_its_routes(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    @get("/report")
    async def report() -> str:
        return "numbers"

    reports = Router("/reports", route_handlers=[report], guards=[guard_for(has_scope("rep"))])
    app = protect(litestar([reports, public]), verifier)
    assert (await call(app, "/public")).status_code == 200
    refused = await call(app, "/reports/report", issuer.issue("bob"))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == f'{INSUFFICIENT}, scope="rep"'
    admitted = await call(app, "/reports/report", issuer.issue("bob", claims={"scope": "rep"}))
    assert admitted.text == "numbers"


async def test_the_middleware_also_works_as_litestar_middleware(
    verifier: JWTVerifier, issuer: TokenIssuer
) -> None:
    # Same typing gap as in protect(): Litestar's middleware type wants TypedDict scopes.
    auth = DefineMiddleware(cast("Any", AuthMiddleware), verifier=verifier)
    app = litestar(middleware=[auth])
    anonymous = await call(cast("ASGIApp", app), "/me")
    admitted = await call(cast("ASGIApp", app), "/me", issuer.issue("erin"))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == CHALLENGE
    assert admitted.json()["subject"] == "erin"


async def test_without_the_middleware_a_guarded_route_fails_closed(
    issuer: TokenIssuer,
) -> None:
    response = await call(cast("ASGIApp", litestar()), "/me", issuer.issue("alice"))
    # The guard's RuntimeError becomes Litestar's 500: never a 200, never a 401.
    assert response.status_code == 500
    assert "www-authenticate" not in response.headers


def test_configuration_is_checked() -> None:
    with pytest.raises(TypeError, match="policy"):
        guard_for("admin")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Authorizer"):
        guard_for(authenticated, authorizer=object())  # type: ignore[arg-type]
    made = guard_for(has_role("admin"))
    assert isinstance(made, PolicyGuard)
    assert made.policy == has_role("admin")
    assert repr(made) == "guard_for(has_role('admin'))"


# --- WebSocket ------------------------------------------------------------------------


def ws_app(ran: list[str]) -> Litestar:
    @websocket("/ws", guards=[guard_for(has_claim("chat"))])
    async def chat(socket: WebSocket[Principal, AuthContext, State]) -> None:
        ran.append(socket.user.subject)
        await socket.accept()
        await socket.send_json({"subject": socket.user.subject})
        await socket.close()

    return litestar([chat])


@pytest.mark.parametrize(
    ("subject", "loader", "code"),
    [(None, None, 1008), ("bob", "fake", 1008), ("bob", "down", 1013)],
)
async def test_websocket_refusals_close_before_accept(
    verifier: JWTVerifier,
    issuer: TokenIssuer,
    rights: FakeRights,
    subject: str | None,
    loader: str | None,
    code: int,
) -> None:
    ran: list[str] = []
    store = {"fake": rights, "down": DownRights(), None: None}[loader]
    app = protect(ws_app(ran), verifier, loader=store)
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


async def test_websocket_handshakes_on_a_real_server(
    verifier: JWTVerifier, issuer: TokenIssuer, rights: FakeRights
) -> None:
    rights.rights["ivy"] = Rights(claims=frozenset({"chat"}))
    ran: list[str] = []
    url = ""

    async def refused(token: str | None) -> InvalidStatus:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        with pytest.raises(InvalidStatus) as info:
            async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=headers):
                pass
        return info.value

    with serve(protect(ws_app(ran), verifier, loader=rights)) as base:
        url = "ws" + base.removeprefix("http") + "/ws"
        anonymous = await refused(None)
        lacking = await refused(issuer.issue("bob"))
        good = {"Authorization": f"Bearer {issuer.issue('ivy')}"}
        async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=good) as ws:
            admitted = json.loads(await ws.recv())
    # A pre-accept websocket.close: uvicorn answers the handshake with a bare 403.
    assert anonymous.response.status_code == 403
    assert lacking.response.status_code == 403
    assert admitted == {"subject": "ivy"}
    assert ran == ["ivy"]
