"""OIDCVerifier and IssuerRouter against a fake identity provider driven in-process.

The provider is an ``httpx.MockTransport`` handler (:class:`FakeProvider`) serving
discovery, JWKS and userinfo, with switches for statuses, bodies, delays, hangs,
connection errors, redirects and ``Cache-Control``, and a counter per endpoint.
Freshness, cooldowns and retry intervals run on a fake monotonic clock; only the
slow and hanging provider cases use real (small) timeouts, and the only timing
assertions are generous upper bounds on how long a request waits.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any, Final

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import AuthMiddleware
from asgi_auth.errors import (
    ExpiredToken,
    InvalidToken,
    ProviderUnavailable,
    ServiceUnavailable,
    UnknownKey,
)
from asgi_auth.principal import Principal
from asgi_auth.tokens import IssuerRouter, JWTVerifier, Key, OIDCVerifier, TokenVerifier
from asgi_auth.tokens.oidc import unverified_issuer

ISSUER: Final = "https://idp.example.com/"  # Auth0 style: with the slash
LOCAL_ISSUER: Final = "https://api.example.org"
NOW: Final = 1_700_000_000
OIDC_LOGGER: Final = "asgi_auth.oidc"
CHALLENGE_INVALID_TOKEN: Final = 'Bearer realm="api", error="invalid_token"'

RSA_KEY: Final = Key.generate("RS256", kid="rsa-1")
PSS_KEY: Final = Key.generate("PS256", kid="pss-1")
EC_KEY: Final = Key.generate("ES256", kid="ec-1")
ED_KEY: Final = Key.generate("EdDSA", kid="ed-1")
NEW_KEY: Final = Key.generate("ES256", kid="ec-2")  # published by a rotation
OTHER_RSA: Final = Key.generate("RS256", kid="rsa-other")
ATTACKER: Final = Key.generate("ES256", kid="attacker")
LOCAL_KEY: Final = Key.generate("ES256", kid="local-1")
PROVIDER_KEYS: Final = (RSA_KEY, PSS_KEY, EC_KEY, ED_KEY)
_SERIAL: Final = itertools.count()


# --- tokens ---------------------------------------------------------------------------


def claims(**extra: Any) -> dict[str, Any]:
    """Valid claims at NOW; an ``extra`` value of None removes that claim.

    Each call has its own ``jti``, so every token signed is new to the verifier's cache:
    a test that needs a request to reach the keys (and notice they are stale) signs a
    new token rather than reusing one already verified.
    """
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "iat": NOW,
        "exp": NOW + 3600,
        "scope": "read write",
        "jti": f"token-{next(_SERIAL)}",
    }
    base.update(extra)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    key: Key,
    payload: Mapping[str, Any] | None = None,
    *,
    alg: str | None = None,
    kid: str | None = None,
    header: Mapping[str, Any] | None = None,
) -> str:
    """A token signed by ``key`` with PyJWT (``kid`` defaults to the key's)."""
    headers: dict[str, Any] = {"kid": kid if kid is not None else key.kid, **(header or {})}
    headers = {name: value for name, value in headers.items() if value is not None}
    # The key object rather than key.private_pem(): PyJWT would re-load (and re-check)
    # the PEM on every call, about 0.1 s for RSA.
    return jwt.encode(
        dict(claims() if payload is None else payload),
        key.sign_key,
        algorithm=alg or key.algorithm,
        headers=headers,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes = b"x") -> str:
    """A compact JWS over exactly these parts, with an arbitrary signature."""
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(payload).encode())
    return f"{head}.{body}.{_b64(signature)}"


def hs256(secret: bytes, payload: Mapping[str, Any], kid: str) -> str:
    """An HS256 token made by hand (PyJWT refuses some of the secrets used here)."""
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}"
        f".{_b64(json.dumps(payload).encode())}"
    )
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def random_kid_token() -> str:
    """A genuine ES256 token from a key the provider never published, under a random kid."""
    return sign(ATTACKER, kid=secrets.token_urlsafe(12))


def jwk_without_alg(key: Key) -> dict[str, Any]:
    jwk = key.public_jwk()
    del jwk["alg"]
    return jwk


def rsa_1024_jwk(kid: str) -> dict[str, Any]:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    public = weak.public_key()
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


# --- the fake provider ----------------------------------------------------------------


_ASYNC_CLIENT: Final = httpx.AsyncClient  # the real one, even while a test patches httpx


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProvider:
    """An identity provider behind ``httpx.MockTransport``: discovery, JWKS, userinfo.

    Every switch is a plain attribute, keyed by endpoint name (``"discovery"``,
    ``"jwks"``, ``"userinfo"``), and may be flipped between requests.
    """

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.host = httpx.URL(issuer).host
        base = issuer.rstrip("/")
        self.jwks_url = base + "/.well-known/jwks.json"
        self.userinfo_url = base + "/userinfo"
        self.discovery: dict[str, Any] = {
            "issuer": issuer,
            "jwks_uri": self.jwks_url,
            "userinfo_endpoint": self.userinfo_url,
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }
        self.jwks: list[Any] = [key.public_jwk() for key in PROVIDER_KEYS]
        self.profile: dict[str, Any] = {
            "sub": "alice",
            "email": "alice@example.com",
            "groups": ["admins", "staff"],
            "address": {"country": "FR"},
        }
        self.status: dict[str, int] = {}
        self.body: dict[str, bytes] = {}
        self.delay: dict[str, float] = {}
        self.hang: set[str] = set()
        self.gate: dict[str, asyncio.Event] = {}  # answer once the event is set
        self.refuse: set[str] = set()  # raise httpx.ConnectError
        self.redirect: dict[str, str] = {}  # our host answers 302 with this Location
        self.cache_control: str | None = None  # on the JWKS answer
        self.hits: Counter[str] = Counter()
        self.userinfo_authorization: list[str | None] = []
        self.clock = FakeClock()
        self.client = _ASYNC_CLIENT(transport=httpx.MockTransport(self.handler))
        self.verifiers: list[OIDCVerifier] = []

    def endpoint(self, request: httpx.Request) -> str | None:
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            return "discovery"
        if path.endswith("/jwks.json"):
            return "jwks"
        if path.endswith("/userinfo"):
            return "userinfo"
        return None

    def document(self, endpoint: str) -> Any:
        if endpoint == "discovery":
            return self.discovery
        if endpoint == "jwks":
            return {"keys": self.jwks}
        return self.profile

    async def handler(self, request: httpx.Request) -> httpx.Response:
        endpoint = self.endpoint(request)
        if endpoint is None:
            return httpx.Response(404)
        self.hits[endpoint] += 1
        if endpoint == "userinfo":
            self.userinfo_authorization.append(request.headers.get("authorization"))
        if endpoint in self.hang:
            await asyncio.Event().wait()  # never answers; only a cancellation ends this
        if endpoint in self.gate:
            await self.gate[endpoint].wait()
        if endpoint in self.delay:
            await asyncio.sleep(self.delay[endpoint])
        if endpoint in self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if endpoint in self.redirect and request.url.host == self.host:
            return httpx.Response(302, headers={"Location": self.redirect[endpoint]})
        body = self.body.get(endpoint)
        if body is None:
            body = json.dumps(self.document(endpoint)).encode()
        headers = {"Content-Type": "application/json"}
        if endpoint == "jwks" and self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        return httpx.Response(self.status.get(endpoint, 200), content=body, headers=headers)

    def verifier(self, **options: Any) -> OIDCVerifier:
        """An OIDCVerifier on this provider, its client and fake clock (closed at teardown)."""
        settings: dict[str, Any] = {
            "http_client": self.client,
            "monotonic": self.clock,
            "clock": lambda: NOW,
            **options,
        }
        verifier = OIDCVerifier(self.issuer, **settings)
        self.verifiers.append(verifier)
        return verifier

    async def aclose(self) -> None:
        for verifier in self.verifiers:
            await verifier.aclose()
        await self.client.aclose()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    try:
        yield fake
    finally:
        await fake.aclose()


async def settle(verifier: OIDCVerifier, within: float = 5.0) -> None:
    """Wait for the verifier's fetch in flight (a background refresh) to end."""
    task = verifier._task
    if task is not None and not task.done():
        await asyncio.wait_for(asyncio.shield(task), within)


async def refused(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value


def warnings_of(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == OIDC_LOGGER
        and record.levelno == logging.WARNING
        and text in record.getMessage()
    ]


# --- happy paths and claim checks -----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"),
    [(RSA_KEY, "RS256"), (PSS_KEY, "PS256"), (EC_KEY, "ES256"), (ED_KEY, "EdDSA")],
)
async def test_each_algorithm_verifies(provider: FakeProvider, key: Key, alg: str) -> None:
    verifier = provider.verifier()
    principal = await verifier.verify(sign(key, alg=alg))
    assert isinstance(principal, Principal)
    assert principal.subject == "alice"
    assert principal.issuer == ISSUER
    assert principal.scopes == {"read", "write"}
    assert provider.hits == {"discovery": 1, "jwks": 1}
    assert verifier.fetches == 1
    assert verifier.failures == 0
    assert verifier.keys is not None
    assert {k.kid for k in verifier.keys} == {"rsa-1", "pss-1", "ec-1", "ed-1"}
    assert verifier.jwks_uri == provider.jwks_url
    assert verifier.userinfo_endpoint == provider.userinfo_url
    assert verifier.metadata is not None
    assert verifier.metadata["issuer"] == ISSUER


async def test_token_signed_by_a_foreign_key_under_a_known_kid_is_refused(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    error = await refused(verifier, sign(ATTACKER, kid="ec-1"))
    assert not isinstance(error, UnknownKey)
    assert "signature" in error.reason


async def test_jwk_without_alg_serves_every_algorithm_of_its_type(
    provider: FakeProvider,
) -> None:
    provider.jwks = [jwk_without_alg(RSA_KEY)]
    verifier = provider.verifier()
    for alg in ("RS256", "PS256", "RS512", "PS384"):
        principal = await verifier.verify(sign(RSA_KEY, alg=alg))
        assert principal.subject == "alice"
    assert verifier.keys is not None
    (key,) = verifier.keys
    assert key.algorithms == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    # An allow-list narrows what such a key serves.
    narrow = provider.verifier(algorithms=["RS256"])
    assert (await narrow.verify(sign(RSA_KEY, alg="RS256"))).subject == "alice"
    await refused(narrow, sign(RSA_KEY, alg="PS256"))


async def test_jwk_with_alg_serves_only_that_algorithm(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    assert (await verifier.verify(sign(RSA_KEY, alg="RS256"))).subject == "alice"
    # The same RSA key, published with alg RS256, must not verify a PS256 signature.
    await refused(verifier, sign(RSA_KEY, alg="PS256"))
    await refused(verifier, sign(PSS_KEY, alg="RS256"))


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        ("my-api", True),
        (["other", "my-api"], True),
        ("other", False),
        (["other", "more"], False),
        (None, False),
        ([], False),
        (42, False),
    ],
)
async def test_audience(provider: FakeProvider, aud: Any, accepted: bool) -> None:
    verifier = provider.verifier(audience="my-api")
    token = sign(RSA_KEY, claims(aud=aud))
    if accepted:
        assert (await verifier.verify(token)).subject == "alice"
    else:
        await refused(verifier, token)


async def test_audience_list_configured_and_unconfigured(provider: FakeProvider) -> None:
    several = provider.verifier(audience=["api-1", "api-2"])
    assert (await several.verify(sign(EC_KEY, claims(aud="api-2")))).subject == "alice"
    await refused(several, sign(EC_KEY, claims(aud="api-3")))
    # RFC 7519 §4.1.3: with no audience configured, a token naming one is refused.
    none = provider.verifier()
    await refused(none, sign(EC_KEY, claims(aud="api-1")))
    assert (await none.verify(sign(EC_KEY))).subject == "alice"


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        ("at+jwt", True),
        ("application/at+jwt", True),
        ("AT+JWT", True),
        ("JWT", False),
        (None, False),
    ],
)
async def test_typ_required_when_configured(
    provider: FakeProvider, typ: str | None, accepted: bool
) -> None:
    verifier = provider.verifier(typ="at+jwt")
    header: dict[str, Any] = {"typ": typ}
    if typ is None:
        token = forge({"alg": "ES256", "kid": "ec-1"}, claims())  # no typ at all
        await verifier.start()
        error = await refused(verifier, token)
        assert "typ" in error.reason
        return
    token = sign(EC_KEY, header=header)
    if accepted:
        assert (await verifier.verify(token)).subject == "alice"
    else:
        error = await refused(verifier, token)
        assert "typ" in error.reason


async def test_extra_issuers(provider: FakeProvider) -> None:
    v1 = "https://sts.example.com/tenant/"
    verifier = provider.verifier(extra_issuers=[v1])
    assert verifier.issuers == {ISSUER, v1}
    assert (await verifier.verify(sign(EC_KEY, claims(iss=v1)))).issuer == v1
    assert (await verifier.verify(sign(EC_KEY))).issuer == ISSUER
    for other in ("https://evil.example.com/", ISSUER.rstrip("/"), None):
        error = await refused(verifier, sign(EC_KEY, claims(iss=other)))
        assert "issuer" in error.reason or "iss" in error.reason


async def test_leeway_and_expiry(provider: FakeProvider) -> None:
    strict = provider.verifier()
    lenient = provider.verifier(leeway=30)
    lenient_delta = provider.verifier(leeway=timedelta(seconds=30))
    just_expired = sign(EC_KEY, claims(exp=NOW - 10))
    with pytest.raises(ExpiredToken):
        await strict.verify(just_expired)
    assert (await lenient.verify(just_expired)).subject == "alice"
    assert (await lenient_delta.verify(just_expired)).subject == "alice"
    with pytest.raises(ExpiredToken):
        await lenient.verify(sign(EC_KEY, claims(exp=NOW - 31)))
    not_yet = sign(EC_KEY, claims(nbf=NOW + 20))
    await refused(strict, not_yet)
    assert (await lenient.verify(not_yet)).subject == "alice"
    # exp is required by default.
    await refused(strict, sign(EC_KEY, claims(exp=None)))


async def test_verified_tokens_are_cached(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    token = sign(RSA_KEY)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first


# --- discovery ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "named",
    [
        "https://idp.example.com",  # the trailing slash matters (OIDC Discovery §4.3)
        "https://idp.example.com//",
        "https://IDP.example.com/",
        "https://evil.example.com/",
        None,
        42,
        [ISSUER],
    ],
)
async def test_discovery_naming_another_issuer_trusts_no_key(
    provider: FakeProvider, named: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider.discovery["issuer"] = named
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable) as caught:
        await verifier.verify(sign(RSA_KEY))
    assert "issuer" in caught.value.reason
    assert provider.hits["discovery"] == 1
    assert provider.hits["jwks"] == 0  # never even fetched
    assert verifier.keys is None
    assert verifier.failures == 1
    assert verifier.userinfo_endpoint is None
    assert any(
        r.name == OIDC_LOGGER and r.levelno == logging.ERROR and "cannot fetch keys" in r.message
        for r in caplog.records
    )


async def test_discovery_naming_another_issuer_later_keeps_held_keys(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    provider.discovery["issuer"] = "https://evil.example.com/"
    provider.jwks = [NEW_KEY.public_jwk()]
    provider.clock.advance(600)
    with pytest.raises(ProviderUnavailable):
        await verifier.refresh()
    assert provider.hits["jwks"] == 1  # the lying document's keys were never fetched
    assert verifier.failures == 1
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    # A key only the lying document's JWKS has: 503, since the last fetch failed.
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(NEW_KEY))


@pytest.mark.parametrize(
    "jwks_uri",
    [
        "http://idp.example.com/.well-known/jwks.json",
        "ftp://idp.example.com/jwks.json",
        "https://user:pw@idp.example.com/jwks.json",
        "https://idp.example.com/jwks.json#frag",
        "/.well-known/jwks.json",
        "",
        None,
        42,
        ["https://idp.example.com/.well-known/jwks.json"],
        {"url": "https://idp.example.com/.well-known/jwks.json"},
    ],
)
async def test_unacceptable_jwks_uri_in_discovery_fails(
    provider: FakeProvider, jwks_uri: Any
) -> None:
    if jwks_uri is None:
        del provider.discovery["jwks_uri"]
    else:
        provider.discovery["jwks_uri"] = jwks_uri
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable) as caught:
        await verifier.verify(sign(RSA_KEY))
    assert "jwks_uri" in caught.value.reason
    assert provider.hits["jwks"] == 0
    assert verifier.keys is None


async def test_http_jwks_uri_on_loopback_or_when_allowed(provider: FakeProvider) -> None:
    provider.discovery["jwks_uri"] = "http://127.0.0.1:8080/.well-known/jwks.json"
    verifier = provider.verifier()
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    provider.discovery["jwks_uri"] = "http://keys.internal/jwks.json"
    allowed = provider.verifier(allow_http=True)
    assert (await allowed.verify(sign(RSA_KEY))).subject == "alice"
    assert allowed.jwks_uri == "http://keys.internal/jwks.json"


async def test_explicit_jwks_uri_skips_discovery(provider: FakeProvider) -> None:
    provider.status["discovery"] = 500  # would fail, were it asked
    verifier = provider.verifier(jwks_uri=provider.jwks_url)
    assert verifier.discovery_url is None
    assert (await verifier.verify(sign(ED_KEY))).subject == "alice"
    assert provider.hits == {"jwks": 1}
    assert verifier.metadata is None
    # No discovery, so no userinfo endpoint.
    with pytest.raises(ProviderUnavailable):
        await verifier.userinfo(sign(ED_KEY))
    assert provider.hits["userinfo"] == 0


async def test_discovery_url_follows_the_issuer_path() -> None:
    tenant = OIDCVerifier("https://login.example.com/tenant-1/v2.0/")
    assert tenant.discovery_url == (
        "https://login.example.com/tenant-1/v2.0/.well-known/openid-configuration"
    )
    bare = OIDCVerifier("https://idp.example.com")
    assert bare.discovery_url == "https://idp.example.com/.well-known/openid-configuration"


async def test_unacceptable_userinfo_endpoint_is_ignored(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.discovery["userinfo_endpoint"] = "http://idp.example.com/userinfo"
    verifier = provider.verifier()
    token = sign(RSA_KEY)
    assert (await verifier.verify(token)).subject == "alice"  # keys are still fine
    assert verifier.userinfo_endpoint is None
    assert warnings_of(caplog, "userinfo endpoint")
    with pytest.raises(ProviderUnavailable):
        await verifier.userinfo(token)
    assert provider.hits["userinfo"] == 0


# --- what the JWKS may hold -----------------------------------------------------------


def junk_entries() -> list[Any]:
    ec = EC_KEY.public_jwk()
    rsa_jwk = RSA_KEY.public_jwk()
    return [
        42,
        "a string",
        None,
        [rsa_jwk],
        {},
        {"kty": "XYZ", "kid": "unknown-kty"},
        {"kty": 7, "kid": "int-kty"},
        {"kty": "RSA", "kid": "bad-b64", "n": "!!!not base64!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "int-n", "n": 12345, "e": "AQAB"},
        {**ec, "kid": "off-curve", "y": ec["x"]},
        {**ec, "kid": "no-y", "y": None},
        {**ec, "kid": "bad-crv", "crv": "P-999"},
        {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": ec["x"]},
        {**ec, "kid": 17},
        rsa_1024_jwk("rsa-1024"),
        {**OTHER_RSA.public_jwk(), "kid": "enc-1", "use": "enc"},
        {"kty": "oct", "kid": "hmac-1", "k": _b64(b"s" * 64), "alg": "HS256"},
        {**ec, "kid": "ec-as-rs256", "alg": "RS256"},
        {**OTHER_RSA.public_jwk(), "kid": "rsa-as-es256", "alg": "ES256"},
        {**rsa_jwk, "kid": "rsa-alg-none", "alg": "none"},
        {**rsa_jwk, "kid": "rsa-alg-list", "alg": ["RS256"]},
    ]


async def test_junk_entries_are_skipped_and_good_keys_still_work(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.jwks = [*junk_entries(), EC_KEY.public_jwk(), ED_KEY.public_jwk()]
    verifier = provider.verifier()
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert (await verifier.verify(sign(ED_KEY))).subject == "alice"
    assert verifier.keys is not None
    assert {k.kid for k in verifier.keys} == {"ec-1", "ed-1"}
    assert verifier.failures == 0
    skipped = warnings_of(caplog, "ignoring keys")
    assert skipped
    assert "rsa-1024" in skipped[0].getMessage()
    assert "ec-as-rs256" in skipped[0].getMessage()
    # Tokens naming a skipped key are refused, whatever they claim.
    await refused(verifier, sign(OTHER_RSA, kid="enc-1"))
    await refused(verifier, sign(EC_KEY, kid="ec-as-rs256"))
    await refused(verifier, hs256(b"s" * 64, claims(), kid="hmac-1"))


async def test_all_junk_fails_cold(provider: FakeProvider) -> None:
    provider.jwks = junk_entries()
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable) as caught:
        await verifier.verify(sign(EC_KEY))
    assert "no usable signing key" in caught.value.reason
    assert verifier.keys is None
    assert verifier.failures == 1


@pytest.mark.parametrize("document", [{"keys": []}, {"keys": {}}, {"nokeys": []}, {"keys": None}])
async def test_jwks_without_a_key_list_fails(provider: FakeProvider, document: Any) -> None:
    provider.body["jwks"] = json.dumps(document).encode()
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(EC_KEY))
    assert verifier.keys is None


async def test_all_junk_later_keeps_the_keys_held(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    held = verifier.keys
    provider.jwks = junk_entries()
    with pytest.raises(ProviderUnavailable):
        await verifier.refresh()
    assert verifier.keys is held
    assert verifier.failures == 1
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    assert warnings_of(caplog, "cannot refresh keys")


async def test_duplicate_kids_are_both_dropped(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.jwks = [
        {**RSA_KEY.public_jwk(), "kid": "dup"},
        {**PSS_KEY.public_jwk(), "kid": "dup", "alg": "RS256"},
        OTHER_RSA.public_jwk(),
        EC_KEY.public_jwk(),
    ]
    verifier = provider.verifier()
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert (await verifier.verify(sign(OTHER_RSA))).subject == "alice"
    assert verifier.keys is not None
    assert {k.kid for k in verifier.keys} == {"ec-1", "rsa-other"}
    for key in (RSA_KEY, PSS_KEY):
        with pytest.raises(UnknownKey):
            await verifier.verify(sign(key, alg="RS256", kid="dup"))
    assert any("kid used twice" in r.getMessage() for r in warnings_of(caplog, "ignoring keys"))
    assert provider.hits["jwks"] == 1  # within the cooldown: no refetch for 'dup'


async def test_only_duplicates_is_a_failure(provider: FakeProvider) -> None:
    provider.jwks = [
        {**RSA_KEY.public_jwk(), "kid": "dup"},
        {**OTHER_RSA.public_jwk(), "kid": "dup"},
    ]
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(RSA_KEY, kid="dup"))
    assert verifier.keys is None


async def test_header_alg_not_matching_the_key_type_is_refused(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    await verifier.start()
    # An EC kid with an RSA algorithm, and the other way round.
    await refused(verifier, forge({"alg": "RS256", "kid": "ec-1"}, claims()))
    await refused(verifier, sign(EC_KEY, kid="rsa-1"))
    await refused(verifier, sign(ED_KEY, kid="ec-1"))
    await refused(verifier, forge({"alg": "EdDSA", "kid": "rsa-1"}, claims()))
    # ES384 over a P-256 key.
    await refused(verifier, forge({"alg": "ES384", "kid": "ec-1"}, claims()))


async def test_algorithm_allow_list_limits_keys(provider: FakeProvider) -> None:
    verifier = provider.verifier(algorithms=["ES256"])
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert verifier.keys is not None
    assert {k.kid for k in verifier.keys} == {"ec-1"}
    await refused(verifier, sign(RSA_KEY))
    await refused(verifier, sign(ED_KEY))


# --- HMAC and unsigned tokens ---------------------------------------------------------


async def test_hs256_is_always_refused(provider: FakeProvider) -> None:
    secret = b"k" * 64
    provider.jwks = [
        *provider.jwks,
        {"kty": "oct", "kid": "hs-1", "k": _b64(secret), "alg": "HS256", "use": "sig"},
    ]
    verifier = provider.verifier()
    await verifier.start()
    assert verifier.keys is not None
    assert "hs-1" not in verifier.keys
    fetches = verifier.fetches
    provider.clock.advance(60)  # past the cooldown: a refusal must not be an unknown kid
    error = await refused(verifier, hs256(secret, claims(), kid="hs-1"))
    assert "algorithm" in error.reason
    # Algorithm confusion: the RSA public key as an HMAC secret.
    await refused(verifier, hs256(RSA_KEY.public_pem(), claims(), kid="rsa-1"))
    await refused(verifier, forge({"alg": "none", "kid": "rsa-1"}, claims(), b""))
    await refused(verifier, forge({"alg": "None"}, claims()))
    assert verifier.fetches == fetches


def test_hmac_and_bad_algorithm_lists_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCVerifier(ISSUER, algorithms=["HS256"])
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCVerifier(ISSUER, algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCVerifier(ISSUER, algorithms=[])
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCVerifier(ISSUER, algorithms=["none"])
    with pytest.raises(TypeError):
        OIDCVerifier(ISSUER, algorithms="RS256")


# --- a provider that fails ------------------------------------------------------------

# How the JWKS endpoint fails, and a fragment of the reason logged.
FAILURES: Final = {
    "http-500": "HTTP 500",
    "http-404": "HTTP 404",
    "not-json": "not JSON",
    "nan": "not JSON",
    "bad-utf8": "not JSON",
    "non-object": "not a JSON object",
    "too-large": "larger than",
    "connect-error": "unreachable",
    "redirect": "HTTP 302",
}


def break_endpoint(provider: FakeProvider, failure: str, endpoint: str = "jwks") -> None:
    if failure == "http-500":
        provider.status[endpoint] = 500
    elif failure == "http-404":
        provider.status[endpoint] = 404
    elif failure == "not-json":
        provider.body[endpoint] = b"<html>Internal error</html>"
    elif failure == "nan":
        provider.body[endpoint] = b'{"keys": NaN}'
    elif failure == "bad-utf8":
        provider.body[endpoint] = b'{"keys": "\xff\xfe"}'
    elif failure == "non-object":
        provider.body[endpoint] = json.dumps([EC_KEY.public_jwk()]).encode()
    elif failure == "too-large":
        provider.body[endpoint] = json.dumps(
            {"keys": [EC_KEY.public_jwk()], "padding": "x" * 4096}
        ).encode()
    elif failure == "connect-error":
        provider.refuse.add(endpoint)
    elif failure == "redirect":
        provider.redirect[endpoint] = "https://elsewhere.example.net/.well-known/jwks.json"
    else:  # pragma: no cover
        raise AssertionError(failure)


def repair(provider: FakeProvider) -> None:
    provider.status.clear()
    provider.body.clear()
    provider.refuse.clear()
    provider.redirect.clear()
    provider.hang.clear()
    provider.delay.clear()


@pytest.mark.parametrize("endpoint", ["discovery", "jwks"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_failure_with_no_keys_held(
    provider: FakeProvider, failure: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    break_endpoint(provider, failure, endpoint)
    verifier = provider.verifier(max_document_bytes=2048)
    token = sign(EC_KEY)
    with pytest.raises(ProviderUnavailable) as caught:
        await verifier.verify(token)
    assert FAILURES[failure] in caught.value.reason
    assert verifier.keys is None
    assert (verifier.fetches, verifier.failures) == (1, 1)
    assert any(r.levelno == logging.ERROR and r.name == OIDC_LOGGER for r in caplog.records)
    hits = dict(provider.hits)
    # Within retry_interval: no new attempt, still 503.
    repair(provider)
    provider.clock.advance(4.9)
    for _ in range(5):
        with pytest.raises(ProviderUnavailable):
            await verifier.verify(token)
    assert provider.hits == hits
    assert verifier.fetches == 1
    # After it, the next request tries again, and succeeds now the provider is back.
    provider.clock.advance(0.1)
    assert (await verifier.verify(token)).subject == "alice"
    assert (verifier.fetches, verifier.failures) == (2, 1)


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_failure_with_keys_held(
    provider: FakeProvider, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = provider.verifier(max_document_bytes=2048)
    await verifier.start()
    break_endpoint(provider, failure)
    provider.clock.advance(600)  # default_ttl: the keys are stale
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"  # held keys answer
    await settle(verifier)
    assert (verifier.fetches, verifier.failures) == (2, 1)
    logged = warnings_of(caplog, "cannot refresh keys")
    assert len(logged) == 1
    assert FAILURES[failure] in logged[0].getMessage()
    # Held keys keep verifying; unknown kids get 503 while the last fetch failed.
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(random_kid_token())
    # The next attempt waits retry_interval (5 s).
    provider.clock.advance(4.9)
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert verifier.fetches == 2
    provider.clock.advance(0.1)
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    await settle(verifier)
    assert (verifier.fetches, verifier.failures) == (3, 2)
    # Repaired: the next retry succeeds, and the error is forgotten.
    repair(provider)
    provider.clock.advance(5)
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    await settle(verifier)
    assert (verifier.fetches, verifier.failures) == (4, 2)
    with pytest.raises(UnknownKey):
        await verifier.verify(random_kid_token())


async def test_a_passed_client_that_follows_redirects_is_not_followed(
    provider: FakeProvider,
) -> None:
    """BUG (see the report): a redirect must not be followed, even by a client configured
    to follow them; otherwise a JWKS could come from plain http:// on any host, which
    the https check on jwks_uri is there to prevent."""
    provider.redirect["jwks"] = "http://evil.example.net/jwks.json"
    following = _ASYNC_CLIENT(
        transport=httpx.MockTransport(provider.handler), follow_redirects=True
    )
    try:
        verifier = provider.verifier(http_client=following)
        try:
            principal: Principal | None = await verifier.verify(sign(EC_KEY))
        except ProviderUnavailable:
            principal = None
        assert provider.hits["jwks"] == 1, "the redirect to http://evil.example.net was followed"
        assert principal is None
    finally:
        await following.aclose()


# --- slow and hanging providers -------------------------------------------------------


async def test_slow_provider_cold_request_waits_at_most_max_wait(provider: FakeProvider) -> None:
    provider.delay["jwks"] = 0.6
    verifier = provider.verifier(max_wait=0.2, timeout=3)
    token = sign(EC_KEY)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(verifier.verify(token) for _ in range(10)), return_exceptions=True
    )
    assert time.perf_counter() - started < 0.2 + 1.0
    assert all(isinstance(r, ProviderUnavailable) for r in results)
    assert verifier.keys is None
    assert provider.hits == {"discovery": 1, "jwks": 1}
    # The fetch goes on in the background; a later request is served without a new one.
    await settle(verifier)
    assert verifier.keys is not None
    assert verifier.failures == 0
    assert (await verifier.verify(token)).subject == "alice"
    assert verifier.fetches == 1
    assert provider.hits == {"discovery": 1, "jwks": 1}


@pytest.mark.parametrize("endpoint", ["discovery", "jwks"])
async def test_hanging_provider_fetch_ends_at_timeout(
    provider: FakeProvider, endpoint: str
) -> None:
    provider.hang.add(endpoint)
    verifier = provider.verifier(max_wait=0.2, timeout=0.5)
    token = sign(EC_KEY)
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(token)
    assert time.perf_counter() - started < 0.2 + 1.0
    await settle(verifier)  # ends at `timeout`, not never
    assert verifier.failures == 1
    assert verifier._last_error is not None
    assert "no answer within 0.5 s" in verifier._last_error
    # Within retry_interval, requests are answered at once without a new fetch.
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(token)
    assert time.perf_counter() - started < 0.2 + 1.0
    assert verifier.fetches == 1
    assert provider.hits[endpoint] == 1


async def test_keys_held_keep_working_while_a_refresh_hangs(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = provider.verifier(max_wait=0.2, timeout=0.6)
    await verifier.start()
    provider.hang.add("discovery")
    provider.clock.advance(600)
    token = sign(RSA_KEY)
    started = time.perf_counter()
    for _ in range(20):
        assert (await verifier.verify(token)).subject == "alice"
        await asyncio.sleep(0.005)  # let the refresh run (into the hang)
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert time.perf_counter() - started < 0.2 + 1.0
    task = verifier._task
    assert task is not None
    assert not task.done()  # the refresh is still hanging, and nobody waited on it
    assert verifier.fetches == 2
    assert provider.hits["discovery"] == 2
    # A kid we do not hold waits for the refresh at most max_wait.
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(NEW_KEY))
    assert time.perf_counter() - started < 0.2 + 1.0
    await settle(verifier)
    assert verifier.failures == 1
    assert warnings_of(caplog, "cannot refresh keys")
    assert (await verifier.verify(token)).subject == "alice"


# --- freshness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, 600),
        ("max-age=300", 300),
        ("public, max-age=120, must-revalidate", 120),
        ('max-age="240"', 240),
        ("max-age=5", 60),  # below min_ttl
        ("max-age=999999", 3600),  # above max_ttl
        ("max-age=0", 60),
        ("no-store", 60),
        ("no-cache", 60),
        ("private, no-cache, max-age=900", 60),
        ("private", 600),
        ("max-age=banana", 600),
    ],
)
async def test_cache_control_sets_freshness_within_bounds(
    provider: FakeProvider, cache_control: str | None, ttl: float
) -> None:
    provider.cache_control = cache_control
    verifier = provider.verifier(min_ttl=60, default_ttl=600, max_ttl=3600)
    await verifier.start()
    provider.clock.advance(ttl - 1)
    await verifier.verify(sign(EC_KEY))
    await settle(verifier)
    assert verifier.fetches == 1  # still fresh
    provider.clock.advance(1)
    await verifier.verify(sign(EC_KEY))
    await settle(verifier)
    assert verifier.fetches == 2  # stale: refreshed


async def test_stale_keys_refresh_once_in_the_background(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    await verifier.start()
    gate = provider.gate["jwks"] = asyncio.Event()
    provider.clock.advance(600)
    token = sign(EC_KEY)
    before = verifier._verifier
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(50)))
    assert all(r.subject == "alice" for r in results)
    task = verifier._task
    assert task is not None
    assert not task.done()  # every request was answered while the refresh was held up
    gate.set()
    await settle(verifier)
    assert verifier.fetches == 2
    assert provider.hits == {"discovery": 2, "jwks": 2}
    # Unchanged keys keep the verifier and its cache of verified tokens.
    assert verifier._verifier is before
    principal = await verifier.verify(token)
    assert await verifier.verify(token) is principal
    # Fresh again: no further fetch.
    provider.clock.advance(599)
    await verifier.verify(sign(EC_KEY))
    assert verifier._task is task
    assert verifier.fetches == 2


async def test_changed_keys_replace_the_verifier(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=OIDC_LOGGER)
    verifier = provider.verifier()
    await verifier.start()
    before = verifier._verifier
    provider.jwks = [*provider.jwks, NEW_KEY.public_jwk()]
    await verifier.refresh()
    assert verifier._verifier is not before
    assert any("changed" in r.getMessage() for r in caplog.records if r.name == OIDC_LOGGER)
    assert verifier.keys is not None
    assert "ec-2" in verifier.keys


# --- rotation -------------------------------------------------------------------------


async def test_rotation_new_kid_triggers_one_refresh(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    await verifier.start()
    provider.jwks = [*provider.jwks, NEW_KEY.public_jwk()]
    provider.clock.advance(30)  # refresh_cooldown since the last fetch
    assert (await verifier.verify(sign(NEW_KEY))).subject == "alice"
    assert provider.hits["jwks"] == 2
    # The old keys still verify, without another fetch.
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    assert (await verifier.verify(sign(NEW_KEY, claims(sub="bob")))).subject == "bob"
    assert provider.hits["jwks"] == 2


async def test_rotation_within_the_cooldown_is_refused_without_a_fetch(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    provider.jwks = [*provider.jwks, NEW_KEY.public_jwk()]
    provider.clock.advance(29)
    with pytest.raises(UnknownKey):
        await verifier.verify(sign(NEW_KEY))
    assert provider.hits["jwks"] == 1
    provider.clock.advance(1)
    assert (await verifier.verify(sign(NEW_KEY))).subject == "alice"
    assert provider.hits["jwks"] == 2


async def test_rotation_to_a_key_of_a_new_algorithm_triggers_a_refresh(
    provider: FakeProvider,
) -> None:
    """BUG (see the report): the allow-list is narrowed to the algorithms of the keys
    held, so a token from a new key of a type not held before (RSA only, then an EC key
    is added) is refused as "algorithm not allowed" instead of being an unknown kid:
    no refresh is attempted and the new key is refused until the keys go stale."""
    provider.jwks = [RSA_KEY.public_jwk()]
    verifier = provider.verifier()
    await verifier.start()
    provider.jwks = [RSA_KEY.public_jwk(), NEW_KEY.public_jwk()]
    provider.clock.advance(30)  # past refresh_cooldown, as in the rotation test above
    assert (await verifier.verify(sign(NEW_KEY))).subject == "alice"
    assert provider.hits["jwks"] == 2


async def test_rotation_many_concurrent_new_kid_requests_cause_one_fetch(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    provider.jwks = [*provider.jwks, NEW_KEY.public_jwk()]
    provider.delay["jwks"] = 0.02
    provider.clock.advance(30)
    tokens = [sign(NEW_KEY, claims(sub=f"user-{n}")) for n in range(50)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [r.subject for r in results] == [f"user-{n}" for n in range(50)]
    assert verifier.fetches == 2
    assert provider.hits == {"discovery": 2, "jwks": 2}


async def test_retired_kid_is_refused_after_an_unknown_kid_refresh(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    old = sign(RSA_KEY)
    assert (await verifier.verify(old)).subject == "alice"
    assert (await verifier.verify(old)).subject == "alice"  # now cached
    # rsa-1 retired, rsa-other and ec-2 published.
    provider.jwks = [k.public_jwk() for k in (OTHER_RSA, PSS_KEY, EC_KEY, ED_KEY, NEW_KEY)]
    provider.clock.advance(30)
    assert (await verifier.verify(sign(NEW_KEY))).subject == "alice"
    with pytest.raises(UnknownKey):
        await verifier.verify(old)
    assert (await verifier.verify(sign(OTHER_RSA))).subject == "alice"
    assert provider.hits["jwks"] == 2


async def test_retired_kid_is_refused_after_a_background_refresh(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    old = sign(RSA_KEY)
    assert (await verifier.verify(old)).subject == "alice"
    provider.jwks = [k.public_jwk() for k in (OTHER_RSA, PSS_KEY, EC_KEY, ED_KEY)]
    provider.clock.advance(600)
    # Stale: a request is answered with the keys held while the refresh runs...
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    await settle(verifier)
    assert verifier.fetches == 2
    # ...and once it has run, the retired key's tokens are refused, cached or not.
    with pytest.raises(UnknownKey):
        await verifier.verify(old)
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    # Asked again after the cooldown, the provider still does not have it.
    provider.clock.advance(30)
    with pytest.raises(UnknownKey):
        await verifier.verify(old)
    assert verifier.fetches == 3


async def test_retiring_the_last_key_of_an_algorithm(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    old = sign(ED_KEY)
    assert (await verifier.verify(old)).subject == "alice"
    provider.jwks = [k.public_jwk() for k in (RSA_KEY, PSS_KEY, EC_KEY)]
    await verifier.refresh()
    error = await refused(verifier, old)
    assert "EdDSA" in error.reason


async def test_random_kid_flood_fetches_at_most_once_per_cooldown(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    flood = [random_kid_token() for _ in range(1000)]
    batches = [flood[:300], flood[300:600], flood[600:]]
    refusals: list[BaseException] = []
    for window, batch in enumerate(batches):
        provider.clock.advance(30)
        concurrent, sequential = batch[:200], batch[200:]
        results = await asyncio.gather(
            *(verifier.verify(t) for t in concurrent), return_exceptions=True
        )
        refusals.extend(r for r in results if isinstance(r, BaseException))
        for token in sequential:
            provider.clock.advance(0.1)  # still inside the window
            with pytest.raises(UnknownKey) as caught:
                await verifier.verify(token)
            refusals.append(caught.value)
        assert verifier.fetches == 1 + window + 1
    assert len(refusals) == 1000
    assert all(type(r) is UnknownKey for r in refusals)
    assert provider.hits == {"discovery": 4, "jwks": 4}
    # While the last fetch failed, unknown kids get 503 (we cannot tell), known ones pass.
    provider.status["jwks"] = 500
    provider.clock.advance(30)
    for _ in range(50):
        with pytest.raises(ProviderUnavailable):
            await verifier.verify(random_kid_token())
    assert verifier.fetches == 5
    assert verifier.failures == 1
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"


async def test_concurrent_cold_start_fetches_once(provider: FakeProvider) -> None:
    provider.delay["discovery"] = 0.02
    verifier = provider.verifier()
    tokens = [sign(EC_KEY, claims(sub=f"user-{n}")) for n in range(50)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [r.subject for r in results] == [f"user-{n}" for n in range(50)]
    assert provider.hits == {"discovery": 1, "jwks": 1}
    assert verifier.fetches == 1


async def test_malformed_tokens_are_refused_before_any_fetch(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    for token in ("", "abc", "a.b", "a.b.c.d", "a..c", "é.b.c", "a" * 20_000):
        await refused(verifier, token)
    await refused(verifier, 42)  # type: ignore[arg-type]
    assert provider.hits == {}
    assert verifier.fetches == 0


# --- start, refresh, aclose -----------------------------------------------------------


async def test_start_and_refresh(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    assert verifier.keys is None
    await verifier.start()
    assert verifier.keys is not None
    assert provider.hits == {"discovery": 1, "jwks": 1}
    # refresh() ignores freshness and cooldowns.
    await verifier.refresh()
    await verifier.refresh()
    assert verifier.fetches == 3
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert verifier.fetches == 3


async def test_start_and_refresh_raise_on_failure(provider: FakeProvider) -> None:
    provider.status["discovery"] = 503
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await verifier.start()
    assert verifier.keys is None
    # Cold and just failed: a request does not fetch again within retry_interval.
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(EC_KEY))
    assert verifier.fetches == 1
    repair(provider)
    await verifier.refresh()
    assert verifier.keys is not None
    provider.refuse.add("jwks")
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        await verifier.refresh()
    assert verifier.keys is not None
    assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
    assert (verifier.fetches, verifier.failures) == (3, 2)


async def test_concurrent_refreshes_share_one_fetch(provider: FakeProvider) -> None:
    provider.delay["jwks"] = 0.02
    verifier = provider.verifier()
    await asyncio.gather(verifier.start(), verifier.refresh(), verifier.verify(sign(EC_KEY)))
    assert verifier.fetches == 1


async def test_aclose_never_closes_a_client_passed_in(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    await verifier.start()
    await verifier.aclose()
    assert not provider.client.is_closed
    response = await provider.client.get(provider.jwks_url)
    assert response.status_code == 200


async def test_aclose_stops_a_hanging_fetch(provider: FakeProvider) -> None:
    provider.hang.add("jwks")
    verifier = provider.verifier(max_wait=0.05, timeout=30)
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(EC_KEY))
    task = verifier._task
    assert task is not None
    assert not task.done()
    await verifier.aclose()
    assert task.cancelled()


class _RecordingClient(httpx.AsyncClient):
    """Stands in for the client the verifier makes itself, served by a FakeProvider."""

    provider: FakeProvider | None = None
    made: list[_RecordingClient] = []  # noqa: RUF012 - a deliberate class-level record

    def __init__(self, **options: Any) -> None:
        assert self.provider is not None
        self.made_with = options
        super().__init__(transport=httpx.MockTransport(self.provider.handler), **options)
        self.made.append(self)


@pytest.fixture
def own_clients(monkeypatch: pytest.MonkeyPatch) -> list[_RecordingClient]:
    """Every client an OIDCVerifier makes for itself, in order (httpx.AsyncClient patched)."""
    made: list[_RecordingClient] = []
    monkeypatch.setattr(_RecordingClient, "made", made)
    monkeypatch.setattr(httpx, "AsyncClient", _RecordingClient)
    return made


async def test_aclose_closes_the_client_it_made(
    provider: FakeProvider, own_clients: list[_RecordingClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_RecordingClient, "provider", provider)
    async with OIDCVerifier(ISSUER, monotonic=provider.clock, clock=lambda: NOW) as verifier:
        assert (await verifier.verify(sign(EC_KEY))).subject == "alice"
        assert len(own_clients) == 1
        (own,) = own_clients
        assert own.made_with["follow_redirects"] is False
        assert not own.is_closed
    assert own.is_closed


def test_same_verifier_from_two_event_loops(
    own_clients: list[_RecordingClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeProvider()
    monkeypatch.setattr(_RecordingClient, "provider", fake)
    verifier = OIDCVerifier(ISSUER, monotonic=fake.clock, clock=lambda: NOW)
    token = sign(EC_KEY)

    async def first() -> str:
        return (await verifier.verify(token)).subject

    async def second() -> tuple[str, str]:
        fake.clock.advance(600)  # stale: the refresh runs on this loop
        subject = (await verifier.verify(sign(EC_KEY))).subject
        await settle(verifier)
        await verifier.refresh()
        info = await verifier.userinfo(token)
        await verifier.aclose()
        return subject, info["sub"]

    assert asyncio.run(first()) == "alice"
    assert asyncio.run(second()) == ("alice", "alice")
    assert fake.hits == {"discovery": 3, "jwks": 3, "userinfo": 1}
    assert len(own_clients) == 2  # one per loop: connections cannot move between loops
    assert own_clients[1].is_closed
    assert verifier.failures == 0


def test_fetch_interrupted_by_the_end_of_a_loop_does_not_block_the_next_loop() -> None:
    """BUG (see the report): a cold fetch cut short by its event loop's end leaves the
    verifier answering 503 "fetch still running" on the next loop until
    refresh_cooldown has passed, though no fetch runs and none ever failed."""
    fake = FakeProvider()
    verifier = fake.verifier(max_wait=0.05)
    token = sign(EC_KEY)
    fake.delay["jwks"] = 30

    async def slow() -> None:
        with pytest.raises(ProviderUnavailable):
            await verifier.verify(token)  # asyncio.run then cancels the fetch

    async def fast() -> str:
        try:
            return (await verifier.verify(token)).subject
        finally:
            await fake.aclose()

    asyncio.run(slow())
    fake.delay.clear()
    fake.clock.advance(1)  # well within refresh_cooldown (30 s), nothing ever failed
    assert asyncio.run(fast()) == "alice"


# --- userinfo -------------------------------------------------------------------------


async def test_userinfo_answer_is_read_only_and_cached(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    token = sign(EC_KEY)
    info = await verifier.userinfo(token)
    assert info["sub"] == "alice"
    assert info["email"] == "alice@example.com"
    assert info["groups"] == ("admins", "staff")
    with pytest.raises(TypeError):
        info["email"] = "mallory@example.com"  # type: ignore[index]
    with pytest.raises(TypeError):
        info["address"]["country"] = "XX"
    assert provider.userinfo_authorization == [f"Bearer {token}"]
    # Cached per token...
    assert await verifier.userinfo(token) is info
    assert provider.hits["userinfo"] == 1
    # ...for ttl seconds of the monotonic clock.
    provider.clock.advance(299)
    await verifier.userinfo(token)
    assert provider.hits["userinfo"] == 1
    provider.clock.advance(1)
    await verifier.userinfo(token)
    assert provider.hits["userinfo"] == 2
    # Another token is another entry.
    other = sign(RSA_KEY)
    await verifier.userinfo(other)
    assert provider.hits["userinfo"] == 3


async def test_userinfo_cache_never_outlives_the_token(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    token = sign(EC_KEY, claims(exp=NOW + 10))
    await verifier.userinfo(token, ttl=300)
    provider.clock.advance(10)
    await verifier.userinfo(token, ttl=300)
    assert provider.hits["userinfo"] == 2


async def test_userinfo_with_a_principal_already_verified(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    token = sign(EC_KEY)
    principal = await verifier.verify(token)
    info = await verifier.userinfo(token, principal=principal)
    assert info["sub"] == "alice"


async def test_concurrent_userinfo_calls_share_one_request(provider: FakeProvider) -> None:
    verifier = provider.verifier()
    token = sign(EC_KEY)
    await verifier.start()
    provider.delay["userinfo"] = 0.05
    answers = await asyncio.gather(*(verifier.userinfo(token) for _ in range(20)))
    assert all(a["sub"] == "alice" for a in answers)
    assert provider.hits["userinfo"] == 1


@pytest.mark.parametrize(
    ("setup", "error", "reason"),
    [
        ("sub-mismatch", ProviderUnavailable, "another subject"),
        ("no-sub", ProviderUnavailable, "another subject"),
        ("401", InvalidToken, "refused the token (401)"),
        ("403", InvalidToken, "refused the token (403)"),
        ("500", ProviderUnavailable, "HTTP 500"),
        ("302", ProviderUnavailable, "HTTP 302"),
        ("not-json", ProviderUnavailable, "not JSON"),
        ("non-object", ProviderUnavailable, "not a JSON object"),
        ("too-large", ProviderUnavailable, "too large"),
        ("connect-error", ProviderUnavailable, "unreachable"),
    ],
)
async def test_userinfo_failures(
    provider: FakeProvider, setup: str, error: type[Exception], reason: str
) -> None:
    verifier = provider.verifier(max_document_bytes=2048)
    token = sign(EC_KEY)
    await verifier.start()
    if setup == "sub-mismatch":
        provider.profile["sub"] = "mallory"
    elif setup == "no-sub":
        del provider.profile["sub"]
    elif setup in ("401", "403", "500"):
        provider.status["userinfo"] = int(setup)
    elif setup == "302":
        provider.redirect["userinfo"] = "https://elsewhere.example.net/userinfo"
    elif setup == "not-json":
        provider.body["userinfo"] = b"{nope"
    elif setup == "non-object":
        provider.body["userinfo"] = b'["alice"]'
    elif setup == "too-large":
        provider.profile["bio"] = "x" * 4096
    else:
        provider.refuse.add("userinfo")
    with pytest.raises(error) as caught:
        await verifier.userinfo(token)
    assert type(caught.value) is error
    assert isinstance(caught.value, InvalidToken | ServiceUnavailable)
    assert reason in str(caught.value)
    # Failures are not cached: once the provider answers properly, so do we.
    provider.profile["sub"] = "alice"
    provider.profile.pop("bio", None)
    repair(provider)
    assert (await verifier.userinfo(token))["sub"] == "alice"


async def test_userinfo_hanging_is_bounded_by_timeout(provider: FakeProvider) -> None:
    verifier = provider.verifier(timeout=0.3, max_wait=0.1)
    token = sign(EC_KEY)
    await verifier.start()
    provider.hang.add("userinfo")
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable):
        await verifier.userinfo(token)
    assert time.perf_counter() - started < 0.3 + 1.0


async def test_userinfo_without_endpoint(provider: FakeProvider) -> None:
    del provider.discovery["userinfo_endpoint"]
    verifier = provider.verifier()
    token = sign(EC_KEY)
    with pytest.raises(ProviderUnavailable, match="no userinfo endpoint"):
        await verifier.userinfo(token)
    assert verifier.keys is not None
    assert provider.hits["userinfo"] == 0


@pytest.mark.parametrize(
    "token",
    [
        sign(ATTACKER, kid="ec-1"),
        sign(EC_KEY, claims(exp=NOW - 1)),
        sign(EC_KEY, claims(iss="https://evil.example.com/")),
        "not.a.token",
    ],
)
async def test_userinfo_refuses_an_invalid_token_before_asking(
    provider: FakeProvider, token: str
) -> None:
    verifier = provider.verifier()
    await verifier.start()
    with pytest.raises(InvalidToken):
        await verifier.userinfo(token)
    assert provider.hits["userinfo"] == 0


# --- IssuerRouter ---------------------------------------------------------------------


@pytest.fixture
def local() -> JWTVerifier:
    return JWTVerifier(LOCAL_KEY, issuer=LOCAL_ISSUER, clock=lambda: NOW)


async def test_router_routes_by_issuer(provider: FakeProvider, local: JWTVerifier) -> None:
    oidc = provider.verifier()
    router = IssuerRouter([local, oidc])
    assert set(router.routes) == {LOCAL_ISSUER, ISSUER}
    mine = await router.verify(sign(LOCAL_KEY, claims(iss=LOCAL_ISSUER, sub="svc")))
    assert (mine.subject, mine.issuer) == ("svc", LOCAL_ISSUER)
    assert provider.hits == {}  # a local token costs no fetch
    theirs = await router.verify(sign(RSA_KEY))
    assert (theirs.subject, theirs.issuer) == ("alice", ISSUER)
    assert provider.hits == {"discovery": 1, "jwks": 1}
    # Again (the router remembers the route): same answers.
    assert (await router.verify(sign(RSA_KEY))).issuer == ISSUER


@pytest.mark.parametrize(
    "token",
    [
        sign(RSA_KEY, claims(iss="https://evil.example.com/")),
        sign(RSA_KEY, claims(iss=None)),
        forge({"alg": "RS256", "kid": "rsa-1"}, claims(iss=42)),
        forge({"alg": "RS256", "kid": "rsa-1"}, claims(iss=[ISSUER])),
        sign(RSA_KEY, claims(iss=ISSUER.rstrip("/"))),
        forge({"alg": "RS256", "kid": "rsa-1"}, {"iss": ISSUER, "sub": "x"})[:-2] + "!!",
        "",
        "abc",
        "a.b.c",
        "a.b.c.d",
        "e30.W10.e30",  # payload is a list
        "e30.bm90IGpzb24.e30",  # payload is not JSON
        "x" * 20_000,
    ],
)
async def test_router_refuses_unknown_missing_or_malformed_issuer_without_fetching(
    provider: FakeProvider, local: JWTVerifier, token: str
) -> None:
    router = IssuerRouter([local, provider.verifier()])
    await refused(router, token)
    assert provider.hits == {}


async def test_router_local_issuer_signed_by_the_provider_is_refused(
    provider: FakeProvider, local: JWTVerifier
) -> None:
    oidc = provider.verifier()
    await oidc.start()
    router = IssuerRouter([local, oidc])
    for key in PROVIDER_KEYS:
        await refused(router, sign(key, claims(iss=LOCAL_ISSUER)))
        await refused(router, sign(key, claims(iss=LOCAL_ISSUER), kid="local-1"))
    # And the other way round: the provider's issuer, the local key.
    provider.clock.advance(30)
    await refused(router, sign(LOCAL_KEY, claims(iss=ISSUER)))
    assert provider.hits["jwks"] <= 2


async def test_router_with_extra_issuers_and_a_mapping(provider: FakeProvider) -> None:
    v1 = "https://sts.example.com/tenant/"
    oidc = provider.verifier(extra_issuers=[v1])
    router = IssuerRouter([oidc])
    assert (await router.verify(sign(EC_KEY, claims(iss=v1)))).issuer == v1
    by_name = IssuerRouter({ISSUER: oidc})
    assert (await by_name.verify(sign(EC_KEY))).issuer == ISSUER
    await refused(by_name, sign(EC_KEY, claims(iss=v1)))


async def test_router_passes_provider_unavailable_through(
    provider: FakeProvider, local: JWTVerifier
) -> None:
    provider.status["discovery"] = 500
    router = IssuerRouter([local, provider.verifier()])
    with pytest.raises(ProviderUnavailable):
        await router.verify(sign(RSA_KEY))


def test_router_configuration_errors(local: JWTVerifier) -> None:
    anywhere = JWTVerifier(Key.generate("ES256"))
    with pytest.raises(ValueError, match="any issuer"):
        IssuerRouter([anywhere])
    same = JWTVerifier(Key.generate("ES256"), issuer=LOCAL_ISSUER)
    with pytest.raises(ValueError, match="two verifiers"):
        IssuerRouter([local, same])
    overlapping = OIDCVerifier(ISSUER, extra_issuers=[LOCAL_ISSUER])
    with pytest.raises(ValueError, match="two verifiers"):
        IssuerRouter([local, overlapping])
    with pytest.raises(ValueError, match="at least one"):
        IssuerRouter([])
    with pytest.raises(ValueError, match="non-empty"):
        IssuerRouter({"": local})

    class NotAsync:
        def verify(self, token: str) -> Principal:
            raise NotImplementedError

    with pytest.raises(TypeError):
        IssuerRouter({LOCAL_ISSUER: NotAsync()})  # type: ignore[arg-type]


def test_unverified_issuer() -> None:
    assert unverified_issuer(sign(EC_KEY)) == ISSUER
    assert unverified_issuer(sign(EC_KEY, claims(iss=None))) is None
    assert unverified_issuer(forge({"alg": "ES256"}, claims(iss=7))) is None
    for token in ("", "a.b", "a.b.c", "x" * 20_000):
        with pytest.raises(InvalidToken):
            unverified_issuer(token)


# --- through AuthMiddleware -----------------------------------------------------------


def make_app(verifier: TokenVerifier) -> Starlette:
    async def me(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse(
            {
                "authenticated": user.is_authenticated,
                "subject": user.identity,
                "scopes": sorted(request.auth.scopes),
            }
        )

    return Starlette(
        routes=[Route("/me", me)],
        middleware=[Middleware(AuthMiddleware, verifier=verifier)],
    )


def app_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_middleware_answers(provider: FakeProvider, local: JWTVerifier) -> None:
    oidc = provider.verifier()
    for verifier in (oidc, IssuerRouter([local, oidc])):
        async with app_client(make_app(verifier)) as client:
            ok = await client.get("/me", headers={"Authorization": f"Bearer {sign(PSS_KEY)}"})
            assert ok.status_code == 200
            assert ok.json() == {
                "authenticated": True,
                "subject": "alice",
                "scopes": ["authenticated", "read", "write"],
            }
            anonymous = await client.get("/me")
            assert anonymous.status_code == 200
            assert anonymous.json()["authenticated"] is False
            for bad in (
                random_kid_token(),
                sign(ATTACKER, kid="ec-1"),
                sign(EC_KEY, claims(exp=NOW - 60)),
                hs256(b"k" * 64, claims(), kid="rsa-1"),
            ):
                response = await client.get("/me", headers={"Authorization": f"Bearer {bad}"})
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == CHALLENGE_INVALID_TOKEN


async def test_middleware_provider_down_with_no_keys_is_503(provider: FakeProvider) -> None:
    provider.refuse.add("discovery")
    async with app_client(make_app(provider.verifier())) as client:
        response = await client.get("/me", headers={"Authorization": f"Bearer {sign(EC_KEY)}"})
    assert response.status_code == 503
    assert "www-authenticate" not in response.headers
    assert response.json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer",
        b"Bearer ",
        b"Bearer \xff\xfe\xfd",
        b"Bearer a b",
        b"Bearer \ttoken",
        b"Bearer ....",
        b"Bearer a.b.c",
        b"Bearer " + b"A" * 100_000,
        b"Bearer " + b"e30." * 3 + b"e30",
        b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.e30",
        b"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6W119.e30.e30",  # kid is a list
        b"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.WzFd.e30",  # payload a list
        b"bearer =====",
        b"Bearer \x00",
    ],
)
async def test_middleware_hostile_authorization_header_is_never_a_500(
    provider: FakeProvider, value: bytes
) -> None:
    async with app_client(make_app(provider.verifier())) as client:
        response = await client.get("/me", headers=[(b"authorization", value)])
        assert response.status_code in (400, 401)
        twice = await client.get(
            "/me", headers=[(b"authorization", value), (b"authorization", value)]
        )
        assert twice.status_code == 400


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "http://idp.example.com/",
        "https://idp.example.com/?tenant=1",
        "https://idp.example.com/#x",
        "https://user@idp.example.com/",
        "ftp://idp.example.com/",
        "idp.example.com",
        "https:///path",
        "",
        "https://idp.example.com/" + "x" * 3000,
    ],
)
def test_unacceptable_issuer(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer"):
        OIDCVerifier(issuer)


def test_http_issuer_on_loopback_or_when_allowed() -> None:
    assert OIDCVerifier("http://127.0.0.1:8080/").issuer == "http://127.0.0.1:8080/"
    assert OIDCVerifier("http://localhost:8080").issuer == "http://localhost:8080"
    assert OIDCVerifier("http://[::1]:8080").issuer == "http://[::1]:8080"
    allowed = OIDCVerifier("http://idp.internal/", allow_http=True)
    assert allowed.discovery_url == "http://idp.internal/.well-known/openid-configuration"
    with pytest.raises(ValueError, match="jwks_uri"):
        OIDCVerifier(ISSUER, jwks_uri="http://idp.example.com/jwks.json")
    assert OIDCVerifier(ISSUER, jwks_uri="http://idp.example.com/jwks.json", allow_http=True)


@pytest.mark.parametrize(
    "option",
    [
        {"timeout": -1},
        {"timeout": 0},
        {"max_wait": -0.1},
        {"min_ttl": -1},
        {"max_ttl": -1},
        {"default_ttl": -1},
        {"refresh_cooldown": -1},
        {"retry_interval": -5},
        {"timeout": True},
        {"timeout": "5"},
        {"min_ttl": 700, "default_ttl": 600},
        {"default_ttl": 90_000, "max_ttl": 86_400},
        {"max_document_bytes": 100},
        {"leeway": -1},
        {"max_token_bytes": 10},
        {"cache_size": -1},
    ],
)
def test_invalid_numbers(option: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        OIDCVerifier(ISSUER, **option)


def test_other_configuration_errors() -> None:
    with pytest.raises(TypeError):
        OIDCVerifier(ISSUER, extra_issuers="https://other.example.com/")
    with pytest.raises(TypeError):
        OIDCVerifier(ISSUER, audience=[])
    # max_wait never exceeds timeout.
    assert OIDCVerifier(ISSUER, timeout=1, max_wait=5).max_wait == 1
    assert repr(OIDCVerifier(ISSUER)) == f"OIDCVerifier({ISSUER!r})"


async def test_require_as_a_string_is_refused_like_jwtverifier(provider: FakeProvider) -> None:
    """BUG (see the report): JWTVerifier refuses require="exp" (TypeError); OIDCVerifier
    turns it into tuple("exp") first, i.e. requires claims "e", "x" and "p", and so
    builds a verifier that refuses every token."""
    with pytest.raises(TypeError):
        JWTVerifier(EC_KEY, require="exp")
    with pytest.raises(TypeError):
        provider.verifier(require="exp")


# --- bounds and edge cases found in review ------------------------------------------


async def test_a_cold_unknown_kid_waits_max_wait_in_total_not_per_fetch(
    provider: FakeProvider,
) -> None:
    # With no cooldown, a cold token with an unknown kid could wait for the first fetch
    # and then for a second one; the bound is on the whole request.
    provider.delay["jwks"] = 0.3  # two fetches in a row would take 0.6 s
    verifier = provider.verifier(max_wait=0.4, refresh_cooldown=0, timeout=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises((UnknownKey, ProviderUnavailable)):
        await verifier.verify(random_kid_token())
    assert loop.time() - started < 0.4 + 0.15


async def test_a_known_kid_with_another_algorithm_is_invalid_not_unknown(
    provider: FakeProvider,
) -> None:
    verifier = provider.verifier()
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    provider.clock.advance(60)  # past the cooldown: an UnknownKey would refetch
    forged = sign(ATTACKER, kid=RSA_KEY.kid)  # ES256 under the RSA key's kid
    error = await refused(verifier, forged)
    assert not isinstance(error, UnknownKey)
    assert verifier.fetches == 1


async def test_refresh_always_fetches_even_cold_within_the_retry_interval(
    provider: FakeProvider,
) -> None:
    provider.status["jwks"] = 500
    verifier = provider.verifier()
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(RSA_KEY))
    assert verifier.fetches == 1
    with pytest.raises(ProviderUnavailable):
        await verifier.verify(sign(RSA_KEY))  # within retry_interval: no new fetch
    assert verifier.fetches == 1
    del provider.status["jwks"]
    await verifier.refresh()  # regardless of the retry interval
    assert verifier.fetches == 2
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"


async def test_the_same_key_listed_twice_is_kept(provider: FakeProvider) -> None:
    provider.jwks = [RSA_KEY.public_jwk(), RSA_KEY.public_jwk()]
    verifier = provider.verifier()
    assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
    assert verifier.keys is not None
    assert len(verifier.keys) == 1
