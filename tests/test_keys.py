"""Keys: loading (secret, PEM, certificate, file, JWK, JWKS), generation, export, selection."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from asgi_auth.errors import InvalidToken
from asgi_auth.tokens import JWTVerifier, Key, KeySet, TokenIssuer
from asgi_auth.tokens.keys import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, SUPPORTED_ALGORITHMS

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")
RSA_FAMILY = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
    "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQ"
    "MicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2Nc"
    "Rwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

#: The algorithm each kind of key defaults to.
DEFAULT_ALGORITHM = {
    "rsa": "RS256",
    "p256": "ES256",
    "p384": "ES384",
    "p521": "ES512",
    "ed25519": "EdDSA",
    "ed448": "EdDSA",
}
KINDS = sorted(DEFAULT_ALGORITHM)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _private_pem(private: CertificateIssuerPrivateKeyTypes, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _public_pem(private: CertificateIssuerPrivateKeyTypes) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate_pem(private: CertificateIssuerPrivateKeyTypes) -> bytes:
    """A self-signed X.509 certificate for ``private``'s public key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asgi-auth test")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
    )
    digest = (
        None
        if isinstance(private, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return builder.sign(private, digest).public_bytes(serialization.Encoding.PEM)


def _round_trip(signer: Key, verifier_key: Key) -> None:
    """Sign a token with ``signer`` and verify it with ``verifier_key``."""
    token = TokenIssuer(signer).issue("alice")
    principal = JWTVerifier(verifier_key).verify_sync(token)
    assert principal.subject == "alice"


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_keys(rsa_private: rsa.RSAPrivateKey) -> dict[str, CertificateIssuerPrivateKeyTypes]:
    return {
        "rsa": rsa_private,
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (weak on purpose)


@pytest.fixture
def rsa_public_jwk(rsa_private: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(rsa_private.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    return dict(jwk)


@pytest.fixture
def rsa_private_jwk(rsa_private: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(rsa_private, as_dict=True)
    assert isinstance(jwk, dict)
    return dict(jwk)


# -- from_secret ---------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "minimum"), sorted(HMAC_ALGORITHMS.items()))
def test_secret_shorter_than_the_hash_is_refused(algorithm: str, minimum: int) -> None:
    with pytest.raises(ValueError, match=f"at least {minimum} bytes"):
        Key.from_secret(b"s" * (minimum - 1), algorithm=algorithm)


@pytest.mark.parametrize(("algorithm", "minimum"), sorted(HMAC_ALGORITHMS.items()))
def test_secret_of_exactly_the_hash_size_is_accepted(algorithm: str, minimum: int) -> None:
    key = Key.from_secret(b"s" * minimum, algorithm=algorithm)
    assert key.kty == "oct"
    assert key.algorithms == frozenset({algorithm})
    assert key.algorithm == algorithm
    assert key.is_symmetric
    assert key.can_sign
    assert key.verify_key == b"s" * minimum


def test_hmac_minimums_follow_rfc_7518() -> None:
    assert dict(HMAC_ALGORITHMS) == {"HS256": 32, "HS384": 48, "HS512": 64}


def test_str_secret_is_measured_in_utf8_bytes() -> None:
    # 16 two-byte characters are 32 bytes: enough for HS256; 15 are not.
    key = Key.from_secret("\u00e9" * 16)
    assert key.verify_key == ("\u00e9" * 16).encode("utf-8")
    with pytest.raises(ValueError, match="at least 32 bytes, got 30"):
        Key.from_secret("\u00e9" * 15)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA", "none", "hs256"])
def test_secret_with_a_non_hmac_algorithm_is_refused(algorithm: str) -> None:
    with pytest.raises(ValueError, match="not an HMAC algorithm"):
        Key.from_secret(b"s" * 64, algorithm=algorithm)


def test_secret_keeps_the_given_kid_and_has_none_by_default() -> None:
    assert Key.from_secret(b"s" * 32, kid="k1").kid == "k1"
    assert Key.from_secret(b"s" * 32).kid is None


def test_secret_has_no_public_half_to_export() -> None:
    key = Key.from_secret(b"s" * 32)
    with pytest.raises(ValueError, match="no public half"):
        key.public_jwk()
    with pytest.raises(ValueError, match="no public half"):
        key.public_pem()
    with pytest.raises(ValueError, match="only asymmetric"):
        key.private_pem()


# -- from_pem ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_private_pem_loads_with_the_default_algorithm_of_its_type(
    kind: str, private_keys: dict[str, CertificateIssuerPrivateKeyTypes]
) -> None:
    key = Key.from_pem(_private_pem(private_keys[kind]))
    assert key.algorithms == frozenset({DEFAULT_ALGORITHM[kind]})
    assert key.can_sign
    assert not key.is_symmetric
    assert key.kid == key.thumbprint()


@pytest.mark.parametrize("kind", KINDS)
def test_public_pem_loads_as_a_verify_only_key(
    kind: str, private_keys: dict[str, CertificateIssuerPrivateKeyTypes]
) -> None:
    private = Key.from_pem(_private_pem(private_keys[kind]))
    public = Key.from_pem(_public_pem(private_keys[kind]))
    assert not public.can_sign
    assert public.algorithms == frozenset({DEFAULT_ALGORITHM[kind]})
    assert public.kid == private.kid
    _round_trip(private, public)


@pytest.mark.parametrize("kind", KINDS)
def test_certificate_pem_loads_its_public_key(
    kind: str, private_keys: dict[str, CertificateIssuerPrivateKeyTypes]
) -> None:
    private = Key.from_pem(_private_pem(private_keys[kind]))
    from_cert = Key.from_pem(_certificate_pem(private_keys[kind]))
    assert not from_cert.can_sign
    assert from_cert.kid == private.kid
    assert from_cert.algorithms == private.algorithms
    _round_trip(private, from_cert)


def test_pem_given_as_str_loads_like_bytes(rsa_private: rsa.RSAPrivateKey) -> None:
    pem = _private_pem(rsa_private)
    assert Key.from_pem(pem.decode("ascii")).kid == Key.from_pem(pem).kid


def test_pem_keeps_an_explicit_kid(rsa_private: rsa.RSAPrivateKey) -> None:
    assert Key.from_pem(_public_pem(rsa_private), kid="2024-01").kid == "2024-01"


@pytest.mark.parametrize("algorithm", sorted(RSA_FAMILY))
def test_rsa_pem_accepts_every_rsa_algorithm(
    algorithm: str, rsa_private: rsa.RSAPrivateKey
) -> None:
    key = Key.from_pem(_private_pem(rsa_private), algorithm=algorithm)
    assert key.algorithms == frozenset({algorithm})
    token = TokenIssuer(key).issue("alice")
    public = Key.from_pem(_public_pem(rsa_private), algorithm=algorithm)
    assert JWTVerifier(public).verify_sync(token).subject == "alice"


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [
        ("rsa", "ES256"),
        ("rsa", "HS256"),
        ("rsa", "EdDSA"),
        ("p256", "ES384"),
        ("p256", "ES512"),
        ("p384", "ES256"),
        ("p521", "ES384"),
        ("p256", "RS256"),
        ("ed25519", "RS256"),
        ("ed25519", "ES256"),
        ("ed448", "HS512"),
    ],
)
def test_pem_with_an_algorithm_that_does_not_fit_the_key_is_refused(
    kind: str, algorithm: str, private_keys: dict[str, CertificateIssuerPrivateKeyTypes]
) -> None:
    with pytest.raises(ValueError, match="cannot be used with"):
        Key.from_pem(_private_pem(private_keys[kind]), algorithm=algorithm)
    with pytest.raises(ValueError, match="cannot be used with"):
        Key.from_pem(_public_pem(private_keys[kind]), algorithm=algorithm)


def test_rsa_1024_is_refused_as_private_public_and_certificate(
    rsa_1024: rsa.RSAPrivateKey,
) -> None:
    for pem in (_private_pem(rsa_1024), _public_pem(rsa_1024), _certificate_pem(rsa_1024)):
        with pytest.raises(ValueError, match="at least 2048 bits"):
            Key.from_pem(pem)


def test_unsupported_curve_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(ValueError, match="unsupported elliptic curve"):
        Key.from_pem(_private_pem(private))


def test_key_agreement_and_dsa_keys_are_refused() -> None:
    x_pem = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="unsupported key type"):
        Key.from_pem(x_pem)
    dsa_private = dsa.generate_private_key(key_size=2048)
    with pytest.raises(ValueError, match="unsupported key type"):
        Key.from_pem(_public_pem(dsa_private))


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a key at all",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_garbage_pem_is_refused(pem: bytes) -> None:
    with pytest.raises(ValueError, match="not a usable PEM key"):
        Key.from_pem(pem)


def test_encrypted_private_pem_needs_the_right_password(
    private_keys: dict[str, CertificateIssuerPrivateKeyTypes],
) -> None:
    pem = _private_pem(private_keys["p256"], password=b"correct horse")
    key = Key.from_pem(pem, password=b"correct horse")
    assert key.can_sign
    assert key.kid == Key.from_pem(_public_pem(private_keys["p256"])).kid
    with pytest.raises(ValueError, match="not a usable PEM key"):
        Key.from_pem(pem)
    with pytest.raises(ValueError, match="not a usable PEM key"):
        Key.from_pem(pem, password=b"wrong")


def test_private_and_public_pem_export_round_trip(
    private_keys: dict[str, CertificateIssuerPrivateKeyTypes],
) -> None:
    key = Key.from_pem(_private_pem(private_keys["p384"]))
    again = Key.from_pem(key.private_pem())
    public = Key.from_pem(key.public_pem())
    assert again.kid == key.kid == public.kid
    assert again.can_sign
    assert not public.can_sign
    with pytest.raises(ValueError, match="only asymmetric private keys"):
        public.private_pem()


# -- from_file -----------------------------------------------------------------------------


def test_from_file_reads_a_pem_key(tmp_path: Path, rsa_private: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(_private_pem(rsa_private))
    key = Key.from_file(path, algorithm="PS384")
    assert key.can_sign
    assert key.algorithms == frozenset({"PS384"})
    assert key.kid == Key.from_pem(_public_pem(rsa_private)).kid
    assert Key.from_file(str(path)).kid == key.kid


def test_from_file_reads_a_certificate(
    tmp_path: Path, private_keys: dict[str, CertificateIssuerPrivateKeyTypes]
) -> None:
    path = tmp_path / "cert.pem"
    path.write_bytes(_certificate_pem(private_keys["ed25519"]))
    key = Key.from_file(path, kid="cert-key")
    assert key.kid == "cert-key"
    assert key.algorithms == frozenset({"EdDSA"})
    assert not key.can_sign


def test_from_file_reads_a_json_jwk(tmp_path: Path, rsa_public_jwk: dict[str, Any]) -> None:
    path = tmp_path / "key.json"
    path.write_text("\n  " + json.dumps({**rsa_public_jwk, "kid": "jwk-1", "alg": "RS512"}))
    key = Key.from_file(path)
    assert key.kid == "jwk-1"
    assert key.algorithms == frozenset({"RS512"})
    assert not key.can_sign


def test_from_file_refuses_a_json_file_that_is_not_a_jwk(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}')
    with pytest.raises(ValueError, match="unsupported JWK kty"):
        Key.from_file(path)


def test_from_file_of_a_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Key.from_file(tmp_path / "absent.pem")


# -- from_jwk ------------------------------------------------------------------------------


def test_rsa_jwk_with_alg_is_bound_to_it(rsa_public_jwk: dict[str, Any]) -> None:
    key = Key.from_jwk({**rsa_public_jwk, "alg": "PS256", "kid": "r1"})
    assert key.algorithms == frozenset({"PS256"})
    assert key.kid == "r1"
    assert key.kty == "RSA"
    assert not key.can_sign


def test_rsa_jwk_without_alg_admits_every_rsa_algorithm(rsa_public_jwk: dict[str, Any]) -> None:
    key = Key.from_jwk(rsa_public_jwk)
    assert key.algorithms == RSA_FAMILY
    assert key.kid == key.thumbprint()
    with pytest.raises(ValueError, match="name one"):
        _ = key.algorithm


def test_jwk_without_alg_is_narrowed_by_algorithm(rsa_public_jwk: dict[str, Any]) -> None:
    assert Key.from_jwk(rsa_public_jwk, algorithm="RS384").algorithms == frozenset({"RS384"})


def test_jwk_alg_conflicting_with_algorithm_is_refused(rsa_public_jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="is for 'RS256', not 'PS256'"):
        Key.from_jwk({**rsa_public_jwk, "alg": "RS256"}, algorithm="PS256")


def test_jwk_with_an_alg_of_another_family_is_refused(rsa_public_jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="cannot be used with 'ES256'"):
        Key.from_jwk({**rsa_public_jwk, "alg": "ES256"})


def test_jwk_given_as_json_text_loads(rsa_public_jwk: dict[str, Any]) -> None:
    key = Key.from_jwk(json.dumps({**rsa_public_jwk, "kid": "text"}))
    assert key.kid == "text"


def test_private_jwk_can_sign_and_exports_only_public_members(
    rsa_private_jwk: dict[str, Any], rsa_public_jwk: dict[str, Any]
) -> None:
    key = Key.from_jwk({**rsa_private_jwk, "alg": "RS256"})
    assert key.can_sign
    public = Key.from_jwk({**rsa_public_jwk, "alg": "RS256"})
    _round_trip(key, public)
    assert not set(key.public_jwk()) & set(PRIVATE_MEMBERS)


def test_ec_jwk_loads_with_its_curve_algorithm(
    private_keys: dict[str, CertificateIssuerPrivateKeyTypes],
) -> None:
    private = private_keys["p521"]
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    key = Key.from_jwk(jwk)
    assert key.kty == "EC"
    assert key.algorithms == frozenset({"ES512"})
    with pytest.raises(ValueError, match="cannot be used with 'ES256'"):
        Key.from_jwk({**jwk, "alg": "ES256"})


def test_okp_jwk_loads_for_eddsa() -> None:
    key = Key.generate("EdDSA")
    loaded = Key.from_jwk(key.public_jwk())
    assert loaded.kty == "OKP"
    assert loaded.algorithms == frozenset({"EdDSA"})
    assert loaded.kid == key.kid
    _round_trip(key, loaded)


def test_oct_jwk_loads_as_a_secret_and_checks_its_length() -> None:
    key = Key.from_jwk({"kty": "oct", "k": _b64url(b"s" * 48), "alg": "HS384", "kid": "h"})
    assert key.algorithms == frozenset({"HS384"})
    assert key.verify_key == b"s" * 48
    assert key.kid == "h"
    assert Key.from_jwk({"kty": "oct", "k": _b64url(b"s" * 32)}).algorithms == {"HS256"}
    with pytest.raises(ValueError, match="at least 48 bytes"):
        Key.from_jwk({"kty": "oct", "k": _b64url(b"s" * 47), "alg": "HS384"})


@pytest.mark.parametrize("use", ["enc", "", "SIG", 1])
def test_jwk_for_another_use_than_sig_is_refused(rsa_public_jwk: dict[str, Any], use: Any) -> None:
    with pytest.raises(ValueError, match="not a signing key"):
        Key.from_jwk({**rsa_public_jwk, "use": use})


def test_jwk_with_use_sig_is_accepted(rsa_public_jwk: dict[str, Any]) -> None:
    assert Key.from_jwk({**rsa_public_jwk, "use": "sig"}).kty == "RSA"


def test_rsa_1024_jwk_is_refused(rsa_1024: rsa.RSAPrivateKey) -> None:
    jwk = RSAAlgorithm.to_jwk(rsa_1024.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    with pytest.raises(ValueError, match="at least 2048 bits"):
        Key.from_jwk(jwk)


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('"RSA"', "must be a JSON object"),
        ("{}", "unsupported JWK kty"),
        ('{"kty": "RSA-OAEP"}', "unsupported JWK kty"),
        ('{"kty": "oct", "k": "c2VjcmV0", "kid": 7}', "kid must be a string"),
        ('{"kty": "oct", "kid": "x"}', "invalid oct JWK"),
        ('{"kty": "RSA", "n": 5, "e": "AQAB"}', "invalid RSA JWK"),
        ('{"kty": "RSA", "e": "AQAB"}', "invalid RSA JWK"),
        ('{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}', "invalid EC JWK"),
        ('{"kty": "EC", "crv": "secp256k1", "x": "AAAA", "y": "AAAA"}', "invalid EC JWK"),
        ('{"kty": "OKP", "crv": "X25519", "x": "AAAA"}', "invalid OKP JWK"),
        ('{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}', "invalid OKP JWK"),
        ('{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": 5}', "alg"),
    ],
)
def test_garbage_jwk_is_refused_with_valueerror(jwk: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Key.from_jwk(jwk)


@pytest.mark.parametrize("kty", [["RSA"], {"RSA": 1}])
def test_jwk_with_an_unhashable_kty_is_refused_with_valueerror(kty: Any) -> None:
    # A provider's JWKS is remote input: a malformed member must be a ValueError,
    # which `KeySet.from_jwks(skip_unusable=True)` can skip, not a TypeError.
    with pytest.raises(ValueError, match="kty"):
        Key.from_jwk({"kty": kty})


def test_secp256k1_jwk_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256K1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    with pytest.raises(ValueError, match="unsupported elliptic curve"):
        Key.from_jwk(jwk)


def test_jwk_with_a_point_off_the_curve_is_refused(
    private_keys: dict[str, CertificateIssuerPrivateKeyTypes],
) -> None:
    private = private_keys["p256"]
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    with pytest.raises(ValueError, match="invalid EC JWK"):
        Key.from_jwk({**jwk, "y": jwk["x"]})


# -- KeySet / from_jwks --------------------------------------------------------------------


def test_jwks_loads_every_key_by_kid(rsa_public_jwk: dict[str, Any]) -> None:
    ec_key = Key.generate("ES256", kid="e1")
    jwks = {"keys": [{**rsa_public_jwk, "kid": "r1", "alg": "RS256"}, ec_key.public_jwk()]}
    keys = KeySet.from_jwks(jwks)
    assert len(keys) == 2
    assert "r1" in keys
    assert "e1" in keys
    assert "zz" not in keys
    r1 = keys.get("r1")
    assert r1 is not None
    assert r1.algorithms == frozenset({"RS256"})
    assert keys.get("zz") is None
    assert keys.algorithms == frozenset({"RS256", "ES256"})
    assert [k.kid for k in keys] == ["r1", "e1"]
    assert KeySet.from_jwks(json.dumps(jwks)).algorithms == keys.algorithms


def test_jwks_key_without_alg_admits_its_whole_family(rsa_public_jwk: dict[str, Any]) -> None:
    keys = KeySet.from_jwks({"keys": [rsa_public_jwk]})
    assert keys.algorithms == RSA_FAMILY


def test_jwks_with_an_encryption_key_is_refused_unless_skipped(
    rsa_public_jwk: dict[str, Any],
) -> None:
    jwks = {
        "keys": [
            {**rsa_public_jwk, "kid": "enc", "use": "enc", "alg": "RSA-OAEP"},
            {**rsa_public_jwk, "kid": "sig", "use": "sig", "alg": "RS256"},
        ]
    }
    with pytest.raises(ValueError, match="not a signing key"):
        KeySet.from_jwks(jwks)
    keys = KeySet.from_jwks(jwks, skip_unusable=True)
    assert len(keys) == 1
    assert "sig" in keys
    assert "enc" not in keys


def test_jwks_skips_unsupported_key_types_when_asked(rsa_public_jwk: dict[str, Any]) -> None:
    jwks = {"keys": [{"kty": "foo", "kid": "x"}, 42, {**rsa_public_jwk, "kid": "r"}]}
    with pytest.raises(ValueError, match="unsupported JWK kty"):
        KeySet.from_jwks(jwks)
    assert [k.kid for k in KeySet.from_jwks(jwks, skip_unusable=True)] == ["r"]


def test_jwks_skips_a_key_with_an_unhashable_kty_when_asked(
    rsa_public_jwk: dict[str, Any],
) -> None:
    jwks = {"keys": [{"kty": ["RSA"], "kid": "weird"}, {**rsa_public_jwk, "kid": "r"}]}
    assert [k.kid for k in KeySet.from_jwks(jwks, skip_unusable=True)] == ["r"]


def test_jwks_where_every_key_is_skipped_is_refused(rsa_public_jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least one key"):
        KeySet.from_jwks({"keys": [{**rsa_public_jwk, "use": "enc"}]}, skip_unusable=True)


def test_jwks_with_a_duplicate_kid_is_refused(rsa_public_jwk: dict[str, Any]) -> None:
    ec_jwk = Key.generate("ES256", kid="dup").public_jwk()
    with pytest.raises(ValueError, match="two keys share kid 'dup'"):
        KeySet.from_jwks({"keys": [{**rsa_public_jwk, "kid": "dup"}, ec_jwk]})


def test_keyset_with_a_duplicate_kid_is_refused() -> None:
    with pytest.raises(ValueError, match="two keys share kid 'k'"):
        KeySet([Key.generate("ES256", kid="k"), Key.generate("EdDSA", kid="k")])


def test_keyset_accepts_several_secrets_without_kid() -> None:
    keys = KeySet([Key.from_secret(b"a" * 32), Key.from_secret(b"b" * 32)])
    assert len(keys) == 2


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ("garbage", "not valid JSON"),
        ('{"keys": [', "not valid JSON"),
        ("[]", "'keys' list"),
        ("{}", "'keys' list"),
        ('{"keys": {}}', "'keys' list"),
        ('{"keys": "abc"}', "'keys' list"),
        ('{"keys": []}', "at least one key"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_garbage_jwks_is_refused(jwks: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeySet.from_jwks(jwks)


def test_empty_keyset_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        KeySet([])


def test_keyset_of_something_other_than_keys_is_refused() -> None:
    with pytest.raises(TypeError, match="expected Key"):
        KeySet(["not a key"])  # type: ignore[list-item]


def test_public_jwks_lists_public_keys_only() -> None:
    secret = Key.from_secret(b"s" * 32, kid="hmac")
    ec_key = Key.generate("ES256", kid="e")
    ed_key = Key.generate("EdDSA", kid="o")
    jwks = KeySet([secret, ec_key, ed_key]).public_jwks()
    assert [k["kid"] for k in jwks["keys"]] == ["e", "o"]
    for jwk in jwks["keys"]:
        assert not set(jwk) & set(PRIVATE_MEMBERS)


# -- generate ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(SUPPORTED_ALGORITHMS))
def test_generated_key_signs_and_verifies_with_its_algorithm(algorithm: str) -> None:
    key = Key.generate(algorithm, kid="gen")
    assert key.kid == "gen"
    assert key.algorithms == frozenset({algorithm})
    assert key.can_sign
    assert key.is_symmetric == (algorithm in HMAC_ALGORITHMS)
    token = TokenIssuer(key).issue("alice")
    assert JWTVerifier(key).verify_sync(token).subject == "alice"
    other = Key.generate(algorithm, kid="gen")
    with pytest.raises(InvalidToken):
        JWTVerifier(other).verify_sync(token)


def test_generated_rsa_key_has_2048_bits() -> None:
    key = Key.generate("PS512")
    assert isinstance(key.verify_key, rsa.RSAPublicKey)
    assert key.verify_key.key_size == 2048


@pytest.mark.parametrize("algorithm", sorted(HMAC_ALGORITHMS))
def test_generated_secret_has_64_random_bytes(algorithm: str) -> None:
    first, second = Key.generate(algorithm), Key.generate(algorithm)
    assert len(first.verify_key) == 64
    assert first.verify_key != second.verify_key


def test_generated_asymmetric_keys_differ_and_default_kid_to_thumbprint() -> None:
    first, second = Key.generate("ES256"), Key.generate("ES256")
    assert first.kid == first.thumbprint()
    assert first.kid != second.kid


@pytest.mark.parametrize("algorithm", ["none", "None", "HS1", "RSA-OAEP", "ES256K", "", "rs256"])
def test_generate_refuses_unsupported_algorithms(algorithm: str) -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        Key.generate(algorithm)


# -- public_jwk / thumbprint ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_public_jwk_never_contains_private_members(
    kind: str, private_keys: dict[str, CertificateIssuerPrivateKeyTypes]
) -> None:
    key = Key.from_pem(_private_pem(private_keys[kind]))
    jwk = key.public_jwk()
    assert key.can_sign
    for member in PRIVATE_MEMBERS:
        assert member not in jwk
    assert jwk["kid"] == key.kid
    assert jwk["use"] == "sig"
    assert jwk["alg"] == DEFAULT_ALGORITHM[kind]
    assert set(jwk) <= {"kty", "crv", "n", "e", "x", "y", "kid", "use", "alg"}
    assert json.loads(json.dumps(jwk)) == jwk
    loaded = Key.from_jwk(jwk)
    assert not loaded.can_sign
    assert loaded.thumbprint() == key.thumbprint()
    _round_trip(key, loaded)


@pytest.mark.parametrize("algorithm", sorted(ASYMMETRIC_ALGORITHMS))
def test_public_jwk_of_generated_keys_has_no_private_members(algorithm: str) -> None:
    jwk = Key.generate(algorithm).public_jwk()
    assert not set(jwk) & set(PRIVATE_MEMBERS)
    assert jwk["alg"] == algorithm


def test_public_jwk_of_a_multi_algorithm_key_has_no_alg(rsa_public_jwk: dict[str, Any]) -> None:
    jwk = Key.from_jwk(rsa_public_jwk).public_jwk()
    assert "alg" not in jwk
    assert jwk["use"] == "sig"


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    key = Key.from_jwk(jwk)
    assert key.thumbprint() == RFC7638_THUMBPRINT
    assert key.kid == "2011-04-29"
    assert Key.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}).kid == RFC7638_THUMBPRINT


def test_thumbprint_ignores_kid_use_and_alg(rsa_public_jwk: dict[str, Any]) -> None:
    plain = Key.from_jwk(rsa_public_jwk)
    decorated = Key.from_jwk({**rsa_public_jwk, "kid": "x", "use": "sig", "alg": "PS256"})
    assert plain.thumbprint() == decorated.thumbprint()


def test_thumbprint_of_a_secret_follows_rfc_7638() -> None:
    secret = b"s" * 32
    canonical = json.dumps({"k": _b64url(secret), "kty": "oct"}, separators=(",", ":"))
    expected = _b64url(hashlib.sha256(canonical.encode()).digest())
    assert Key.from_secret(secret).thumbprint() == expected


# -- candidates ----------------------------------------------------------------------------


def test_candidates_by_kid_return_that_key_only() -> None:
    a, b = Key.generate("ES256", kid="a"), Key.generate("ES256", kid="b")
    keys = KeySet([a, b])
    assert keys.candidates("a", "ES256") == (a,)
    assert keys.candidates("b", "ES256") == (b,)


def test_candidates_by_kid_with_a_foreign_algorithm_are_empty() -> None:
    a = Key.generate("ES256", kid="a")
    keys = KeySet([a, Key.generate("ES384", kid="b")])
    assert keys.candidates("a", "ES384") == ()
    assert keys.candidates("unknown", "ES256") == ()


def test_candidates_without_kid_are_every_key_for_the_algorithm() -> None:
    a, b = Key.generate("ES256", kid="a"), Key.generate("ES256", kid="b")
    c = Key.generate("EdDSA", kid="c")
    keys = KeySet([a, c, b])
    assert keys.candidates(None, "ES256") == (a, b)
    assert keys.candidates(None, "EdDSA") == (c,)
    assert keys.candidates(None, "RS256") == ()


def test_candidates_of_a_multi_algorithm_key_follow_its_family(
    rsa_public_jwk: dict[str, Any],
) -> None:
    key = Key.from_jwk({**rsa_public_jwk, "kid": "r"})
    keys = KeySet([key])
    for algorithm in RSA_FAMILY:
        assert keys.candidates("r", algorithm) == (key,)
        assert keys.candidates(None, algorithm) == (key,)
    assert keys.candidates("r", "ES256") == ()


def test_key_repr_does_not_show_key_material() -> None:
    secret = b"super-secret-value-that-must-not-leak!"
    key = Key.from_secret(secret, kid="k")
    assert "super-secret" not in repr(key)
    assert repr(KeySet([key])) == "KeySet(['k'])"
