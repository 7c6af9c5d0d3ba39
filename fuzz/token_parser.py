#!/usr/bin/env python3
"""A coverage-guided fuzz target (atheris, libFuzzer) for what a client's bytes reach
first: the ``Authorization`` header parse, the compact-JWS parse and the verifier.

On every input these properties hold, or the target raises (a crash for libFuzzer):

- ``JWTVerifier.verify_sync`` raises nothing but ``InvalidToken`` (or a subclass), and
  accepts a token only when an independent check (``hmac``, ``cryptography``) finds its
  signature genuine under the verifier's own key and its claims valid;
- for headers and payloads made of the input and signed here with the right key, the
  verifier accepts exactly what an independent statement of the rules accepts;
- ``read_unverified`` and ``unverified_issuer`` raise nothing but ``InvalidToken``; what
  they read is spelled canonically, decodes to what they return, and they agree;
- ``BearerExtractor.extract`` returns a b64token or None, or raises
  ``MalformedCredentials``.

The first byte of an input chooses what the rest is (see ``fuzz_one_input``). Keys and
tokens are fixed, so a crash file reproduces on any machine. Commands: fuzz/README.md::

    python fuzz/token_parser.py --smoke                 # no atheris: replay the seeds
    python fuzz/token_parser.py -max_total_time=60 fuzz/corpus/token_parser
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import math
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from asgi_auth.credentials import BearerExtractor
from asgi_auth.errors import InvalidToken, MalformedCredentials
from asgi_auth.principal import MAX_DEPTH
from asgi_auth.tokens import JWTVerifier, Key
from asgi_auth.tokens.oidc import unverified_issuer
from asgi_auth.tokens.verifier import DEFAULT_MAX_TOKEN_BYTES, read_unverified

__all__ = ["VERIFIERS", "fuzz_one_input", "main", "seed_corpus", "smoke"]

NOW: Final = 1_800_000_000
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HS_SECRET: Final = b"atheris-fuzzing-secret-of-32-bytes-or-more"
_ES_PRIVATE: Final = ec.derive_private_key(
    int.from_bytes(hashlib.sha256(b"asgi_auth fuzz ES256").digest(), "big") % _P256_ORDER,
    ec.SECP256R1(),
)
HS_KEY: Final = Key.from_secret(_HS_SECRET, kid="hs")
ES_KEY: Final = Key.from_pem(
    _ES_PRIVATE.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ),
    kid="es",
)
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")
_MODES: Final = 6


def _clock() -> float:
    return float(NOW)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(text: str) -> bytes | None:
    """A segment's bytes when it is canonical unpadded base64url, else None."""
    if not _SEGMENT.fullmatch(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if b64(raw) == text else None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def json_object(data: bytes) -> dict[str, Any] | None:
    """RFC 8259 (UTF-8, no NaN/Infinity, finite numbers), and an object; else None."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        return None
    return value if type(value) is dict else None


def numeric(value: Any) -> float | None:
    """RFC 7519 NumericDate, held to what JSON numbers round-trip exactly (2**53)."""
    if type(value) is int and -(2**53) < value < 2**53:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return None


def nesting(value: Any) -> int:
    """How many objects and arrays deep a JSON value goes (iteratively: any depth)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if type(item) is dict or type(item) is list:
            deepest = max(deepest, depth + 1)
            children = item.values() if type(item) is dict else item
            todo.extend((child, depth + 1) for child in children)
    return deepest


def claims_ok(
    claims: dict[str, Any], *, issuer: str | None = None, audience: str | None = None
) -> bool:
    """RFC 7519 as a verifier with this ``issuer`` and ``audience`` (none by default,
    as the verifiers here) checks claims: ``exp`` and ``sub`` required, ``iss`` equal
    to the issuer when one is set, an ``aud`` naming the audience (refused when none is
    set), no sender-constrained tokens."""
    if "cnf" in claims or "exp" not in claims or "sub" not in claims:
        return False
    exp = numeric(claims["exp"])
    if exp is None or exp <= NOW:
        return False
    for name in ("nbf", "iat"):
        if name in claims:
            when = numeric(claims[name])
            if when is None or when > NOW:
                return False
    if issuer is not None and claims.get("iss") != issuer:
        return False
    if "aud" in claims or audience is not None:
        aud = claims.get("aud")
        named = [aud] if type(aud) is str else aud
        if type(named) is not list or not named or not all(type(a) is str for a in named):
            return False
        if audience is None or audience not in named:
            return False
    if type(claims["sub"]) is not str or not claims["sub"]:
        return False
    for name in ("scope", "scp", "roles", "permissions"):
        value = claims.get(name)
        if not (
            value is None
            or type(value) is str
            or (type(value) is list and all(type(v) is str for v in value))
        ):
            return False
    # A principal holds claims nested MAX_DEPTH levels at most (deeper: InvalidToken).
    return all(nesting(value) <= MAX_DEPTH for value in claims.values())


def header_ok(header: dict[str, Any], alg: str, kid: str) -> bool:
    found = header.get("kid")
    return header.get("alg") == alg and "crit" not in header and (found is None or found == kid)


def _hs_sign(signing_input: bytes) -> bytes:
    return hmac.new(_HS_SECRET, signing_input, hashlib.sha256).digest()


def _es_sign(signing_input: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = _ES_PRIVATE.sign(signing_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _parts(token: str) -> tuple[str, bytes, bytes] | None:
    """The signing input, the header's JSON bytes and the signature, if well-formed."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    raw = [_segment(p) for p in pieces]
    if raw[0] is None or raw[1] is None or raw[2] is None:
        return None
    return f"{pieces[0]}.{pieces[1]}", raw[0], raw[2]


def hs_genuine(token: str) -> bool:
    """Signed with the HS256 key, by hmac alone."""
    parts = _parts(token)
    if parts is None:
        return False
    header = json_object(parts[1])
    if header is None or not header_ok(header, "HS256", "hs"):
        return False
    return hmac.compare_digest(_hs_sign(parts[0].encode("ascii")), parts[2])


def es_genuine(token: str) -> bool:
    """Signed with the ES256 key, by cryptography alone."""
    parts = _parts(token)
    if parts is None or len(parts[2]) != 64:
        return False
    header = json_object(parts[1])
    if header is None or not header_ok(header, "ES256", "es"):
        return False
    r, s = int.from_bytes(parts[2][:32], "big"), int.from_bytes(parts[2][32:], "big")
    try:
        _ES_PRIVATE.public_key().verify(
            encode_dss_signature(r, s), parts[0].encode("ascii"), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        return False
    return True


#: (verifier, independent check that a token is genuinely signed for it)
VERIFIERS: list[tuple[Any, Callable[[str], bool]]] = [
    (JWTVerifier(HS_KEY, clock=_clock), hs_genuine),
    (JWTVerifier(ES_KEY, clock=_clock), es_genuine),
]
EXTRACTORS: Final = (BearerExtractor(), BearerExtractor(cookie="at", query_param="access_token"))
_HS_HEADER: Final = b'{"alg":"HS256","typ":"at+jwt","kid":"hs"}'
_CLAIMS: Final = b'{"sub":"alice","exp":%d,"iat":%d,"scope":"read"}' % (NOW + 600, NOW)


def signed_hs(header: bytes, payload: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{b64(_hs_sign(signing_input.encode('ascii')))}"


def signed_es(header: bytes, payload: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{b64(_es_sign(signing_input.encode('ascii')))}"


VALID_HS: Final = signed_hs(_HS_HEADER, _CLAIMS)
VALID_ES: Final = signed_es(b'{"alg":"ES256","kid":"es"}', _CLAIMS)


def check_token(token: str) -> None:
    """Every verifier refuses ``token`` with InvalidToken, or it is genuine and valid."""
    for verifier, genuine in VERIFIERS:
        try:
            principal = verifier.verify_sync(token)
        except InvalidToken:
            continue
        if not genuine(token):
            raise AssertionError(f"accepted a token not signed by its key: {token[:100]!r}")
        parts = token.split(".")
        claims = json_object(_segment(parts[1]) or b"")
        if claims is None or not claims_ok(claims):
            raise AssertionError(f"accepted a token with invalid claims: {token[:100]!r}")
        if principal.subject != claims["sub"]:
            raise AssertionError("the principal is not the token's subject")
    check_unverified(token)


def check_unverified(token: str) -> None:
    """The unverified readers raise only InvalidToken, read canonically, and agree."""
    try:
        header, payload = read_unverified(token)
    except InvalidToken:
        read = None
    else:
        pieces = token.split(".")
        for piece, value in zip(pieces[:2], (header, payload), strict=True):
            raw = _segment(piece)
            if raw is None:
                raise AssertionError(f"read a non-canonical segment: {piece[:60]!r}")
            if json_object(raw) != value:
                raise AssertionError("read something other than the segment's JSON")
        read = payload
    try:
        issuer = unverified_issuer(token)
    except InvalidToken:
        if read is not None and len(token) <= DEFAULT_MAX_TOKEN_BYTES:
            raise AssertionError("unverified_issuer refused what read_unverified read") from None
        return
    if read is not None:
        expected = read.get("iss")
        if issuer != (expected if type(expected) is str else None):
            raise AssertionError("unverified_issuer disagrees with read_unverified")


def check_signed(header: bytes, payload: bytes) -> None:
    """A token over these bytes, genuinely signed: accepted exactly when it should be."""
    token = signed_hs(header, payload)
    verifier = VERIFIERS[0][0]
    try:
        principal = verifier.verify_sync(token)
    except InvalidToken as exc:
        parsed_header, claims = json_object(header), json_object(payload)
        should = (
            len(token) <= DEFAULT_MAX_TOKEN_BYTES
            and parsed_header is not None
            and header_ok(parsed_header, "HS256", "hs")
            and claims is not None
            and claims_ok(claims)
        )
        if should:
            raise AssertionError(f"refused a valid token ({exc.reason}): {token[:100]!r}") from exc
    else:
        check_token(token)
        if principal.subject != (json_object(payload) or {}).get("sub"):
            raise AssertionError("the principal is not the payload's subject")
        return
    check_unverified(token)


def check_header(value: bytes) -> None:
    """The header parse on ``value`` from every source, then the token it yields."""
    scopes: list[tuple[BearerExtractor, dict[str, Any]]] = []
    for extractor in EXTRACTORS:
        scopes.append(
            (
                extractor,
                {"type": "http", "headers": [(b"authorization", value)], "query_string": b""},
            )
        )
    cookie_and_query = {
        "type": "websocket",
        "headers": [(b"cookie", b"at=" + value), (b"origin", b"https://h"), (b"host", b"h")],
        "query_string": b"access_token=" + value,
    }
    cookie_only = {**cookie_and_query, "query_string": b"x=" + value}
    scopes += [(EXTRACTORS[1], cookie_and_query), (EXTRACTORS[1], cookie_only)]
    for extractor, scope in scopes:
        try:
            token = extractor.extract(scope)
        except MalformedCredentials:
            continue
        if token is None:
            continue
        if type(token) is not str or not _B64TOKEN.fullmatch(token):
            raise AssertionError(f"extract() returned {token!r}")
        check_token(token)
    twice = {"type": "http", "headers": [(b"authorization", value)] * 2, "query_string": b""}
    try:
        EXTRACTORS[0].extract(twice)
    except MalformedCredentials:
        pass
    else:
        raise AssertionError("two Authorization headers were not refused")


def _edit(token: str, ops: bytes) -> str:
    """Apply (position, byte) pairs: a printable byte replaces, others delete or insert."""
    text = token
    for i in range(0, len(ops) - 1, 2):
        if not text:
            break
        at, byte = ops[i] * 7 % len(text), ops[i + 1]
        if 0x20 < byte < 0x7F:
            text = text[:at] + chr(byte) + text[at + 1 :]
        elif byte < 0x20:
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + chr(byte) + text[at:]
    return text


def fuzz_one_input(data: bytes) -> None:
    """The target. First byte (mod 6): 0 a token as latin-1; 1 a token as UTF-8 with
    lone surrogates for bad bytes; 2 an Authorization header value (also as a cookie
    and a query parameter); 3 a payload signed with the right key; 4 a header (before
    the first NUL) and payload, signed with the right key; 5 edits of a valid token."""
    if not data:
        return
    mode, rest = data[0] % _MODES, data[1:]
    if mode == 0:
        check_token(rest.decode("latin-1"))
    elif mode == 1:
        check_token(rest.decode("utf-8", "surrogateescape"))
    elif mode == 2:
        check_header(rest)
    elif mode == 3:
        check_signed(_HS_HEADER, rest)
    elif mode == 4:
        header, _, payload = rest.partition(b"\x00")
        check_signed(header, payload or _CLAIMS)
    else:
        check_token(_edit(VALID_ES if len(rest) % 2 else VALID_HS, rest))


def seed_corpus() -> list[bytes]:
    """Inputs that reach every mode and most branches; the smoke run replays them."""
    unsigned = b64(b'{"alg":"none"}')
    tokens = [
        VALID_HS,
        VALID_ES,
        VALID_HS[:-1],
        VALID_HS + "=",
        " " + VALID_ES,
        VALID_HS.replace(".", "..", 1),
        ".".join(VALID_HS.split(".")[::-1]),
        f"{unsigned}.{VALID_HS.split('.')[1]}.",
        "a.b.c",
        "",
        "...",
        "e" * 20_000,
    ]
    payloads = [
        _CLAIMS,
        b'{"sub":"alice","exp":NaN}',
        b'{"sub":"alice","exp":1e999}',
        b'{"sub":"alice","exp":' + b"9" * 5000 + b"}",
        b'{"sub":"mallory","sub":"alice","exp":%d}' % (NOW + 60),
        b'{"sub":"alice","exp":%d,"aud":"x"}' % (NOW + 60),
        b'{"sub":"alice","exp":%d,"cnf":{}}' % (NOW + 60),
        b'{"sub":"alice","exp":%d.5,"nbf":%d}' % (NOW + 60, NOW + 1),
        b'{"sub":"\\ud800","exp":%d,"roles":["a",1]}' % (NOW + 60),
        *(
            b'{"sub":"alice","exp":%d,"x":' % (NOW + 60) + b"[" * n + b"]" * n + b"}"
            for n in (MAX_DEPTH, MAX_DEPTH + 1, 700, 3000)  # 700: once a RecursionError
        ),
        b"\xef\xbb\xbf" + _CLAIMS,
        b" " + _CLAIMS + b"\n",
        b'{"sub":"al\xffice","exp":1}',
        b"[]",
    ]
    headers = [
        b'{"alg":"none"}',
        b'{"alg":"HS256","crit":[]}',
        b'{"alg":"HS256","kid":"other"}',
        b'{"alg":"HS256","kid":1}',
        b'{"alg":"HS256","alg":"none"}',
        b'{"alg":"ES256","kid":"hs"}',
        b'{"alg":"HS256","kid":null}',
    ]
    values = [
        b"Bearer " + VALID_HS.encode(),
        b"bearer   " + VALID_ES.encode() + b" ",
        b"Bearer\t" + VALID_HS.encode(),
        b"Bearer",
        b"Bearer a b",
        b"Basic dXNlcjpwYXNz",
        b"Bearer tok==",
        b"Bearer t%C3%A9",
        b"\x00\xff",
    ]
    return [
        *(b"\x00" + t.encode("latin-1", "replace") for t in tokens),
        b"\x01" + VALID_HS.encode() + b"\x80",
        b"\x01\xed\xa0\x80",
        *(b"\x02" + v for v in values),
        *(b"\x03" + p for p in payloads),
        *(b"\x04" + h + b"\x00" + _CLAIMS for h in headers),
        b"\x04" + _HS_HEADER,
        b"\x05\x05A\x10.",
        b"\x05\x03\x7f\x09",
    ]


def _mutate(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(5)
        at = rng.randrange(len(buffer) + 1)
        if choice == 0 and at < len(buffer):
            buffer[at] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buffer[at:at] = bytes([rng.randrange(256)])
        elif choice == 2 and at < len(buffer):
            del buffer[at]
        elif choice == 3:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            buffer[at:] = other[start:]
        else:
            buffer[at:at] = buffer[at : at + rng.randrange(1, 16)]
    return bytes(buffer)


def smoke(iterations: int = 20_000, seed: int = 0) -> int:
    """Replay the seeds, then ``iterations`` random mutations of them; no atheris needed.

    Returns:
        how many inputs ran (any property violation raises).
    """
    corpus = seed_corpus()
    for data in corpus:
        fuzz_one_input(data)
    rng = random.Random(seed)  # noqa: S311 - reproducible mutations, not secrets
    for _ in range(iterations):
        fuzz_one_input(_mutate(rng, rng.choice(corpus), corpus))
    return len(corpus) + iterations


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    if "--smoke" in args:
        iterations = 20_000
        if "--iterations" in args:
            iterations = int(args[args.index("--iterations") + 1])
        print(f"smoke: {smoke(iterations)} inputs, every property held")
        return 0
    if "--write-corpus" in args:
        directory = Path(args[args.index("--write-corpus") + 1])
        directory.mkdir(parents=True, exist_ok=True)
        for data in seed_corpus():
            (directory / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)  # noqa: S324
        print(f"wrote {len(seed_corpus())} seeds to {directory}")
        return 0
    atheris = importlib.import_module("atheris")  # pip install atheris; see fuzz/README.md
    atheris.instrument_all()
    atheris.Setup(args, fuzz_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
