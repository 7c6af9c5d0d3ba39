"""Interoperability with Node's ``jsonwebtoken`` (9.x), driven through tests/interop/jwt.js.

Tokens signed by Node verify here, ours verify in Node, and what either side must
refuse is refused. Needs ``node`` on PATH and ``npm ci --prefix tests/interop``; the
module is skipped without them, unless ASGI_AUTH_REQUIRE_SERVICES=1 makes that a failure.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from asgi_auth import ExpiredToken, InvalidToken, JWTVerifier, Key, TokenIssuer

INTEROP = Path(__file__).parent / "interop"
SCRIPT = INTEROP / "jwt.js"
NODE = shutil.which("node")
ISSUER = "https://auth.example.com"
AUDIENCE = "orders-api"


def _missing() -> str | None:
    if NODE is None:
        return "node is not on PATH"
    if not (INTEROP / "node_modules" / "jsonwebtoken" / "package.json").is_file():
        return "tests/interop/node_modules is missing: run `npm ci --prefix tests/interop`"
    return None


_MISSING = _missing()
if _MISSING is not None:
    if os.environ.get("ASGI_AUTH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"ASGI_AUTH_REQUIRE_SERVICES=1 but {_MISSING}", pytrace=False)
    pytest.skip(f"Node interop: {_MISSING}", allow_module_level=True)

NO_EDDSA = pytest.mark.skip(
    reason="jsonwebtoken 9 has no EdDSA: sign() and verify() know only HS*, RS*, PS* and ES* "
    "(auth0/node-jsonwebtoken#987); test_jsonwebtoken_still_lacks_eddsa watches for it"
)
ASYMMETRIC = ["RS256", "PS256", "ES256", pytest.param("EdDSA", marks=NO_EDDSA)]


def node(command: dict[str, Any]) -> dict[str, Any]:
    """Run jwt.js: ``{"token": ...}``, ``{"payload": ...}`` or ``{"error": ...}``."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SCRIPT)],
        input=json.dumps(command),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def node_sign(
    payload: dict[str, Any], key: str | bytes, alg: str | None = None, **options: Any
) -> str:
    """``jwt.sign(payload, key, options)``; bytes keys reach Node as a Buffer."""
    command: dict[str, Any] = {"op": "sign", "payload": payload, "alg": alg, "options": options}
    if isinstance(key, bytes):
        command.update(key=base64.b64encode(key).decode("ascii"), keyEncoding="base64")
    else:
        command["key"] = key
    answer = node(command)
    assert "token" in answer, answer
    token: str = answer["token"]
    return token


def node_verify(token: str, key: str | bytes, alg: str, **options: Any) -> dict[str, Any]:
    """``jwt.verify(token, key, {algorithms: [alg], ...options})``: the payload or the error."""
    command: dict[str, Any] = {"op": "verify", "token": token, "alg": alg, "options": options}
    if isinstance(key, bytes):
        command.update(key=base64.b64encode(key).decode("ascii"), keyEncoding="base64")
    else:
        command["key"] = key
    return node(command)


def base64_secret() -> str:
    """Like ``openssl rand -base64 32``: 44 characters, used as the UTF-8 string itself."""
    secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    assert len(secret) == 44
    return secret


def test_node_script_rejects_a_malformed_command() -> None:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SCRIPT)],
        input='{"op": "decode"}',
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown op" in done.stderr


# -- HMAC ------------------------------------------------------------------------------------


async def test_node_token_with_base64_string_secret_verifies_here() -> None:
    secret = base64_secret()
    # jwt.sign({ user_id: 1, sub: "1" }, secret, { expiresIn: '1h' })
    token = node_sign({"user_id": 1, "sub": "1"}, secret, expiresIn="1h")

    principal = await JWTVerifier(Key.from_secret(secret)).verify(token)

    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert principal.subject == "1"
    assert principal.claims["user_id"] == 1
    assert principal.claims["exp"] - principal.claims["iat"] == 3600
    assert abs(principal.claims["iat"] - time.time()) < 60
    # Node keyed HMAC with the string's UTF-8 bytes, not the 32 bytes it spells in base64.
    with pytest.raises(InvalidToken, match="signature"):
        JWTVerifier(Key.from_secret(base64.b64decode(secret))).verify_sync(token)


def test_node_token_with_binary_secret_verifies_here() -> None:
    key = Key.generate("HS256")  # 64 random bytes
    token = node_sign(
        {"sub": "alice", "scope": "orders:read"},
        key.verify_key,
        "HS256",
        issuer=ISSUER,
        audience=AUDIENCE,
        expiresIn="10m",
    )

    principal = JWTVerifier(key, issuer=ISSUER, audience=AUDIENCE).verify_sync(token)

    assert principal.subject == "alice"
    assert principal.scopes == {"orders:read"}
    assert principal.issuer == ISSUER


@pytest.mark.parametrize("kind", ["base64 string", "random bytes"])
def test_our_hs256_token_verifies_in_node(kind: str) -> None:
    secret: str | bytes = base64_secret() if kind == "base64 string" else secrets.token_bytes(64)
    issuer = TokenIssuer(Key.from_secret(secret), issuer=ISSUER, audience=AUDIENCE)
    token = issuer.issue(42, claims={"scope": "orders:read orders:write"})

    answer = node_verify(token, secret, "HS256", issuer=ISSUER, audience=AUDIENCE)

    assert "payload" in answer, answer
    payload = answer["payload"]
    assert payload["sub"] == "42"
    assert (payload["iss"], payload["aud"]) == (ISSUER, AUDIENCE)
    assert payload["scope"] == "orders:read orders:write"
    assert payload["exp"] - payload["iat"] == 3600
    # Node does check the options it was given.
    refused = node_verify(token, secret, "HS256", issuer=ISSUER, audience="billing-api")
    assert refused["error"]["message"].startswith("jwt audience invalid")


def test_node_token_with_wrong_secret_is_refused_here() -> None:
    secret, other = base64_secret(), base64_secret()
    token = node_sign({"user_id": 1, "sub": "1"}, other, expiresIn="1h")

    with pytest.raises(InvalidToken, match="signature does not verify"):
        JWTVerifier(Key.from_secret(secret)).verify_sync(token)
    # ... and, the other way round, Node refuses ours.
    ours = TokenIssuer(Key.from_secret(secret)).issue("1")
    assert node_verify(ours, other, "HS256")["error"] == {
        "name": "JsonWebTokenError",
        "message": "invalid signature",
    }


def test_expired_node_token_is_refused_here() -> None:
    secret = base64_secret()
    now = int(time.time())
    token = node_sign({"sub": "1", "iat": now - 7200, "exp": now - 3600}, secret)

    with pytest.raises(ExpiredToken):
        JWTVerifier(Key.from_secret(secret)).verify_sync(token)


# -- asymmetric ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_node_token_verifies_here(alg: str) -> None:
    key = Key.generate(alg)
    token = node_sign(
        {"sub": "7", "scope": "orders:read", "roles": ["admin"]},
        key.private_pem().decode("ascii"),
        alg,
        issuer=ISSUER,
        audience=AUDIENCE,
        expiresIn="5m",
    )
    public = Key.from_pem(key.public_pem(), algorithm=alg)

    principal = JWTVerifier(public, issuer=ISSUER, audience=AUDIENCE).verify_sync(token)

    assert jwt.get_unverified_header(token)["alg"] == alg
    assert principal.subject == "7"
    assert principal.scopes == {"orders:read"}
    assert principal.roles == {"admin"}
    assert principal.claims["exp"] - principal.claims["iat"] == 300
    stranger = Key.from_pem(Key.generate(alg).public_pem(), algorithm=alg)
    with pytest.raises(InvalidToken, match="signature does not verify"):
        JWTVerifier(stranger, issuer=ISSUER, audience=AUDIENCE).verify_sync(token)


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_our_token_verifies_in_node(alg: str) -> None:
    key = Key.generate(alg)
    token = TokenIssuer(key, issuer=ISSUER, audience=AUDIENCE).issue("7", claims={"tenant": "t1"})

    answer = node_verify(
        token, key.public_pem().decode("ascii"), alg, issuer=ISSUER, audience=AUDIENCE
    )

    assert "payload" in answer, answer
    payload = answer["payload"]
    assert (payload["sub"], payload["tenant"]) == ("7", "t1")
    assert (payload["iss"], payload["aud"]) == (ISSUER, AUDIENCE)
    assert jwt.get_unverified_header(token)["kid"] == key.kid  # Node ignores it; harmless
    stranger = Key.generate(alg).public_pem().decode("ascii")
    refused = node_verify(token, stranger, alg, issuer=ISSUER, audience=AUDIENCE)
    assert refused["error"]["message"] == "invalid signature"


def test_node_hs256_token_keyed_with_our_public_key_is_refused_here() -> None:
    # Algorithm confusion: Node will HMAC-sign with a PEM string as the secret.
    key = Key.generate("RS256")
    pem = key.public_pem().decode("ascii")
    token = node_sign({"sub": "7"}, pem, "HS256", issuer=ISSUER, audience=AUDIENCE)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"

    public = Key.from_pem(pem)
    with pytest.raises(InvalidToken, match="algorithm 'HS256' is not allowed"):
        JWTVerifier(public, issuer=ISSUER, audience=AUDIENCE).verify_sync(token)


def test_jsonwebtoken_still_lacks_eddsa() -> None:
    """When this fails, jsonwebtoken supports EdDSA: drop NO_EDDSA from ASYMMETRIC."""
    key = Key.generate("EdDSA")
    signed = node(
        {
            "op": "sign",
            "payload": {"sub": "7"},
            "key": key.private_pem().decode("ascii"),
            "alg": "EdDSA",
        }
    )
    assert signed["error"]["message"] == '"algorithm" must be a valid string enum value'
    token = TokenIssuer(key).issue("7")
    verified = node_verify(token, key.public_pem().decode("ascii"), "EdDSA")
    assert verified == {"error": {"name": "Error", "message": 'Unknown key type "ed25519".'}}
