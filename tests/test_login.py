"""The token endpoint (RFC 6749 §4.3 password grant) against real stores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import httpx
import pytest

from asgi_auth import AuthMiddleware, JWTVerifier, Key, Principal, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.authn.login import MAX_BODY, StoreAuthenticator, TokenEndpoint
from asgi_auth.store import Store, StoreAdmin

KEY = Key.from_secret("login-tests-secret-that-is-32-bytes-long")
HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_user("alice", password_hash=await HASHER.hash(PASSWORD))
        await admin.create_user("off", password_hash=await HASHER.hash(PASSWORD), is_active=False)
        await admin.create_user("nohash")
        endpoint = TokenEndpoint(TokenIssuer(KEY), StoreAuthenticator(store, HASHER))
        transport = httpx.ASGITransport(app=endpoint)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as http:
            yield http, store


async def test_the_password_grant_issues_a_bearer_token(
    client: tuple[httpx.AsyncClient, Store],
) -> None:
    http, _ = client
    for send in (
        {"data": {"grant_type": "password", "username": "alice", "password": PASSWORD}},
        {"json": {"grant_type": "password", "username": "alice", "password": PASSWORD}},
    ):
        answer = await http.post("/token", **send)  # type: ignore[arg-type]
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["pragma"] == "no-cache"
        body = answer.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
        principal = JWTVerifier(KEY).verify_sync(body["access_token"])
        assert principal.subject == "1"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong"), ("nobody", PASSWORD), ("off", PASSWORD), ("nohash", ""), ("nohash", "x")],
)
async def test_every_refusal_is_the_same_invalid_grant(
    client: tuple[httpx.AsyncClient, Store], username: str, password: str
) -> None:
    http, _ = client
    form = {"grant_type": "password", "username": username, "password": password}
    answer = await http.post("/token", data=form)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "The credentials or the refresh token are not valid.",
    }
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("content", "content_type", "error"),
    [
        (
            b"grant_type=client_credentials",
            "application/x-www-form-urlencoded",
            "unsupported_grant_type",
        ),
        (b"username=alice&password=x", "application/x-www-form-urlencoded", "invalid_request"),
        (b"grant_type=password&password=x", "application/x-www-form-urlencoded", "invalid_request"),
        (
            b"grant_type=password&username=alice",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
        (
            b"grant_type=password&username=a&username=b&password=x",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
        (b"grant_type=password&username=alice&password=x", "text/plain", "invalid_request"),
        (b"grant_type=password&username=alice&password=x", "", "invalid_request"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", "invalid_request"),
        (b"{not json", "application/json", "invalid_request"),
        (b"[1, 2]", "application/json", "invalid_request"),
        (b"[" * 50_00, "application/json", "invalid_request"),
        (
            b'{"grant_type": "password", "username": "alice", "password": 5}',
            "application/json",
            "invalid_request",
        ),
        (
            b'{"grant_type": "password", "username": "al\\u0000ice", "password": "x"}',
            "application/json",
            "invalid_request",
        ),
        (
            b"grant_type=password&username=alice&password=" + b"x" * (MAX_BODY + 1),
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
        (
            b"grant_type=password&username=alice&password=" + b"x" * 1_000_000,
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
    ],
)
async def test_malformed_requests_are_invalid_request_errors(
    client: tuple[httpx.AsyncClient, Store], content: bytes, content_type: str, error: str
) -> None:
    http, _ = client
    headers = {"content-type": content_type} if content_type else {}
    answer = await http.post("/token", content=content, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == error


async def test_only_post_is_allowed(client: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = client
    answer = await http.get("/token")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


async def test_sql_metacharacters_in_usernames_are_just_wrong_usernames(
    client: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = client
    for username in ("alice' --", "' OR '1'='1", "alice\\", "%", "\u202ealice"):
        form = {"grant_type": "password", "username": username, "password": PASSWORD}
        assert (await http.post("/token", data=form)).json()["error"] == "invalid_grant"
    assert (await StoreAdmin(store).rights("alice")).username == "alice"


async def test_legacy_hashes_log_in_and_are_upgraded_to_argon2id(
    client: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = client
    admin = StoreAdmin(store)
    legacy = bcrypt.hashpw(b"old secret", bcrypt.gensalt(rounds=4)).decode()
    digest = hashlib.pbkdf2_hmac("sha256", b"django secret", b"salt", 1000)
    django = f"pbkdf2_sha256$1000$salt${base64.b64encode(digest).decode()}"
    await admin.create_user("bob", password_hash=legacy)
    await admin.create_user("carl", password_hash=django)
    for username, password in (("bob", "old secret"), ("carl", "django secret")):
        form = {"grant_type": "password", "username": username, "password": password}
        assert (await http.post("/token", data=form)).status_code == 200
        found = await admin.credentials(username)
        assert found is not None
        assert (found[1] or "").startswith("$argon2id$")
        assert (await http.post("/token", data=form)).status_code == 200  # still works


async def test_a_store_that_is_down_is_503_not_invalid_grant(
    client: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = client
    await store.disconnect()
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    answer = await http.post("/token", data=form)
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
    await store.connect()


async def test_no_password_or_token_reaches_the_logs(
    client: tuple[httpx.AsyncClient, Store], caplog: pytest.LogCaptureFixture
) -> None:
    http, _ = client
    caplog.set_level(logging.DEBUG)
    ok = await http.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    await http.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": "hunter2"}
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "login succeeded" in text
    assert "login failed" in text
    for secret in (PASSWORD, "hunter2", ok.json()["access_token"]):
        assert secret not in text


async def test_fastapi_oauth2_password_bearer_works_against_the_endpoint(
    client: tuple[httpx.AsyncClient, Store],
) -> None:
    from fastapi import Depends, FastAPI
    from fastapi.security import OAuth2PasswordBearer
    from starlette.routing import Route

    from asgi_auth.authz import authenticated
    from asgi_auth.integrations.fastapi import Authorize

    _, store = client
    scheme = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)
    app = FastAPI()
    app.add_middleware(AuthMiddleware, verifier=JWTVerifier(KEY))
    endpoint = TokenEndpoint(TokenIssuer(KEY), StoreAuthenticator(store, HASHER))
    app.router.routes.append(Route("/token", endpoint))  # an ASGI app as the route

    @app.get("/me")
    async def me(
        principal: Principal = Depends(Authorize(authenticated, scheme=scheme)),  # noqa: B008
    ) -> dict[str, Any]:
        return {"sub": principal.subject}

    flows = app.openapi()["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/token"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        # What the docs' Authorize dialog posts: a form with grant_type=password.
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        token = (await api.post("/token", data=form)).json()["access_token"]
        me_answer = await api.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert me_answer.json() == {"sub": "1"}
        assert (await api.get("/me")).status_code == 401


async def test_many_concurrent_logins_of_one_user_all_succeed(
    client: tuple[httpx.AsyncClient, Store],
) -> None:
    http, store = client
    legacy = bcrypt.hashpw(b"old secret", bcrypt.gensalt(rounds=4)).decode()
    await StoreAdmin(store).create_user("dora", password_hash=legacy)
    forms = [
        {"grant_type": "password", "username": name, "password": password}
        for name, password in [("alice", PASSWORD), ("dora", "old secret")] * 6
    ]
    answers = await asyncio.gather(*(http.post("/token", data=form) for form in forms))
    assert [a.status_code for a in answers] == [200] * len(forms)
    found = await StoreAdmin(store).credentials("dora")
    assert found is not None
    assert (found[1] or "").startswith("$argon2id$")
