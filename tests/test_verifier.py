"""JWTVerifier: configuration refusals, claim checks, claim mapping, key rotation, PyJWT interop."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from asgi_auth.errors import ExpiredToken, InvalidToken, UnknownKey
from asgi_auth.principal import ClaimMapping, Principal, thaw
from asgi_auth.tokens import JWTVerifier, Key, KeySet, TokenIssuer, TokenVerifier

SECRET = b"0123456789abcdef" * 4
NOW = 1_700_000_000
HS_KEY = Key.from_secret(SECRET)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _encode(part: Mapping[str, Any] | str | bytes) -> str:
    if isinstance(part, Mapping):
        return _b64(json.dumps(part).encode("utf-8"))
    return _b64(part.encode("utf-8") if isinstance(part, str) else part)


def sign(
    payload: Mapping[str, Any] | str | bytes,
    header: Mapping[str, Any] | str | bytes | None = None,
    *,
    secret: bytes = SECRET,
) -> str:
    """An HS256 token over exactly the given header and payload (JSON text allowed)."""
    signing_input = f"{_encode({'alg': 'HS256'} if header is None else header)}.{_encode(payload)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def claims(**extra: Any) -> dict[str, Any]:
    """Typical valid claims at NOW, updated by ``extra``."""
    return {"sub": "alice", "iat": NOW, "exp": NOW + 600, **extra}


def without(name: str, **extra: Any) -> dict[str, Any]:
    result = claims(**extra)
    del result[name]
    return result


def verifier(**options: Any) -> JWTVerifier:
    """An HS256 verifier whose clock is stopped at NOW."""
    options.setdefault("clock", lambda: float(NOW))
    return JWTVerifier(HS_KEY, **options)


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key(rsa_private: rsa.RSAPrivateKey) -> Key:
    pem = rsa_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Key.from_pem(pem, kid="rsa")


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms",
    [["none"], ["None"], ["NONE"], ["nOnE"], ["HS256", "none"], ["RS256", "None"]],
)
def test_none_in_the_allow_list_is_refused(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="'none' is never"):
        JWTVerifier(HS_KEY, algorithms=algorithms)


@pytest.mark.parametrize("algorithms", ["HS256", "RS256"])
def test_algorithms_given_as_a_string_are_refused(algorithms: str) -> None:
    with pytest.raises(TypeError, match="not a string"):
        JWTVerifier(HS_KEY, algorithms=algorithms)


def test_hmac_mixed_with_rs256_in_the_allow_list_is_refused(rsa_key: Key) -> None:
    with pytest.raises(ValueError, match="cannot share one verifier"):
        JWTVerifier(HS_KEY, algorithms=["HS256", "RS256"])
    with pytest.raises(ValueError, match="cannot share one verifier"):
        JWTVerifier([HS_KEY, rsa_key])


def test_hmac_allow_list_with_an_rsa_key_is_refused(rsa_key: Key) -> None:
    with pytest.raises(ValueError, match="asymmetric but the allow-list is HMAC"):
        JWTVerifier(rsa_key, algorithms=["HS256"])


def test_asymmetric_allow_list_with_an_hmac_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="HMAC secret cannot verify asymmetric"):
        JWTVerifier(HS_KEY, algorithms=["RS256"])


def test_key_admitting_none_of_the_allowed_algorithms_is_refused(rsa_key: Key) -> None:
    with pytest.raises(ValueError, match="admits none of the allowed algorithms"):
        JWTVerifier(rsa_key, algorithms=["PS256"])
    with pytest.raises(ValueError, match="admits none of the allowed algorithms"):
        JWTVerifier(HS_KEY, algorithms=["HS512"])
    with pytest.raises(ValueError, match="admits none of the allowed algorithms"):
        JWTVerifier([rsa_key, Key.generate("ES256")], algorithms=["RS256"])


@pytest.mark.parametrize(("algorithms", "message"), [([], "empty"), (["HS999"], "unsupported")])
def test_empty_or_unknown_allow_list_is_refused(algorithms: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JWTVerifier(HS_KEY, algorithms=algorithms)


def test_allow_list_defaults_to_the_algorithms_of_the_keys(rsa_key: Key) -> None:
    assert verifier().algorithms == frozenset({"HS256"})
    assert JWTVerifier([rsa_key, Key.generate("ES384")]).algorithms == {"RS256", "ES384"}


def test_empty_key_list_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        JWTVerifier([])


@pytest.mark.parametrize(
    "leeway", [-1, -0.001, 86_401, float("nan"), float("inf"), timedelta(days=2), "5", True]
)
def test_bad_leeway_is_refused(leeway: Any) -> None:
    with pytest.raises(ValueError, match="leeway"):
        verifier(leeway=leeway)


def test_leeway_accepts_seconds_and_timedelta() -> None:
    assert verifier(leeway=timedelta(seconds=30)).leeway == 30.0
    assert verifier(leeway=86_400).leeway == 86_400
    assert verifier(leeway=0.5).leeway == 0.5


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("max_token_bytes", 63, ValueError, "max_token_bytes"),
        ("max_token_bytes", 1024.0, ValueError, "max_token_bytes"),
        ("cache_size", -1, ValueError, "cache_size"),
        ("cache_size", 1.5, ValueError, "cache_size"),
        ("typ", "", TypeError, "typ"),
        ("typ", 1, TypeError, "typ"),
        ("require", "exp", TypeError, "require"),
        ("issuer", [], TypeError, "issuer"),
        ("issuer", [""], TypeError, "issuer"),
        ("audience", [1], TypeError, "audience"),
        ("audience", ["api", None], TypeError, "audience"),
    ],
)
def test_bad_settings_are_refused(
    option: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        verifier(**{option: value})


def test_sub_is_always_required() -> None:
    assert verifier().required == ("exp", "sub")
    assert verifier(require=()).required == ("sub",)
    assert verifier(require=["jti", "sub"]).required == ("jti", "sub")


def test_verifier_satisfies_the_token_verifier_protocol() -> None:
    assert isinstance(verifier(), TokenVerifier)


# -- a valid token -------------------------------------------------------------------------


def test_valid_token_gives_a_principal_with_its_claims() -> None:
    payload = claims(name="Alice", jti="j1", iss="https://issuer")
    principal = verifier().verify_sync(sign(payload))
    assert isinstance(principal, Principal)
    assert principal.subject == "alice"
    assert dict(principal.claims) == payload
    assert principal.display_name == "Alice"
    assert principal.token_id == "j1"
    assert principal.issuer == "https://issuer"


async def test_async_verify_gives_the_same_principal() -> None:
    v = verifier()
    token = sign(claims())
    principal = await v.verify(token)
    assert principal.subject == "alice"
    with pytest.raises(ExpiredToken):
        await v.verify(sign(claims(exp=NOW)))


def test_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(InvalidToken, match="signature"):
        verifier().verify_sync(sign(claims(), secret=b"x" * 64))


# -- exp / nbf / iat -----------------------------------------------------------------------


def test_token_without_exp_is_refused_by_default() -> None:
    with pytest.raises(InvalidToken, match="'exp' is missing"):
        verifier().verify_sync(sign(without("exp")))


def test_token_without_exp_is_accepted_when_not_required() -> None:
    assert verifier(require=()).verify_sync(sign(without("exp"))).subject == "alice"


def test_expired_token_is_refused() -> None:
    with pytest.raises(ExpiredToken):
        verifier().verify_sync(sign(claims(exp=NOW - 1)))


def test_token_is_expired_at_the_exact_second_of_exp() -> None:
    with pytest.raises(ExpiredToken):
        verifier().verify_sync(sign(claims(exp=NOW)))


def test_token_is_valid_the_second_before_exp() -> None:
    assert verifier().verify_sync(sign(claims(exp=NOW + 1))).subject == "alice"
    assert verifier().verify_sync(sign(claims(exp=NOW + 0.5))).subject == "alice"


def test_leeway_extends_exp() -> None:
    v = verifier(leeway=10)
    assert v.verify_sync(sign(claims(exp=NOW - 9))).subject == "alice"
    with pytest.raises(ExpiredToken):
        v.verify_sync(sign(claims(exp=NOW - 10)))


def test_leeway_given_as_timedelta_extends_exp() -> None:
    v = verifier(leeway=timedelta(minutes=1))
    assert v.verify_sync(sign(claims(exp=NOW - 59))).subject == "alice"
    with pytest.raises(ExpiredToken):
        v.verify_sync(sign(claims(exp=NOW - 60)))


def test_token_not_yet_valid_is_refused() -> None:
    with pytest.raises(InvalidToken, match="nbf") as info:
        verifier().verify_sync(sign(claims(nbf=NOW + 1)))
    assert not isinstance(info.value, ExpiredToken)


def test_token_is_valid_from_the_exact_second_of_nbf() -> None:
    assert verifier().verify_sync(sign(claims(nbf=NOW))).subject == "alice"


def test_leeway_extends_nbf() -> None:
    v = verifier(leeway=10)
    assert v.verify_sync(sign(claims(nbf=NOW + 10))).subject == "alice"
    with pytest.raises(InvalidToken, match="nbf"):
        v.verify_sync(sign(claims(nbf=NOW + 11)))


def test_token_issued_in_the_future_is_refused() -> None:
    with pytest.raises(InvalidToken, match="iat"):
        verifier().verify_sync(sign(claims(iat=NOW + 1)))
    assert verifier().verify_sync(sign(claims(iat=NOW))).subject == "alice"
    assert verifier(leeway=5).verify_sync(sign(claims(iat=NOW + 5))).subject == "alice"


def test_old_iat_is_accepted() -> None:
    assert verifier().verify_sync(sign(claims(iat=0))).subject == "alice"


def test_clock_is_consulted_on_every_check() -> None:
    now = [float(NOW)]
    v = JWTVerifier(HS_KEY, clock=lambda: now[0], cache_size=0)
    token = sign(claims(nbf=NOW + 100, exp=NOW + 200))
    with pytest.raises(InvalidToken, match="nbf"):
        v.verify_sync(token)
    now[0] = NOW + 100
    assert v.verify_sync(token).subject == "alice"
    now[0] = NOW + 200
    with pytest.raises(ExpiredToken):
        v.verify_sync(token)


# -- iss -----------------------------------------------------------------------------------


def test_issuer_must_match_when_configured() -> None:
    v = verifier(issuer="https://issuer")
    assert v.verify_sync(sign(claims(iss="https://issuer"))).issuer == "https://issuer"
    with pytest.raises(InvalidToken, match="issuer"):
        v.verify_sync(sign(claims(iss="https://evil")))
    with pytest.raises(InvalidToken, match="issuer"):
        v.verify_sync(sign(claims(iss="https://issuer/")))


@pytest.mark.parametrize("iss", [None, ["https://issuer"], 1, {"iss": "https://issuer"}])
def test_missing_or_non_string_issuer_is_refused(iss: Any) -> None:
    payload = claims() if iss is None else claims(iss=iss)
    with pytest.raises(InvalidToken, match="issuer"):
        verifier(issuer="https://issuer").verify_sync(sign(payload))


def test_any_of_a_set_of_issuers_is_accepted() -> None:
    v = verifier(issuer={"https://a", "https://b"})
    assert v.verify_sync(sign(claims(iss="https://a"))).issuer == "https://a"
    assert v.verify_sync(sign(claims(iss="https://b"))).issuer == "https://b"
    with pytest.raises(InvalidToken, match="issuer"):
        v.verify_sync(sign(claims(iss="https://c")))


def test_issuer_is_not_checked_when_not_configured() -> None:
    assert verifier().verify_sync(sign(claims(iss="anything"))).issuer == "anything"


# -- aud -----------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["api", ["api"], ["other", "api"]])
def test_audience_naming_the_configured_one_is_accepted(aud: Any) -> None:
    assert verifier(audience="api").verify_sync(sign(claims(aud=aud))).subject == "alice"


@pytest.mark.parametrize(
    "aud", ["other", ["other"], ["other", "more"], "API", "ap", "api ", [["api"]]]
)
def test_audience_not_naming_the_configured_one_is_refused(aud: Any) -> None:
    with pytest.raises(InvalidToken, match=r"audience|'aud'"):
        verifier(audience="api").verify_sync(sign(claims(aud=aud)))


def test_missing_audience_is_refused_when_configured() -> None:
    with pytest.raises(InvalidToken, match="'aud' is missing"):
        verifier(audience="api").verify_sync(sign(claims()))


@pytest.mark.parametrize("aud", [[], ["api", 1], ["api", None], 1, None, {"api": True}, True])
def test_audience_of_the_wrong_type_is_refused(aud: Any) -> None:
    with pytest.raises(InvalidToken, match="'aud'"):
        verifier(audience="api").verify_sync(sign(claims(aud=aud)))


def test_any_of_a_set_of_audiences_is_accepted() -> None:
    v = verifier(audience=["api", "admin"])
    assert v.verify_sync(sign(claims(aud="admin"))).subject == "alice"
    assert v.verify_sync(sign(claims(aud=["x", "api"]))).subject == "alice"
    with pytest.raises(InvalidToken, match="audience"):
        v.verify_sync(sign(claims(aud="x")))


@pytest.mark.parametrize("aud", ["api", ["api"], None, []])
def test_token_with_an_audience_is_refused_when_none_is_configured(aud: Any) -> None:
    # RFC 7519 §4.1.3: a recipient that does not identify itself with `aud` must reject.
    with pytest.raises(InvalidToken, match="aud"):
        verifier().verify_sync(sign(claims(aud=aud)))


# -- typ -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"]
)
def test_typ_at_jwt_is_accepted_case_insensitively(typ: str) -> None:
    token = sign(claims(), {"alg": "HS256", "typ": typ})
    assert verifier(typ="at+jwt").verify_sync(token).subject == "alice"
    assert verifier(typ="application/at+jwt").verify_sync(token).subject == "alice"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "application/jwt", "", 1, ["at+jwt"]])
def test_other_typ_is_refused_when_at_jwt_is_expected(typ: Any) -> None:
    with pytest.raises(InvalidToken, match="'typ'"):
        verifier(typ="at+jwt").verify_sync(sign(claims(), {"alg": "HS256", "typ": typ}))


def test_missing_typ_is_refused_when_expected() -> None:
    with pytest.raises(InvalidToken, match="'typ'"):
        verifier(typ="at+jwt").verify_sync(sign(claims(), {"alg": "HS256"}))


def test_typ_is_not_checked_when_not_configured() -> None:
    token = sign(claims(), {"alg": "HS256", "typ": "something/else"})
    assert verifier().verify_sync(token).subject == "alice"


# -- require -------------------------------------------------------------------------------


def test_configured_required_claims_must_be_present() -> None:
    v = verifier(require=("exp", "jti", "iss"))
    assert v.verify_sync(sign(claims(jti="j", iss="i"))).subject == "alice"
    with pytest.raises(InvalidToken, match="'jti' is missing"):
        v.verify_sync(sign(claims(iss="i")))
    with pytest.raises(InvalidToken, match="'iss' is missing"):
        v.verify_sync(sign(claims(jti="j")))


def test_sub_is_required_even_when_require_is_empty() -> None:
    with pytest.raises(InvalidToken, match="'sub' is missing"):
        verifier(require=()).verify_sync(sign(without("sub")))


# -- sub -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["", 1, 0, None, ["alice"], {"id": "alice"}, True])
def test_empty_or_non_string_subject_is_refused(sub: Any) -> None:
    with pytest.raises(InvalidToken, match="sub"):
        verifier().verify_sync(sign(claims(sub=sub)))


def test_missing_subject_is_refused() -> None:
    with pytest.raises(InvalidToken, match="sub"):
        verifier().verify_sync(sign(without("sub")))


# -- scopes, roles, permissions ------------------------------------------------------------


def test_scope_string_is_split_on_spaces_only() -> None:
    # RFC 6749 §3.3: scope-tokens are separated by SP; a tab is part of no separator.
    principal = verifier().verify_sync(sign(claims(scope="read  write admin ")))
    assert principal.scopes == {"read", "write", "admin"}
    tabbed = verifier().verify_sync(sign(claims(scope="read\twrite")))
    assert tabbed.scopes == {"read\twrite"}


def test_scp_list_and_scope_string_are_merged() -> None:
    principal = verifier().verify_sync(sign(claims(scope="read", scp=["write", "admin"])))
    assert principal.scopes == {"read", "write", "admin"}


def test_scp_string_is_read_as_scopes() -> None:
    assert verifier().verify_sync(sign(claims(scp="a b"))).scopes == {"a", "b"}


def test_roles_and_permissions_are_read() -> None:
    principal = verifier().verify_sync(
        sign(claims(roles=["admin", "user"], permissions="items:read items:write"))
    )
    assert principal.roles == {"admin", "user"}
    assert principal.permissions == {"items:read", "items:write"}
    assert principal.scopes == frozenset()


def test_token_without_scopes_has_empty_sets() -> None:
    principal = verifier().verify_sync(sign(claims(scope=None, roles=[])))
    assert principal.scopes == principal.roles == principal.permissions == frozenset()


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("scope", 5),
        ("scope", ["read", 1]),
        ("scope", {"read": True}),
        ("scope", True),
        ("scp", [["read"]]),
        ("roles", {"admin": 1}),
        ("roles", [None]),
        ("permissions", 1.5),
    ],
)
def test_wrongly_typed_scope_role_or_permission_is_refused(claim: str, value: Any) -> None:
    with pytest.raises(InvalidToken, match=claim):
        verifier().verify_sync(sign(claims(**{claim: value})))


def test_dotted_path_reads_nested_roles() -> None:
    mapping = ClaimMapping(roles=("realm_access.roles",), scopes=("scope",))
    v = verifier(mapping=mapping)
    token = sign(claims(realm_access={"roles": ["admin", "auditor"]}, roles=["ignored"]))
    assert v.verify_sync(token).roles == {"admin", "auditor"}


@pytest.mark.parametrize(
    "realm_access", [None, {}, {"other": ["x"]}, ["admin"], "admin", {"roles": None}]
)
def test_dotted_path_that_does_not_lead_anywhere_gives_no_roles(realm_access: Any) -> None:
    v = verifier(mapping=ClaimMapping(roles=("realm_access.roles",)))
    assert v.verify_sync(sign(claims(realm_access=realm_access))).roles == frozenset()


def test_dotted_path_to_a_wrongly_typed_value_is_refused() -> None:
    v = verifier(mapping=ClaimMapping(roles=("realm_access.roles",)))
    with pytest.raises(InvalidToken, match=r"realm_access\.roles"):
        v.verify_sync(sign(claims(realm_access={"roles": {"admin": True}})))


def test_deeper_dotted_paths_are_followed() -> None:
    mapping = ClaimMapping(permissions=("resource_access.api.roles",))
    token = sign(claims(resource_access={"api": {"roles": ["items:read"]}}))
    assert verifier(mapping=mapping).verify_sync(token).permissions == {"items:read"}


def test_mapping_can_read_several_claims_into_one_set() -> None:
    mapping = ClaimMapping(roles=("roles", "groups"))
    token = sign(claims(roles=["a"], groups="b c"))
    assert verifier(mapping=mapping).verify_sync(token).roles == {"a", "b", "c"}


@pytest.mark.parametrize(
    "options", [{"roles": "realm_access.roles"}, {"scopes": ("",)}, {"permissions": (1,)}]
)
def test_claim_mapping_refuses_bad_paths(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="ClaimMapping"):
        ClaimMapping(**options)


# -- principal -----------------------------------------------------------------------------


def test_principal_claims_are_read_only() -> None:
    principal = verifier().verify_sync(sign(claims()))
    with pytest.raises(TypeError):
        principal.claims["sub"] = "mallory"  # type: ignore[index]
    with pytest.raises(AttributeError):
        principal.subject = "mallory"  # type: ignore[misc]
    assert principal.subject == "alice"


def test_principal_repr_does_not_leak_claims() -> None:
    principal = verifier().verify_sync(sign(claims(email="alice@example.com", scope="read")))
    assert "alice@example.com" not in repr(principal)
    assert "read" in repr(principal)


def test_principal_display_name_prefers_preferred_username() -> None:
    v = verifier()
    assert v.verify_sync(sign(claims(preferred_username="al", name="Al"))).display_name == "al"
    assert v.verify_sync(sign(claims(name=""))).display_name == "alice"
    assert v.verify_sync(sign(claims(name=5))).display_name == "alice"


def test_principal_to_dict_is_sorted_and_json_ready() -> None:
    payload = claims(scope="b a", roles=["z", "y"])
    view = verifier().verify_sync(sign(payload)).to_dict()
    assert view["scopes"] == ["a", "b"]
    assert view["roles"] == ["y", "z"]
    assert view["claims"] == payload
    assert json.loads(json.dumps(view)) == view


def test_principal_built_directly_needs_a_non_empty_subject() -> None:
    with pytest.raises(TypeError, match="subject"):
        Principal(subject="")
    assert Principal(subject="a", claims={"x": 1}) == Principal(subject="a")
    assert hash(Principal(subject="a", claims={"x": 1})) == hash(Principal(subject="a"))


# -- key rotation --------------------------------------------------------------------------


def test_keyset_with_two_kids_verifies_tokens_of_both() -> None:
    old, new = Key.generate("ES256", kid="2024"), Key.generate("ES256", kid="2025")
    v = JWTVerifier(KeySet([old, new]))
    for key in (old, new):
        token = TokenIssuer(key).issue(f"user-{key.kid}")
        assert jwt.get_unverified_header(token)["kid"] == key.kid
        assert v.verify_sync(token).subject == f"user-{key.kid}"


def test_token_naming_an_unknown_kid_is_refused() -> None:
    key = Key.generate("ES256", kid="known")
    v = JWTVerifier(key)
    token = jwt.encode(claims(exp=time.time() + 60), key.sign_key, "ES256", {"kid": "gone"})
    with pytest.raises(UnknownKey, match="gone"):
        v.verify_sync(token)


def test_token_naming_a_kid_for_another_algorithm_is_refused() -> None:
    es = Key.generate("ES256", kid="es")
    v = JWTVerifier([es, Key.generate("EdDSA", kid="ed")])
    token = jwt.encode(claims(exp=time.time() + 60), es.sign_key, "ES256", {"kid": "ed"})
    with pytest.raises(InvalidToken):
        v.verify_sync(token)


def test_token_without_kid_verifies_with_the_matching_key_of_a_set() -> None:
    first, second = Key.generate("ES256", kid="a"), Key.generate("ES256", kid="b")
    v = JWTVerifier(KeySet([first, second]))
    for key in (first, second):
        token = jwt.encode(claims(exp=time.time() + 60), key.sign_key, "ES256")
        assert "kid" not in jwt.get_unverified_header(token)
        assert v.verify_sync(token).subject == "alice"


def test_token_naming_one_kid_but_signed_by_another_key_of_the_set_is_refused() -> None:
    first, second = Key.generate("ES256", kid="a"), Key.generate("ES256", kid="b")
    v = JWTVerifier(KeySet([first, second]))
    token = jwt.encode(claims(exp=time.time() + 60), second.sign_key, "ES256", {"kid": "a"})
    with pytest.raises(InvalidToken, match="signature"):
        v.verify_sync(token)


def test_hmac_secrets_rotate_by_kid() -> None:
    old = Key.from_secret(b"o" * 32, kid="old")
    new = Key.from_secret(b"n" * 32, kid="new")
    v = JWTVerifier([old, new], clock=lambda: float(NOW))
    for kid, secret in (("old", b"o" * 32), ("new", b"n" * 32), (None, b"n" * 32)):
        header = {"alg": "HS256"} if kid is None else {"alg": "HS256", "kid": kid}
        assert v.verify_sync(sign(claims(), header, secret=secret)).subject == "alice"
    with pytest.raises(InvalidToken, match="signature"):
        v.verify_sync(sign(claims(), {"alg": "HS256", "kid": "old"}, secret=b"n" * 32))


# -- interoperability with PyJWT -----------------------------------------------------------


CROSS_ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"]


def _key_for(algorithm: str, rsa_key: Key) -> Key:
    if algorithm.startswith(("RS", "PS")):
        return Key.from_pem(rsa_key.private_pem(), algorithm=algorithm, kid=f"rsa-{algorithm}")
    return Key.generate(algorithm, kid=f"k-{algorithm}")


@pytest.mark.parametrize("algorithm", CROSS_ALGORITHMS)
def test_tokens_made_by_pyjwt_verify(algorithm: str, rsa_key: Key) -> None:
    key = _key_for(algorithm, rsa_key)
    now = int(time.time())
    payload = {
        "sub": "alice",
        "iss": "https://issuer",
        "aud": ["api", "other"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": "read write",
    }
    token = jwt.encode(payload, key.sign_key, algorithm=algorithm, headers={"kid": key.kid})
    v = JWTVerifier(key, issuer="https://issuer", audience="api")
    principal = v.verify_sync(token)
    assert thaw(principal.claims) == payload
    assert principal.claims["aud"] == ("api", "other")  # frozen: cached principals are shared
    assert principal.scopes == {"read", "write"}


@pytest.mark.parametrize("algorithm", CROSS_ALGORITHMS)
def test_tokens_we_issue_decode_with_pyjwt(algorithm: str, rsa_key: Key) -> None:
    key = _key_for(algorithm, rsa_key)
    issuer = TokenIssuer(key, issuer="https://issuer", audience="api")
    token = issuer.issue("alice", claims={"scope": "read"})
    decoded = jwt.decode(
        token,
        key.verify_key,
        algorithms=[algorithm],
        audience="api",
        issuer="https://issuer",
        options={"require": ["exp", "iat", "nbf", "sub", "jti"]},
    )
    assert decoded["sub"] == "alice"
    assert decoded["scope"] == "read"
    assert decoded == dict(
        JWTVerifier(key, issuer="https://issuer", audience="api").verify_sync(token).claims
    )
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "typ": "at+jwt", "kid": key.kid}


def test_pyjwt_token_of_another_algorithm_family_is_refused(rsa_key: Key) -> None:
    es = Key.generate("ES256", kid="rsa")
    token = jwt.encode(claims(exp=time.time() + 60), es.sign_key, "ES256", {"kid": "rsa"})
    with pytest.raises(InvalidToken, match="algorithm"):
        JWTVerifier(rsa_key).verify_sync(token)


@pytest.mark.parametrize("cnf", [{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, {}])
def test_sender_constrained_tokens_are_refused_not_downgraded_to_bearer(
    cnf: dict[str, str],
) -> None:
    # RFC 9449 §7.1 / RFC 8705 §3: a DPoP- or mTLS-bound token is valid only with a
    # proof of possession, which a bearer check never sees.
    key = Key.from_secret(SECRET)
    verifier = JWTVerifier(key)
    bound = TokenIssuer(key).issue("alice", claims={"cnf": cnf})
    with pytest.raises(InvalidToken, match="sender-constrained"):
        verifier.verify_sync(bound)
    assert verifier.verify_sync(TokenIssuer(key).issue("alice")).subject == "alice"


def test_url_claim_names_are_one_claim_never_a_path() -> None:
    mapping = ClaimMapping(roles=("https://example.com/roles",))
    named = Principal.from_claims({"sub": "a", "https://example.com/roles": ["admin"]}, mapping)
    assert named.roles == {"admin"}
    # Absent, the name is not walked as https://example -> com/roles.
    walked = Principal.from_claims(
        {"sub": "a", "https://example": {"com/roles": ["root"]}}, mapping
    )
    assert walked.roles == frozenset()
    keycloak = ClaimMapping(roles=("realm_access.roles",))
    nested = Principal.from_claims({"sub": "a", "realm_access": {"roles": ["x"]}}, keycloak)
    assert nested.roles == {"x"}
