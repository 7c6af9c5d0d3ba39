"""WebSocket handshakes and hostile HTTP input against AuthMiddleware on a real uvicorn."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import random
from typing import Any, Final
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from asgi_auth import (
    AuthMiddleware,
    JWTVerifier,
    Key,
    Principal,
    ServiceUnavailable,
    TokenIssuer,
    get_principal,
)
from asgi_auth.types import ASGIApp, Message, Receive, Scope, Send
from tests.live import serve

CHALLENGE_INVALID_TOKEN: Final = 'Bearer realm="api", error="invalid_token"'
CHALLENGE_INVALID_REQUEST: Final = 'Bearer realm="api", error="invalid_request"'
TIMEOUT: Final = 5.0

HAS_WSPROTO: Final = importlib.util.find_spec("wsproto") is not None
# uvicorn's WebSocket implementations that offer the websocket.http.response extension.
# wsproto is optional (not installed in every environment): without it its runs are
# skipped, visibly, rather than dropped.
WS_IMPLEMENTATIONS: Final = [
    "websockets-sansio",
    pytest.param(
        "wsproto",
        marks=pytest.mark.skipif(not HAS_WSPROTO, reason="wsproto is not installed"),
    ),
]


# --- fixtures and apps ---------------------------------------------------------------


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
def foreign_token() -> str:
    return TokenIssuer(Key.generate("HS256")).issue("mallory")


async def principal_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    principal = get_principal(websocket.scope)
    await websocket.send_json(
        {
            "subject": principal.subject,
            "is_authenticated": principal.is_authenticated,
            "scopes": sorted(principal.scopes),
        }
    )
    await websocket.close()


def ws_app() -> Starlette:
    return Starlette(routes=[WebSocketRoute("/ws", principal_socket)])


def without_extensions(app: ASGIApp) -> ASGIApp:
    """Hide the server's ASGI extensions from ``app`` (a server without
    ``websocket.http.response``)."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        await app({k: v for k, v in scope.items() if k != "extensions"}, receive, send)

    return wrapper


def ws_url(base: str, path: str = "/ws") -> str:
    return "ws" + base.removeprefix("http") + path


async def receive_json(url: str, headers: dict[str, str] | None = None) -> Any:
    async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=headers) as ws:
        message = await ws.recv()
    return json.loads(message)


async def refused(url: str, headers: dict[str, str] | None = None) -> InvalidStatus:
    """Open a handshake that must be refused; return the refusal."""
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=headers) as ws:
            await ws.recv()
    return info.value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- real handshakes -----------------------------------------------------------------


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_valid_header_token_reaches_the_socket(
    ws: str, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("alice", claims={"scope": "chat:read"})
    with serve(AuthMiddleware(ws_app(), verifier=verifier), ws=ws) as base:
        data = await receive_json(ws_url(base), bearer(token))
    assert data == {"subject": "alice", "is_authenticated": True, "scopes": ["chat:read"]}


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_no_token_lets_the_app_decide(ws: str, verifier: JWTVerifier) -> None:
    with serve(AuthMiddleware(ws_app(), verifier=verifier), ws=ws) as base:
        data = await receive_json(ws_url(base))
    assert data == {"subject": None, "is_authenticated": False, "scopes": []}


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_bad_token_refuses_the_handshake_with_401(
    ws: str, verifier: JWTVerifier, foreign_token: str
) -> None:
    with serve(AuthMiddleware(ws_app(), verifier=verifier), ws=ws) as base:
        refusal = await refused(ws_url(base), bearer(foreign_token))
    assert refusal.response.status_code == 401
    assert refusal.response.headers["WWW-Authenticate"] == CHALLENGE_INVALID_TOKEN
    assert json.loads(bytes(refusal.response.body))["error"] == "invalid_token"


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_malformed_header_refuses_the_handshake_with_400(
    ws: str, verifier: JWTVerifier
) -> None:
    with serve(AuthMiddleware(ws_app(), verifier=verifier), ws=ws) as base:
        refusal = await refused(ws_url(base), {"Authorization": "Bearer a,b"})
    assert refusal.response.status_code == 400
    assert refusal.response.headers["WWW-Authenticate"] == CHALLENGE_INVALID_REQUEST


async def test_without_the_extension_a_bad_token_is_refused_with_403(
    issuer: TokenIssuer, verifier: JWTVerifier, foreign_token: str
) -> None:
    app = without_extensions(AuthMiddleware(ws_app(), verifier=verifier))
    with serve(app) as base:
        # The wrapper itself does not break handshakes: a valid token still gets in.
        data = await receive_json(ws_url(base), bearer(issuer.issue("alice")))
        refusal = await refused(ws_url(base), bearer(foreign_token))
    assert data["subject"] == "alice"
    # Pre-accept websocket.close: uvicorn answers the handshake with 403.
    assert refusal.response.status_code == 403
    assert "WWW-Authenticate" not in refusal.response.headers


async def test_query_parameter_token_on_a_real_handshake(
    issuer: TokenIssuer, verifier: JWTVerifier, foreign_token: str
) -> None:
    token = issuer.issue("alice", claims={"scope": "chat"})
    app = AuthMiddleware(ws_app(), verifier=verifier, query_param="access_token")
    with serve(app) as base:
        data = await receive_json(ws_url(base, f"/ws?access_token={quote(token)}"))
        bad = await refused(ws_url(base, f"/ws?access_token={foreign_token}"))
        both = await refused(ws_url(base, f"/ws?access_token={token}"), bearer(token))
        twice = await refused(ws_url(base, f"/ws?access_token={token}&access_token={token}"))
    assert data == {"subject": "alice", "is_authenticated": True, "scopes": ["chat"]}
    assert bad.response.status_code == 401
    assert bad.response.headers["WWW-Authenticate"] == CHALLENGE_INVALID_TOKEN
    assert both.response.status_code == 400
    assert twice.response.status_code == 400


async def test_query_parameter_is_ignored_unless_enabled(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("alice")
    with serve(AuthMiddleware(ws_app(), verifier=verifier)) as base:
        data = await receive_json(ws_url(base, f"/ws?access_token={token}"))
    assert data["is_authenticated"] is False


# --- the denial on a raw websocket scope ---------------------------------------------


class FakeConnection:
    """receive/send for a WebSocket handshake that was never accepted."""

    def __init__(self, first: Message | None = None) -> None:
        self.first: Message = first or {"type": "websocket.connect"}
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        if self.received > 1:
            raise AssertionError("receive called after the handshake message")
        return self.first

    async def send(self, message: Message) -> None:
        self.sent.append(message)


class NeverCalled:
    def __init__(self) -> None:
        self.called = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True


class DownVerifier:
    async def verify(self, token: str) -> Principal:
        raise ServiceUnavailable("introspection endpoint unreachable")


def ws_scope(authorization: bytes, *, extension: bool) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"authorization", authorization)],
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
    }
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


@pytest.mark.parametrize(
    ("authorization", "down", "code"),
    [
        (b"Bearer not.a.token", False, 1008),
        (b"Bearer a b", False, 1008),
        (b"Bearer some.token.here", True, 1013),
    ],
    ids=["invalid-token", "malformed", "unavailable"],
)
async def test_without_the_extension_the_denial_is_one_close(
    authorization: bytes, down: bool, code: int, verifier: JWTVerifier
) -> None:
    app = NeverCalled()
    conn = FakeConnection()
    middleware = AuthMiddleware(app, verifier=DownVerifier() if down else verifier)
    await middleware(ws_scope(authorization, extension=False), conn.receive, conn.send)
    assert len(conn.sent) == 1
    assert conn.sent[0]["type"] == "websocket.close"
    assert conn.sent[0]["code"] == code
    assert conn.received == 1
    assert app.called is False


@pytest.mark.parametrize(
    ("authorization", "down", "status", "error"),
    [
        (b"Bearer not.a.token", False, 401, "invalid_token"),
        (b"Bearer a b", False, 400, "invalid_request"),
        (b"Bearer some.token.here", True, 503, "temporarily_unavailable"),
    ],
    ids=["invalid-token", "malformed", "unavailable"],
)
async def test_with_the_extension_the_denial_is_an_http_response(
    authorization: bytes, down: bool, status: int, error: str, verifier: JWTVerifier
) -> None:
    app = NeverCalled()
    conn = FakeConnection()
    middleware = AuthMiddleware(app, verifier=DownVerifier() if down else verifier)
    await middleware(ws_scope(authorization, extension=True), conn.receive, conn.send)
    assert [m["type"] for m in conn.sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    start, body = conn.sent
    assert start["status"] == status
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    if status != 503:
        assert headers[b"www-authenticate"] == f'Bearer realm="api", error="{error}"'.encode()
    assert json.loads(body["body"])["error"] == error
    assert app.called is False


async def test_a_client_gone_before_connect_gets_nothing(verifier: JWTVerifier) -> None:
    app = NeverCalled()
    conn = FakeConnection({"type": "websocket.disconnect", "code": 1006})
    middleware = AuthMiddleware(app, verifier=verifier)
    await middleware(ws_scope(b"Bearer x.y.z", extension=True), conn.receive, conn.send)
    assert conn.sent == []
    assert app.called is False


# --- hostile input over real HTTP ----------------------------------------------------


async def require_authentication(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that serves only authenticated callers: 200 with the subject, else 401."""
    principal = get_principal(scope)
    status = 200 if principal.is_authenticated else 401
    body = json.dumps({"subject": principal.subject}).encode()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def raw_get(port: int, header_lines: list[bytes]) -> tuple[int, bytes]:
    """Send one GET with these raw header lines; return the status and the whole answer."""
    request = (
        b"GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(line + b"\r\n" for line in header_lines)
        + b"Connection: close\r\n\r\n"
    )
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            # The server may answer and close before reading all of a huge request.
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            data = await reader.read(1 << 20)
            while chunk := await reader.read(1 << 20):
                data += chunk
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), data[:200]
    return int(status_line.split()[1]), data


def header_values(response: bytes, name: bytes) -> list[bytes]:
    """The values of header ``name`` in a raw HTTP/1.1 response."""
    head = response.split(b"\r\n\r\n", 1)[0]
    found = []
    for line in head.split(b"\r\n")[1:]:
        field, _, value = line.partition(b":")
        if field.strip().lower() == name:
            found.append(value.strip())
    return found


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hostile_values(issuer: TokenIssuer) -> list[bytes]:
    valid = issuer.issue("alice", claims={"scope": "admin"}).encode()
    header, payload, signature = valid.split(b".")
    none_alg = b64url(b'{"alg":"none","typ":"JWT"}')
    fixed = [
        b"Bearer " + none_alg + b"." + payload + b".",
        b"Bearer " + none_alg + b"." + payload + b"." + signature,
        b"Bearer " + b64url(b'{"alg":"NONE"}') + b"." + payload + b".",
        b"Bearer " + b64url(b'{"alg":"HS256","crit":["exp"]}') + b"." + payload + b"." + signature,
        b"Bearer " + b64url(b'{"alg":"RS256"}') + b"." + payload + b"." + signature,
        b"Bearer " + b64url(b'{"alg":"HS256","kid":"../../etc/passwd"}') + b"." + payload + b".",
        b"Bearer " + b64url(b"[" * 5000) + b"." + payload + b"." + signature,
        b"Bearer " + header + b"." + b64url(b'{"sub":"root","exp":1e999}') + b"." + signature,
        b"Bearer " + header + b"." + payload + b"." + signature[:-2] + b"AA",
        b"Bearer " + header + b"." + payload,
        b"Bearer " + header + b".." + signature,
        b"Bearer " + valid + b"." + signature,
        b"Bearer " + valid + b"=",
        b"Bearer " + valid.upper(),
        b"Bearer " + b"A" * 20_000,
        b"Bearer " + b"A" * 100_000,
        b"Bearer " + b"A.B." * 25_000,
        b"Bearer " + header + b"." + b"A" * 100_000 + b"." + signature,
        b"Bearer",
        b"Bearer ",
        b"Bearer  ",
        b"Bearer a b",
        b"Bearer " + valid + b" " + valid,
        b"Bearer " + valid + b"," + valid,
        b'Bearer "' + valid + b'"',
        b"Bearer \xff\xfe",
        b"Bearer caf\xc3\xa9",
        b"bearer \x7f",
        b"Bearer ===",
        b"Bearer ." * 3,
        b"Bearer ..",
        b"Bearer %2e%2e",
        b"Bearer $(reboot)",
        b"Bearer {{7*7}}",
        b"Bearer ' OR 1=1 --",
        b"Bearer \x00",
        b"Bearer a\x00b",
    ]
    rng = random.Random(6750)  # deterministic: a failure can be replayed
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
    generated: list[bytes] = []
    for _ in range(100):
        # Arbitrary bytes except CR and LF, which would end the header line itself.
        raw = bytes(rng.choice([b for b in range(256) if b not in (10, 13)]) for _ in range(40))
        generated.append(b"Bearer " + raw)
        generated.append(raw)
    for _ in range(100):
        size = rng.randint(1, 300)
        generated.append(b"Bearer " + bytes(rng.choice(alphabet) for _ in range(size)))
    for _ in range(50):
        segments = [
            bytes(rng.choice(alphabet[:64]) for _ in range(rng.randint(0, 60))) for _ in range(3)
        ]
        generated.append(b"Bearer " + b".".join(segments))
    return fixed + generated


async def test_hostile_authorization_headers_never_get_in_nor_crash_the_server(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    app = AuthMiddleware(require_authentication, verifier=verifier)
    values = hostile_values(issuer)
    assert len(values) > 300
    answers: dict[int, int] = {}
    with serve(app) as base:
        port = int(base.rsplit(":", 1)[1])
        for value in values:
            status, data = await raw_get(port, [b"Authorization: " + value])
            assert status in (400, 401, 431), (value[:80], data[:300])
            answers[status] = answers.get(status, 0) + 1
        # Two Authorization headers, through a client that can send duplicates.
        token = issuer.issue("alice")
        duplicates = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
        async with asyncio.timeout(TIMEOUT), httpx.AsyncClient(base_url=base) as client:
            twice = await client.get("/me", headers=duplicates)
            after = await client.get("/me", headers=bearer(issuer.issue("bob")))
        after_raw, after_data = await raw_get(
            port, [b"Authorization: Bearer " + issuer.issue("carol").encode()]
        )
    assert twice.status_code == 400
    assert twice.headers["www-authenticate"] == CHALLENGE_INVALID_REQUEST
    # The server is still healthy and still lets a valid token in.
    assert after.status_code == 200
    assert after.json() == {"subject": "bob"}
    assert after_raw == 200
    assert b'{"subject": "carol"}' in after_data
    # Both the middleware's refusals were exercised, not just one path.
    assert answers.get(400, 0) > 0
    assert answers.get(401, 0) > 0


async def test_hostile_tokens_get_the_middlewares_own_answer(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    """Bearer values the HTTP parser accepts are judged by the middleware (its challenge),
    not merely refused by the app as anonymous."""
    app = AuthMiddleware(require_authentication, verifier=verifier)
    valid = issuer.issue("alice")
    header, payload, signature = valid.split(".")
    none_alg = b64url(b'{"alg":"none"}').decode()
    cases = {
        f"Bearer {none_alg}.{payload}.": CHALLENGE_INVALID_TOKEN,
        f"Bearer {header}.{payload}.{signature[:-2]}AA": CHALLENGE_INVALID_TOKEN,
        "Bearer " + "A" * 20_000: CHALLENGE_INVALID_TOKEN,
        f"Bearer {valid},{valid}": CHALLENGE_INVALID_REQUEST,
        "Bearer": CHALLENGE_INVALID_REQUEST,
    }
    with serve(app) as base:
        port = int(base.rsplit(":", 1)[1])
        results = [await raw_get(port, [b"Authorization: " + value.encode()]) for value in cases]
    for (value, challenge), (status, data) in zip(cases.items(), results, strict=True):
        expected = 401 if challenge == CHALLENGE_INVALID_TOKEN else 400
        assert status == expected, value[:60]
        assert header_values(data, b"www-authenticate") == [challenge.encode()], value[:60]
