"""TokenIssuer: the claims and headers it writes, what it refuses, and the JWKS it publishes."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from asgi_auth.errors import InvalidToken
from asgi_auth.tokens import JWTVerifier, Key, KeySet, TokenIssuer
from asgi_auth.tokens.issuer import DEFAULT_LIFETIME, RESERVED_CLAIMS

SECRET = b"0123456789abcdef" * 4
NOW = 1_700_000_000
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")


def _part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def payload_of(token: str) -> dict[str, Any]:
    return _part(token, 1)


def header_of(token: str) -> dict[str, Any]:
    return _part(token, 0)


def fixed(now: float = NOW) -> Any:
    return lambda: float(now)


@pytest.fixture
def hs_key() -> Key:
    return Key.from_secret(SECRET, kid="hs-1")


@pytest.fixture
def issuer(hs_key: Key) -> TokenIssuer:
    return TokenIssuer(hs_key, clock=fixed())


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Key.from_pem(pem)


# -- the claims ----------------------------------------------------------------------------


def test_issued_token_carries_the_subject(issuer: TokenIssuer) -> None:
    assert payload_of(issuer.issue("alice"))["sub"] == "alice"


def test_integer_subject_becomes_its_decimal_string(issuer: TokenIssuer) -> None:
    assert payload_of(issuer.issue(1))["sub"] == "1"
    assert payload_of(issuer.issue(0))["sub"] == "0"
    assert payload_of(issuer.issue(-42))["sub"] == "-42"


def test_issued_token_carries_iat_nbf_and_exp_after_the_default_lifetime(
    issuer: TokenIssuer,
) -> None:
    payload = payload_of(issuer.issue("alice"))
    assert DEFAULT_LIFETIME == 3600
    assert payload["iat"] == NOW
    assert payload["nbf"] == NOW
    assert payload["exp"] == NOW + 3600
    assert all(type(payload[name]) is int for name in ("iat", "nbf", "exp"))


def test_fractional_clock_is_truncated_to_whole_seconds(hs_key: Key) -> None:
    payload = payload_of(TokenIssuer(hs_key, clock=fixed(NOW + 0.9)).issue("alice"))
    assert payload["iat"] == NOW
    assert payload["exp"] == NOW + 3600


@pytest.mark.parametrize(
    ("lifetime", "seconds"), [(60, 60), (timedelta(minutes=5), 300), (90.7, 90)]
)
def test_configured_lifetime_sets_exp(hs_key: Key, lifetime: Any, seconds: int) -> None:
    payload = payload_of(TokenIssuer(hs_key, lifetime=lifetime, clock=fixed()).issue("a"))
    assert payload["exp"] - payload["iat"] == seconds


@pytest.mark.parametrize(("lifetime", "seconds"), [(120, 120), (timedelta(hours=2), 7200)])
def test_lifetime_per_token_overrides_the_default(
    issuer: TokenIssuer, lifetime: Any, seconds: int
) -> None:
    payload = payload_of(issuer.issue("alice", lifetime=lifetime))
    assert payload["exp"] == NOW + seconds


def test_every_token_gets_a_unique_jti(issuer: TokenIssuer) -> None:
    jtis = [payload_of(issuer.issue("alice"))["jti"] for _ in range(1000)]
    assert len(set(jtis)) == 1000
    assert all(isinstance(jti, str) and len(jti) >= 16 for jti in jtis)


def test_issuer_and_audience_are_written_when_configured(hs_key: Key) -> None:
    issuer = TokenIssuer(hs_key, issuer="https://issuer", audience="api", clock=fixed())
    payload = payload_of(issuer.issue("alice"))
    assert payload["iss"] == "https://issuer"
    assert payload["aud"] == "api"


def test_audience_may_be_a_list_and_overridden_per_token(hs_key: Key) -> None:
    issuer = TokenIssuer(hs_key, audience=["api", "admin"], clock=fixed())
    assert payload_of(issuer.issue("alice"))["aud"] == ["api", "admin"]
    assert payload_of(issuer.issue("alice", audience="other"))["aud"] == "other"


def test_iss_and_aud_are_absent_when_not_configured(issuer: TokenIssuer) -> None:
    payload = payload_of(issuer.issue("alice"))
    assert set(payload) == {"sub", "iat", "nbf", "exp", "jti"}


def test_extra_claims_are_written(issuer: TokenIssuer) -> None:
    token = issuer.issue("alice", claims={"scope": "read write", "roles": ["admin"], "n": 1})
    payload = payload_of(token)
    assert payload["scope"] == "read write"
    assert payload["roles"] == ["admin"]
    assert payload["n"] == 1


def test_extra_claims_are_not_mutated(issuer: TokenIssuer) -> None:
    extra = {"scope": "read"}
    issuer.issue("alice", claims=extra)
    assert extra == {"scope": "read"}


# -- the header ----------------------------------------------------------------------------


def test_header_names_the_kid_alg_and_typ(issuer: TokenIssuer) -> None:
    assert header_of(issuer.issue("alice")) == {"alg": "HS256", "typ": "at+jwt", "kid": "hs-1"}


def test_header_has_no_kid_for_a_key_without_one() -> None:
    issuer = TokenIssuer(Key.from_secret(SECRET), clock=fixed())
    assert "kid" not in header_of(issuer.issue("alice"))


def test_asymmetric_key_header_names_its_thumbprint_kid() -> None:
    key = Key.generate("ES256")
    assert header_of(TokenIssuer(key).issue("alice"))["kid"] == key.thumbprint()


def test_typ_header_is_at_jwt_by_default_and_can_be_plain_jwt(hs_key: Key) -> None:
    issuer = TokenIssuer(hs_key, clock=fixed())
    token = issuer.issue("alice")
    assert header_of(token)["typ"] == "at+jwt"
    assert JWTVerifier(hs_key, typ="at+jwt", clock=fixed()).verify_sync(token).subject == "alice"
    plain = TokenIssuer(hs_key, typ="JWT", clock=fixed()).issue("alice")
    assert header_of(plain)["typ"] == "JWT"
    with pytest.raises(InvalidToken, match="typ"):
        JWTVerifier(hs_key, typ="at+jwt", clock=fixed()).verify_sync(plain)


def test_issuing_does_not_change_the_shared_header(issuer: TokenIssuer) -> None:
    first = header_of(issuer.issue("alice"))
    second = header_of(issuer.issue("bob", claims={"scope": "x"}))
    assert first == second


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", sorted(RESERVED_CLAIMS))
def test_reserved_claim_among_extra_claims_is_refused(issuer: TokenIssuer, claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        issuer.issue("alice", claims={claim: "x"})


def test_reserved_claims_are_the_registered_ones_the_issuer_writes() -> None:
    assert frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}) == RESERVED_CLAIMS


@pytest.mark.parametrize("subject", [True, False, None, 1.5, b"alice", ["alice"]])
def test_subject_that_is_not_a_string_or_int_is_refused(issuer: TokenIssuer, subject: Any) -> None:
    with pytest.raises(TypeError, match="subject"):
        issuer.issue(subject)


def test_empty_subject_is_refused(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="subject must not be empty"):
        issuer.issue("")


@pytest.mark.parametrize("lifetime", [0, -1, -0.5, timedelta(0), timedelta(seconds=-5), True, "60"])
def test_bad_lifetime_is_refused(hs_key: Key, issuer: TokenIssuer, lifetime: Any) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        TokenIssuer(hs_key, lifetime=lifetime)
    with pytest.raises(ValueError, match="lifetime"):
        issuer.issue("alice", lifetime=lifetime)


@pytest.mark.parametrize("lifetime", [float("inf"), float("nan")])
def test_non_finite_lifetime_is_refused(hs_key: Key, issuer: TokenIssuer, lifetime: float) -> None:
    # Docstrings: TokenIssuer raises ValueError for "a setting out of range" and
    # issue() raises ValueError for "a bad lifetime".
    with pytest.raises(ValueError, match="lifetime"):
        TokenIssuer(hs_key, lifetime=lifetime)
    with pytest.raises(ValueError, match="lifetime"):
        issuer.issue("alice", lifetime=lifetime)


def test_public_key_only_cannot_make_an_issuer(rsa_key: Key) -> None:
    public = Key.from_pem(rsa_key.public_pem())
    with pytest.raises(ValueError, match="cannot sign"):
        TokenIssuer(public)
    with pytest.raises(ValueError, match="cannot sign"):
        TokenIssuer(Key.from_jwk(Key.generate("EdDSA").public_jwk()))


def test_something_other_than_a_key_cannot_make_an_issuer() -> None:
    with pytest.raises(TypeError, match="Key"):
        TokenIssuer(SECRET)  # type: ignore[arg-type]


def test_multi_algorithm_key_needs_an_algorithm(rsa_key: Key) -> None:
    private_jwk = RSAAlgorithm.to_jwk(rsa_key.sign_key, as_dict=True)
    assert isinstance(private_jwk, dict)
    key = Key.from_jwk({**private_jwk, "kid": "multi"})
    assert len(key.algorithms) == 6
    with pytest.raises(ValueError, match="name one"):
        TokenIssuer(key)
    issuer = TokenIssuer(key, algorithm="PS384")
    token = issuer.issue("alice")
    assert header_of(token)["alg"] == "PS384"
    assert JWTVerifier(key, algorithms=["PS384"]).verify_sync(token).subject == "alice"


def test_algorithm_the_key_is_not_for_is_refused(hs_key: Key, rsa_key: Key) -> None:
    with pytest.raises(ValueError, match="not for 'HS512'"):
        TokenIssuer(hs_key, algorithm="HS512")
    with pytest.raises(ValueError, match="not for 'PS256'"):
        TokenIssuer(rsa_key, algorithm="PS256")


# -- JWKS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "ES384", "ES512", "EdDSA"])
def test_jwks_of_an_asymmetric_issuer_verifies_its_tokens(algorithm: str, rsa_key: Key) -> None:
    key = rsa_key if algorithm == "RS256" else Key.generate(algorithm)
    issuer = TokenIssuer(key, issuer="https://issuer", audience="api")
    jwks = issuer.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [key.kid]
    for jwk in jwks["keys"]:
        assert not set(jwk) & set(PRIVATE_MEMBERS)
    published = KeySet.from_jwks(json.loads(json.dumps(jwks)))
    assert not any(k.can_sign for k in published)
    verifier = JWTVerifier(published, issuer="https://issuer", audience="api")
    principal = verifier.verify_sync(issuer.issue("alice", claims={"scope": "read"}))
    assert principal.subject == "alice"
    assert principal.scopes == {"read"}


def test_jwks_lists_published_keys_for_rotation() -> None:
    current, upcoming = Key.generate("ES256", kid="cur"), Key.generate("ES256", kid="next")
    upcoming_public = Key.from_jwk(upcoming.public_jwk())
    jwks = TokenIssuer(current, publish=[upcoming_public]).jwks()
    assert [k["kid"] for k in jwks["keys"]] == ["cur", "next"]
    verifier = JWTVerifier(KeySet.from_jwks(jwks))
    for key in (current, upcoming):
        assert verifier.verify_sync(TokenIssuer(key).issue("alice")).subject == "alice"


def test_publishing_a_key_with_the_signing_kid_is_refused() -> None:
    key = Key.generate("ES256", kid="same")
    with pytest.raises(ValueError, match="share kid"):
        TokenIssuer(key, publish=[Key.generate("ES256", kid="same")])


def test_hmac_issuer_jwks_has_no_keys(issuer: TokenIssuer) -> None:
    assert issuer.jwks() == {"keys": []}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_claim_values_are_refused_so_tokens_stay_standard_json(value: float) -> None:
    issuer = TokenIssuer(Key.generate("HS256"))
    with pytest.raises(ValueError, match="JSON compliant"):
        issuer.issue(1, claims={"n": value})
