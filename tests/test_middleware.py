"""AuthMiddleware over HTTP (raw ASGI and Starlette), get_principal and the principals."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, Final, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import SimpleUser, requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import (
    ANONYMOUS,
    AnonymousPrincipal,
    AuthContext,
    AuthMiddleware,
    JWTVerifier,
    Key,
    Principal,
    ServiceUnavailable,
    TokenIssuer,
    get_principal,
)
from asgi_auth.credentials import BearerExtractor
from asgi_auth.types import ASGIApp, Message, Receive, Scope, Send

CHALLENGE_INVALID_TOKEN: Final = 'Bearer realm="api", error="invalid_token"'
CHALLENGE_INVALID_REQUEST: Final = 'Bearer realm="api", error="invalid_request"'
AUTHN_LOGGER: Final = "asgi_auth.authn"


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
    """A well-formed token signed with a key the verifier does not hold."""
    return TokenIssuer(Key.generate("HS256")).issue("mallory", claims={"scope": "read"})


@pytest.fixture
def expired_token(key: Key) -> str:
    two_hours_ago = time.time() - 7200
    return TokenIssuer(key, clock=lambda: two_hours_ago).issue("alice")


async def echo_principal(scope: Scope, receive: Receive, send: Send) -> None:
    """A framework-free app: answers the principal it finds on the scope, as JSON."""
    principal = get_principal(scope)
    context = scope["auth"]
    assert isinstance(context, AuthContext)
    body = json.dumps(
        {
            "principal": principal.to_dict(),
            "is_authenticated": principal.is_authenticated,
            "auth_scopes": list(context.scopes),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def me(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse(
        {
            "is_authenticated": user.is_authenticated,
            "display_name": user.display_name,
            "subject": get_principal(request.scope).subject,
            "scopes": list(request.auth.scopes),
        }
    )


@requires("read")
async def read_items(request: Request) -> JSONResponse:
    return JSONResponse({"items": ["a", "b"]})


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/me", me), Route("/items", read_items)])


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Recorder:
    """A fake downstream app that records what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Scope, Receive, Send]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope, receive, send))


async def no_receive() -> Message:
    raise AssertionError("receive should not be called")


async def no_send(message: Message) -> None:
    raise AssertionError(f"send should not be called: {message!r}")


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
    }


class DownVerifier:
    """A verifier whose dependency (a JWKS endpoint, say) is unreachable."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def verify(self, token: str) -> Principal:
        self.seen.append(token)
        raise ServiceUnavailable("JWKS endpoint unreachable")


class SyncVerifier:
    """A verifier whose verify is not a coroutine function."""

    def __init__(self, key: Key) -> None:
        self.inner = JWTVerifier(key)

    def verify(self, token: str) -> Principal:
        return self.inner.verify_sync(token)


# --- valid tokens --------------------------------------------------------------------


async def test_valid_token_puts_the_principal_on_the_scope(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("alice", claims={"scope": "read write", "roles": ["admin"]})
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        response = await c.get("/", headers=bearer(token))
    assert response.status_code == 200
    data = response.json()
    assert data["is_authenticated"] is True
    assert data["principal"]["subject"] == "alice"
    assert data["principal"]["scopes"] == ["read", "write"]
    assert data["principal"]["roles"] == ["admin"]
    assert data["auth_scopes"] == ["read", "write", "authenticated"]


async def test_starlette_sees_the_user_and_the_auth_context(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("u-42", claims={"scope": "read", "name": "Alice Liddell"})
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        response = await c.get("/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "is_authenticated": True,
        "display_name": "Alice Liddell",
        "subject": "u-42",
        "scopes": ["read", "authenticated"],
    }


async def test_display_name_prefers_preferred_username_and_falls_back_to_subject(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    named = issuer.issue("u-1", claims={"preferred_username": "alice", "name": "Alice L."})
    bare = issuer.issue("u-2")
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        first = await c.get("/me", headers=bearer(named))
        second = await c.get("/me", headers=bearer(bare))
    assert first.json()["display_name"] == "alice"
    assert second.json()["display_name"] == "u-2"


async def test_middleware_installed_through_starlette_middleware_list(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    app = Starlette(
        routes=[Route("/me", me)],
        middleware=[Middleware(AuthMiddleware, verifier=verifier, realm="api")],
    )
    async with client(app) as c:
        ok = await c.get("/me", headers=bearer(issuer.issue("bob")))
        bad = await c.get("/me", headers=bearer("a.b.c"))
    assert ok.status_code == 200
    assert ok.json()["subject"] == "bob"
    assert bad.status_code == 401


# --- anonymous -----------------------------------------------------------------------


async def test_no_header_is_anonymous_not_refused(verifier: JWTVerifier) -> None:
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        response = await c.get("/me")
    assert response.status_code == 200
    assert response.json() == {
        "is_authenticated": False,
        "display_name": "",
        "subject": None,
        "scopes": [],
    }
    assert "www-authenticate" not in response.headers


async def test_other_scheme_is_anonymous(verifier: JWTVerifier) -> None:
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        response = await c.get("/", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 200
    assert response.json()["is_authenticated"] is False


# --- bad tokens ----------------------------------------------------------------------


async def test_bad_token_is_refused_with_an_invalid_token_challenge(
    verifier: JWTVerifier, foreign_token: str
) -> None:
    app = Recorder()
    async with client(AuthMiddleware(app, verifier=verifier)) as c:
        response = await c.get("/", headers=bearer(foreign_token))
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [CHALLENGE_INVALID_TOKEN]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == "invalid_token"
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    assert app.calls == []


async def test_expired_token_is_refused_as_invalid_token(
    verifier: JWTVerifier, expired_token: str
) -> None:
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        response = await c.get("/", headers=bearer(expired_token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE_INVALID_TOKEN
    assert response.json()["error"] == "invalid_token"


def _alg_none_token(issuer: TokenIssuer) -> str:
    _header, payload, _signature = issuer.issue("alice").split(".")
    none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # {"alg":"none","typ":"JWT"}
    return f"{none_header}.{payload}."


def _tampered_token(issuer: TokenIssuer) -> str:
    header, payload, signature = issuer.issue("alice").split(".")
    return f"{header}.{payload}.{signature[:-4]}AAAA"


async def test_error_description_is_generic_and_hides_the_precise_reason(
    issuer: TokenIssuer,
    verifier: JWTVerifier,
    foreign_token: str,
    expired_token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=AUTHN_LOGGER)
    tokens = {
        "wrong key": foreign_token,
        "expired": expired_token,
        "tampered": _tampered_token(issuer),
        "garbage": "not-a-jwt",
        "alg none": _alg_none_token(issuer) + "c2ln",
    }
    descriptions: dict[str, str] = {}
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        for name, token in tokens.items():
            caplog.clear()
            response = await c.get("/", headers=bearer(token))
            assert response.status_code == 401, name
            descriptions[name] = response.json()["error_description"]
            reasons = [
                str(arg)
                for r in caplog.records
                if r.name == AUTHN_LOGGER
                for arg in (r.args if isinstance(r.args, tuple) else ())
            ]
            assert reasons, f"{name}: no reason was logged"
            for reason in reasons:
                assert reason not in response.text, name
    # One message for every failure: a client cannot tell an expired token from a
    # forged one by the body.
    assert len(set(descriptions.values())) == 1, descriptions
    description = descriptions["wrong key"].lower()
    for leak in ("signature", "segment", "algorithm", "none", "kid", "base64", "'exp'", "nbf"):
        assert leak not in description


async def test_malformed_header_is_a_bad_request(verifier: JWTVerifier) -> None:
    app = Recorder()
    async with client(AuthMiddleware(app, verifier=verifier)) as c:
        response = await c.get("/", headers={"Authorization": "Bearer a b"})
    assert response.status_code == 400
    assert response.headers.get_list("www-authenticate") == [CHALLENGE_INVALID_REQUEST]
    assert response.json()["error"] == "invalid_request"
    assert app.calls == []


async def test_two_authorization_headers_are_a_bad_request(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("alice")
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        response = await c.get("/", headers=headers)
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == CHALLENGE_INVALID_REQUEST


async def test_custom_realm_appears_in_the_challenge(
    verifier: JWTVerifier, foreign_token: str
) -> None:
    app = AuthMiddleware(echo_principal, verifier=verifier, realm="billing service")
    async with client(app) as c:
        bad_token = await c.get("/", headers=bearer(foreign_token))
        malformed = await c.get("/", headers={"Authorization": "Bearer"})
    assert bad_token.headers["www-authenticate"] == (
        'Bearer realm="billing service", error="invalid_token"'
    )
    assert malformed.headers["www-authenticate"] == (
        'Bearer realm="billing service", error="invalid_request"'
    )


@pytest.mark.parametrize("realm", ['a"b', "a\\b", "", "caf\u00e9", "a\r\nb", "tab\there"])
def test_realm_that_cannot_be_quoted_is_refused_at_construction(
    realm: str, verifier: JWTVerifier
) -> None:
    with pytest.raises(ValueError, match="realm"):
        AuthMiddleware(echo_principal, verifier=verifier, realm=realm)


async def test_anonymous_on_invalid_turns_a_bad_token_into_anonymous(
    verifier: JWTVerifier, foreign_token: str, expired_token: str
) -> None:
    app = AuthMiddleware(echo_principal, verifier=verifier, anonymous_on_invalid=True)
    async with client(app) as c:
        forged = await c.get("/", headers=bearer(foreign_token))
        expired = await c.get("/", headers=bearer(expired_token))
    for response in (forged, expired):
        assert response.status_code == 200
        assert response.json()["is_authenticated"] is False
        assert response.json()["principal"]["subject"] is None


async def test_anonymous_on_invalid_still_refuses_a_malformed_header(
    verifier: JWTVerifier,
) -> None:
    app = AuthMiddleware(echo_principal, verifier=verifier, anonymous_on_invalid=True)
    async with client(app) as c:
        response = await c.get("/", headers={"Authorization": "Bearer a,b"})
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == CHALLENGE_INVALID_REQUEST


# --- ASGI contract -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lifespan", "custom.extension"])
async def test_non_http_scopes_pass_through_untouched(kind: str, verifier: JWTVerifier) -> None:
    app = Recorder()
    scope: Scope = {"type": kind, "asgi": {"version": "3.0"}}
    before = dict(scope)
    await AuthMiddleware(app, verifier=verifier)(scope, no_receive, no_send)
    assert len(app.calls) == 1
    seen_scope, seen_receive, seen_send = app.calls[0]
    assert seen_scope is scope
    assert seen_receive is no_receive
    assert seen_send is no_send
    assert scope == before


async def test_the_callers_scope_is_not_mutated(issuer: TokenIssuer, verifier: JWTVerifier) -> None:
    app = Recorder()
    token = issuer.issue("alice", claims={"scope": "read"})
    scope = http_scope([(b"authorization", f"Bearer {token}".encode())])
    before = dict(scope)
    await AuthMiddleware(app, verifier=verifier)(scope, no_receive, no_send)
    assert "user" not in scope
    assert "auth" not in scope
    assert scope == before
    seen = app.calls[0][0]
    assert seen is not scope
    added = ("user", "auth", "asgi_auth.authorizer")
    assert {k: v for k, v in seen.items() if k not in added} == before


async def test_the_app_sees_user_and_auth_on_its_scope(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    app = Recorder()
    token = issuer.issue("alice", claims={"scope": "read", "permissions": ["items:write"]})
    scope = http_scope([(b"authorization", f"Bearer {token}".encode())])
    await AuthMiddleware(app, verifier=verifier)(scope, no_receive, no_send)
    seen = app.calls[0][0]
    user = seen["user"]
    assert isinstance(user, Principal)
    assert user.subject == "alice"
    auth = seen["auth"]
    assert isinstance(auth, AuthContext)
    assert auth.principal is user
    assert auth.scopes == ["items:write", "read", "authenticated"]


async def test_anonymous_request_still_gets_user_and_auth(verifier: JWTVerifier) -> None:
    app = Recorder()
    scope = http_scope([])
    await AuthMiddleware(app, verifier=verifier)(scope, no_receive, no_send)
    seen = app.calls[0][0]
    assert seen["user"] is ANONYMOUS
    assert isinstance(seen["auth"], AuthContext)
    assert seen["auth"].scopes == []
    assert "user" not in scope


# --- Starlette's @requires -----------------------------------------------------------


async def test_starlette_requires_is_satisfied_by_a_scope(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        response = await c.get(
            "/items", headers=bearer(issuer.issue("a", claims={"scope": "read"}))
        )
    assert response.status_code == 200
    assert response.json() == {"items": ["a", "b"]}


async def test_starlette_requires_refuses_a_token_without_the_scope(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("a", claims={"scope": "write readonly"})
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        response = await c.get("/items", headers=bearer(token))
    assert response.status_code == 403


async def test_starlette_requires_refuses_anonymous_with_403(verifier: JWTVerifier) -> None:
    # Starlette's @requires answers 403 whether or not the caller is authenticated.
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        response = await c.get("/items")
    assert response.status_code == 403


async def test_a_permission_claim_satisfies_starlette_requires(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    token = issuer.issue("a", claims={"permissions": ["read", "items:delete"]})
    async with client(AuthMiddleware(starlette_app(), verifier=verifier)) as c:
        items = await c.get("/items", headers=bearer(token))
        me_response = await c.get("/me", headers=bearer(token))
    assert items.status_code == 200
    assert me_response.json()["scopes"] == ["items:delete", "read", "authenticated"]


def test_auth_context_lists_scopes_and_permissions() -> None:
    principal = Principal(
        "alice",
        scopes=frozenset({"read", "write"}),
        roles=frozenset({"admin"}),
        permissions=frozenset({"items:delete", "read"}),
    )
    context = AuthContext(principal)
    assert context.scopes == ["items:delete", "read", "write", "authenticated"]
    assert context.principal is principal
    assert AuthContext(ANONYMOUS).scopes == []


# --- verifiers -----------------------------------------------------------------------


async def test_unreachable_dependency_fails_closed_with_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=AUTHN_LOGGER)
    app = Recorder()
    down = DownVerifier()
    async with client(AuthMiddleware(app, verifier=down)) as c:
        response = await c.get("/", headers=bearer("some.token.value"))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "JWKS" not in response.text
    assert app.calls == []
    assert down.seen == ["some.token.value"]
    errors = [r for r in caplog.records if r.name == AUTHN_LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "JWKS endpoint unreachable" in errors[0].getMessage()


async def test_unreachable_dependency_does_not_affect_anonymous_requests() -> None:
    app = AuthMiddleware(echo_principal, verifier=DownVerifier())
    async with client(app) as c:
        response = await c.get("/")
    assert response.status_code == 200
    assert response.json()["is_authenticated"] is False


@pytest.mark.parametrize(
    "verifier", [object(), "verify", None, 42], ids=["object", "str", "none", "int"]
)
def test_verifier_without_verify_is_refused_at_construction(verifier: Any) -> None:
    with pytest.raises(TypeError, match="verify"):
        AuthMiddleware(echo_principal, verifier=verifier)


def test_verifier_with_a_synchronous_verify_is_refused_at_construction(key: Key) -> None:
    # The documented contract (AuthMiddleware "Raises: TypeError: verifier has no async
    # verify"): a plain `def verify` must be refused up front; otherwise every request
    # with a token awaits a Principal and crashes with a 500.
    sync_verifier: Any = SyncVerifier(key)
    with pytest.raises(TypeError, match="verify"):
        AuthMiddleware(echo_principal, verifier=sync_verifier)


# --- logging -------------------------------------------------------------------------


def _log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in records)


async def test_precise_reason_is_logged_and_the_token_never_is(
    issuer: TokenIssuer,
    verifier: JWTVerifier,
    foreign_token: str,
    expired_token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    valid = issuer.issue("alice", claims={"scope": "read"})
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        await c.get("/ok", headers=bearer(valid))
        await c.get("/forged", headers=bearer(foreign_token))
        await c.get("/expired", headers=bearer(expired_token))
    records = [r for r in caplog.records if r.name == AUTHN_LOGGER]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert "signature" in records[0].getMessage()
    assert "expired" in records[1].getMessage()
    assert [getattr(r, "path", None) for r in records] == ["/forged", "/expired"]
    everything = _log_text(caplog.records)
    for token in (valid, foreign_token, expired_token):
        for part in token.split("."):
            assert part not in everything


async def test_malformed_credentials_are_logged_without_the_credential(
    verifier: JWTVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-value"
    async with client(AuthMiddleware(echo_principal, verifier=verifier)) as c:
        response = await c.get("/", headers={"Authorization": f"Bearer {secret},{secret}"})
    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == AUTHN_LOGGER]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert "malformed" in records[0].getMessage()
    assert secret not in _log_text(caplog.records)


# --- get_principal -------------------------------------------------------------------


def test_get_principal_returns_the_principal_on_the_scope() -> None:
    principal = Principal("alice")
    assert get_principal({"user": principal}) is principal
    assert get_principal({"user": ANONYMOUS}) is ANONYMOUS


@pytest.mark.parametrize(
    "scope",
    [{}, {"type": "http"}, {"user": None}, {"user": SimpleUser("alice")}, {"user": "alice"}],
    ids=["empty", "no-user", "none", "starlette-user", "string"],
)
def test_get_principal_without_the_middleware_raises(scope: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="AuthMiddleware"):
        get_principal(scope)


# --- principals ----------------------------------------------------------------------


def test_principal_is_immutable() -> None:
    principal = Principal("alice", scopes=frozenset({"read"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.subject = "mallory"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.scopes = frozenset({"admin"})  # type: ignore[misc]
    assert principal.subject == "alice"
    assert principal.scopes == frozenset({"read"})


def test_principal_claims_are_read_only_and_copied() -> None:
    claims: dict[str, Any] = {"sub": "alice", "email": "alice@example.com"}
    principal = Principal("alice", claims=claims)
    writable = cast(dict[str, Any], principal.claims)
    with pytest.raises(TypeError):
        writable["email"] = "mallory@example.com"
    with pytest.raises(TypeError):
        del writable["email"]
    claims["email"] = "changed@example.com"
    assert principal.claims["email"] == "alice@example.com"


def test_principal_equality_and_hash_use_subject_and_sets_not_claims() -> None:
    def make(
        subject: str = "alice", scopes: frozenset[str] = frozenset({"read"}), **claims: Any
    ) -> Principal:
        return Principal(subject, claims=claims, scopes=scopes, roles=frozenset({"admin"}))

    a = make(jti="one")
    b = make(jti="two")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != make(subject="bob")
    assert a != make(scopes=frozenset({"read", "write"}))
    assert a != Principal("alice", scopes=frozenset({"read"}))  # roles differ
    anonymous: object = ANONYMOUS
    assert a != anonymous
    assert {a: 1}[b] == 1


def test_principal_repr_does_not_contain_claim_values() -> None:
    principal = Principal(
        "alice",
        claims={"email": "alice@example.com", "ssn": "078-05-1120"},
        scopes=frozenset({"read"}),
    )
    text = repr(principal)
    assert "alice" in text
    assert "read" in text
    assert "alice@example.com" not in text
    assert "078-05-1120" not in text
    assert "alice@example.com" not in str(principal)


@pytest.mark.parametrize("subject", ["", None, 7])
def test_principal_needs_a_non_empty_string_subject(subject: Any) -> None:
    with pytest.raises(TypeError, match="subject"):
        Principal(subject)


def test_anonymous_principal_is_not_authenticated() -> None:
    assert ANONYMOUS.is_authenticated is False
    assert ANONYMOUS.display_name == ""
    assert ANONYMOUS.subject is None
    assert AnonymousPrincipal() == ANONYMOUS
    assert ANONYMOUS.to_dict()["subject"] is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANONYMOUS.scopes = frozenset({"admin"})  # type: ignore[misc]


def _recording(seen: list[str]) -> ASGIApp:
    """An app that notes each caller's identity ("" when anonymous) and answers 200."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_principal(scope).identity)
        await JSONResponse({})(scope, receive, send)

    return app


async def test_a_verifier_set_after_construction_is_the_one_used(
    key: Key, issuer: TokenIssuer
) -> None:
    # A local JWTVerifier is called without a coroutine; replacing the verifier must
    # replace that shortcut too.
    seen: list[str] = []
    middleware = AuthMiddleware(_recording(seen), verifier=JWTVerifier(key))
    other = Key.generate("HS256")
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ours = {"Authorization": f"Bearer {issuer.issue('alice')}"}
        theirs = {"Authorization": f"Bearer {TokenIssuer(other).issue('bob')}"}
        assert (await client.get("/", headers=ours)).status_code == 200
        middleware.verifier = JWTVerifier(other)
        assert (await client.get("/", headers=ours)).status_code == 401
        assert (await client.get("/", headers=theirs)).status_code == 200
    assert seen == ["alice", "bob"]


async def test_an_extractor_set_after_construction_is_the_one_used(
    key: Key, issuer: TokenIssuer
) -> None:
    # A header-only extractor lets the middleware look cached tokens up before parsing;
    # an extractor that reads a cookie too must turn that shortcut off.
    seen: list[str] = []
    verifier = JWTVerifier(key)
    token = issuer.issue("alice")
    verifier.verify_sync(token)  # cached
    middleware = AuthMiddleware(_recording(seen), verifier=verifier)
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        cookie = {"Cookie": f"token={token}"}
        assert (await client.get("/", headers=cookie)).status_code == 200
        middleware.extractor = BearerExtractor(cookie="token")
        assert (await client.get("/", headers=cookie)).status_code == 200
    assert seen == ["", "alice"]
    with pytest.raises(AttributeError, match="immutable"):
        middleware.extractor.cookie = None
    assert middleware.extractor.cookie == "token"
