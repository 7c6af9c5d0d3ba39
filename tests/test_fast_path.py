"""Where the verifier's hot path takes shortcuts, it answers exactly as the careful path.

The hot path checks signatures with checks prepared once per key (HMAC from keyed
hash states, RSA PKCS#1 v1.5 by comparing the whole encoding OpenSSL recovers, RSA-PSS
and ECDSA with padding and hash objects built once), splits the token without a
regular expression and decodes each segment strictly, skips freezing a payload
with no nested array or object, reads the
payload with the JSON scanner directly (not through
``JSONDecoder.decode``), checks NumericDates that are plain ints inline (anything else
goes through the careful check), compares a string ``aud`` inline, and freezes the
decoded claims in place; the middleware reads a plain ``Bearer <token>`` header
without the full parse. Each property below compares the two paths on generated input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asgi_auth import credentials
from asgi_auth.errors import InvalidToken, MalformedCredentials
from asgi_auth.principal import freeze, freeze_decoded, thaw
from asgi_auth.tokens import JWTVerifier, Key, TokenIssuer
from asgi_auth.tokens import verifier as verifier_module
from asgi_auth.tokens._signatures import signature_check
from asgi_auth.tokens.keys import ALGORITHMS, SUPPORTED_ALGORITHMS

SECRET = b"fast-path-secret-of-at-least-32-bytes!!"
NOW = 1_800_000_000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def careful(data: bytes) -> Any:
    """What JSONDecoder.decode makes of the payload bytes, or the exception type."""
    try:
        value = verifier_module._JSON.decode(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__
    return value if type(value) is dict else "not an object"


def fast(data: bytes) -> Any:
    try:
        return verifier_module._json_object(data, "payload")
    except InvalidToken as exc:
        return "not an object" if "not a JSON object" in exc.reason else "error"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=json_values,
    before=st.sampled_from(["", " ", "\n", "\t "]),
    after=st.sampled_from(["", " ", "\r\n", "x", "}", ",1", "  ]"]),
)
def test_the_payload_scanner_agrees_with_the_decoder(value: Any, before: str, after: str) -> None:
    data = (before + json.dumps(value) + after).encode()
    expected, got = careful(data), fast(data)
    if isinstance(expected, str) and expected != "not an object":
        assert got == "error"
    else:
        assert got == expected


@pytest.mark.parametrize(
    "text",
    ['{"a":1}', ' {"a":1} ', '{"a":1}x', '{"a":NaN}', '{"a":1e999}', '{"a":1}{"b":2}', "[1]", ""],
)
def test_payload_scanner_examples(text: str) -> None:
    expected = careful(text.encode())
    got = fast(text.encode())
    assert got == expected or (isinstance(expected, str) and got == "error")


numeric = st.one_of(
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.just(2**53),
    st.just(-(2**53)),
    st.just(2**53 - 1),
)
present = st.fixed_dictionaries(
    {}, optional={"exp": numeric, "nbf": numeric, "iat": numeric, "aud": json_values}
)


def _reference(claims: dict[str, Any], audiences: frozenset[str]) -> str:
    """The registered-claim rules written plainly, without any shortcut."""

    def number(name: str) -> float | None:
        if name not in claims:
            return None
        value = claims[name]
        if type(value) is int and -(2**53) < value < 2**53:
            return value
        if type(value) is float and value == value and abs(value) != float("inf"):
            return value
        raise InvalidToken("not a NumericDate")

    try:
        exp, nbf, iat = number("exp"), number("nbf"), number("iat")
    except InvalidToken:
        return "refused"
    if exp is None or exp <= NOW or (nbf is not None and nbf > NOW):
        return "refused"
    if iat is not None and iat > NOW:
        return "refused"
    if "aud" in claims or audiences:
        aud = claims.get("aud")
        named = [aud] if type(aud) is str else aud
        if not (type(named) is list and named and all(type(a) is str for a in named) and audiences):
            return "refused"
        if audiences.isdisjoint(named):
            return "refused"
    return "accepted"


@settings(max_examples=500)
@given(claims=present, with_audience=st.booleans())
def test_claim_checks_agree_with_the_plain_rules(
    claims: dict[str, Any], with_audience: bool
) -> None:
    audiences = frozenset({"api"}) if with_audience else frozenset()
    verifier = JWTVerifier(
        Key.from_secret(SECRET), audience=audiences or None, clock=lambda: NOW, require=()
    )
    try:
        verifier._check_claims({"sub": "x", **claims})
        got = "accepted"
    except InvalidToken:
        got = "refused"
    # Without exp (not required here) the rules are those of a token that expires later.
    expected = _reference(claims if "exp" in claims else {**claims, "exp": NOW + 60}, audiences)
    assert got == expected


@settings(max_examples=200)
@given(value=st.dictionaries(st.text(), json_values, max_size=6))
def test_freezing_in_place_equals_freezing_a_copy(value: dict[str, Any]) -> None:
    copy = json.loads(json.dumps(value))
    frozen = freeze_decoded(copy)
    assert thaw(frozen) == thaw(freeze(value))
    with pytest.raises(TypeError):
        frozen["new"] = 1  # type: ignore[index]
    for nested in frozen.values():
        assert type(nested) not in (dict, list)


def test_a_verified_token_gives_the_same_principal_with_or_without_the_cache() -> None:
    key = Key.from_secret(SECRET)
    token = TokenIssuer(key).issue("alice", claims={"scope": "a b", "nested": {"x": [1, 2]}})
    cached, uncached = JWTVerifier(key), JWTVerifier(key, cache_size=0)
    first, again = cached.verify_sync(token), cached.verify_sync(token)
    plain = uncached.verify_sync(token)
    assert first is again
    assert first == plain
    assert thaw(first.claims) == thaw(plain.claims)
    assert first.claims["nested"]["x"] == (1, 2)
    assert time.time() < first.claims["exp"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _reference_segments(token: str) -> list[bytes] | None:
    """The decoded segments of a compact JWS by the plain rules, or None: three
    non-empty segments of the base64url alphabet, no padding, a length some encoding
    has, and zero unused bits (RFC 4648 §3.5: re-encoding gives the segment back)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(_BASE64URL.fullmatch(part) for part in parts):
        return None
    decoded = []
    for part in parts:
        if len(part) % 4 == 1:
            return None
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != part:
            return None
        decoded.append(data)
    return decoded


@st.composite
def _segments(draw: st.DrawFn) -> str:
    """A base64url encoding, perhaps spoiled in one of the ways a hostile token is."""
    text = _b64url(draw(st.binary(max_size=8)))
    change = draw(st.sampled_from(["none", "pad", "replace", "insert", "drop", "last"]))
    where = draw(st.integers(min_value=0, max_value=12))
    if change == "pad":
        text += draw(st.sampled_from(["=", "=="]))
    elif change == "replace" and text:
        index = where % len(text)
        spoiler = draw(st.sampled_from(list("+/=.\n é\x00-_AQgw")))
        text = text[:index] + spoiler + text[index + 1 :]
    elif change == "insert":
        index = where % (len(text) + 1)
        spoiler = draw(st.sampled_from(["\n", "  ", "\r\n", "\n\n\n", " \t ", "==", "+/"]))
        text = text[:index] + spoiler + text[index:]
    elif change == "drop" and text:
        index = where % len(text)
        text = text[:index] + text[index + 1 :]
    elif change == "last" and text:
        text = text[:-1] + draw(st.sampled_from(list("ABRSabhx019-_")))
    return text


@settings(max_examples=1000)
@given(parts=st.lists(_segments(), min_size=1, max_size=4))
# Whitespace that a lenient base64 decoder skips, and a length that still adds up.
@example(parts=["Q\n\n\nUA", "QQ", "QQ"])
@example(parts=["QUJD", "QQ==", "QQ"])
def test_the_token_split_and_decode_accept_exactly_the_base64url_spellings(
    parts: list[str],
) -> None:
    token = ".".join(parts)
    expected = _reference_segments(token)
    try:
        raw, first, last = verifier_module._split(token)
        standard = raw.translate(verifier_module._TO_STANDARD)
        got: list[bytes] | None = [
            verifier_module._b64decode(segment)
            for segment in (standard[:first], standard[first + 1 : last], standard[last + 1 :])
        ]
    except InvalidToken:
        got = None
    assert got == expected


def _read_deep(value: Any) -> None:
    """Fails if anything reachable from a verified claim is a mutable container."""
    assert type(value) not in (dict, list)
    if isinstance(value, tuple):
        for item in value:
            _read_deep(item)
    elif hasattr(value, "values"):
        with pytest.raises(TypeError):
            value["new"] = 1
        for item in value.values():
            _read_deep(item)


# Strings with brackets and braces, and escapes of them: the flat-payload test reads
# bytes, so text that looks like structure must not fool it either way.
_tricky_text = st.text(alphabet='ab[]{}"\\:,', max_size=8)
# What a JSON payload can carry (no infinities: RFC 8259 has none).
_payload_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | _tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    claims=st.dictionaries(
        st.text(max_size=6) | _tricky_text,
        _payload_values,
        max_size=6,
    ),
    ascii_only=st.booleans(),
)
def test_flat_and_nested_payloads_give_deeply_read_only_claims(
    claims: dict[str, Any], ascii_only: bool
) -> None:
    # Flat payloads skip the freezing walk: whatever the payload, no claim a principal
    # holds may be a dict or a list, and the claims must equal the signed ones.
    claims = {k: v for k, v in claims.items() if k not in {"sub", "exp", "aud", "cnf"}}
    key = Key.from_secret(SECRET)
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = json.dumps({**claims, "sub": "alice", "exp": NOW + 60}, ensure_ascii=ascii_only)
    signed = f"{header}.{_b64url(body.encode('utf-8'))}"
    mac = hmac.digest(key.verify_key, signed.encode("ascii"), "sha256")
    token = f"{signed}.{_b64url(mac)}"
    try:
        principal = JWTVerifier(key, clock=lambda: NOW).verify_sync(token)
    except InvalidToken:
        # Only claims whose checks refuse them (a bad iat/nbf, a scope of the wrong type).
        assert {"iat", "nbf", "scope", "scp", "roles", "permissions"} & claims.keys()
        return
    assert thaw(principal.claims) == json.loads(body)
    _read_deep(principal.claims)


def _outcome(value: bytes) -> object:
    try:
        return credentials.parse_authorization(value)
    except MalformedCredentials:
        return "malformed"


header_bytes = st.binary(max_size=40) | st.text(alphabet="AZaz09-._~+/= \t\x00é", max_size=40).map(
    lambda text: text.encode("utf-8")
)


@settings(max_examples=500)
@given(rest=header_bytes)
def test_the_bearer_header_shortcut_answers_as_the_full_parse(rest: bytes) -> None:
    # A leading space never takes the shortcut ("Bearer " must start the value) and is
    # stripped by the full parse: so it gives the full parse's answer for the same header.
    value = b"Bearer " + rest
    assert _outcome(value) == _outcome(b" " + value)


# -- signature checks ---------------------------------------------------------------

_SIGNING_KEYS = {
    alg: Key.generate(alg)
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
}
_SIGNING_KEYS["EdDSA"] = Key.generate("EdDSA")


def _key_for(alg: str, secret: bytes) -> Key:
    if alg.startswith("HS"):
        return Key.from_secret(secret, algorithm=alg)
    return _SIGNING_KEYS[alg]


def test_every_supported_algorithm_has_a_prepared_check() -> None:
    assert {a for a in SUPPORTED_ALGORITHMS if a.startswith("HS")} | set(_SIGNING_KEYS) == set(
        SUPPORTED_ALGORITHMS
    )
    with pytest.raises(ValueError, match="not for"):
        signature_check(_SIGNING_KEYS["RS256"], "ES256")


@settings(max_examples=300, deadline=None)
@given(
    alg=st.sampled_from(sorted(SUPPORTED_ALGORITHMS)),
    # HMAC secrets as long as and longer than the block (64 bytes; 128 for HS384/512).
    secret=st.binary(min_size=64, max_size=200),
    message=st.binary(max_size=300),
    change=st.sampled_from(["none", "flip", "truncate", "extend", "empty", "other message"]),
    where=st.integers(min_value=0),
)
def test_prepared_checks_answer_as_pyjwt(
    alg: str, secret: bytes, message: bytes, change: str, where: int
) -> None:
    key = _key_for(alg, secret)
    pyjwt = ALGORITHMS[alg]
    signature = pyjwt.sign(message, key.sign_key)
    if change == "flip":
        index = where % len(signature)
        signature = signature[:index] + bytes([signature[index] ^ 1]) + signature[index + 1 :]
    elif change == "truncate":
        signature = signature[: where % len(signature)]
    elif change == "extend":
        signature += b"\0"
    elif change == "empty":
        signature = b""
    elif change == "other message":
        message += b"."
    expected = bool(pyjwt.verify(message, key.verify_key, signature))
    assert signature_check(key, alg)(message, signature) is expected
    assert expected is (change == "none")


# RFC 8017 §9.2 note 1, written out here rather than taken from the code under test.
_SHA2_DIGEST_INFO = {
    "256": "3031300d060960864801650304020105000420",
    "384": "3041300d060960864801650304020205000430",
    "512": "3051300d060960864801650304020305000440",
}
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


@pytest.mark.parametrize("bits", ["256", "384", "512"])
def test_pkcs1_signatures_are_compared_whole_never_parsed(bits: str) -> None:
    # Encodings signed with the raw private key: only the exact RFC 8017 encoding of the
    # message's hash may verify; the shapes lenient parsers accept (short padding with
    # trailing garbage, other DigestInfo spellings, other hashes) must not.
    alg = f"RS{bits}"
    key = _SIGNING_KEYS[alg]
    numbers = key.sign_key.private_numbers()
    n: int = numbers.public_numbers.n
    d: int = numbers.d
    size = (n.bit_length() + 7) // 8
    message = b"header.payload"
    digest = hashlib.new(f"sha{bits}", message).digest()
    info = bytes.fromhex(_SHA2_DIGEST_INFO[bits])

    def signed(encoded: bytes) -> bytes:
        assert len(encoded) == size
        return pow(int.from_bytes(encoded, "big"), d, n).to_bytes(size, "big")

    def padded(wrapped: bytes, block: bytes = b"\x01") -> bytes:
        return b"\x00" + block + b"\xff" * (size - 3 - len(wrapped)) + b"\x00" + wrapped

    short = b"\x00\x01" + b"\xff" * 8 + b"\x00" + info + digest
    forgeries = {
        "digest without DigestInfo": padded(digest),
        "SHA-1 DigestInfo and digest": padded(
            _SHA1_DIGEST_INFO + hashlib.sha1(message).digest()  # noqa: S324
        ),
        "DigestInfo without the NULL parameters": padded(
            bytes([0x30, info[1] - 2, 0x30, 0x0B]) + info[4:15] + info[17:] + digest
        ),
        "another message's hash": padded(info + hashlib.new(f"sha{bits}", b"x").digest()),
        "short padding, garbage after the digest": short + b"\x01" * (size - len(short)),
        "a padding byte not FF": padded(info + digest)[:5] + b"\xfe" + padded(info + digest)[6:],
        "block type 2": padded(info + digest, block=b"\x02"),
    }
    check = signature_check(key, alg)
    pyjwt = ALGORITHMS[alg]
    genuine = signed(padded(info + digest))
    assert check(message, genuine)
    assert pyjwt.verify(message, key.verify_key, genuine)
    assert genuine == pyjwt.sign(message, key.sign_key)  # PKCS#1 v1.5 is deterministic
    for what, encoded in forgeries.items():
        forged = signed(encoded)
        assert not check(message, forged), what
        assert not pyjwt.verify(message, key.verify_key, forged), what


@pytest.mark.parametrize("length", [1, 32, 63, 64, 65, 127, 128, 129, 1000])
def test_prepared_hmac_matches_the_standard_library_for_any_secret_length(length: int) -> None:
    secret = bytes(range(256)) * 4
    secret = secret[:length]
    for alg, name in (("HS256", "sha256"), ("HS384", "sha384"), ("HS512", "sha512")):
        key = Key(None, "oct", frozenset({alg}), secret, secret)  # below the length rule
        mac = hmac.digest(secret, b"header.payload", name)
        check = signature_check(key, alg)
        assert check(b"header.payload", mac)
        assert not check(b"header.payload!", mac)
        assert not check(b"header.payload", mac[:-1])


# -- principals ----------------------------------------------------------------------

_claim_names = st.sampled_from(["scope", "scp", "roles", "permissions", "realm_access", "x"])
_path_names = st.sampled_from(
    ["scope", "scp", "roles", "permissions", "realm_access.roles", "a.b.c", "https://x.io/roles"]
)
_claim_values = st.one_of(
    st.text(alphabet="ab ", max_size=6),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    st.dictionaries(st.sampled_from(["roles", "b"]), st.lists(st.sampled_from(["r", "s"]))),
    st.integers(),
)


@settings(max_examples=300)
@given(
    claims=st.dictionaries(_claim_names | _path_names, _claim_values, max_size=5),
    scopes=st.lists(_path_names, min_size=1, max_size=2),
    roles=st.lists(_path_names, min_size=1, max_size=2),
    permissions=st.lists(_path_names, min_size=1, max_size=2),
)
def test_skipping_absent_claim_kinds_gives_the_principal_reading_every_path_gives(
    claims: dict[str, Any], scopes: list[str], roles: list[str], permissions: list[str]
) -> None:
    from asgi_auth.principal import ClaimMapping, Principal

    mapping = ClaimMapping(tuple(scopes), tuple(roles), tuple(permissions))
    frozen = freeze({"sub": "s", **claims})

    def careful() -> object:
        try:
            return tuple(
                mapping.read(frozen, paths)
                for paths in (mapping.scopes, mapping.roles, mapping.permissions)
            )
        except InvalidToken:
            return "refused"

    def fast() -> object:
        try:
            principal = Principal.from_claims(frozen, mapping)
        except InvalidToken:
            return "refused"
        expected = (*sorted(principal.scopes | principal.permissions), "authenticated")
        assert principal.auth_scopes == expected
        return (principal.scopes, principal.roles, principal.permissions)

    assert fast() == careful()
