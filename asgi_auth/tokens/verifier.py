"""Verifying JWS compact tokens (RFC 7515/7519) against local keys.

The parse is strict: exactly three base64url segments over the URL-safe alphabet,
no padding, canonical final characters, so no token can be re-spelled by re-encoding
a segment. ECDSA signatures stay malleable by nature ((r, s) and (r, n - s) both
verify), so revocation must key on the ``jti``, never on the token string. The
signature is checked by checks prepared once per key (:mod:`._signatures`, held to
PyJWT's answers by the tests); the registered claims are then checked here. The
algorithm comes from configuration (never from the token alone): the header's ``alg``
must be on the allow-list and admitted by the key the ``kid`` selects.
"""

from __future__ import annotations

import binascii
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, NoReturn, Protocol, runtime_checkable

from asgi_auth.errors import ExpiredToken, InvalidToken, RevokedToken, UnknownKey
from asgi_auth.principal import DEFAULT_MAPPING, ClaimMapping, Principal, freeze_decoded
from asgi_auth.tokens._signatures import SignatureCheck, signature_check
from asgi_auth.tokens.keys import (
    HMAC_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    Key,
    KeySet,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_TOKEN_BYTES",
    "JWTVerifier",
    "RevocationCheck",
    "TokenVerifier",
    "read_unverified",
]

#: Verified tokens kept by default. Each entry holds the token string and its
#: principal: about 2.5 KiB for a typical 430-byte token with nine claims, so the
#: default bounds the cache near 25 MiB (measured in tests/test_verifier_cache.py).
DEFAULT_CACHE_SIZE: Final = 10_000
#: Longest token accepted, in bytes. Large enough for identity providers that put
#: group lists in tokens; bounds parse cost and JSON nesting for hostile input.
DEFAULT_MAX_TOKEN_BYTES: Final = 16_384
_HEADER_CACHE_SIZE: Final = 64
_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of an unpadded segment carries unused low bits that must be
# zero (RFC 4648 §3.5): 2 leftover characters leave 4 bits, 3 leave 2.
_CANONICAL_LAST: Final = {2: frozenset(_ALPHABET[::16]), 3: frozenset(_ALPHABET[::4])}
_TOKEN_BYTES: Final = _ALPHABET + b"."
_MAX_INT: Final = 2**53
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


# RFC 8259 has no NaN or Infinity (and 1e999 overflows to it): an `exp` of NaN would
# compare false and never expire, and a claim of inf cannot be written back as JSON.
_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ABSENT: Final = object()
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = _JSON.scan_once  # type: ignore[attr-defined]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _b64decode(segment: bytes) -> bytes:
    """One segment of a token :func:`_split` checked, translated to the standard
    alphabet (``_TO_STANDARD``), decoded strictly: a character outside the alphabet,
    a length no encoding has, or unused low bits that are not zero are refused."""
    rest = len(segment) & 3
    if rest:
        if rest == 1 or segment[-1] not in _CANONICAL_LAST[rest]:
            raise InvalidToken("segment is not canonical base64url")
        segment += b"==" if rest == 2 else b"="
    try:
        return binascii.a2b_base64(segment, strict_mode=True)
    except binascii.Error:
        raise InvalidToken("segment is not base64url") from None


def _split(token: str) -> tuple[bytes, int, int]:
    """The token's ASCII bytes and the positions of its two dots, once it is checked to
    be three non-empty segments without ``+``, ``/`` or ``=`` (standard base64, not
    base64url). The rest of the alphabet is checked where each segment is decoded:
    strictly, after ``-_`` are read as ``+/`` (:func:`_b64decode`)."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidToken("not three base64url segments") from None
    first = raw.find(b".")
    last = raw.rfind(b".")
    if (
        not 0 < first < last - 1
        or last == len(raw) - 1
        or raw.find(b".", first + 1) != last
        or b"+" in raw
        or b"/" in raw
        or b"=" in raw
    ):
        raise InvalidToken("not three base64url segments")
    return raw, first, last


def _split_checked(token: str) -> tuple[bytes, int, int]:
    """:func:`_split`, the alphabet of every segment checked too: for readers that do
    not decode all three."""
    raw, first, last = _split(token)
    if raw.translate(None, _TOKEN_BYTES):
        raise InvalidToken("not three base64url segments")
    return raw, first, last


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
        try:
            # The scanner JSONDecoder.decode wraps, without its two whitespace matches:
            # an object spanning the whole text is the common case.
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):  # surrounding whitespace, or not JSON: the exact path
            value = _JSON.decode(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidToken(f"{what} is not JSON: {type(exc).__name__}") from exc
    if type(value) is not dict:
        raise InvalidToken(f"{what} is not a JSON object")
    return value


def _number(claims: dict[str, Any], name: str) -> float | int | None:
    if name not in claims:
        return None
    value = claims[name]  # present but null is as wrong as a string (RFC 7519 §2)
    kind = type(value)
    if (kind is int and -_MAX_INT < value < _MAX_INT) or (kind is float and math.isfinite(value)):
        return value  # type: ignore[no-any-return]
    raise InvalidToken(f"claim {name!r} is not a NumericDate")


def _normalise_typ(value: str) -> str:
    # RFC 7515 §4.1.9: media types are case-insensitive, "application/" may be omitted.
    lowered = value.lower()
    return lowered[12:] if lowered.startswith("application/") else lowered


def _names(value: str | Iterable[str] | None, what: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    names = frozenset(value)
    if not names or not all(isinstance(v, str) and v for v in names):
        raise TypeError(f"{what} must be a string or a non-empty collection of strings")
    return names


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a token, parsed strictly but NOT verified: for display only.

    Raises:
        InvalidToken: the token is not a well-formed compact JWS with JSON objects.
    """
    raw, first, last = _split_checked(token)
    standard = raw.translate(_TO_STANDARD)
    return (
        _json_object(_b64decode(standard[:first]), "header"),
        _json_object(_b64decode(standard[first + 1 : last]), "payload"),
    )


@runtime_checkable
class RevocationCheck(Protocol):
    """A deny-list the verifier consults on every token: it must answer from memory."""

    def is_revoked(self, jti: str) -> bool:
        """Whether the token with this ``jti`` has been revoked."""
        ...


@runtime_checkable
class TokenVerifier(Protocol):
    """What :class:`~asgi_auth.middleware.AuthMiddleware` needs: a token in, a principal out."""

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid token.

        Raises:
            InvalidToken: the token is not acceptable (any reason).
            ServiceUnavailable: a dependency needed to decide is unreachable.
        """
        ...


class JWTVerifier:
    """Verifies JWTs signed with local keys (HS*, RS*, PS*, ES*, EdDSA).

    Args:
        keys: the keys tokens may be signed with; a ``kid`` in the token selects one.
        algorithms: the allow-list. Defaults to the algorithms the keys are bound
            to. ``none`` is refused, as is mixing HMAC with asymmetric keys.
        issuer: accepted ``iss`` value(s); when set, ``iss`` is required. Every key
            is trusted for every listed issuer: to bind keys to issuers, use one
            verifier per issuer.
        audience: accepted ``aud`` value(s); when set, ``aud`` is required and must
            name one of them. When unset, a token with an ``aud`` is refused
            (RFC 7519 §4.1.3).
        leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
        require: claims that must be present (``exp`` by default; ``sub`` always is).
        typ: expected ``typ`` header, e.g. ``"at+jwt"`` for RFC 9068 access tokens.
        expect: claims that must hold one of the given string values, e.g.
            ``{"token_use": "access", "client_id": ["app1", "app2"]}``; a token
            without the claim, or with another value or type, is refused.
        max_token_bytes: longer tokens are refused unparsed.
        cache_size: how many verified tokens to remember (0 disables the cache).
            A remembered token costs a dict lookup; it is never used past its ``exp``.
        mapping: where scopes, roles and permissions sit in the claims.
        revocations: a deny-list of ``jti`` values (e.g.
            :class:`~asgi_auth.store.RevocationList`), consulted on every token, cached
            ones included; a revoked token is refused with ``RevokedToken``.
        clock: seconds since the epoch; injectable for tests.

    Raises:
        ValueError: an unsafe or inconsistent configuration.
        TypeError: an argument of the wrong type (e.g. ``algorithms="HS256"``).
    """

    def __init__(
        self,
        keys: Key | KeySet | Iterable[Key],
        *,
        algorithms: Iterable[str] | None = None,
        issuer: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        leeway: float | timedelta = 0,
        require: Iterable[str] = ("exp",),
        typ: str | None = None,
        expect: Mapping[str, str | Iterable[str]] | None = None,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache_size: int = DEFAULT_CACHE_SIZE,
        mapping: ClaimMapping = DEFAULT_MAPPING,
        revocations: RevocationCheck | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keyset = (
            keys if isinstance(keys, KeySet) else KeySet([keys] if isinstance(keys, Key) else keys)
        )
        if isinstance(algorithms, str):
            raise TypeError("algorithms must be a list of names, not a string")
        if algorithms is None:
            if any(len(key.algorithms) > 1 for key in keyset):
                # RFC 8725 §3.1: one key, one algorithm. A JWK without "alg" admits a
                # whole family; make the choice explicit rather than accept all of it.
                raise ValueError("a key admits several algorithms: pass algorithms=[...]")
            allowed = keyset.algorithms
        else:
            allowed = frozenset(algorithms)
        self._check_algorithms(allowed, keyset)
        if isinstance(require, str):
            raise TypeError("require must be a list of claim names, not a string")
        if isinstance(leeway, timedelta):
            leeway = leeway.total_seconds()
        if isinstance(leeway, bool) or not isinstance(leeway, int | float):
            raise ValueError("leeway must be a number of seconds or a timedelta")
        if not 0 <= leeway <= 86_400:
            raise ValueError("leeway must be between 0 and 86400 seconds")
        if not isinstance(max_token_bytes, int) or max_token_bytes < 64:
            raise ValueError("max_token_bytes must be an int of at least 64")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError("cache_size must be a non-negative int")
        if typ is not None and (not isinstance(typ, str) or not typ):
            raise TypeError("typ must be a non-empty string")
        self.keys: Final = keyset
        self.algorithms: Final = allowed
        self.issuers: Final = _names(issuer, "issuer")
        self.audiences: Final = _names(audience, "audience")
        self.leeway: Final[float] = leeway
        self.required: Final = tuple(dict.fromkeys([*require, "sub"]))
        self.typ: Final = None if typ is None else _normalise_typ(typ)
        self.expected: Final = tuple(
            (name, _names(values, f"expect[{name!r}]")) for name, values in (expect or {}).items()
        )
        self.max_token_bytes: Final = max_token_bytes
        self.cache_size: Final = cache_size
        self.mapping: Final = mapping
        self.revocations: Final = revocations
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        # Signature checks prepared once per key and allowed algorithm; by header
        # segment, the checks its token's signature is tried against.
        self._checks: Final = {
            (id(key), alg): signature_check(key, alg)
            for key in keyset
            for alg in key.algorithms & allowed
        }
        self._headers: dict[bytes, tuple[SignatureCheck, ...]] = {}
        self._sealed = True

    def __setattr__(self, name: str, value: Any) -> None:
        # Keys, allow-list and claim rules are fixed at construction: a cached decision
        # must never outlive the configuration it was made under. Build a new verifier.
        if getattr(self, "_sealed", False):
            raise AttributeError(f"JWTVerifier is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    @staticmethod
    def _check_algorithms(allowed: frozenset[str], keyset: KeySet) -> None:
        if not allowed:
            raise ValueError("the algorithm allow-list is empty")
        if any(not isinstance(a, str) or a.lower() == "none" for a in allowed):
            raise ValueError("'none' is never an acceptable algorithm (RFC 8725 §3.1)")
        unknown = allowed - SUPPORTED_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported algorithms: {sorted(unknown)}")
        hmac = allowed & HMAC_ALGORITHMS.keys()
        if hmac and hmac != allowed:
            raise ValueError("HMAC and asymmetric algorithms cannot share one verifier")
        for key in keyset:
            if hmac and not key.is_symmetric:
                raise ValueError(f"key {key.kid!r} is asymmetric but the allow-list is HMAC")
            if not hmac and key.is_symmetric:
                raise ValueError("an HMAC secret cannot verify asymmetric algorithms")
            if not key.algorithms & allowed:
                raise ValueError(f"key {key.kid!r} admits none of the allowed algorithms")

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid token. See :meth:`verify_sync`."""
        return self.verify_sync(token)

    def verify_sync(self, token: str) -> Principal:
        """Return the principal of a valid token, from the cache when already verified.

        Raises:
            InvalidToken: the token is malformed, unsigned, signed with a key or
                algorithm not configured, has a bad signature, fails a claim check,
                or lacks a subject. ``ExpiredToken`` and ``UnknownKey`` are subclasses.
        """
        if type(token) is not str:
            raise InvalidToken("token is not a string")
        known = self.cached(token)
        if known is not None:
            return known
        principal, expires = self._verify(token)
        if self.revocations is not None:
            self._check_revoked(principal)
        cache = self._cache
        if self.cache_size and expires is not None:
            while len(cache) >= self.cache_size:
                try:
                    cache.popitem(last=False)
                except KeyError:  # emptied by another thread meanwhile
                    break
            cache[token] = (principal, expires)
        return principal

    def cached(self, token: str) -> Principal | None:
        """The principal of a token this verifier verified before, while it is still
        valid; None when the token must be verified. Never verifies anything.

        Raises:
            RevokedToken: the token was verified before and has been revoked since.
        """
        cached = self._cache.get(token)
        if cached is None:
            return None
        if self.revocations is not None:
            self._check_revoked(cached[0])
        if cached[1] > self._clock():
            # Not contextlib.suppress: this is the hot path, and try costs nothing.
            try:  # noqa: SIM105
                self._cache.move_to_end(token)
            except KeyError:  # another thread evicted it meanwhile
                pass
            return cached[0]
        self._cache.pop(token, None)
        return None

    def _check_revoked(self, principal: Principal) -> None:
        jti = principal.token_id
        if jti is not None and self.revocations is not None and self.revocations.is_revoked(jti):
            raise RevokedToken(f"token {_short(jti)} has been revoked")

    def clear_cache(self) -> None:
        """Forget every verified token and every parsed header."""
        self._cache.clear()
        self._headers.clear()

    def _verify(self, token: str) -> tuple[Principal, float | None]:
        if len(token) > self.max_token_bytes:
            raise InvalidToken(f"token is longer than {self.max_token_bytes} bytes")
        raw, first, last = _split(token)
        standard = raw.translate(_TO_STANDARD)
        header = standard[:first]
        selected = self._headers.get(header)
        known = selected is not None
        if selected is None:
            selected = self._parse_header(header)
        signature = _b64decode(standard[last + 1 :])
        signed = raw[:last]
        for check in selected:
            if check(signed, signature):
                break
        else:
            raise InvalidToken("signature does not verify")
        if not known:
            # Remember a header only once a token carrying it proved genuine, so that
            # forged headers cannot churn the cache.
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[header] = selected
        payload = _b64decode(standard[first + 1 : last])
        claims = _json_object(payload, "payload")
        expires = self._check_claims(claims)
        # Cached principals are shared by every request with this token: freeze them deep
        # (in place: the decoded dict is ours alone). JSON writes every array and object
        # with a literal bracket or brace: a payload with no "[" and one "{" is flat.
        if b"[" not in payload and payload.find(b"{", 1) < 0:
            return Principal.from_claims(MappingProxyType(claims), self.mapping), expires
        try:
            return Principal.from_claims(freeze_decoded(claims), self.mapping), expires
        except ValueError as exc:  # nesting deeper than freeze() takes
            raise InvalidToken(f"claims: {exc}") from None

    def _parse_header(self, segment: bytes) -> tuple[SignatureCheck, ...]:
        header = _json_object(_b64decode(segment), "header")
        alg = header.get("alg")
        if type(alg) is not str or alg not in self.algorithms:
            raise InvalidToken(f"algorithm {_short(alg)} is not allowed")
        if "crit" in header:
            # RFC 7515 §4.1.11: extensions we do not implement must be refused.
            raise InvalidToken("'crit' header extensions are not supported")
        kid = header.get("kid")
        if kid is not None and type(kid) is not str:
            raise InvalidToken("'kid' is not a string")
        if self.typ is not None:
            typ = header.get("typ")
            if type(typ) is not str or _normalise_typ(typ) != self.typ:
                raise InvalidToken(f"'typ' {_short(typ)} is not {self.typ!r}")
        keys = self.keys.candidates(kid, alg)
        if not keys:
            if kid is not None and kid in self.keys:
                raise InvalidToken(f"key {_short(kid)} is not for {alg}")
            if kid is not None:
                raise UnknownKey(f"no key with kid {_short(kid)} for {alg}")
            raise InvalidToken(f"no key for {alg}")
        checks = self._checks
        return tuple(checks[id(key), alg] for key in keys)

    def _check_claims(self, claims: dict[str, Any]) -> float | None:
        if "cnf" in claims:
            # A sender-constrained token (DPoP, RFC 9449; mTLS, RFC 8705) is only valid
            # with a proof of possession, which a bearer check cannot see: refuse it
            # rather than downgrade it to a bearer token.
            raise InvalidToken("token is sender-constrained ('cnf'); no proof is checked")
        for name in self.required:
            if name not in claims:
                raise InvalidToken(f"required claim {name!r} is missing")
        now = self._clock()
        leeway = self.leeway
        # Each NumericDate: an int in range is the usual case; anything else (absent,
        # null, float, bool, out of range) takes _number's careful path.
        exp = claims.get("exp")
        if type(exp) is not int or not -_MAX_INT < exp < _MAX_INT:
            exp = _number(claims, "exp")
        if exp is not None and now >= exp + leeway:
            raise ExpiredToken("token has expired")
        nbf = claims.get("nbf", _ABSENT)
        if nbf is not _ABSENT:
            if type(nbf) is not int or not -_MAX_INT < nbf < _MAX_INT:
                nbf = _number(claims, "nbf")
            if now + leeway < nbf:
                raise InvalidToken("token is not valid yet (nbf)")
        iat = claims.get("iat", _ABSENT)
        if iat is not _ABSENT:
            if type(iat) is not int or not -_MAX_INT < iat < _MAX_INT:
                iat = _number(claims, "iat")
            if now + leeway < iat:
                raise InvalidToken("token was issued in the future (iat)")
        if self.issuers:
            iss = claims.get("iss")
            if type(iss) is not str or iss not in self.issuers:
                raise InvalidToken(f"issuer {_short(iss)} is not accepted")
        aud = claims.get("aud", _ABSENT)
        usual = type(aud) is str and aud in self.audiences
        if not usual and (aud is not _ABSENT or self.audiences):
            self._check_audience(None if aud is _ABSENT else aud)
        for name, accepted in self.expected:
            value = claims.get(name)
            if type(value) is not str or value not in accepted:
                raise InvalidToken(f"claim {name!r} is {_short(value)}, not an accepted value")
        return None if exp is None else exp + leeway

    def _check_audience(self, aud: Any) -> None:
        if type(aud) is str:
            named: Iterable[Any] = (aud,)
        elif type(aud) is list and aud and all(type(a) is str for a in aud):
            named = aud
        else:
            raise InvalidToken("'aud' is missing or not a string or list of strings")
        if not self.audiences:
            raise InvalidToken("token names an audience but none is configured")
        if self.audiences.isdisjoint(named):
            raise InvalidToken(f"audience {_short(aud)} is not accepted")
