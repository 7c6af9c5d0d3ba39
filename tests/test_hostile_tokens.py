"""Hostile tokens: every one is refused with InvalidToken (or a subclass), never another error.

A helper, :func:`refused`, wraps ``pytest.raises(InvalidToken)``: any other exception
escapes it and fails the test, and so does a returned principal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_auth.errors import InvalidToken, UnknownKey
from asgi_auth.tokens import JWTVerifier, Key, TokenIssuer
from asgi_auth.tokens.verifier import DEFAULT_MAX_TOKEN_BYTES

SECRET = b"0123456789abcdef" * 4
NOW = 1_700_000_000
CLAIMS: dict[str, Any] = {"sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 600}
HS_KEY = Key.from_secret(SECRET, kid="hs")
ED_KEY = Key.generate("EdDSA", kid="ed")
URLSAFE = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def _clock() -> float:
    return float(NOW)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _encode(part: Mapping[str, Any] | str | bytes) -> str:
    if isinstance(part, Mapping):
        return _b64(json.dumps(part).encode("utf-8"))
    return _b64(part.encode("utf-8") if isinstance(part, str) else part)


def _hs256(signing_input: str, secret: bytes = SECRET) -> str:
    return _b64(hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest())


def hs_token(
    payload: Mapping[str, Any] | str | bytes = CLAIMS,
    header: Mapping[str, Any] | str | bytes | None = None,
    *,
    secret: bytes = SECRET,
) -> str:
    """An HS256 token over exactly this header and payload, signed with ``secret``."""
    signing_input = f"{_encode({'alg': 'HS256'} if header is None else header)}.{_encode(payload)}"
    return f"{signing_input}.{_hs256(signing_input, secret)}"


def rs_token(
    private: rsa.RSAPrivateKey,
    header: Mapping[str, Any],
    payload: Mapping[str, Any] = CLAIMS,
) -> str:
    signing_input = f"{_encode(header)}.{_encode(payload)}"
    signature = private.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def hs_verifier(**options: Any) -> JWTVerifier:
    return JWTVerifier(HS_KEY, clock=_clock, **options)


def refused(verifier: JWTVerifier, token: Any) -> InvalidToken:
    """Assert that ``token`` is refused with InvalidToken; return the error."""
    with pytest.raises(InvalidToken) as info:
        verifier.verify_sync(token)
    return info.value


VALID = hs_token()


def test_the_untouched_reference_token_verifies() -> None:
    assert hs_verifier().verify_sync(VALID).subject == "alice"


# -- keys ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def attacker_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def victim_public_pem(victim_private: rsa.RSAPrivateKey) -> bytes:
    return victim_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rs_verifier(victim_public_pem: bytes) -> JWTVerifier:
    return JWTVerifier(Key.from_pem(victim_public_pem, kid="victim"), clock=_clock)


@pytest.fixture(scope="module")
def verifiers(rs_verifier: JWTVerifier) -> dict[str, JWTVerifier]:
    return {
        "HS256": hs_verifier(),
        "RS256": rs_verifier,
        "ES256": JWTVerifier(Key.generate("ES256", kid="es"), clock=_clock),
        "EdDSA": JWTVerifier(ED_KEY, clock=_clock),
    }


VERIFIER_NAMES = ["HS256", "RS256", "ES256", "EdDSA"]


# -- alg "none" ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", VERIFIER_NAMES)
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "NoNe", "none "])
@pytest.mark.parametrize("signature", ["", "AAAA", "signature", "_"])
def test_alg_none_in_any_casing_is_refused(
    verifiers: dict[str, JWTVerifier], name: str, alg: str, signature: str
) -> None:
    token = f"{_encode({'alg': alg, 'typ': 'JWT'})}.{_encode(CLAIMS)}.{signature}"
    refused(verifiers[name], token)


def test_alg_none_with_a_valid_hmac_signature_is_refused() -> None:
    signing_input = f"{_encode({'alg': 'none'})}.{_encode(CLAIMS)}"
    refused(hs_verifier(), f"{signing_input}.{_hs256(signing_input)}")


def test_duplicate_alg_uses_the_last_member_and_is_refused() -> None:
    # RFC 7515 §5.2: duplicate members are rejected or the last one wins; here "none".
    refused(hs_verifier(), hs_token(header='{"alg": "HS256", "alg": "none"}'))


@pytest.mark.parametrize(
    "header",
    [{}, {"alg": None}, {"alg": ["HS256"]}, {"alg": 256}, {"alg": "hs256"}, {"alg": "HS256 "}],
)
def test_missing_or_malformed_alg_is_refused(header: dict[str, Any]) -> None:
    refused(hs_verifier(), hs_token(header=header))


# -- algorithm confusion -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("with_kid", [True, False])
def test_hmac_token_keyed_with_the_rsa_public_key_is_refused(
    victim_private: rsa.RSAPrivateKey,
    victim_public_pem: bytes,
    rs_verifier: JWTVerifier,
    alg: str,
    with_kid: bool,
) -> None:
    public = victim_private.public_key()
    secrets_tried = [
        victim_public_pem,
        victim_public_pem.strip(),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
        json.dumps(Key.from_pem(victim_public_pem).public_jwk()).encode(),
    ]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "typ": "JWT", **({"kid": "victim"} if with_kid else {})}
    for secret in secrets_tried:
        signing_input = f"{_encode(header)}.{_encode(CLAIMS)}"
        mac = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
        error = refused(rs_verifier, f"{signing_input}.{_b64(mac)}")
        assert "algorithm" in error.reason


def test_hmac_token_is_refused_by_a_verifier_of_a_jwk_without_alg(
    victim_public_pem: bytes,
) -> None:
    jwk = Key.from_pem(victim_public_pem).public_jwk()
    del jwk["alg"]
    with pytest.raises(ValueError, match="several algorithms"):
        JWTVerifier(Key.from_jwk(jwk))  # RFC 8725 §3.1: the choice must be explicit
    verifier = JWTVerifier(Key.from_jwk(jwk), algorithms=["RS256", "PS256"], clock=_clock)
    assert "HS256" not in verifier.algorithms
    signing_input = f"{_encode({'alg': 'HS256'})}.{_encode(CLAIMS)}"
    refused(verifier, f"{signing_input}.{_hs256(signing_input, victim_public_pem)}")


def test_verifier_refuses_to_allow_hmac_next_to_an_rsa_key(victim_public_pem: bytes) -> None:
    with pytest.raises(ValueError, match="cannot share one verifier"):
        JWTVerifier(Key.from_pem(victim_public_pem), algorithms=["RS256", "HS256"])


def test_token_of_another_asymmetric_algorithm_is_refused(rs_verifier: JWTVerifier) -> None:
    attacker = Key.generate("ES256", kid="victim")
    refused(rs_verifier, TokenIssuer(attacker).issue("alice"))


# -- embedded and remote key headers -------------------------------------------------------


def _attacker_certificate_der(private: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "victim")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _embedded_headers(attacker: rsa.RSAPrivateKey) -> list[dict[str, Any]]:
    pem = attacker.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = Key.from_pem(pem).public_jwk()
    x5c = [base64.b64encode(_attacker_certificate_der(attacker)).decode("ascii")]
    return [
        {"alg": "RS256", "jwk": jwk},
        {"alg": "RS256", "jwk": {**jwk, "kid": "victim"}, "kid": "victim"},
        {"alg": "RS256", "jku": "https://attacker.example/jwks.json"},
        {"alg": "RS256", "jku": "https://attacker.example/jwks.json", "kid": "victim"},
        {"alg": "RS256", "x5u": "https://attacker.example/cert.pem", "kid": "victim"},
        {"alg": "RS256", "x5c": x5c},
        {"alg": "RS256", "x5c": x5c, "kid": "victim"},
        {"alg": "RS256", "jwk": jwk, "jku": "https://attacker.example/", "x5c": x5c},
    ]


def test_tokens_signed_by_a_key_the_header_embeds_or_points_to_are_refused(
    attacker_private: rsa.RSAPrivateKey, rs_verifier: JWTVerifier
) -> None:
    for header in _embedded_headers(attacker_private):
        error = refused(rs_verifier, rs_token(attacker_private, header))
        assert "signature" in error.reason


def test_token_naming_the_attackers_own_kid_is_an_unknown_key(
    attacker_private: rsa.RSAPrivateKey, rs_verifier: JWTVerifier
) -> None:
    header = _embedded_headers(attacker_private)[0]
    header = {**header, "kid": header["jwk"]["kid"]}
    with pytest.raises(UnknownKey):
        rs_verifier.verify_sync(rs_token(attacker_private, header))


def test_embedded_key_headers_are_ignored_not_trusted(
    attacker_private: rsa.RSAPrivateKey,
    victim_private: rsa.RSAPrivateKey,
    rs_verifier: JWTVerifier,
) -> None:
    # The same headers on a token the real key signed change nothing: the key comes
    # from configuration only, so the refusals above are the signature's doing.
    for header in _embedded_headers(attacker_private):
        assert rs_verifier.verify_sync(rs_token(victim_private, header)).subject == "alice"


# -- kid -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid", ["../../etc/passwd", "", "hs\x00", "HS", " hs", "' OR 1=1 --", "x" * 2000]
)
def test_kid_naming_no_configured_key_is_an_unknown_key(kid: str) -> None:
    with pytest.raises(UnknownKey):
        hs_verifier().verify_sync(hs_token(header={"alg": "HS256", "kid": kid}))


@pytest.mark.parametrize("kid", [1, 1.5, True, ["hs"], {"kid": "hs"}])
def test_kid_of_a_wrong_type_is_refused(kid: Any) -> None:
    error = refused(hs_verifier(), hs_token(header={"alg": "HS256", "kid": kid}))
    assert not isinstance(error, UnknownKey)
    assert "kid" in error.reason


def test_null_kid_does_not_bypass_the_signature() -> None:
    refused(hs_verifier(), hs_token(header={"alg": "HS256", "kid": None}, secret=b"e" * 64))


def test_null_kid_against_an_rsa_set_does_not_bypass_the_signature(
    attacker_private: rsa.RSAPrivateKey, rs_verifier: JWTVerifier
) -> None:
    refused(rs_verifier, rs_token(attacker_private, {"alg": "RS256", "kid": None}))


# -- crit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "crit": ["exp"], "exp": NOW + 60},
        {"alg": "HS256", "crit": ["b64"], "b64": False},
        {"alg": "HS256", "crit": []},
        {"alg": "HS256", "crit": None},
        {"alg": "HS256", "crit": "nonsense"},
    ],
)
def test_crit_header_is_refused(header: dict[str, Any]) -> None:
    error = refused(hs_verifier(), hs_token(header=header))
    assert "crit" in error.reason


# -- base64url -----------------------------------------------------------------------------


def _segments(token: str) -> list[str]:
    return token.split(".")


def _with_segment(token: str, index: int, segment: str) -> str:
    parts = _segments(token)
    parts[index] = segment
    return ".".join(parts)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("padding_", ["=", "==", "==="])
def test_padded_segment_is_refused(index: int, padding_: str) -> None:
    segment = _segments(VALID)[index]
    refused(hs_verifier(), _with_segment(VALID, index, segment + padding_))


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize(
    "char", ["+", "/", " ", "\t", "\n", "%", "*", "\u00e9", "\uff21", "\u0663", "\u200b", "\x00"]
)
def test_character_outside_base64url_is_refused(index: int, char: str) -> None:
    segment = _segments(VALID)[index]
    middle = len(segment) // 2
    replaced = _with_segment(VALID, index, segment[:middle] + char + segment[middle + 1 :])
    inserted = _with_segment(VALID, index, segment[:middle] + char + segment[middle:])
    refused(hs_verifier(), replaced)
    refused(hs_verifier(), inserted)


def test_standard_alphabet_spelling_of_a_token_is_refused() -> None:
    # Find a token whose signature uses '-' or '_' and respell it with '+' and '/'.
    for n in range(200):
        token = hs_token({**CLAIMS, "n": n})
        signature = _segments(token)[2]
        if "-" in signature or "_" in signature:
            break
    else:
        pytest.fail("no signature with '-' or '_' in 200 tries")
    standard = _with_segment(token, 2, signature.translate(str.maketrans("-_", "+/")))
    assert hs_verifier().verify_sync(token).subject == "alice"
    refused(hs_verifier(), standard)


@pytest.mark.parametrize("extra", ["A", "AAAAA", "AAAAAAAAA"])
def test_signature_segment_of_length_one_mod_four_is_refused(extra: str) -> None:
    signature = _segments(VALID)[2] + "AA"
    assert len(signature) % 4 == 1
    refused(hs_verifier(), _with_segment(VALID, 2, signature))
    token = f"{_encode({'alg': 'HS256'})}.{_encode(CLAIMS)}.{extra}"
    assert len(extra) % 4 == 1
    refused(hs_verifier(), token)


def test_header_or_payload_of_length_one_mod_four_is_refused() -> None:
    header, payload = _encode({"alg": "HS256"}), _encode(CLAIMS)
    long_header = header + "A" * ((1 - len(header)) % 4)
    long_payload = payload + "A" * ((1 - len(payload)) % 4)
    assert len(long_header) % 4 == len(long_payload) % 4 == 1
    for signing_input in (f"{long_header}.{payload}", f"{header}.{long_payload}"):
        refused(hs_verifier(), f"{signing_input}.{_hs256(signing_input)}")


def _non_canonical_twins(segment: str) -> list[str]:
    """Spellings of ``segment`` that differ only in the unused low bits of the last char."""
    rest = len(segment) % 4
    assert rest in (2, 3), "segment must leave unused bits"
    spare = 16 if rest == 2 else 4
    index = URLSAFE.index(segment[-1])
    twins = [segment[:-1] + URLSAFE[index ^ bits] for bits in range(1, spare)]
    original = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    for twin in twins:
        assert base64.urlsafe_b64decode(twin + "=" * (-len(twin) % 4)) == original
    return twins


def test_signature_with_non_canonical_final_character_is_refused() -> None:
    signature = _segments(VALID)[2]
    assert len(signature) == 43  # 32 bytes: the last character carries 2 unused bits
    twins = _non_canonical_twins(signature)
    assert len(twins) == 3
    verifier = hs_verifier()
    assert verifier.verify_sync(VALID).subject == "alice"
    for twin in twins:
        refused(verifier, _with_segment(VALID, 2, twin))


@pytest.mark.parametrize("name", ["ES256", "EdDSA"])
def test_asymmetric_signature_with_non_canonical_final_character_is_refused(
    verifiers: dict[str, JWTVerifier], name: str
) -> None:
    verifier = verifiers[name]
    key = next(iter(verifier.keys))
    token = TokenIssuer(key, clock=_clock).issue("alice")
    signature = _segments(token)[2]
    assert len(signature) == 86  # 64 bytes: 2 leftover characters, 4 unused bits
    assert verifier.verify_sync(token).subject == "alice"
    for twin in _non_canonical_twins(signature):
        refused(verifier, _with_segment(token, 2, twin))


def _payload_with_length(remainder: int) -> str:
    """Payload JSON whose byte length is ``remainder`` mod 3 (2 or 1 leftover chars)."""
    for pad in range(3):
        text = json.dumps({**CLAIMS, "pad": "x" * pad})
        if len(text) % 3 == remainder:
            return text
    raise AssertionError("unreachable")


@pytest.mark.parametrize("remainder", [1, 2])
def test_signed_payload_with_non_canonical_final_character_is_refused(remainder: int) -> None:
    # Even with a valid signature over the odd spelling, the parse is strict.
    header = _encode({"alg": "HS256"})
    payload = _encode(_payload_with_length(remainder))
    canonical = f"{header}.{payload}"
    assert hs_verifier().verify_sync(f"{canonical}.{_hs256(canonical)}").subject == "alice"
    for twin in _non_canonical_twins(payload):
        signing_input = f"{header}.{twin}"
        refused(hs_verifier(), f"{signing_input}.{_hs256(signing_input)}")


def test_signed_header_with_non_canonical_final_character_is_refused() -> None:
    header = _encode({"alg": "HS256", "kid": "hs"})
    assert len(header) % 4 == 3
    payload = _encode(CLAIMS)
    canonical = f"{header}.{payload}"
    assert hs_verifier().verify_sync(f"{canonical}.{_hs256(canonical)}").subject == "alice"
    for twin in _non_canonical_twins(header):
        signing_input = f"{twin}.{payload}"
        refused(hs_verifier(), f"{signing_input}.{_hs256(signing_input)}")


# -- JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"{",
        b"",
        b"\xff\xfe\x00",
        b"[]",
        b'["HS256"]',
        b'"HS256"',
        b"null",
        b"42",
        '\ufeff{"alg": "HS256"}'.encode(),
        b'{"alg": "HS256"} trailing',
        b'{"alg": "HS256"}{"alg": "HS256"}',
        b'{"alg": "HS\\ud800256"}',
    ],
)
def test_header_that_is_not_a_json_object_is_refused(header: bytes) -> None:
    if not header:
        token = f".{_encode(CLAIMS)}.AAAA"
    else:
        signing_input = f"{_encode(header)}.{_encode(CLAIMS)}"
        token = f"{signing_input}.{_hs256(signing_input)}"
    refused(hs_verifier(), token)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{",
        b"\xff\xfe\x00",
        b'{"sub": "alice", "name": "\xc3"}',
        json.dumps([CLAIMS]).encode(),
        b"[]",
        b"null",
        b"1700000600",
        b'"alice"',
        b"true",
        '\ufeff{"sub": "alice"}'.encode(),
        json.dumps(CLAIMS).encode() + b" x",
        json.dumps(CLAIMS).encode() * 2,
    ],
)
def test_payload_that_is_not_a_json_object_is_refused(payload: bytes) -> None:
    error = refused(hs_verifier(), hs_token(payload))
    assert "payload" in error.reason


@pytest.mark.parametrize("opener", ["[", '{"a":'])
@pytest.mark.parametrize("where", ["header", "payload"])
def test_deeply_nested_json_is_refused(opener: str, where: str) -> None:
    depth = 50_000
    nested = opener * depth
    verifier = hs_verifier(max_token_bytes=400_000)
    header: str | None = nested if where == "header" else None
    payload: str = nested if where == "payload" else json.dumps(CLAIMS)
    token = hs_token(payload, header)
    assert len(token) <= verifier.max_token_bytes
    assert "not JSON: RecursionError" in refused(verifier, token).reason


@pytest.mark.parametrize("where", ["header", "payload"])
def test_deeply_nested_balanced_json_is_refused(where: str) -> None:
    depth = 50_000
    text = '{"alg": "HS256", "x": ' if where == "header" else json.dumps(CLAIMS)[:-1] + ', "x": '
    nested = text + "[" * depth + "]" * depth + "}"
    verifier = hs_verifier(max_token_bytes=400_000)
    token = hs_token(nested) if where == "payload" else hs_token(CLAIMS, nested)
    assert len(token) <= verifier.max_token_bytes
    assert "not JSON: RecursionError" in refused(verifier, token).reason


@pytest.mark.parametrize("where", ["header", "payload"])
def test_deep_nesting_that_fits_the_default_size_is_refused(where: str) -> None:
    nested = "[" * 11_000 + "]" * 500
    token = hs_token(nested) if where == "payload" else hs_token(CLAIMS, nested)
    assert len(token) <= DEFAULT_MAX_TOKEN_BYTES
    assert "not JSON: RecursionError" in refused(hs_verifier(), token).reason


# -- size ----------------------------------------------------------------------------------


def test_token_longer_than_max_token_bytes_is_refused() -> None:
    verifier = hs_verifier(max_token_bytes=len(VALID))
    assert verifier.verify_sync(VALID).subject == "alice"
    refused(hs_verifier(max_token_bytes=len(VALID) - 1), VALID)


def test_huge_token_is_refused_before_parsing() -> None:
    padded = hs_token({**CLAIMS, "blob": "x" * DEFAULT_MAX_TOKEN_BYTES})
    error = refused(hs_verifier(), padded)
    assert "longer" in error.reason
    error = refused(hs_verifier(), "A" * 10_000_000)
    assert "longer" in error.reason


# -- NumericDate claims --------------------------------------------------------------------


NUMERIC_DATE_JUNK = [
    '"1700000600"',
    '"soon"',
    "true",
    "false",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" + "0" * 400,
    "-1" + "0" * 400,
    "1" + "0" * 5000,
    str(2**53),
    str(-(2**53)),
    "[1700000600]",
    "[]",
    "{}",
    '{"$date": 1700000600}',
]


def _payload_with(claim: str, raw: str) -> str:
    base = {name: value for name, value in CLAIMS.items() if name != claim}
    return json.dumps(base)[:-1] + f', "{claim}": {raw}}}'


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("raw", NUMERIC_DATE_JUNK, ids=lambda raw: raw[:16])
def test_numeric_date_of_the_wrong_type_is_refused(claim: str, raw: str) -> None:
    token = hs_token(_payload_with(claim, raw))
    assert len(token) <= DEFAULT_MAX_TOKEN_BYTES
    reason = refused(hs_verifier(), token).reason
    assert f"'{claim}' is not a NumericDate" in reason or "payload is not JSON" in reason


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_null_numeric_date_is_refused(claim: str) -> None:
    # RFC 7519 §4.1.4-6: these claims are NumericDate values; null is not one. With
    # `exp` required (the default), `"exp": null` must not count as present-and-valid.
    refused(hs_verifier(), hs_token(_payload_with(claim, "null")))


def test_numeric_dates_in_range_are_accepted() -> None:
    verifier = hs_verifier()
    assert verifier.verify_sync(hs_token(_payload_with("exp", str(2**53 - 1)))).subject
    assert verifier.verify_sync(hs_token(_payload_with("exp", "1700000600.5"))).subject
    assert verifier.verify_sync(hs_token(_payload_with("iat", "-1"))).subject
    assert verifier.verify_sync(hs_token(_payload_with("nbf", "1.7e9"))).subject


# -- shape ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "...",
        "a",
        "a.b",
        "a.b.",
        ".b.c",
        "a..c",
        VALID + ".",
        VALID + ".x",
        VALID + "." + _segments(VALID)[2],
        ".".join(_segments(VALID)[:2]),
        ".".join(_segments(VALID)[:2]) + ".",
        "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
        " " + VALID,
        VALID + " ",
        VALID + "\n",
        VALID + "\r\n",
        "Bearer " + VALID,
        VALID.replace(".", "%2E"),
        VALID.replace(".", "\u2024"),
        VALID[:-1],
        VALID[1:],
    ],
)
def test_token_not_made_of_exactly_three_segments_is_refused(token: str) -> None:
    refused(hs_verifier(), token)


@pytest.mark.parametrize("token", [VALID.encode(), None, 0, 1.5, True, object()])
def test_non_string_input_is_refused(token: Any) -> None:
    error = refused(hs_verifier(), token)
    assert "not a string" in error.reason


@pytest.mark.parametrize(
    "token", [[VALID], {"token": VALID}, bytearray(VALID.encode()), {VALID}], ids=type
)
def test_unhashable_input_is_refused(token: Any) -> None:
    refused(hs_verifier(), token)


# -- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", VERIFIER_NAMES)
@pytest.mark.parametrize(
    "signature",
    [b"\x00", b"\x00" * 32, b"\x00" * 63, b"\x00" * 64, b"\xff" * 64, b"\xff" * 256, b"\xff" * 512],
    ids=lambda s: f"{len(s)}x{s[0]:02x}",
)
def test_garbage_signature_is_refused(
    verifiers: dict[str, JWTVerifier], name: str, signature: bytes
) -> None:
    key = next(iter(verifiers[name].keys))
    header = {"alg": name, "kid": key.kid}
    error = refused(verifiers[name], f"{_encode(header)}.{_encode(CLAIMS)}.{_b64(signature)}")
    assert "signature" in error.reason


def test_ecdsa_signature_with_zero_or_out_of_range_scalars_is_refused(
    verifiers: dict[str, JWTVerifier],
) -> None:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    header = _encode({"alg": "ES256", "kid": "es"})
    for r, s in [(0, 0), (0, 1), (1, 0), (order, 1), (1, order), (order + 1, order + 1)]:
        raw = (r % 2**256).to_bytes(32, "big") + (s % 2**256).to_bytes(32, "big")
        refused(verifiers["ES256"], f"{header}.{_encode(CLAIMS)}.{_b64(raw)}")


def test_signature_from_another_token_is_refused() -> None:
    other = hs_token({**CLAIMS, "sub": "mallory"})
    spliced = ".".join([*_segments(other)[:2], _segments(VALID)[2]])
    refused(hs_verifier(), spliced)


def test_swapped_header_and_payload_are_refused() -> None:
    header, payload, signature = _segments(VALID)
    refused(hs_verifier(), f"{payload}.{header}.{signature}")


def test_signature_of_an_ecdsa_key_on_another_curve_is_refused(
    verifiers: dict[str, JWTVerifier],
) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    token = TokenIssuer(Key.from_pem(pem, kid="es")).issue("alice")
    refused(verifiers["ES256"], token)


def test_eddsa_signature_by_another_key_with_the_same_kid_is_refused(
    verifiers: dict[str, JWTVerifier],
) -> None:
    impostor = Key.from_pem(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        kid="ed",
    )
    refused(verifiers["EdDSA"], TokenIssuer(impostor, clock=_clock).issue("alice"))


# -- properties ----------------------------------------------------------------------------


PROPERTY_TOKENS = {
    "HS256": TokenIssuer(HS_KEY, clock=_clock).issue("alice", claims={"scope": "read"}),
    "EdDSA": TokenIssuer(ED_KEY, clock=_clock).issue("alice", claims={"scope": "read"}),
}
PROPERTY_VERIFIERS = {
    "HS256": JWTVerifier(HS_KEY, clock=_clock),
    "EdDSA": JWTVerifier(ED_KEY, clock=_clock),
}
PROPERTY_CLAIMS = {
    name: dict(PROPERTY_VERIFIERS[name].verify_sync(token).claims)
    for name, token in PROPERTY_TOKENS.items()
}
CHARACTERS = st.one_of(
    st.sampled_from(URLSAFE + ".=+/ \n\t%\u00e9\u200b\uff21"),
    st.characters(),
)


@st.composite
def mutations(draw: st.DrawFn, token: str) -> str:
    """``token`` after up to five insertions, deletions, replacements, bit flips or swaps."""
    text = token
    for _ in range(draw(st.integers(0, 5))):
        operation = draw(st.sampled_from(["insert", "delete", "replace", "flip", "swap"]))
        if operation == "swap":
            parts = text.split(".")
            i = draw(st.integers(0, len(parts) - 1))
            j = draw(st.integers(0, len(parts) - 1))
            parts[i], parts[j] = parts[j], parts[i]
            text = ".".join(parts)
            continue
        position = draw(st.integers(0, max(len(text) - 1, 0)))
        if operation == "insert":
            text = text[:position] + draw(CHARACTERS) + text[position:]
        elif not text:
            continue
        elif operation == "delete":
            text = text[:position] + text[position + 1 :]
        elif operation == "replace":
            text = text[:position] + draw(CHARACTERS) + text[position + 1 :]
        elif text[position] in URLSAFE:
            flipped = URLSAFE[URLSAFE.index(text[position]) ^ draw(st.integers(1, 63))]
            text = text[:position] + flipped + text[position + 1 :]
    return text


@pytest.mark.parametrize("name", sorted(PROPERTY_TOKENS))
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_mutated_token_is_refused_unless_untouched(name: str, data: st.DataObject) -> None:
    original = PROPERTY_TOKENS[name]
    token = data.draw(mutations(original), label="token")
    verifier = PROPERTY_VERIFIERS[name]
    try:
        principal = verifier.verify_sync(token)
    except InvalidToken:
        assert token != original, "the untouched token must verify"
        return
    assert token == original, f"a mutated token was accepted: {token!r}"
    assert dict(principal.claims) == PROPERTY_CLAIMS[name]


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=2000), st.text(alphabet=URLSAFE + ".", max_size=400)))
def test_arbitrary_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidToken):
        PROPERTY_VERIFIERS["HS256"].verify_sync(text)


@settings(max_examples=300, deadline=None, database=None)
@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jwk"]), st.text()),
    payload=st.binary(max_size=300),
)
def test_tokens_with_arbitrary_headers_and_payload_bytes_are_refused(
    header: dict[str, str], payload: bytes
) -> None:
    signing_input = f"{_encode(header)}.{_b64(payload)}"
    with pytest.raises(InvalidToken):
        PROPERTY_VERIFIERS["HS256"].verify_sync(f"{signing_input}.{_hs256(signing_input)}")
