"""Issuing tokens: ``jwt.sign({sub}, key, {expiresIn: '1h'})`` with the claims a verifier checks."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Final

import jwt

from asgi_auth.tokens.keys import Key, KeySet

__all__ = ["DEFAULT_LIFETIME", "RESERVED_CLAIMS", "TokenIssuer"]

#: Access tokens live one hour unless configured otherwise.
DEFAULT_LIFETIME: Final = 3600
#: Claims the issuer writes itself; passing them as extra claims is an error.
RESERVED_CLAIMS: Final = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


class _StandardJSON(json.JSONEncoder):
    """RFC 8259 JSON only: NaN and Infinity make a token other libraries cannot read."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "allow_nan": False})


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"{what} must be a positive number of seconds")
    if not 1 <= seconds < 10**9:  # also refuses NaN and infinity
        raise ValueError(f"{what} must be between 1 and 10**9 seconds")
    return seconds


class TokenIssuer:
    """Signs access tokens with one key and publishes the public keys as a JWKS.

    Every token carries ``sub`` (always a string), ``iat``, ``nbf``, ``exp``, a unique
    ``jti``, and ``iss``/``aud`` when configured; the header names the key's ``kid``.

    Args:
        key: the signing key (an HMAC secret or a private key).
        algorithm: the algorithm; required only when the key admits several.
        issuer: the ``iss`` to write.
        audience: the default ``aud`` (a string or a list of strings).
        lifetime: default token lifetime, in seconds or a ``timedelta`` (1 hour).
        typ: the ``typ`` header: ``"at+jwt"``, RFC 9068's explicit type for access
            tokens, so that a verifier with ``typ="at+jwt"`` can refuse other JWTs
            signed with the same key (RFC 8725 §3.11).
        publish: more public keys to list in :meth:`jwks` (the next or the previous
            key, while rotating).
        clock: seconds since the epoch; injectable for tests.

    Raises:
        ValueError: the key cannot sign, or a setting is out of range.
    """

    def __init__(
        self,
        key: Key,
        *,
        algorithm: str | None = None,
        issuer: str | None = None,
        audience: str | list[str] | None = None,
        lifetime: float | timedelta = DEFAULT_LIFETIME,
        typ: str = "at+jwt",
        publish: Iterable[Key] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(key, Key):
            raise TypeError("key must be an asgi_auth Key")
        if not key.can_sign:
            raise ValueError(f"key {key.kid!r} has no private half and cannot sign")
        if algorithm is None:
            algorithm = key.algorithm
        elif algorithm not in key.algorithms:
            raise ValueError(f"key {key.kid!r} is not for {algorithm!r}")
        self.key = key
        self.algorithm = algorithm
        self.issuer = issuer
        # A copy: the caller's list changing later must not change future tokens.
        self.audience = list(audience) if isinstance(audience, list) else audience
        self.lifetime = _seconds(lifetime, "lifetime")
        self.typ = typ
        self.keys = KeySet([key, *publish])
        self._clock = clock
        self._header: dict[str, Any] = {"typ": typ}
        if key.kid is not None:
            self._header["kid"] = key.kid

    def issue(
        self,
        subject: str | int,
        *,
        claims: Mapping[str, Any] | None = None,
        lifetime: float | timedelta | None = None,
        audience: str | list[str] | None = None,
    ) -> str:
        """Sign a token for ``subject`` (an ``int`` user id becomes its decimal string).

        Args:
            claims: extra claims (``scope``, ``roles``, ``name``, …). The registered
                claims in :data:`RESERVED_CLAIMS` are the issuer's to write.
            lifetime: overrides the default lifetime.
            audience: overrides the default audience.

        Raises:
            ValueError: empty subject, a reserved claim among ``claims``, a claim value
                that is NaN or infinite, or a bad lifetime.
            TypeError: a subject that is neither a string nor an int.
        """
        if isinstance(subject, bool) or not isinstance(subject, str | int):
            raise TypeError("subject must be a string (or an int id)")
        sub = str(subject)
        if not sub:
            raise ValueError("subject must not be empty")
        extra = dict(claims or {})
        clash = RESERVED_CLAIMS & extra.keys()
        if clash:
            raise ValueError(f"claims the issuer writes itself: {sorted(clash)}")
        now = int(self._clock())
        seconds = self.lifetime if lifetime is None else _seconds(lifetime, "lifetime")
        payload: dict[str, Any] = {
            **extra,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + int(seconds),
            "jti": secrets.token_urlsafe(16),
        }
        if self.issuer is not None:
            payload["iss"] = self.issuer
        aud = self.audience if audience is None else audience
        if aud is not None:
            payload["aud"] = list(aud) if isinstance(aud, list) else aud
        return jwt.encode(
            payload,
            self.key.sign_key,
            algorithm=self.algorithm,
            headers=self._header,
            json_encoder=_StandardJSON,
        )

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWKS document (empty for an HMAC secret)."""
        return self.keys.public_jwks()
