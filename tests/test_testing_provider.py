"""asgi_auth.testing: the in-process identity provider, its fault switches, serving over HTTP
and TLS, and the pytest fixtures (loaded through the package's pytest11 entry point)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asgi_auth import (
    ANONYMOUS,
    AuthMiddleware,
    ExpiredToken,
    InvalidToken,
    JWTVerifier,
    Key,
    KeySet,
    Principal,
    UnknownKey,
)
from asgi_auth.authz import guard, has_role
from asgi_auth.testing import (
    DEFAULT_ISSUER,
    IdentityProvider,
    PrincipalOverride,
    TokenMinter,
)
from asgi_auth.tokens.verifier import read_unverified
from asgi_auth.types import Message, Scope

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns (an error here) without it;
    # the brief asks for the TestClient, which works the same on httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FORM = "application/x-www-form-urlencoded"


def verifier_for(
    provider: IdentityProvider, *, algorithms: list[str] | None = None, **options: Any
) -> JWTVerifier:
    """A local verifier built from what the provider publishes, as a relying party would."""
    return JWTVerifier(
        KeySet.from_jwks(provider.jwks(), skip_unusable=True),
        algorithms=algorithms or [provider.key().algorithm],
        issuer=provider.issuer,
        **options,
    )


@pytest.fixture
async def client(identity_provider: IdentityProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with identity_provider.http_client() as http:
        yield http


async def post_token(
    client: httpx.AsyncClient, body: str | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/oauth/token", content=body, headers={"content-type": FORM, **(headers or {})}
    )


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


# -- construction ---------------------------------------------------------------------------


def test_defaults_in_process(identity_provider: IdentityProvider) -> None:
    assert identity_provider.issuer == DEFAULT_ISSUER == "https://idp.test"
    assert identity_provider.base_url == DEFAULT_ISSUER
    assert identity_provider.published_kids == (identity_provider.current_kid,)
    assert identity_provider.key().algorithm == "RS256"
    assert identity_provider.key().can_sign
    assert IdentityProvider.__test__ is False


@pytest.mark.parametrize("issuer", ["idp.test", "ftp://idp.test", "https://", "https://h/?q=1"])
def test_bad_issuers_are_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer"):
        IdentityProvider(issuer)


@pytest.mark.parametrize("algorithm", ["HS256", "none", "RS1"])
def test_hmac_and_unknown_algorithms_are_refused(algorithm: str) -> None:
    with pytest.raises(ValueError, match="public-key algorithms"):
        IdentityProvider(algorithm=algorithm)


def test_two_providers_never_share_kids() -> None:
    first, second = IdentityProvider(algorithm="ES256"), IdentityProvider(algorithm="ES256")
    assert first.current_kid != second.current_kid


# -- discovery ------------------------------------------------------------------------------


async def test_discovery_document(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["issuer"] == "https://idp.test"
    assert document["jwks_uri"] == "https://idp.test/.well-known/jwks.json"
    assert document["userinfo_endpoint"] == "https://idp.test/userinfo"
    assert document["token_endpoint"] == "https://idp.test/oauth/token"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["subject_types_supported"] == ["public"]
    assert document["response_types_supported"]
    assert identity_provider.requests["discovery"] == 1


async def test_an_issuer_with_a_path_serves_under_it() -> None:
    provider = IdentityProvider("https://host.test/realms/demo")
    async with provider.http_client() as client:
        document = (await client.get("/.well-known/openid-configuration")).json()
        assert document["issuer"] == "https://host.test/realms/demo"
        assert document["jwks_uri"] == "https://host.test/realms/demo/.well-known/jwks.json"
        jwks = await client.get(document["jwks_uri"])
        assert jwks.status_code == 200
        assert jwks.json() == provider.jwks()
        root = await client.get("https://host.test/.well-known/openid-configuration")
        assert root.status_code == 404
        sibling = await client.get("https://host.test/realms/demox/.well-known/jwks.json")
        assert sibling.status_code == 404
    assert provider.requests == {"discovery": 1, "jwks": 1}


async def test_an_issuer_with_a_trailing_slash_keeps_it_in_iss_only() -> None:
    provider = IdentityProvider("https://tenant.test/")
    async with provider.http_client() as client:
        document = (await client.get("https://tenant.test/.well-known/openid-configuration")).json()
    assert document["issuer"] == "https://tenant.test/"
    assert document["jwks_uri"] == "https://tenant.test/.well-known/jwks.json"
    assert read_unverified(provider.token())[1]["iss"] == "https://tenant.test/"


async def test_discovery_overrides_replace_add_and_remove(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.discovery_overrides = {
        "issuer": "https://evil.test",
        "jwks_uri": None,
        "x-extra": [1, 2],
    }
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == "https://evil.test"
    assert "jwks_uri" not in document
    assert document["x-extra"] == [1, 2]
    assert document["token_endpoint"] == "https://idp.test/oauth/token"


# -- JWKS -----------------------------------------------------------------------------------


async def test_jwks_publishes_the_public_keys(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    document = response.json()
    assert document == identity_provider.jwks()
    (jwk,) = document["keys"]
    assert jwk["kid"] == identity_provider.current_kid
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"
    assert jwk["kty"] == "RSA"
    assert "d" not in jwk  # never the private half
    assert identity_provider.requests["jwks"] == 1


async def test_jwks_without_alg() -> None:
    provider = IdentityProvider(jwks_alg=False)
    async with provider.http_client() as client:
        (jwk,) = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert "alg" not in jwk
    keys = KeySet.from_jwks(provider.jwks())
    assert keys.algorithms > {"RS256", "PS256"}  # the whole RSA family: name one when verifying
    with pytest.raises(ValueError, match="algorithms"):
        JWTVerifier(keys)
    principal = await verifier_for(provider, algorithms=["RS256"]).verify(provider.token())
    assert principal.subject == "user"


async def test_cache_control_none_sends_no_header(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.cache_control = None
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "cache-control" not in response.headers
    identity_provider.cache_control = "no-store"
    assert (await client.get("/.well-known/jwks.json")).headers["cache-control"] == "no-store"


async def test_jwks_body_serves_exact_bytes(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.jwks_body = b'{"keys": [ \xff not json'
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.content == b'{"keys": [ \xff not json'
    identity_provider.jwks_body = None
    assert (await client.get("/.well-known/jwks.json")).json() == identity_provider.jwks()


async def test_extra_jwks_are_appended(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    encryption = {**Key.generate("ES256", kid="enc").public_jwk(), "use": "enc"}
    junk = {"kty": "nope", "kid": "junk"}
    identity_provider.extra_jwks = [encryption, junk]
    document = (await client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in document["keys"]] == [identity_provider.current_kid, "enc", "junk"]
    keys = KeySet.from_jwks(document, skip_unusable=True)
    assert [k.kid for k in keys] == [identity_provider.current_kid]
    # A duplicate kid is published as such: relying parties must cope with it.
    duplicate = dict(document["keys"][0])
    identity_provider.extra_jwks = [duplicate]
    document = (await client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in document["keys"]] == [identity_provider.current_kid] * 2
    with pytest.raises(ValueError, match="share kid"):
        KeySet.from_jwks(document)


def test_jwks_returns_copies(identity_provider: IdentityProvider) -> None:
    identity_provider.extra_jwks = [{"kty": "oct", "kid": "x"}]
    identity_provider.jwks()["keys"][1]["kid"] = "changed"
    identity_provider.jwks()["keys"].clear()
    assert [k["kid"] for k in identity_provider.jwks()["keys"]][1] == "x"


# -- minting --------------------------------------------------------------------------------


async def test_minted_token_verifies_with_the_published_keys() -> None:
    provider = IdentityProvider(audience="api")
    before = int(time.time())
    token = provider.token("alice", scopes=["items:read", "items:write"], roles=["admin"])
    header, claims = read_unverified(token)
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": provider.current_kid}
    assert claims["iss"] == "https://idp.test"
    assert claims["sub"] == "alice"
    assert claims["aud"] == "api"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 300
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert claims["scope"] == "items:read items:write"
    principal = await verifier_for(provider, audience="api", typ="at+jwt").verify(token)
    assert principal.subject == "alice"
    assert principal.issuer == "https://idp.test"
    assert principal.scopes == {"items:read", "items:write"}
    assert principal.roles == {"admin"}


def test_jti_is_unique(identity_provider: IdentityProvider) -> None:
    ids = {read_unverified(identity_provider.token())[1]["jti"] for _ in range(20)}
    assert len(ids) == 20


def test_audience_default_override_and_none() -> None:
    provider = IdentityProvider(audience=["a", "b"])
    assert read_unverified(provider.token())[1]["aud"] == ["a", "b"]
    assert read_unverified(provider.token(audience="c"))[1]["aud"] == "c"
    assert "aud" not in read_unverified(provider.token(audience=None))[1]
    assert "aud" not in read_unverified(IdentityProvider().token())[1]


def test_strings_for_scopes_roles_and_permissions(identity_provider: IdentityProvider) -> None:
    claims = read_unverified(
        identity_provider.token(scopes="a b", roles="admin", permissions="read:x")
    )[1]
    assert claims["scope"] == "a b"
    assert claims["roles"] == ["admin"]
    assert claims["permissions"] == ["read:x"]
    bare = read_unverified(identity_provider.token())[1]
    assert not {"scope", "roles", "permissions"} & bare.keys()


def test_claims_override_everything_and_headers_merge(
    identity_provider: IdentityProvider,
) -> None:
    token = identity_provider.token(
        claims={"iss": "https://other.test", "sub": 42, "exp": "never", "tenant": {"id": 7}},
        headers={"kid": None, "x5u": "https://evil.test/keys"},
        typ=None,
    )
    header, claims = read_unverified(token)
    assert header == {"alg": "RS256", "x5u": "https://evil.test/keys"}
    assert claims["iss"] == "https://other.test"
    assert claims["sub"] == 42
    assert claims["exp"] == "never"
    assert claims["tenant"] == {"id": 7}


async def test_issuer_and_typ_arguments(identity_provider: IdentityProvider) -> None:
    token = identity_provider.token(issuer="https://other.test", typ="JWT")
    header, claims = read_unverified(token)
    assert claims["iss"] == "https://other.test"
    assert header["typ"] == "JWT"
    with pytest.raises(InvalidToken, match="issuer"):
        await verifier_for(identity_provider).verify(token)
    with pytest.raises(InvalidToken, match="typ"):
        await verifier_for(identity_provider, typ="at+jwt").verify(
            identity_provider.token(typ="JWT")
        )


async def test_expired_and_backdated_tokens(identity_provider: IdentityProvider) -> None:
    verifier = verifier_for(identity_provider)
    with pytest.raises(ExpiredToken):
        await verifier.verify(identity_provider.token(expires_in=-10))
    old = identity_provider.token(issued_at=time.time() - 3600, expires_in=60)
    assert read_unverified(old)[1]["exp"] < time.time()
    with pytest.raises(ExpiredToken):
        await verifier.verify(old)
    future = identity_provider.token(issued_at=time.time() + 3600)
    with pytest.raises(InvalidToken, match="future"):
        await verifier.verify(future)
    assert (await verifier.verify(identity_provider.token(expires_in=5))).subject == "user"


@pytest.mark.parametrize("algorithm", ["RS256", "PS384", "ES256", "ES384", "ES512", "EdDSA"])
async def test_every_asymmetric_algorithm(algorithm: str) -> None:
    provider = IdentityProvider(algorithm=algorithm)
    token = provider.token("bob")
    assert read_unverified(token)[0]["alg"] == algorithm
    assert (await verifier_for(provider).verify(token)).subject == "bob"


async def test_algorithm_override() -> None:
    provider = IdentityProvider(jwks_alg=False)  # the RSA key may then serve PS256 too
    token = provider.token(algorithm="PS256")
    assert read_unverified(token)[0]["alg"] == "PS256"
    assert (await verifier_for(provider, algorithms=["PS256"]).verify(token)).subject == "user"
    with pytest.raises(ValueError, match="cannot sign"):
        provider.token(algorithm="ES256")
    with pytest.raises(ValueError, match="cannot sign"):
        provider.token(algorithm="HS256")
    with pytest.raises(ValueError, match="unsupported"):
        provider.token(algorithm="none")


async def test_header_alg_can_lie_about_the_signature(identity_provider: IdentityProvider) -> None:
    token = identity_provider.token(headers={"alg": "PS256"})  # signed RS256, says PS256
    assert read_unverified(token)[0]["alg"] == "PS256"
    with pytest.raises(InvalidToken):
        await verifier_for(identity_provider, algorithms=["PS256", "RS256"]).verify(token)


def test_unknown_kid(identity_provider: IdentityProvider) -> None:
    with pytest.raises(KeyError, match="no key"):
        identity_provider.token(kid="nope")
    with pytest.raises(KeyError, match="no key"):
        identity_provider.key("nope")


# -- rotation -------------------------------------------------------------------------------


async def test_rotate_publishes_both_and_signs_with_the_new_key(
    identity_provider: IdentityProvider,
) -> None:
    old = identity_provider.current_kid
    old_token = identity_provider.token()
    new = identity_provider.rotate()
    assert new != old
    assert identity_provider.current_kid == new
    assert identity_provider.published_kids == (old, new)
    assert [k["kid"] for k in identity_provider.jwks()["keys"]] == [old, new]
    new_token = identity_provider.token()
    assert read_unverified(new_token)[0]["kid"] == new
    verifier = verifier_for(identity_provider)
    assert (await verifier.verify(old_token)).subject == "user"
    assert (await verifier.verify(new_token)).subject == "user"
    assert read_unverified(identity_provider.token(kid=old))[0]["kid"] == old


async def test_retire_stops_publishing_but_still_mints(
    identity_provider: IdentityProvider,
) -> None:
    old = identity_provider.current_kid
    identity_provider.rotate()
    identity_provider.retire(old)
    assert old not in identity_provider.published_kids
    assert old not in [k["kid"] for k in identity_provider.jwks()["keys"]]
    retired_token = identity_provider.token(kid=old)
    assert read_unverified(retired_token)[0]["kid"] == old
    verifier = verifier_for(identity_provider)
    with pytest.raises(UnknownKey):
        await verifier.verify(retired_token)
    identity_provider.publish(old)
    assert identity_provider.published_kids[-1] == old
    assert (await verifier_for(identity_provider).verify(retired_token)).subject == "user"
    with pytest.raises(KeyError):
        identity_provider.retire("nope")
    with pytest.raises(KeyError):
        identity_provider.publish("nope")


async def test_rotate_to_another_algorithm(identity_provider: IdentityProvider) -> None:
    kid = identity_provider.rotate("ES256")
    assert identity_provider.key(kid).algorithm == "ES256"
    assert identity_provider.rotate() != kid
    assert identity_provider.key().algorithm == "ES256"  # rotation keeps the algorithm
    async with identity_provider.http_client() as client:
        document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    token = identity_provider.token()
    verifier = verifier_for(identity_provider, algorithms=["ES256", "RS256"])
    assert (await verifier.verify(token)).subject == "user"
    with pytest.raises(ValueError, match="public-key"):
        identity_provider.rotate("HS256")


# -- userinfo -------------------------------------------------------------------------------


async def test_userinfo_answers_the_profile(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.set_profile("alice", name="Alice", email="alice@example.test")
    token = identity_provider.token("alice", audience="some-api")  # any audience will do
    response = await client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
    assert response.headers["cache-control"] == "no-store"
    posted = await client.post("/userinfo", headers={"authorization": f"bearer {token}"})
    assert posted.status_code == 200
    unknown = identity_provider.token("bob")
    response = await client.get("/userinfo", headers={"Authorization": f"Bearer {unknown}"})
    assert response.json() == {"sub": "bob"}
    assert identity_provider.requests["userinfo"] == 3


async def test_userinfo_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def _userinfo_refusals(provider: IdentityProvider) -> dict[str, dict[str, str]]:
    other = IdentityProvider()
    retired = provider.current_kid
    provider.rotate()
    provider.retire(retired)
    good = provider.token()
    head, payload, signature = good.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BA")
    return {
        "expired": {"Authorization": f"Bearer {provider.token(expires_in=-1)}"},
        "foreign": {"Authorization": f"Bearer {other.token()}"},
        "foreign-same-kid": {
            "Authorization": f"Bearer {other.token(headers={'kid': provider.current_kid})}"
        },
        "other-issuer": {"Authorization": f"Bearer {provider.token(issuer='https://evil.test')}"},
        "retired-key": {"Authorization": f"Bearer {provider.token(kid=retired)}"},
        "not-yet-valid": {"Authorization": f"Bearer {provider.token(claims={'nbf': 2**40})}"},
        "no-sub": {"Authorization": f"Bearer {provider.token(claims={'sub': ''})}"},
        "exp-string": {"Authorization": f"Bearer {provider.token(claims={'exp': 'soon'})}"},
        "tampered": {"Authorization": f"Bearer {head}.{payload}.{flipped}"},
        "swapped-payload": {
            "Authorization": f"Bearer {head}.{provider.token('root').split('.')[1]}.{signature}"
        },
        "junk": {"Authorization": "Bearer not-a-token"},
        "empty": {"Authorization": "Bearer "},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "huge": {"Authorization": "Bearer " + "a" * 20_000 + ".b.c"},
        "alg-none": {"Authorization": f"Bearer {provider.token(headers={'alg': 'none'})}"},
        "crit": {"Authorization": f"Bearer {provider.token(headers={'crit': ['x']})}"},
    }


async def test_userinfo_refuses_bad_tokens(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    cases = _userinfo_refusals(identity_provider)
    good = identity_provider.token()
    assert (
        await client.get("/userinfo", headers={"Authorization": f"Bearer {good}"})
    ).status_code == 200
    for name, headers in cases.items():
        response = await client.get("/userinfo", headers=headers)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"', name
        assert response.json() == {"error": "invalid_token"}, name


async def test_userinfo_refuses_two_authorization_headers(
    identity_provider: IdentityProvider,
) -> None:
    token = identity_provider.token()
    status, _, _ = await call_app(
        identity_provider,
        "GET",
        "/userinfo",
        headers=[(b"authorization", f"Bearer {token}".encode())] * 2,
    )
    assert status == 401


# -- token endpoint -------------------------------------------------------------------------


async def test_client_credentials_grant(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.audience = "https://api.test"
    identity_provider.add_client(
        "svc", "s3cret", scopes=["items:read", "items:write"], permissions=["read:items"]
    )
    response = await post_token(
        client, "grant_type=client_credentials&client_id=svc&client_secret=s3cret"
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    document = response.json()
    assert document["token_type"] == "Bearer"
    assert document["expires_in"] == 300
    assert document["scope"] == "items:read items:write"
    claims = read_unverified(document["access_token"])[1]
    assert claims["sub"] == claims["azp"] == claims["client_id"] == "svc"
    assert claims["gty"] == "client-credentials"
    assert claims["aud"] == "https://api.test"
    assert claims["permissions"] == ["read:items"]
    assert claims["exp"] - claims["iat"] == 300
    principal = await verifier_for(identity_provider, audience="https://api.test").verify(
        document["access_token"]
    )
    assert principal.subject == "svc"
    assert principal.scopes == {"items:read", "items:write"}
    assert principal.permissions == {"read:items"}
    assert identity_provider.requests["token"] == 1


async def test_client_credentials_with_basic_auth_scope_and_audience(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.add_client("svc:1", "p@ss word", scopes=["a", "b", "c"])
    identity_provider.token_lifetime = 60
    # RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
    response = await post_token(
        client,
        "grant_type=client_credentials&scope=c+a&audience=urn%3Aapi",
        basic("svc%3A1", "p%40ss+word"),
    )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["scope"] == "c a"
    assert document["expires_in"] == 60
    claims = read_unverified(document["access_token"])[1]
    assert claims["sub"] == "svc:1"
    assert claims["aud"] == "urn:api"
    assert claims["scope"] == "c a"
    assert claims["permissions"] == []


async def test_client_without_scopes_gets_no_scope(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.add_client("svc", "pw")
    document = (
        await post_token(client, "grant_type=client_credentials&client_id=svc&client_secret=pw")
    ).json()
    assert "scope" not in document
    assert "scope" not in read_unverified(document["access_token"])[1]


CC = "grant_type=client_credentials"
SVC = "client_id=svc&client_secret=pw"
REFUSALS: list[tuple[str | bytes, dict[str, str] | str, int, str]] = [
    (f"{CC}&client_id=svc&client_secret=wrong", {}, 401, "invalid_client"),
    (f"{CC}&client_id=svc&client_secret=", {}, 401, "invalid_client"),
    (f"{CC}&client_id=svc", {}, 401, "invalid_client"),
    (f"{CC}&client_id=nobody&client_secret=pw", {}, 401, "invalid_client"),
    (f"{CC}&client_id=svc&client_secret=p%C3%A9", {}, 401, "invalid_client"),
    (CC, {}, 401, "invalid_client"),
    (CC, "basic:svc:wrong", 401, "invalid_client"),
    ("grant_type=password&username=a&password=b", {}, 400, "unsupported_grant_type"),
    (f"grant_type=&{SVC}", {}, 400, "invalid_request"),
    (SVC, {}, 400, "invalid_request"),
    (f"{CC}&{SVC}&scope=admin", {}, 400, "invalid_scope"),
    (f"{CC}&{SVC}&audience=", {}, 400, "invalid_request"),
    (f"{CC}&{CC}&{SVC}", {}, 400, "invalid_request"),
    (f"{CC}&{SVC}&x=%00", {}, 400, "invalid_request"),
    (f"{CC}&client_id=svc&client_secret=%ff", {}, 400, "invalid_request"),
    (f"{CC}&{SVC}&&&==", {}, 400, "invalid_request"),
    (f"{CC}&client_secret=pw", "basic:svc:pw", 400, "invalid_request"),
    (f"{CC}&client_id=other", "basic:svc:pw", 400, "invalid_request"),
    (CC, {"authorization": "Basic !!!"}, 400, "invalid_request"),
    (CC, {"authorization": "Basic bm9jb2xvbg=="}, 400, "invalid_request"),  # no colon
    (CC, {"authorization": "Bearer abc"}, 400, "invalid_request"),
    (json.dumps({"grant_type": "client_credentials"}), {"content-type": "application/json"},
     400, "invalid_request"),
    (CC, {"content-type": "text/plain"}, 400, "invalid_request"),
    (f"{CC}&{SVC}" + "&a=b" * 100, {}, 400, "invalid_request"),
    (f"{CC}&{SVC}&pad=" + "x" * 100_000, {}, 400, "invalid_request"),
    (b"grant_type=client_credentials&client_id=\xff\xfe", {}, 400, "invalid_request"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "headers", "status", "error"), REFUSALS)
async def test_token_endpoint_refusals(
    identity_provider: IdentityProvider,
    client: httpx.AsyncClient,
    body: str | bytes,
    headers: dict[str, str] | str,
    status: int,
    error: str,
) -> None:
    identity_provider.add_client("svc", "pw", scopes=["read"])
    if isinstance(headers, str):
        _, client_id, secret = headers.split(":")
        headers = basic(client_id, secret)
    response = await post_token(client, body, headers)
    assert response.status_code == status
    assert response.json() == {"error": error}
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic ")
    assert "access_token" not in response.text


async def test_token_endpoint_streamed_huge_body(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"grant_type=client_credentials&pad="
        for _ in range(64):
            yield b"x" * 1024

    response = await client.post("/oauth/token", content=chunks(), headers={"content-type": FORM})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request"}


def test_add_client_validates(identity_provider: IdentityProvider) -> None:
    with pytest.raises(ValueError, match="client_id"):
        identity_provider.add_client("", "pw")
    with pytest.raises(ValueError, match="secret"):
        identity_provider.add_client("svc", "")
    with pytest.raises(ValueError, match="spaces"):
        identity_provider.add_client("svc", "pw", scopes=["a b"])


# -- methods, paths, hostile requests -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/.well-known/openid-configuration", "GET, HEAD"),
        ("DELETE", "/.well-known/jwks.json", "GET, HEAD"),
        ("PUT", "/userinfo", "GET, POST"),
        ("GET", "/oauth/token", "POST"),
        ("OPTIONS", "/oauth/token", "POST"),
    ],
)
async def test_wrong_methods_are_405(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


@pytest.mark.parametrize(
    "path",
    ["/", "/.well-known", "/.well-known/jwks.json/", "/userinfo/x", "/oauth/token/", "/x" * 500],
)
async def test_unknown_paths_are_404(
    identity_provider: IdentityProvider, client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}
    assert sum(identity_provider.requests.values()) == 0  # only endpoints are counted


async def call_app(
    provider: IdentityProvider,
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    kind: str = "http",
) -> tuple[int | None, list[tuple[bytes, bytes]], list[Message]]:
    """Call the provider's ASGI app directly; return the status, headers and messages sent."""
    sent: list[Message] = []
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive() -> Message:
        if kind == "websocket":
            return {"type": "websocket.connect"}
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": kind,
        "method": method,
        "path": path,
        "headers": headers or [],
        "query_string": b"",
    }
    await provider.app(scope, receive, send)
    start = sent[0] if sent and sent[0]["type"] == "http.response.start" else None
    return (
        None if start is None else start["status"],
        [] if start is None else list(start["headers"]),
        sent,
    )


PATHS = [*(f"/{p}" for p in (".well-known/openid-configuration", ".well-known/jwks.json")),
         "/userinfo", "/oauth/token", "/other"]  # fmt: skip
HOSTILE_PROVIDER = IdentityProvider(algorithm="ES256")
HOSTILE_PROVIDER.add_client("svc", "pw", scopes=["read"])


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "TRACE"]),
    path=st.sampled_from(PATHS),
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"authorization", b"content-type", b"x-other", b"content-length"]),
            st.one_of(
                st.binary(max_size=200),
                st.builds(lambda b: b"Bearer " + b, st.binary(max_size=200)),
                st.builds(lambda b: b"Basic " + base64.b64encode(b), st.binary(max_size=60)),
                st.just(FORM.encode()),
            ),
        ),
        max_size=4,
    ),
    body=st.one_of(
        st.binary(max_size=600),
        st.builds(
            lambda extra: b"grant_type=client_credentials&client_id=svc&client_secret=pw" + extra,
            st.binary(max_size=40),
        ),
    ),
)
async def test_hostile_requests_never_get_a_5xx(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    status, _, sent = await call_app(HOSTILE_PROVIDER, method, path, headers=headers, body=body)
    assert status is not None
    assert status < 500
    assert sent[-1]["type"] == "http.response.body"


async def test_websocket_and_lifespan_scopes(identity_provider: IdentityProvider) -> None:
    status, _, sent = await call_app(identity_provider, "GET", "/userinfo", kind="websocket")
    assert status is None
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    replies: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        replies.append(message)

    await identity_provider.app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in replies] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# -- fault switches -------------------------------------------------------------------------


ENDPOINTS = [
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/userinfo"),
    ("POST", "/oauth/token"),
]


async def test_outage_answers_503_everywhere(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.outage = True
    for method, path in ENDPOINTS:
        response = await client.request(method, path)
        assert response.status_code == 503, path
        assert response.json() == {"error": "temporarily_unavailable"}
    identity_provider.outage = False
    assert (await client.get("/.well-known/jwks.json")).status_code == 200
    assert identity_provider.requests == {"discovery": 1, "jwks": 2, "userinfo": 1, "token": 1}


@pytest.mark.parametrize("status", [500, 502, 429, 200, 404])
async def test_forced_status(
    identity_provider: IdentityProvider, client: httpx.AsyncClient, status: int
) -> None:
    identity_provider.status = status
    for method, path in ENDPOINTS:
        response = await client.request(method, path)
        assert response.status_code == status, path
        assert response.content == b"{}"
    identity_provider.status = None
    assert (await client.get("/.well-known/jwks.json")).json() == identity_provider.jwks()


async def test_forced_204_has_no_body(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.status = 204
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 204
    assert response.content == b""


async def test_delay(identity_provider: IdentityProvider, client: httpx.AsyncClient) -> None:
    identity_provider.delay = 0.3
    started = time.monotonic()
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    identity_provider.delay = 0
    started = time.monotonic()
    await client.get("/.well-known/openid-configuration")
    assert time.monotonic() - started < 0.3


async def test_hang_until_cleared(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.hang = True
    pending = asyncio.ensure_future(client.get("/.well-known/jwks.json"))
    await asyncio.sleep(0.3)
    assert not pending.done()
    identity_provider.hang = False
    response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 200
    assert response.json() == identity_provider.jwks()


async def test_hang_is_bounded(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.hang = True
    identity_provider.hang_timeout = 0.2
    started = time.monotonic()
    response = await asyncio.wait_for(client.get("/.well-known/openid-configuration"), 5)
    assert response.status_code == 503
    assert 0.2 <= time.monotonic() - started < 4


async def test_hang_can_be_cancelled(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    identity_provider.hang = True
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get("/userinfo"), 0.2)
    assert identity_provider.requests["userinfo"] == 1


async def test_counters_and_reset(
    identity_provider: IdentityProvider, client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        await client.get("/.well-known/jwks.json")
    await client.get("/.well-known/openid-configuration")
    await client.post("/oauth/token")
    await client.delete("/userinfo")  # wrong method, still a request to the endpoint
    assert identity_provider.requests == {"jwks": 3, "discovery": 1, "token": 1, "userinfo": 1}
    identity_provider.reset_counts()
    assert identity_provider.requests == {}
    assert identity_provider.requests["jwks"] == 0


# -- serving over HTTP and TLS ---------------------------------------------------------------


async def test_serve_over_http() -> None:
    provider = IdentityProvider()
    with provider.serve() as issuer:
        assert issuer.startswith("http://127.0.0.1:")
        assert provider.issuer == provider.base_url == issuer
        assert provider.ca_file is None
        async with httpx.AsyncClient() as http:
            document = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
            assert document["issuer"] == issuer
            assert document["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
            jwks = await http.get(document["jwks_uri"])
            assert jwks.json() == provider.jwks()
            assert jwks.headers["cache-control"] == "public, max-age=300"
            token = provider.token("carol")
            info = await http.get(
                document["userinfo_endpoint"], headers={"Authorization": f"Bearer {token}"}
            )
            assert info.json() == {"sub": "carol"}
            huge = await http.post(
                f"{issuer}/oauth/token", content=b"x" * 200_000, headers={"content-type": FORM}
            )
            assert huge.status_code == 400
        assert read_unverified(token)[1]["iss"] == issuer
    assert provider.issuer == DEFAULT_ISSUER
    assert provider.requests == {"discovery": 1, "jwks": 1, "userinfo": 1, "token": 1}
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{issuer}/.well-known/jwks.json")


async def test_serve_keeps_an_explicit_issuer() -> None:
    provider = IdentityProvider("https://idp.example.test/tenant")
    with provider.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/tenant")
        assert provider.issuer == "https://idp.example.test/tenant"
        assert provider.base_url == url
        async with provider.http_client() as http:
            response = await http.get("/.well-known/openid-configuration")
        assert str(response.url) == f"{url}/.well-known/openid-configuration"
        assert response.json()["issuer"] == "https://idp.example.test/tenant"
    assert provider.base_url == provider.issuer


def test_serve_twice_at_once_is_refused(identity_provider: IdentityProvider) -> None:
    with (
        identity_provider.serve(),
        pytest.raises(RuntimeError, match="already"),
        identity_provider.serve(),
    ):
        pass  # pragma: no cover
    with identity_provider.serve() as again:  # and again after the first ended
        assert again.startswith("http://")


def test_serve_without_uvicorn_says_what_to_install(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    with (
        pytest.raises(ImportError, match=r"pip install 'asgi-auth\[demo\]'"),
        identity_provider.serve(),
    ):
        pass  # pragma: no cover
    assert identity_provider.issuer == DEFAULT_ISSUER


async def test_served_hang_ends_when_the_server_stops() -> None:
    provider = IdentityProvider()
    with provider.serve() as issuer:
        provider.hang = True
        async with httpx.AsyncClient(timeout=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"{issuer}/.well-known/jwks.json")
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert provider.requests["jwks"] == 1
    # In-process, after the server stopped, hang holds requests again.
    async with provider.http_client() as http:
        pending = asyncio.ensure_future(http.get("/.well-known/jwks.json"))
        await asyncio.sleep(0.2)
        assert not pending.done()
        provider.hang = False
        assert (await asyncio.wait_for(pending, 5)).status_code == 200


async def test_served_faults_over_http() -> None:
    provider = IdentityProvider()
    with provider.serve():
        async with provider.http_client() as http:
            provider.outage = True
            assert (await http.get("/.well-known/jwks.json")).status_code == 503
            provider.outage = False
            provider.jwks_body = b"\x00junk"
            assert (await http.get("/.well-known/jwks.json")).content == b"\x00junk"
            provider.jwks_body = None
            provider.delay = 0.2
            started = time.monotonic()
            assert (await http.get("/.well-known/jwks.json")).status_code == 200
            assert time.monotonic() - started >= 0.2


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _exists(path: Path) -> bool:
    return path.exists()


async def test_serve_over_tls() -> None:
    provider = IdentityProvider()
    with pytest.raises(RuntimeError, match="tls"):
        provider.ssl_context()
    with provider.serve(tls=True) as issuer:
        assert issuer.startswith("https://127.0.0.1:")
        assert provider.issuer == issuer
        assert provider.ca_file is not None
        ca_file = Path(provider.ca_file)
        assert _read(ca_file).startswith(b"-----BEGIN CERTIFICATE-----")
        async with httpx.AsyncClient(verify=provider.ssl_context()) as http:
            response = await http.get(f"{issuer}/.well-known/openid-configuration")
            assert response.status_code == 200
            assert response.json()["issuer"] == issuer
            local = issuer.replace("127.0.0.1", "localhost")
            assert (await http.get(f"{local}/.well-known/jwks.json")).status_code == 200
        async with provider.http_client() as http:  # trusts the CA by itself
            assert (await http.get("/.well-known/jwks.json")).json() == provider.jwks()
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"{issuer}/.well-known/jwks.json")
        async with httpx.AsyncClient() as plain:  # plain HTTP to the TLS port
            with pytest.raises(httpx.HTTPError):
                await plain.get(issuer.replace("https:", "http:") + "/.well-known/jwks.json")
    assert provider.ca_file is None
    assert not _exists(ca_file)
    assert not _exists(ca_file.parent)
    assert provider.ssl_context().verify_mode.name == "CERT_REQUIRED"  # the CA outlives the run
    assert provider.issuer == DEFAULT_ISSUER


# -- verifier() ---------------------------------------------------------------------------------


async def test_verifier_in_process(identity_provider: IdentityProvider) -> None:
    verifier = identity_provider.verifier(audience="api", refresh_cooldown=0)
    assert verifier.issuer == "https://idp.test"
    principal = await verifier.verify(identity_provider.token("dora", audience="api"))
    assert principal.subject == "dora"
    with pytest.raises(InvalidToken):
        await verifier.verify(identity_provider.token(audience="other"))
    identity_provider.rotate()
    rotated = await verifier.verify(identity_provider.token("eve", audience="api"))
    assert rotated.subject == "eve"
    assert identity_provider.requests["jwks"] == 2
    await verifier.aclose()


async def test_verifier_against_a_served_provider() -> None:
    provider = IdentityProvider()
    with provider.serve() as issuer:
        verifier = provider.verifier()
        assert verifier.issuer == issuer
        assert (await verifier.verify(provider.token("frank"))).subject == "frank"
        assert provider.requests == {"discovery": 1, "jwks": 1}
        await verifier.aclose()


async def test_verifier_sees_a_lying_discovery_document(
    identity_provider: IdentityProvider,
) -> None:
    identity_provider.discovery_overrides = {"issuer": "https://evil.test"}
    verifier = identity_provider.verifier()
    with pytest.raises(Exception, match="issuer") as caught:
        await verifier.verify(identity_provider.token())
    assert caught.type.__name__ == "ProviderUnavailable"
    await verifier.aclose()


# -- the pytest fixtures ----------------------------------------------------------------------


async def test_identity_provider_fixture_is_fresh(identity_provider: IdentityProvider) -> None:
    assert isinstance(identity_provider, IdentityProvider)
    assert identity_provider.issuer == DEFAULT_ISSUER
    assert identity_provider.requests == {}
    assert len(identity_provider.published_kids) == 1


async def test_served_identity_provider_fixture(
    served_identity_provider: IdentityProvider,
) -> None:
    issuer = served_identity_provider.issuer
    assert issuer.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as http:
        document = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
    assert document["issuer"] == issuer
    assert served_identity_provider.requests["discovery"] == 1


async def test_mint_token_fixture(mint_token: TokenMinter) -> None:
    assert isinstance(mint_token, TokenMinter)
    assert mint_token.key.is_symmetric
    assert mint_token.key.algorithms == {"HS256"}
    assert len(mint_token.key.verify_key) == 64
    token = mint_token(
        "alice",
        scopes=["items:read"],
        roles=["admin"],
        permissions=["read:items"],
        claims={"name": "Alice"},
    )
    header, claims = read_unverified(token)
    assert header["alg"] == "HS256"
    assert header["typ"] == "at+jwt"
    assert claims["exp"] - claims["iat"] == 300
    principal = await mint_token.verifier().verify(token)
    assert principal.subject == "alice"
    assert principal.scopes == {"items:read"}
    assert principal.roles == {"admin"}
    assert principal.permissions == {"read:items"}
    assert principal.display_name == "Alice"
    assert (await mint_token.verifier().verify(mint_token(7))).subject == "7"
    bare = read_unverified(mint_token())[1]
    assert bare["sub"] == "user"
    assert not {"scope", "roles", "permissions"} & bare.keys()


async def test_mint_token_fixture_expiry_and_foreign_keys(mint_token: TokenMinter) -> None:
    verifier = mint_token.verifier()
    expired = mint_token(expires_in=-30)
    exp = read_unverified(expired)[1]["exp"]
    assert time.time() - 32 <= exp <= time.time() - 28
    with pytest.raises(ExpiredToken):
        await verifier.verify(expired)
    with pytest.raises(ExpiredToken):
        await verifier.verify(mint_token(expires_in=0))
    assert read_unverified(mint_token(expires_in=3600))[1]["exp"] > time.time() + 3500
    with pytest.raises(InvalidToken, match="signature"):
        await TokenMinter().verifier().verify(mint_token())
    with pytest.raises(ValueError, match="claims the issuer writes"):
        mint_token(claims={"aud": "x"})
    audience_verifier = mint_token.verifier(audience="api")
    with pytest.raises(InvalidToken, match="aud"):
        await audience_verifier.verify(mint_token())


def _principal_app(verifier: JWTVerifier) -> AuthMiddleware:
    async def me(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse(
            {
                "identity": user.identity,
                "authenticated": user.is_authenticated,
                "roles": sorted(user.roles),
                "scopes": list(request.auth.scopes),
            }
        )

    @guard(has_role("admin"))
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"admin": request.user.identity})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"identity": websocket.user.identity})
        await websocket.close()

    routes = [Route("/me", me), Route("/admin", admin), WebSocketRoute("/ws", ws)]
    return AuthMiddleware(Starlette(routes=routes), verifier=verifier)


def test_override_principal(override_principal: PrincipalOverride, mint_token: TokenMinter) -> None:
    original = AuthMiddleware.__call__
    app = _principal_app(mint_token.verifier())
    with TestClient(app) as http:
        anonymous = http.get("/me").json()
        assert anonymous == {"identity": "", "authenticated": False, "roles": [], "scopes": []}
        assert http.get("/admin").status_code == 401

        alice = Principal("alice", roles=frozenset({"admin"}))
        assert override_principal(alice) is alice
        assert AuthMiddleware.__call__ is not original
        response = http.get("/me")
        assert "authorization" not in response.request.headers
        assert response.json() == {
            "identity": "alice",
            "authenticated": True,
            "roles": ["admin"],
            "scopes": ["authenticated"],
        }
        assert http.get("/admin").json() == {"admin": "alice"}
        # Even a bad token is not looked at while the override holds.
        assert http.get("/me", headers={"Authorization": "Bearer junk"}).status_code == 200
        with http.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"identity": "alice"}

        bob = override_principal("bob", roles=["user"], scopes="items:read items:write")
        assert isinstance(bob, Principal)
        assert http.get("/me").json() == {
            "identity": "bob",
            "authenticated": True,
            "roles": ["user"],
            "scopes": ["items:read", "items:write", "authenticated"],
        }
        assert http.get("/admin").status_code == 403  # guards still decide

        override_principal(ANONYMOUS)
        assert http.get("/me").json()["authenticated"] is False

        assert override_principal(None) is None
        assert AuthMiddleware.__call__ is original
        assert http.get("/me").json()["identity"] == ""
        assert http.get("/me", headers={"Authorization": "Bearer junk"}).status_code == 401
        token = mint_token("carol")
        carol = http.get("/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert carol["identity"] == "carol"


def test_override_principal_keywords_need_a_subject(
    override_principal: PrincipalOverride,
) -> None:
    with pytest.raises(TypeError, match="subject"):
        override_principal(Principal("alice"), roles=["admin"])
    principal = override_principal("x", permissions="read", claims={"k": 1}, issuer="https://i")
    assert isinstance(principal, Principal)
    assert principal.permissions == {"read"}
    assert principal.issuer == "https://i"
    assert principal.claims["k"] == 1
    assert override_principal.principal is principal


def test_override_principal_lets_other_scopes_through(
    override_principal: PrincipalOverride, mint_token: TokenMinter
) -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        events.append(scope["type"])
        assert "user" not in scope

    middleware = AuthMiddleware(app, verifier=mint_token.verifier())
    override_principal("alice")

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    asyncio.run(middleware({"type": "lifespan"}, receive, send))
    assert events == ["lifespan"]
