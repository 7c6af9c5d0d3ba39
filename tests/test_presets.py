"""Provider presets: each against an in-process copy of the provider's discovery document
and JWKS, with tokens shaped like the provider's real ones."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from asgi_auth import ExpiredToken, InvalidToken
from asgi_auth.principal import ClaimMapping, Principal
from asgi_auth.tokens import presets
from asgi_auth.tokens.keys import Key
from asgi_auth.tokens.oidc import OIDCVerifier
from asgi_auth.tokens.presets import auth0, cognito, entra, generic, google, keycloak, okta

# -- the providers' identifiers --------------------------------------------------------

AUTH0_DOMAIN = "example.eu.auth0.com"
AUTH0_ISSUER = "https://example.eu.auth0.com/"
AUTH0_API = "https://api.example.com/orders"
AUTH0_ROLES = "https://example.com/roles"
AUTH0_M2M_CLIENT = "kbyuFDidLLm280LIwVFiazOqjO3ty8KH"

KEYCLOAK_SERVER = "https://sso.example.com"
KEYCLOAK_REALM = "acme"
KEYCLOAK_ISSUER = "https://sso.example.com/realms/acme"

TENANT = "9b2f8c1e-4d3a-4f6b-8e7c-1a2b3c4d5e6f"
OTHER_TENANT = "0e8b4a2c-1111-4c4c-9a9a-abcdefabcdef"
ENTRA_V2 = f"https://login.microsoftonline.com/{TENANT}/v2.0"
ENTRA_V1 = f"https://sts.windows.net/{TENANT}/"
ENTRA_API = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
ENTRA_APP_ID_URI = f"api://{ENTRA_API}"
ENTRA_CLIENT = "1950a258-227b-4e31-a9cf-717495945fc2"
GRAPH = "00000003-0000-0000-c000-000000000000"

REGION = "eu-west-1"
POOL = "eu-west-1_AbC123xyz"
COGNITO_ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
COGNITO_CLIENT = "4a1b2c3d4e5f6g7h8i9j0k1l2m"
COGNITO_M2M_CLIENT = "7p8q9r0s1t2u3v4w5x6y7z8a9b"

OKTA_DOMAIN = "example.okta.com"
OKTA_ISSUER = "https://example.okta.com/oauth2/default"
OKTA_CLIENT = "0oa1b2c3d4e5F6g7H8i9"

GOOGLE_CLIENT = "1234567890-abcdefghijklmnopqrstuv.apps.googleusercontent.com"

GENERIC_ISSUER = "https://idp.example.org"


# -- keys, tokens and a fake provider ----------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    """The one RSA key of this module (generation is slow); providers re-kid it."""
    return Key.generate("RS256", kid="module-key")


@pytest.fixture(scope="module")
def certificate(rsa_key: Key) -> bytes:
    """A self-signed certificate of the module key, DER, for x5c/x5t."""
    private = serialization.load_pem_private_key(rsa_key.private_pem(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def jwk(key: Key, kid: str, *, alg: bool = True, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``key`` under another ``kid``, with or without ``alg``."""
    entry = Key.from_pem(key.private_pem(), kid=kid).public_jwk()
    if not alg:
        del entry["alg"]
    entry.update(extra)
    return entry


def x5c_members(der: bytes) -> dict[str, Any]:
    return {
        "x5c": [base64.b64encode(der).decode("ascii")],
        # x5t is a SHA-1 thumbprint by definition (RFC 7517 §4.8).
        "x5t": b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
    }


class FakeProvider:
    """Discovery and JWKS of one provider, served through an httpx MockTransport."""

    def __init__(
        self,
        key: Key,
        *,
        issuer: str,
        jwks_uri: str,
        keys: list[dict[str, Any]],
        kid: str,
        header: Mapping[str, Any] | None = None,
    ) -> None:
        self.pem = key.private_pem()
        self.public_pem = key.public_pem()
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        self.jwks = {"keys": keys}
        self.kid = kid
        self.header = dict(header or {})
        self.requests: list[str] = []
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        if request.method == "GET" and url == self.discovery_url:
            return httpx.Response(
                200,
                json={
                    "issuer": self.issuer,
                    "jwks_uri": self.jwks_uri,
                    "authorization_endpoint": self.issuer.rstrip("/") + "/authorize",
                    "token_endpoint": self.issuer.rstrip("/") + "/token",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        if request.method == "GET" and url == self.jwks_uri:
            return httpx.Response(200, json=self.jwks, headers={"cache-control": "max-age=3600"})
        return httpx.Response(404, json={"error": "not_found"})

    def mint(self, claims: Mapping[str, Any], **header: Any) -> str:
        """An RS256 token signed by this provider's key, with its usual header."""
        return jwt.encode(
            dict(claims),
            self.pem,
            algorithm="RS256",
            headers={"kid": self.kid, **self.header, **header},
        )

    def forge_hs256(self, claims: Mapping[str, Any]) -> str:
        """The algorithm-confusion attack: HS256 keyed with the provider's public key."""
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
        body = b64url(json.dumps(dict(claims)).encode())
        mac = hmac.new(self.public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64url(mac)}"


def tamper(token: str, **changes: Any) -> str:
    """The token with claims changed and the original signature kept."""
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"


def now() -> int:
    return int(time.time())


def expired(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims issued two hours ago, expired an hour ago."""
    moved = dict(claims)
    for name in ("iat", "nbf", "auth_time"):
        if name in moved:
            moved[name] = now() - 7200
    moved["exp"] = now() - 3600
    return moved


@pytest.fixture
async def auth0_idp(rsa_key: Key, certificate: bytes) -> AsyncIterator[FakeProvider]:
    kid = "aXnU4Qh2dM7kPq2zXc8Vb"
    idp = FakeProvider(
        rsa_key,
        issuer=AUTH0_ISSUER,
        jwks_uri=f"{AUTH0_ISSUER}.well-known/jwks.json",
        keys=[jwk(rsa_key, kid, **x5c_members(certificate))],
        kid=kid,
        header={"typ": "JWT"},
    )
    yield idp
    await idp.http.aclose()


@pytest.fixture
async def keycloak_idp(rsa_key: Key, certificate: bytes) -> AsyncIterator[FakeProvider]:
    kid = "Zt3bHkU1qL0x5wYv2Pq7Rj8sNc4mAe6dFg9hIo1jKlM"
    encryption = jwk(rsa_key, "enc-key-1", alg=False, use="enc")  # Keycloak's RSA-OAEP key
    encryption["alg"] = "RSA-OAEP"
    idp = FakeProvider(
        rsa_key,
        issuer=KEYCLOAK_ISSUER,
        jwks_uri=f"{KEYCLOAK_ISSUER}/protocol/openid-connect/certs",
        keys=[jwk(rsa_key, kid, **x5c_members(certificate)), encryption],
        kid=kid,
        header={"typ": "JWT"},
    )
    yield idp
    await idp.http.aclose()


@pytest.fixture
async def entra_idp(rsa_key: Key, certificate: bytes) -> AsyncIterator[FakeProvider]:
    members = x5c_members(certificate)
    kid = members["x5t"]  # Entra's kid is the certificate thumbprint
    idp = FakeProvider(
        rsa_key,
        issuer=ENTRA_V2,
        jwks_uri=f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys",
        # As Entra publishes them: no "alg", an x5c chain, an "issuer" member.
        keys=[jwk(rsa_key, kid, alg=False, issuer=ENTRA_V2, **members)],
        kid=kid,
        header={"typ": "JWT"},
    )
    yield idp
    await idp.http.aclose()


@pytest.fixture
async def cognito_idp(rsa_key: Key) -> AsyncIterator[FakeProvider]:
    kid = "q5Lq4mY0Cd0B6XTzS8mSxJ2T6bWlW+8mKh5Gu4yJn3s="
    idp = FakeProvider(
        rsa_key,
        issuer=COGNITO_ISSUER,
        jwks_uri=f"{COGNITO_ISSUER}/.well-known/jwks.json",
        keys=[jwk(rsa_key, kid)],
        kid=kid,
        header={"typ": None},  # Cognito's header is just {"kid", "alg"}
    )
    yield idp
    await idp.http.aclose()


@pytest.fixture
async def okta_idp(rsa_key: Key) -> AsyncIterator[FakeProvider]:
    kid = "3ZqvEs2Sg8cL1pB0uXy5rT7wHk9mNd4aQf6jVb2iOe0"
    idp = FakeProvider(
        rsa_key,
        issuer=OKTA_ISSUER,
        jwks_uri=f"{OKTA_ISSUER}/v1/keys",
        keys=[jwk(rsa_key, kid)],
        kid=kid,
        header={"typ": None},
    )
    yield idp
    await idp.http.aclose()


@pytest.fixture
async def google_idp(rsa_key: Key) -> AsyncIterator[FakeProvider]:
    kid = "a50f6e70ef4b548a5fd9142eecd1fb8f54dce9ee"
    idp = FakeProvider(
        rsa_key,
        issuer="https://accounts.google.com",
        jwks_uri="https://www.googleapis.com/oauth2/v3/certs",  # where Google serves them
        keys=[jwk(rsa_key, kid)],
        kid=kid,
        header={"typ": "JWT"},
    )
    yield idp
    await idp.http.aclose()


@pytest.fixture
async def generic_idp(rsa_key: Key) -> AsyncIterator[FakeProvider]:
    idp = FakeProvider(
        rsa_key,
        issuer=GENERIC_ISSUER,
        jwks_uri=f"{GENERIC_ISSUER}/jwks",
        keys=[jwk(rsa_key, "generic-1")],
        kid="generic-1",
    )
    yield idp
    await idp.http.aclose()


def assert_principal(
    principal: Principal,
    *,
    subject: str,
    issuer: str,
    scopes: set[str] | frozenset[str] = frozenset(),
    roles: set[str] | frozenset[str] = frozenset(),
    permissions: set[str] | frozenset[str] = frozenset(),
) -> None:
    assert principal.subject == subject
    assert principal.issuer == issuer
    assert principal.scopes == scopes
    assert principal.roles == roles
    assert principal.permissions == permissions


# -- Auth0 ------------------------------------------------------------------------------


def auth0_user_claims() -> dict[str, Any]:
    return {
        "https://example.com/email": "alice@example.com",
        AUTH0_ROLES: ["admin", "editor"],
        "iss": AUTH0_ISSUER,
        "sub": "auth0|64f1c2e9a7b3d5e6f7a8b9c0",
        "aud": [AUTH0_API, f"{AUTH0_ISSUER}userinfo"],
        "iat": now(),
        "exp": now() + 86_400,
        "scope": "openid profile email read:orders",
        "azp": "Xb3kQm9TzL2pV8cN5rW1yJ6hF4dG7sA0",
        "permissions": ["read:orders", "write:orders"],
    }


def auth0_m2m_claims() -> dict[str, Any]:
    return {
        "iss": AUTH0_ISSUER,
        "sub": f"{AUTH0_M2M_CLIENT}@clients",
        "aud": AUTH0_API,
        "iat": now(),
        "exp": now() + 86_400,
        "gty": "client-credentials",
        "azp": AUTH0_M2M_CLIENT,
        "scope": "read:orders sync:orders",
        "permissions": ["read:orders", "sync:orders"],
    }


async def test_auth0_user_token(auth0_idp: FakeProvider) -> None:
    verifier = auth0(AUTH0_DOMAIN, AUTH0_API, roles_claim=AUTH0_ROLES, http_client=auth0_idp.http)
    assert verifier.issuer == AUTH0_ISSUER
    principal = await verifier.verify(auth0_idp.mint(auth0_user_claims()))
    assert_principal(
        principal,
        subject="auth0|64f1c2e9a7b3d5e6f7a8b9c0",
        issuer=AUTH0_ISSUER,
        scopes={"openid", "profile", "email", "read:orders"},
        roles={"admin", "editor"},
        permissions={"read:orders", "write:orders"},
    )
    assert auth0_idp.requests == [
        "https://example.eu.auth0.com/.well-known/openid-configuration",
        "https://example.eu.auth0.com/.well-known/jwks.json",
    ]


async def test_auth0_machine_to_machine_token(auth0_idp: FakeProvider) -> None:
    verifier = auth0(AUTH0_DOMAIN, AUTH0_API, roles_claim=AUTH0_ROLES, http_client=auth0_idp.http)
    principal = await verifier.verify(auth0_idp.mint(auth0_m2m_claims()))
    assert_principal(
        principal,
        subject=f"{AUTH0_M2M_CLIENT}@clients",
        issuer=AUTH0_ISSUER,
        scopes={"read:orders", "sync:orders"},
        permissions={"read:orders", "sync:orders"},
    )
    assert principal.claims["gty"] == "client-credentials"
    assert "sync:orders" in principal.auth_scopes


async def test_auth0_namespaced_roles_claim_is_one_claim_name(auth0_idp: FakeProvider) -> None:
    # The claim name is a URL full of dots: it must be read whole, not as a path.
    claims = auth0_user_claims()
    claims[AUTH0_ROLES] = ["support"]
    claims["https://example"] = {"com/roles": ["root"]}  # what a dotted walk would find
    verifier = auth0(AUTH0_DOMAIN, AUTH0_API, roles_claim=AUTH0_ROLES, http_client=auth0_idp.http)
    principal = await verifier.verify(auth0_idp.mint(claims))
    assert principal.roles == {"support"}
    assert ClaimMapping(roles=(AUTH0_ROLES,)).read({AUTH0_ROLES: "a b"}, (AUTH0_ROLES,)) == {
        "a",
        "b",
    }


async def test_auth0_roles_only_from_the_configured_claim(auth0_idp: FakeProvider) -> None:
    claims = auth0_user_claims()
    claims["roles"] = ["admin"]  # not namespaced, not configured: not roles
    verifier = auth0(AUTH0_DOMAIN, AUTH0_API, http_client=auth0_idp.http)
    principal = await verifier.verify(auth0_idp.mint(claims))
    assert principal.roles == frozenset()
    assert principal.permissions == {"read:orders", "write:orders"}


async def test_auth0_accepts_any_of_several_apis(auth0_idp: FakeProvider) -> None:
    claims = auth0_m2m_claims() | {"aud": "https://api.example.com/billing"}
    verifier = auth0(
        AUTH0_DOMAIN, [AUTH0_API, "https://api.example.com/billing"], http_client=auth0_idp.http
    )
    assert (await verifier.verify(auth0_idp.mint(claims))).subject == f"{AUTH0_M2M_CLIENT}@clients"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"aud": "https://api.example.com/other"}, "audience"),
        ({"aud": [f"{AUTH0_ISSUER}userinfo"]}, "audience"),
        ({"iss": "https://example.eu.auth0.com"}, "issuer"),  # no trailing slash
        ({"iss": "https://evil.eu.auth0.com/"}, "issuer"),
    ],
)
async def test_auth0_refuses_claims(
    auth0_idp: FakeProvider, change: dict[str, Any], match: str
) -> None:
    verifier = auth0(AUTH0_DOMAIN, AUTH0_API, http_client=auth0_idp.http)
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(auth0_idp.mint(auth0_m2m_claims() | change))


async def test_auth0_refuses_expired_forged_and_tampered(auth0_idp: FakeProvider) -> None:
    verifier = auth0(AUTH0_DOMAIN, AUTH0_API, http_client=auth0_idp.http)
    good = auth0_idp.mint(auth0_m2m_claims())
    assert (await verifier.verify(good)).subject == f"{AUTH0_M2M_CLIENT}@clients"
    with pytest.raises(ExpiredToken):
        await verifier.verify(auth0_idp.mint(expired(auth0_m2m_claims())))
    with pytest.raises(InvalidToken, match="algorithm 'HS256' is not allowed"):
        await verifier.verify(auth0_idp.forge_hs256(auth0_m2m_claims()))
    with pytest.raises(InvalidToken, match="signature"):
        await verifier.verify(tamper(good, permissions=["delete:everything"]))


# -- Keycloak ---------------------------------------------------------------------------


def keycloak_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "exp": now() + 300,
        "iat": now(),
        "auth_time": now() - 10,
        "jti": "onrtac:4b0e1c5e-9d6a-4f0b-8a53-6c1e2a7b9f10",
        "iss": KEYCLOAK_ISSUER,
        "aud": ["orders-api", "account"],
        "sub": "f3c1a2b4-5d6e-4f70-8192-a3b4c5d6e7f8",
        "typ": "Bearer",
        "azp": "web-app",
        "sid": "0d4b0e61-6a3f-4b7e-9d2c-8e1f2a3b4c5d",
        "acr": "1",
        "allowed-origins": ["https://app.example.com"],
        "realm_access": {
            "roles": ["offline_access", "uma_authorization", "default-roles-acme", "manager"]
        },
        "resource_access": {
            "orders-api": {"roles": ["orders:write"]},
            "account": {"roles": ["manage-account", "view-profile"]},
        },
        "scope": "openid email profile orders",
        "email_verified": True,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "given_name": "Alice",
        "family_name": "Liddell",
        "email": "alice@example.com",
    }
    claims.update(changes)
    return claims


REALM_ROLES = {"offline_access", "uma_authorization", "default-roles-acme", "manager"}


async def test_keycloak_realm_and_client_roles(keycloak_idp: FakeProvider) -> None:
    verifier = keycloak(
        KEYCLOAK_SERVER,
        KEYCLOAK_REALM,
        audience="orders-api",
        client_id="orders-api",
        http_client=keycloak_idp.http,
    )
    principal = await verifier.verify(keycloak_idp.mint(keycloak_claims()))
    assert_principal(
        principal,
        subject="f3c1a2b4-5d6e-4f70-8192-a3b4c5d6e7f8",
        issuer=KEYCLOAK_ISSUER,
        scopes={"openid", "email", "profile", "orders"},
        roles=REALM_ROLES | {"orders:write"},  # not the "account" client's roles
    )
    assert principal.display_name == "alice"
    assert keycloak_idp.requests == [
        "https://sso.example.com/realms/acme/.well-known/openid-configuration",
        "https://sso.example.com/realms/acme/protocol/openid-connect/certs",
    ]
    assert verifier.keys is not None
    assert [key.kid for key in verifier.keys] == [keycloak_idp.kid]  # the "enc" key skipped


async def test_keycloak_without_client_id_reads_realm_roles(keycloak_idp: FakeProvider) -> None:
    verifier = keycloak(
        KEYCLOAK_SERVER, KEYCLOAK_REALM, audience="orders-api", http_client=keycloak_idp.http
    )
    principal = await verifier.verify(keycloak_idp.mint(keycloak_claims()))
    assert principal.roles == REALM_ROLES


async def test_keycloak_token_without_client_roles(keycloak_idp: FakeProvider) -> None:
    verifier = keycloak(
        KEYCLOAK_SERVER,
        KEYCLOAK_REALM,
        audience="orders-api",
        client_id="orders-api",
        http_client=keycloak_idp.http,
    )
    claims = keycloak_claims(resource_access={"account": {"roles": ["view-profile"]}})
    principal = await verifier.verify(keycloak_idp.mint(claims))
    assert principal.roles == REALM_ROLES


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"aud": "account"}, "audience"),  # no Audience mapper
        ({"typ": "ID", "aud": "orders-api"}, "'typ'"),  # an ID token of the same client
        ({"typ": "Refresh"}, "'typ'"),
        ({"typ": "DPoP", "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}, "cnf"),
        ({"typ": "DPoP"}, "'typ'"),
        ({"iss": "https://sso.example.com/realms/other"}, "issuer"),
        ({"iss": "http://sso.example.com/realms/acme"}, "issuer"),
    ],
)
async def test_keycloak_refuses(
    keycloak_idp: FakeProvider, change: dict[str, Any], match: str
) -> None:
    verifier = keycloak(
        KEYCLOAK_SERVER, KEYCLOAK_REALM, audience="orders-api", http_client=keycloak_idp.http
    )
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(keycloak_idp.mint(keycloak_claims(**change)))


async def test_keycloak_refuses_expired_and_hs256(keycloak_idp: FakeProvider) -> None:
    verifier = keycloak(
        KEYCLOAK_SERVER, KEYCLOAK_REALM, audience="orders-api", http_client=keycloak_idp.http
    )
    with pytest.raises(ExpiredToken):
        await verifier.verify(keycloak_idp.mint(expired(keycloak_claims())))
    with pytest.raises(InvalidToken, match="algorithm"):
        await verifier.verify(keycloak_idp.forge_hs256(keycloak_claims()))


async def test_keycloak_expect_is_merged(keycloak_idp: FakeProvider) -> None:
    verifier = keycloak(
        KEYCLOAK_SERVER,
        KEYCLOAK_REALM,
        audience="orders-api",
        expect={"azp": "web-app"},
        http_client=keycloak_idp.http,
    )
    principal = await verifier.verify(keycloak_idp.mint(keycloak_claims()))
    assert principal.claims["azp"] == "web-app"
    with pytest.raises(InvalidToken, match="'azp'"):
        await verifier.verify(keycloak_idp.mint(keycloak_claims(azp="other-app")))
    with pytest.raises(InvalidToken, match="'typ'"):
        await verifier.verify(keycloak_idp.mint(keycloak_claims(typ="ID")))
    with pytest.raises(ValueError, match="typ"):
        keycloak(KEYCLOAK_SERVER, KEYCLOAK_REALM, audience="a", expect={"typ": "ID"})


@pytest.mark.parametrize(
    ("server_url", "issuer"),
    [
        ("https://sso.example.com/", "https://sso.example.com/realms/acme"),
        ("https://SSO.Example.com", "https://sso.example.com/realms/acme"),
        ("https://sso.example.com:8443/auth", "https://sso.example.com:8443/auth/realms/acme"),
        ("https://sso.example.com/auth/", "https://sso.example.com/auth/realms/acme"),
        ("http://localhost:8080", "http://localhost:8080/realms/acme"),
    ],
)
def test_keycloak_issuer(server_url: str, issuer: str) -> None:
    verifier = keycloak(server_url, "acme", audience="orders-api")
    assert verifier.issuer == issuer
    assert verifier.discovery_url == f"{issuer}/.well-known/openid-configuration"


def test_keycloak_plain_http_only_on_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        keycloak("http://sso.example.com", "acme", audience="orders-api")
    verifier = keycloak("http://sso.internal", "acme", audience="orders-api", allow_http=True)
    assert verifier.issuer == "http://sso.internal/realms/acme"


# -- Microsoft Entra ID ------------------------------------------------------------------


def entra_v2_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": ENTRA_API,
        "iss": ENTRA_V2,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "aio": "AWQAm/8YAAAAx3y9vQ0kG1pq+7HfT2l4Qh5b0yUz9Xg==",
        "azp": ENTRA_CLIENT,
        "azpacr": "0",
        "name": "Alice Liddell",
        "oid": "3f1b6c2a-8d4e-4b9f-a0c1-2e3d4f5a6b7c",
        "preferred_username": "alice@contoso.com",
        "rh": "1.AXkAvOj5ch6Gr0GRqy18wBHbRw.",
        "scp": "access_as_user Orders.Read",
        "sid": "00a1b2c3-d4e5-f6a7-b8c9-d0e1f2a3b4c5",
        "sub": "Rk5x1mJk3qQ0Tz9uC2bXy7vW4sN8pL6hGfD5eA1cB0o",
        "tid": TENANT,
        "uti": "Qw3rTy7uIo9pAs1dFg5hJk",
        "ver": "2.0",
    }
    claims.update(changes)
    return claims


def entra_v1_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": ENTRA_APP_ID_URI,
        "iss": ENTRA_V1,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "acr": "1",
        "aio": "E2ZgYPj9/Xl8vWm3d0Z3r+5YdP8A",
        "amr": ["pwd", "mfa"],
        "appid": ENTRA_CLIENT,
        "appidacr": "0",
        "family_name": "Liddell",
        "given_name": "Alice",
        "ipaddr": "203.0.113.7",
        "name": "Alice Liddell",
        "oid": "3f1b6c2a-8d4e-4b9f-a0c1-2e3d4f5a6b7c",
        "rh": "0.AXkAvOj5ch6Gr0GRqy18wBHbRw.",
        "roles": ["Orders.Admin"],
        "scp": "user_impersonation",
        "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
        "tid": TENANT,
        "unique_name": "alice@contoso.com",
        "upn": "alice@contoso.com",
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "1.0",
    }
    claims.update(changes)
    return claims


def entra_app_claims() -> dict[str, Any]:
    """An app-only (client credentials) v2 token: roles, no scp, sub is the app's oid."""
    service_principal = "8c0b3e7a-5f1d-4e2a-9b6c-1d2e3f4a5b6c"
    return {
        "aud": ENTRA_API,
        "iss": ENTRA_V2,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "aio": "k2BgYHjQ8+7c1n0/AA==",
        "azp": ENTRA_CLIENT,
        "azpacr": "1",
        "idtyp": "app",
        "oid": service_principal,
        "rh": "0.AXkAvOj5ch6Gr0GRqy18wBHbRw.",
        "roles": ["Orders.ReadWrite.All"],
        "sub": service_principal,
        "tid": TENANT,
        "uti": "2VNo3f8oNkKc2Zz3c0cBAA",
        "ver": "2.0",
    }


async def test_entra_v2_delegated_token(entra_idp: FakeProvider) -> None:
    verifier = entra(TENANT, [ENTRA_API, ENTRA_APP_ID_URI], http_client=entra_idp.http)
    principal = await verifier.verify(entra_idp.mint(entra_v2_claims()))
    assert_principal(
        principal,
        subject="Rk5x1mJk3qQ0Tz9uC2bXy7vW4sN8pL6hGfD5eA1cB0o",
        issuer=ENTRA_V2,
        scopes={"access_as_user", "Orders.Read"},
    )
    assert entra_idp.requests == [
        f"https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration",
        f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys",
    ]
    # Entra's keys have no "alg": the RSA key serves the RSA family.
    assert verifier.keys is not None
    key = verifier.keys.get(entra_idp.kid)
    assert key is not None
    assert {"RS256", "PS256"} <= key.algorithms


async def test_entra_v1_token(entra_idp: FakeProvider) -> None:
    verifier = entra(TENANT, [ENTRA_API, ENTRA_APP_ID_URI], http_client=entra_idp.http)
    token = entra_idp.mint(entra_v1_claims(), x5t=entra_idp.kid)
    principal = await verifier.verify(token)
    assert_principal(
        principal,
        subject="l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
        issuer=ENTRA_V1,
        scopes={"user_impersonation"},
        roles={"Orders.Admin"},
    )
    assert principal.claims["ver"] == "1.0"


async def test_entra_app_only_token(entra_idp: FakeProvider) -> None:
    verifier = entra(TENANT, ENTRA_API, http_client=entra_idp.http)
    principal = await verifier.verify(entra_idp.mint(entra_app_claims()))
    assert_principal(
        principal,
        subject="8c0b3e7a-5f1d-4e2a-9b6c-1d2e3f4a5b6c",
        issuer=ENTRA_V2,
        roles={"Orders.ReadWrite.All"},
    )


async def test_entra_v1_refused_unless_accepted(entra_idp: FakeProvider) -> None:
    verifier = entra(TENANT, ENTRA_APP_ID_URI, accept_v1=False, http_client=entra_idp.http)
    assert verifier.issuers == {ENTRA_V2}
    with pytest.raises(InvalidToken, match="issuer"):
        await verifier.verify(entra_idp.mint(entra_v1_claims()))
    assert entra(TENANT, ENTRA_API).issuers == {ENTRA_V2, ENTRA_V1}


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (
            lambda: entra_v2_claims(iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"),
            "issuer",
        ),
        (lambda: entra_v1_claims(iss=f"https://sts.windows.net/{OTHER_TENANT}/"), "issuer"),
        (lambda: entra_v2_claims(iss="https://login.microsoftonline.com/common/v2.0"), "issuer"),
        (lambda: entra_v2_claims(aud=GRAPH), "audience"),  # a Microsoft Graph token
        (lambda: entra_v1_claims(aud="https://graph.microsoft.com"), "audience"),
    ],
)
async def test_entra_refuses(
    entra_idp: FakeProvider, claims: Callable[[], dict[str, Any]], match: str
) -> None:
    verifier = entra(TENANT, [ENTRA_API, ENTRA_APP_ID_URI], http_client=entra_idp.http)
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(entra_idp.mint(claims()))


async def test_entra_refuses_expired_and_hs256(entra_idp: FakeProvider) -> None:
    verifier = entra(TENANT, ENTRA_API, http_client=entra_idp.http)
    with pytest.raises(ExpiredToken):
        await verifier.verify(entra_idp.mint(expired(entra_v2_claims())))
    with pytest.raises(InvalidToken, match="algorithm"):
        await verifier.verify(entra_idp.forge_hs256(entra_v2_claims()))


def test_entra_tenant_is_normalised_to_lower_case() -> None:
    verifier = entra(TENANT.upper(), ENTRA_API)
    assert verifier.issuer == ENTRA_V2
    assert verifier.issuers == {ENTRA_V2, ENTRA_V1}


# -- Amazon Cognito ------------------------------------------------------------------------


def cognito_access_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admins", "staff"],
        "iss": COGNITO_ISSUER,
        "version": 2,
        "client_id": COGNITO_CLIENT,
        "origin_jti": "5a1d0c9e-7b3f-4e2a-8d6c-0f1e2d3c4b5a",
        "event_id": "d6f1e2a3-b4c5-4d6e-8f7a-9b0c1d2e3f4a",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin openid email",
        "auth_time": now(),
        "exp": now() + 3600,
        "iat": now(),
        "jti": "8e2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "username": "alice",
    }
    claims.update(changes)
    return claims


def cognito_id_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "at_hash": "Q2pL7k0d1vG5tX9mB3nR8w",
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admins"],
        "email_verified": True,
        "iss": COGNITO_ISSUER,
        "cognito:username": "alice",
        "origin_jti": "5a1d0c9e-7b3f-4e2a-8d6c-0f1e2d3c4b5a",
        "aud": COGNITO_CLIENT,
        "event_id": "d6f1e2a3-b4c5-4d6e-8f7a-9b0c1d2e3f4a",
        "token_use": "id",
        "auth_time": now(),
        "exp": now() + 3600,
        "iat": now(),
        "jti": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "email": "alice@example.com",
    }
    claims.update(changes)
    return claims


def cognito_m2m_claims() -> dict[str, Any]:
    return {
        "sub": COGNITO_M2M_CLIENT,
        "token_use": "access",
        "scope": "orders/read orders/write",
        "auth_time": now(),
        "iss": COGNITO_ISSUER,
        "exp": now() + 3600,
        "iat": now(),
        "version": 2,
        "jti": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
        "client_id": COGNITO_M2M_CLIENT,
    }


async def test_cognito_access_token(cognito_idp: FakeProvider) -> None:
    verifier = cognito(REGION, POOL, client_ids=COGNITO_CLIENT, http_client=cognito_idp.http)
    principal = await verifier.verify(cognito_idp.mint(cognito_access_claims()))
    assert_principal(
        principal,
        subject="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        issuer=COGNITO_ISSUER,
        scopes={"aws.cognito.signin.user.admin", "openid", "email"},
        roles={"admins", "staff"},
    )
    assert cognito_idp.requests == [
        f"{COGNITO_ISSUER}/.well-known/openid-configuration",
        f"{COGNITO_ISSUER}/.well-known/jwks.json",
    ]


async def test_cognito_client_credentials_token(cognito_idp: FakeProvider) -> None:
    verifier = cognito(
        REGION,
        POOL,
        client_ids=[COGNITO_CLIENT, COGNITO_M2M_CLIENT],
        http_client=cognito_idp.http,
    )
    principal = await verifier.verify(cognito_idp.mint(cognito_m2m_claims()))
    assert_principal(
        principal,
        subject=COGNITO_M2M_CLIENT,
        issuer=COGNITO_ISSUER,
        scopes={"orders/read", "orders/write"},
    )


async def test_cognito_id_token(cognito_idp: FakeProvider) -> None:
    verifier = cognito(
        REGION, POOL, client_ids=COGNITO_CLIENT, token_use="id", http_client=cognito_idp.http
    )
    principal = await verifier.verify(cognito_idp.mint(cognito_id_claims()))
    assert_principal(
        principal,
        subject="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        issuer=COGNITO_ISSUER,
        roles={"admins"},
    )


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (
            lambda: cognito_id_claims(),
            "audience",
        ),  # an ID token has an aud: refused before token_use
        (lambda: cognito_id_claims(aud=None), "'token_use'"),
        (lambda: cognito_access_claims(token_use="id"), "'token_use'"),
        (lambda: cognito_access_claims(client_id="5z5z5z5z5z5z5z5z5z5z5z5z5z"), "'client_id'"),
        (lambda: cognito_m2m_claims(), "'client_id'"),  # a client not on the list
        (lambda: cognito_access_claims(client_id=[COGNITO_CLIENT]), "'client_id'"),
        (
            lambda: cognito_access_claims(
                iss="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other1"
            ),
            "issuer",
        ),
        (lambda: cognito_access_claims(aud=COGNITO_CLIENT), "audience"),
    ],
)
async def test_cognito_access_verifier_refuses(
    cognito_idp: FakeProvider, claims: Callable[[], dict[str, Any]], match: str
) -> None:
    present = {name: value for name, value in claims().items() if value is not None}
    verifier = cognito(REGION, POOL, client_ids=COGNITO_CLIENT, http_client=cognito_idp.http)
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(cognito_idp.mint(present))


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (lambda: cognito_access_claims(), "aud"),  # an access token has no aud
        (lambda: cognito_access_claims(aud=COGNITO_CLIENT), "'token_use'"),
        (lambda: cognito_id_claims(aud="5z5z5z5z5z5z5z5z5z5z5z5z5z"), "audience"),
        (lambda: cognito_id_claims(token_use="access"), "'token_use'"),
    ],
)
async def test_cognito_id_verifier_refuses(
    cognito_idp: FakeProvider, claims: Callable[[], dict[str, Any]], match: str
) -> None:
    verifier = cognito(
        REGION, POOL, client_ids=COGNITO_CLIENT, token_use="id", http_client=cognito_idp.http
    )
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(cognito_idp.mint(claims()))


async def test_cognito_refuses_expired_and_hs256(cognito_idp: FakeProvider) -> None:
    verifier = cognito(REGION, POOL, client_ids=COGNITO_CLIENT, http_client=cognito_idp.http)
    with pytest.raises(ExpiredToken):
        await verifier.verify(cognito_idp.mint(expired(cognito_access_claims())))
    with pytest.raises(InvalidToken, match="algorithm"):
        await verifier.verify(cognito_idp.forge_hs256(cognito_access_claims()))


# -- Okta ---------------------------------------------------------------------------------


def okta_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "ver": 1,
        "jti": "AT.7kQ3u0Xw9ZpLmN2bV5cR8tY1hJ4gF6dS0aE3iO9uK2l",
        "iss": OKTA_ISSUER,
        "aud": "api://default",
        "iat": now(),
        "exp": now() + 3600,
        "cid": OKTA_CLIENT,
        "uid": "00u1a2b3c4d5E6f7G8h9",
        "scp": ["openid", "profile", "orders.read"],
        "auth_time": now() - 30,
        "sub": "alice@example.com",
        "groups": ["Everyone", "Admins"],
    }
    claims.update(changes)
    return claims


async def test_okta_access_token(okta_idp: FakeProvider) -> None:
    verifier = okta(OKTA_DOMAIN, "api://default", http_client=okta_idp.http)
    principal = await verifier.verify(okta_idp.mint(okta_claims()))
    assert_principal(
        principal,
        subject="alice@example.com",
        issuer=OKTA_ISSUER,
        scopes={"openid", "profile", "orders.read"},
        roles={"Everyone", "Admins"},
    )
    assert okta_idp.requests == [
        f"{OKTA_ISSUER}/.well-known/openid-configuration",
        f"{OKTA_ISSUER}/v1/keys",
    ]


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (lambda: okta_claims(iss="https://example.okta.com"), "issuer"),  # the org server
        (lambda: okta_claims(iss="https://example.okta.com/oauth2/aus9z8y7x6w5v4u3t2s1"), "issuer"),
        (lambda: okta_claims(aud=OKTA_CLIENT), "audience"),  # an ID token's audience
        (lambda: okta_claims(scp="openid", groups={"admins": True}), "neither a string nor a list"),
    ],
)
async def test_okta_refuses(
    okta_idp: FakeProvider, claims: Callable[[], dict[str, Any]], match: str
) -> None:
    verifier = okta(OKTA_DOMAIN, "api://default", http_client=okta_idp.http)
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(okta_idp.mint(claims()))


async def test_okta_refuses_expired(okta_idp: FakeProvider) -> None:
    verifier = okta(OKTA_DOMAIN, "api://default", http_client=okta_idp.http)
    with pytest.raises(ExpiredToken):
        await verifier.verify(okta_idp.mint(expired(okta_claims())))


def test_okta_custom_authorization_server() -> None:
    verifier = okta(
        "login.example.com", "api://orders", authorization_server="aus1a2b3c4d5E6F7g8h9"
    )
    assert verifier.issuer == "https://login.example.com/oauth2/aus1a2b3c4d5E6F7g8h9"
    assert verifier.discovery_url == (
        "https://login.example.com/oauth2/aus1a2b3c4d5E6F7g8h9/.well-known/openid-configuration"
    )


# -- Google ---------------------------------------------------------------------------------


def google_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "azp": GOOGLE_CLIENT,
        "aud": GOOGLE_CLIENT,
        "sub": "110169484474386276334",
        "hd": "example.com",
        "email": "alice@example.com",
        "email_verified": True,
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "name": "Alice Liddell",
        "picture": "https://lh3.googleusercontent.com/a/default-user=s96-c",
        "given_name": "Alice",
        "family_name": "Liddell",
        "iat": now(),
        "exp": now() + 3600,
    }
    claims.update(changes)
    return claims


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
async def test_google_id_token(google_idp: FakeProvider, issuer: str) -> None:
    verifier = google(GOOGLE_CLIENT, http_client=google_idp.http)
    principal = await verifier.verify(google_idp.mint(google_claims(iss=issuer, scope="a b")))
    assert_principal(principal, subject="110169484474386276334", issuer=issuer)  # no scopes
    assert principal.display_name == "Alice Liddell"
    assert google_idp.requests == [
        "https://accounts.google.com/.well-known/openid-configuration",
        "https://www.googleapis.com/oauth2/v3/certs",
    ]


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (lambda: google_claims(aud="999-other.apps.googleusercontent.com"), "audience"),
        (lambda: google_claims(iss="https://accounts.google.com/"), "issuer"),
        (lambda: google_claims(iss="https://evil.example.com"), "issuer"),
    ],
)
async def test_google_refuses(
    google_idp: FakeProvider, claims: Callable[[], dict[str, Any]], match: str
) -> None:
    verifier = google(
        [GOOGLE_CLIENT, "555-web.apps.googleusercontent.com"], http_client=google_idp.http
    )
    with pytest.raises(InvalidToken, match=match):
        await verifier.verify(google_idp.mint(claims()))


async def test_google_workspace_domain_through_expect(google_idp: FakeProvider) -> None:
    verifier = google(GOOGLE_CLIENT, expect={"hd": "example.com"}, http_client=google_idp.http)
    principal = await verifier.verify(google_idp.mint(google_claims()))
    assert principal.claims["hd"] == "example.com"
    with pytest.raises(InvalidToken, match="'hd'"):
        await verifier.verify(google_idp.mint(google_claims(hd="evil.com")))
    personal = google_claims(email="bob@gmail.com")
    del personal["hd"]
    with pytest.raises(InvalidToken, match="'hd'"):
        await verifier.verify(google_idp.mint(personal))


async def test_google_refuses_expired(google_idp: FakeProvider) -> None:
    verifier = google(GOOGLE_CLIENT, http_client=google_idp.http)
    with pytest.raises(ExpiredToken):
        await verifier.verify(google_idp.mint(expired(google_claims())))


# -- generic --------------------------------------------------------------------------------


def generic_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": GENERIC_ISSUER,
        "sub": "user-42",
        "aud": "orders",
        "iat": now(),
        "exp": now() + 600,
        "scope": "orders:read",
        "scp": ["ignored"],
        "app_metadata": {"roles": ["clerk"]},
        "perms": "orders:refund",
    }
    claims.update(changes)
    return claims


async def test_generic_with_a_mapping(generic_idp: FakeProvider) -> None:
    verifier = generic(
        GENERIC_ISSUER,
        "orders",
        scopes=("scope",),
        roles=["app_metadata.roles"],
        permissions=("perms",),
        http_client=generic_idp.http,
        leeway=60,
    )
    principal = await verifier.verify(generic_idp.mint(generic_claims()))
    assert_principal(
        principal,
        subject="user-42",
        issuer=GENERIC_ISSUER,
        scopes={"orders:read"},
        roles={"clerk"},
        permissions={"orders:refund"},
    )
    # leeway= went through: a token expired 30 s ago still passes.
    late = generic_claims(exp=now() - 30, iat=now() - 600)
    assert (await verifier.verify(generic_idp.mint(late))).subject == "user-42"


async def test_generic_defaults(generic_idp: FakeProvider) -> None:
    verifier = generic(GENERIC_ISSUER, http_client=generic_idp.http)
    claims = generic_claims(roles=["a"], permissions=["p"])
    del claims["aud"]
    principal = await verifier.verify(generic_idp.mint(claims))
    assert principal.scopes == {"orders:read", "ignored"}
    assert principal.roles == {"a"}
    assert principal.permissions == {"p"}
    with pytest.raises(InvalidToken, match="audience"):  # no audience configured
        await verifier.verify(generic_idp.mint(generic_claims()))
    with pytest.raises(InvalidToken, match="issuer"):
        await verifier.verify(generic_idp.mint(generic_claims(iss="https://idp.example.net")))


def test_generic_refuses_bad_configuration() -> None:
    with pytest.raises(TypeError, match="not a string"):
        generic(GENERIC_ISSUER, scopes="scope")
    with pytest.raises(TypeError, match="non-empty"):
        generic(GENERIC_ISSUER, roles=("roles", ""))
    with pytest.raises(ValueError, match="https"):
        generic("http://idp.example.org")
    with pytest.raises(ValueError, match="query"):
        generic("https://idp.example.org/?x=1")
    with pytest.raises(TypeError, match="sets mapping itself"):
        generic(GENERIC_ISSUER, mapping=ClaimMapping())


# -- identifier validation -----------------------------------------------------------------

INJECTIONS = [
    "evil.com/x?",
    "evil.com/",
    "evil.com#",
    "evil.com?",
    "a@b",
    "user@example.auth0.com",
    "good.com:443@evil.com",
    "evil.com\\@good.com",
    "example .auth0.com",
    " example.auth0.com",
    "example.auth0.com ",
    "example.auth0.com\n",
    "example.auth0.com\t",
    "https://example.auth0.com",
    "//evil.com",
    "example.auth0.com.",
    ".example.auth0.com",
    "-example.auth0.com",
    "exa_mple.auth0.com",
    "example..auth0.com",
    "example.auth0.com:0",
    "example.auth0.com:99999",
    "example.auth0.com:",
    "example.auth0.com:443:1",
    "exampl\u212a.auth0.com",  # KELVIN SIGN: lower() would make it a "k"
    "例え.jp",
    "a" * 64 + ".com",
    ".".join(["a" * 63] * 4) + ".com",
    "",
    "%2e%2e",
]


@pytest.mark.parametrize("domain", INJECTIONS)
def test_domains_are_host_names(domain: str) -> None:
    with pytest.raises(ValueError, match="host name"):
        auth0(domain, AUTH0_API)
    with pytest.raises(ValueError, match="host name"):
        okta(domain, "api://default")


@pytest.mark.parametrize(
    ("domain", "issuer"),
    [
        ("Example.EU.Auth0.com", "https://example.eu.auth0.com/"),
        ("login.example.com", "https://login.example.com/"),
        ("localhost:8443", "https://localhost:8443/"),
        ("tenant-1.us.auth0.com", "https://tenant-1.us.auth0.com/"),
    ],
)
def test_auth0_domains(domain: str, issuer: str) -> None:
    assert auth0(domain, AUTH0_API).issuer == issuer


def test_domain_error_says_no_url() -> None:
    with pytest.raises(ValueError, match="without https://"):
        auth0("https://example.eu.auth0.com/", AUTH0_API)


def test_non_string_identifiers() -> None:
    with pytest.raises(ValueError, match="host name"):
        auth0(None, AUTH0_API)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tenant"):
        entra(42, ENTRA_API)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="realm"):
        keycloak(KEYCLOAK_SERVER, None, audience="a")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "server_url",
    [
        "https://sso.example.com?x=1",
        "https://sso.example.com/?",
        "https://sso.example.com#frag",
        "https://user:pw@sso.example.com",
        "https://sso.example.com@evil.com",
        "https://sso.example.com/../evil",
        "https://sso.example.com/auth/./x",
        "https://sso.example.com/a b",
        "https://sso.example.com/%2e%2e",
        "https://sso.example.com\\evil.com",
        "ftp://sso.example.com",
        "HTTPS://sso.example.com",
        "sso.example.com",
        "https://",
        "https://sso.example.com:99999",
        "https://sso.example.com/realms/acme\n",
    ],
)
def test_keycloak_server_url_validation(server_url: str) -> None:
    with pytest.raises(ValueError, match="server_url"):
        keycloak(server_url, "acme", audience="orders-api")


@pytest.mark.parametrize(
    "realm", ["", ".", "..", "a/b", "acme?x", "acme#", "a b", "acme\n", "%2e%2e", "a@b", "ä"]
)
def test_keycloak_realm_validation(realm: str) -> None:
    with pytest.raises(ValueError, match="realm"):
        keycloak(KEYCLOAK_SERVER, realm, audience="orders-api")


@pytest.mark.parametrize("client_id", ["my.app", "a b", "", "x\n"])
def test_keycloak_client_id_validation(client_id: str) -> None:
    with pytest.raises(ValueError, match="client_id"):
        keycloak(KEYCLOAK_SERVER, "acme", audience="orders-api", client_id=client_id)


@pytest.mark.parametrize("alias", ["common", "organizations", "consumers", "Common"])
def test_entra_refuses_multi_tenant_aliases(alias: str) -> None:
    with pytest.raises(ValueError, match="pinned to one tenant"):
        entra(alias, ENTRA_API)


@pytest.mark.parametrize(
    "tenant",
    [
        "evil.com/x?",
        "a@b",
        f"{TENANT}/x",
        f"{TENANT}?",
        f" {TENANT}",
        f"{TENANT}\n",
        TENANT.replace("-", ""),
        "{" + TENANT + "}",
        "",
        "common/../x",
    ],
)
def test_entra_tenant_validation(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        entra(tenant, ENTRA_API)


def test_entra_domain_tenant_is_explained() -> None:
    with pytest.raises(ValueError, match="tid"):
        entra("contoso.onmicrosoft.com", ENTRA_API)


@pytest.mark.parametrize(
    ("region", "pool", "match"),
    [
        ("eu-west-1/x", POOL, "region must"),
        ("EU-WEST-1", POOL, "region must"),
        ("eu west 1", POOL, "region must"),
        ("eu-west-1.evil.com", POOL, "region must"),
        ("", POOL, "region must"),
        (REGION, "eu-west-1_AbC/../x", "user_pool_id must"),
        (REGION, "eu-west-1_", "user_pool_id must"),
        (REGION, "AbC123xyz", "user_pool_id must"),
        (REGION, "eu-west-1_AbC?x", "user_pool_id must"),
        (REGION, "us-east-1_AbC123xyz", "not in region"),
    ],
)
def test_cognito_identifier_validation(region: str, pool: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cognito(region, pool, client_ids=COGNITO_CLIENT)


def test_cognito_option_validation() -> None:
    for bad in ([], [""], ["a b"], ["x/y"]):
        with pytest.raises(ValueError, match="client_ids"):
            cognito(REGION, POOL, client_ids=bad)
    with pytest.raises(TypeError, match="client_ids"):
        cognito(REGION, POOL, client_ids=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token_use"):
        cognito(REGION, POOL, client_ids=COGNITO_CLIENT, token_use="refresh")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="audience"):
        cognito(REGION, POOL, client_ids=COGNITO_CLIENT, audience="x")
    with pytest.raises(ValueError, match="token_use"):
        cognito(REGION, POOL, client_ids=COGNITO_CLIENT, expect={"token_use": "id"})


def test_cognito_issuers() -> None:
    assert cognito("us-gov-west-1", "us-gov-west-1_Ab1", client_ids="c").issuer == (
        "https://cognito-idp.us-gov-west-1.amazonaws.com/us-gov-west-1_Ab1"
    )
    assert cognito(REGION, POOL, client_ids="c", token_use="id").issuer == COGNITO_ISSUER


@pytest.mark.parametrize("server", ["default/../x", "a b", "", "default?", "default/", "x.y"])
def test_okta_authorization_server_validation(server: str) -> None:
    with pytest.raises(ValueError, match="authorization_server"):
        okta(OKTA_DOMAIN, "api://default", authorization_server=server)


@pytest.mark.parametrize(
    "make",
    [
        lambda audience: auth0(AUTH0_DOMAIN, audience),
        lambda audience: keycloak(KEYCLOAK_SERVER, "acme", audience=audience),
        lambda audience: entra(TENANT, audience),
        lambda audience: okta(OKTA_DOMAIN, audience),
        lambda audience: google(audience),
        lambda audience: generic(GENERIC_ISSUER, audience),
    ],
)
def test_audiences_must_be_named(make: Callable[[Any], OIDCVerifier]) -> None:
    for bad in ([], "", [""], [" api"], ("api", None)):
        with pytest.raises(ValueError, match=r"audience|client_ids"):
            make(bad)
    with pytest.raises(TypeError):
        make(b"api")
    make(["one", "two", "one"])  # duplicates are harmless


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda **kw: auth0(AUTH0_DOMAIN, AUTH0_API, **kw), "mapping"),
        (lambda **kw: auth0(AUTH0_DOMAIN, AUTH0_API, **kw), "issuer"),
        (lambda **kw: keycloak(KEYCLOAK_SERVER, "acme", audience="a", **kw), "mapping"),
        (lambda **kw: entra(TENANT, ENTRA_API, **kw), "extra_issuers"),
        (lambda **kw: okta(OKTA_DOMAIN, "api://default", **kw), "mapping"),
        (lambda **kw: google(GOOGLE_CLIENT, **kw), "audience"),
        (lambda **kw: google(GOOGLE_CLIENT, **kw), "extra_issuers"),
    ],
)
def test_presets_refuse_options_they_set(make: Callable[..., OIDCVerifier], option: str) -> None:
    with pytest.raises(TypeError, match=f"sets {option} itself"):
        make(**{option: ClaimMapping() if option == "mapping" else ["x"]})


def test_other_options_pass_through() -> None:
    verifier = auth0(
        AUTH0_DOMAIN,
        AUTH0_API,
        timeout=1.5,
        max_wait=0.5,
        extra_issuers=["https://login.example.com/"],
    )
    assert verifier.timeout == 1.5
    assert verifier.max_wait == 0.5
    assert verifier.issuers == {AUTH0_ISSUER, "https://login.example.com/"}
    with pytest.raises(TypeError, match="unexpected keyword"):
        auth0(AUTH0_DOMAIN, AUTH0_API, no_such_option=1)
    with pytest.raises(ValueError, match="asymmetric"):
        auth0(AUTH0_DOMAIN, AUTH0_API, algorithms=["HS256"])


def test_roles_claim_validation() -> None:
    for bad in ("", " https://example.com/roles", 42):
        with pytest.raises(ValueError, match="roles_claim"):
            auth0(AUTH0_DOMAIN, AUTH0_API, roles_claim=bad)  # type: ignore[arg-type]


def test_exports() -> None:
    assert presets.__all__ == sorted(presets.__all__)
    assert set(presets.__all__) == {
        "auth0",
        "cognito",
        "entra",
        "generic",
        "google",
        "keycloak",
        "okta",
    }
    for name in presets.__all__:
        doc = getattr(presets, name).__doc__
        assert doc is not None
        assert "Args:" in doc
        assert "Raises:" in doc
