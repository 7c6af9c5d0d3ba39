"""Defences added after review: immutability, issuer-aware identity, deep-frozen claims,
thread safety of the cache, cookie origin checks, and refusals at configuration time."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import (
    AuthMiddleware,
    InvalidCredentials,
    JWTVerifier,
    Key,
    PermissionDenied,
    Principal,
    TokenIssuer,
)
from asgi_auth.credentials import BearerExtractor
from asgi_auth.errors import AuthError, InvalidToken
from asgi_auth.types import Message, Receive, Scope, Send

KEY = Key.from_secret("hardening-tests-secret-of-at-least-32-bytes")
ISSUER = TokenIssuer(KEY)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_verifier_configuration_cannot_be_changed_after_construction() -> None:
    verifier = JWTVerifier(KEY)
    with pytest.raises(AttributeError, match="immutable"):
        verifier.keys = JWTVerifier(Key.generate("HS256")).keys  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        verifier.audiences = frozenset({"other"})  # type: ignore[misc]


def test_clear_cache_forgets_parsed_headers_too() -> None:
    verifier = JWTVerifier(KEY)
    verifier.verify_sync(ISSUER.issue(1))
    assert verifier._headers
    verifier.clear_cache()
    assert not verifier._headers
    assert not verifier._cache


def test_forged_headers_never_enter_the_header_cache() -> None:
    verifier = JWTVerifier(KEY)
    forger = TokenIssuer(Key.from_secret("another-secret-which-is-32-bytes-long!!"))
    for n in range(100):
        header = _b64(json.dumps({"alg": "HS256", "n": n}).encode())
        body = forger.issue(1).split(".", 1)[1]
        with pytest.raises(InvalidToken):
            verifier.verify_sync(f"{header}.{body}")
    assert verifier._headers == {}


def test_same_subject_from_two_issuers_is_two_principals() -> None:
    a = JWTVerifier(KEY, issuer="https://a").verify_sync(
        TokenIssuer(KEY, issuer="https://a").issue(1)
    )
    b = JWTVerifier(KEY, issuer="https://b").verify_sync(
        TokenIssuer(KEY, issuer="https://b").issue(1)
    )
    assert a.subject == b.subject == "1"
    assert a != b
    assert len({a, b}) == 2
    assert a.issuer == "https://a"


def test_nested_claims_of_a_cached_principal_cannot_be_mutated() -> None:
    verifier = JWTVerifier(KEY)
    token = ISSUER.issue(1, claims={"realm_access": {"roles": ["user"]}, "groups": ["g1"]})
    principal = verifier.verify_sync(token)
    with pytest.raises(TypeError):
        principal.claims["realm_access"]["roles"] = ["admin"]
    with pytest.raises(AttributeError):
        principal.claims["groups"].append("wheel")
    exported = principal.to_dict()
    exported["claims"]["groups"].append("wheel")  # a thawed copy, not the cached one
    again = verifier.verify_sync(token)
    assert again is principal
    assert again.claims["groups"] == ("g1",)
    assert json.loads(json.dumps(again.to_dict()))["claims"]["realm_access"] == {"roles": ["user"]}


def test_cache_survives_many_threads_racing_on_a_tiny_cache() -> None:
    verifier = JWTVerifier(KEY, cache_size=4)
    tokens = [ISSUER.issue(n) for n in range(16)]
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(300):
                for token in tokens:
                    verifier.verify_sync(token)
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(verifier._cache) <= 4


def test_non_finite_numbers_anywhere_in_the_payload_are_refused() -> None:
    header = _b64(b'{"alg":"HS256"}')
    payload = _b64(b'{"sub":"1","exp":9999999999,"score":1e400}')
    import hashlib
    import hmac

    mac = hmac.new(KEY.verify_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="not JSON"):
        JWTVerifier(KEY).verify_sync(f"{header}.{payload}.{_b64(mac)}")


def _starlette(handler: Callable[[Request], Any]) -> httpx.AsyncClient:
    app = AuthMiddleware(Starlette(routes=[Route("/", handler)]), verifier=JWTVerifier(KEY))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_starlette_requires_authenticated_admits_any_authenticated_caller() -> None:
    @requires("authenticated")
    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async with _starlette(home) as client:
        signed_in = await client.get("/", headers={"Authorization": f"Bearer {ISSUER.issue(1)}"})
        anonymous = await client.get("/")
    assert signed_in.status_code == 200
    assert anonymous.status_code == 403  # Starlette's own answer for anonymous callers


class _Refusing:
    def __init__(self, error: AuthError) -> None:
        self.error = error

    async def verify(self, token: str) -> Principal:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (PermissionDenied("no"), 403, "insufficient_scope"),
        (InvalidCredentials("no"), 401, "invalid_token"),
    ],
)
async def test_other_refusals_of_a_custom_verifier_keep_their_status(
    error: AuthError, status: int, code: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not run")

    middleware = AuthMiddleware(app, verifier=_Refusing(error))
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/", headers={"Authorization": "Bearer abc"})
    assert answer.status_code == status
    assert f'error="{code}"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("lifetime", [0.5, 0.999])
def test_lifetimes_under_a_second_are_refused(lifetime: float) -> None:
    with pytest.raises(ValueError, match="between 1"):
        TokenIssuer(KEY, lifetime=lifetime)


def test_a_pem_text_is_refused_as_an_hmac_secret() -> None:
    pem = Key.generate("ES256").public_pem()
    with pytest.raises(ValueError, match="HMAC secret"):
        Key.from_secret(pem)


def test_a_kid_for_a_jwk_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Key.generate("ES256").public_jwk()))
    assert Key.from_file(path).kid
    with pytest.raises(ValueError, match="its own kid"):
        Key.from_file(path, kid="mine")


def _scope(headers: list[tuple[bytes, bytes]], kind: str = "http", query: bytes = b"") -> Scope:
    return {"type": kind, "headers": headers, "query_string": query}


def test_cookie_counts_only_for_the_sites_own_or_trusted_origins() -> None:
    token = ISSUER.issue(1)
    extractor = BearerExtractor(cookie="at", trusted_origins=["https://app.example.com"])
    cookie = (b"cookie", f"at={token}".encode())
    host = (b"host", b"api.example.com")
    assert extractor.extract(_scope([cookie, host])) == token
    same = (b"origin", b"https://api.example.com")
    assert extractor.extract(_scope([cookie, host, same])) == token
    trusted = (b"origin", b"https://app.example.com")
    assert extractor.extract(_scope([cookie, host, trusted], "websocket")) == token
    hostile = (b"origin", b"https://evil.example")
    assert extractor.extract(_scope([cookie, host, hostile], "websocket")) is None
    assert extractor.extract(_scope([cookie, host, (b"origin", b"null")])) is None


def test_a_one_sided_quote_is_not_stripped_from_a_cookie() -> None:
    extractor = BearerExtractor(cookie="at")
    assert extractor.extract(_scope([(b"cookie", b'at="abc"')])) == "abc"
    assert extractor.extract(_scope([(b"cookie", b'at="abc')])) is None


async def test_the_app_never_sees_a_token_sent_in_the_query() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["query"] = scope["query_string"]
        seen["user"] = scope["user"]

    token = ISSUER.issue(1)
    middleware = AuthMiddleware(app, verifier=JWTVerifier(KEY), query_param="access_token")
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    query = f"room=1&access_token={token}&x=%20y".encode()
    await middleware(_scope([], "websocket", query), receive, send)
    assert seen["user"].subject == "1"
    assert seen["query"] == b"room=1&x=%20y"
    assert sent == []
