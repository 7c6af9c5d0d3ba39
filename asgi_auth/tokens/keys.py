"""Signing and verification keys: loading, generation, ``kid`` selection and JWKS export.

Every key is bound to the algorithms it may be used with (RFC 8725 §3.1: one key,
one algorithm family), and parsed once into the object PyJWT's algorithms use, so
that verification never re-reads PEM text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import (
    Algorithm,
    ECAlgorithm,
    HMACAlgorithm,
    OKPAlgorithm,
    RSAAlgorithm,
    get_default_algorithms,
)
from jwt.exceptions import InvalidKeyError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "Key",
    "KeySet",
]

KeyType = Literal["oct", "RSA", "EC", "OKP"]

#: HMAC algorithms and the shortest secret each accepts (RFC 7518 §3.2: at least
#: the hash size).
HMAC_ALGORITHMS: Final[Mapping[str, int]] = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES: Final[Mapping[str, str]] = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_CURVE_ALGORITHM: Final[Mapping[str, str]] = {v: k for k, v in _EC_CURVES.items()}
ASYMMETRIC_ALGORITHMS: Final = _RSA_ALGORITHMS | frozenset(_EC_CURVES) | {"EdDSA"}
SUPPORTED_ALGORITHMS: Final = frozenset(HMAC_ALGORITHMS) | ASYMMETRIC_ALGORITHMS
_KTY_ALGORITHMS: Final[Mapping[str, frozenset[str]]] = {
    "oct": frozenset(HMAC_ALGORITHMS),
    "RSA": _RSA_ALGORITHMS,
    "EC": frozenset(_EC_CURVES),
    "OKP": frozenset({"EdDSA"}),
}
#: PyJWT's algorithm objects, looked up once. ``none`` is deliberately absent.
ALGORITHMS: Final[Mapping[str, Algorithm]] = {
    name: alg for name, alg in get_default_algorithms().items() if name in SUPPORTED_ALGORITHMS
}
MIN_RSA_BITS: Final = 2048
_CURVE_NAMES: Final[Mapping[str, str]] = {
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
}
_ThumbprintMembers: Final[Mapping[str, tuple[str, ...]]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True, eq=False)
class Key:
    """One key, bound to the algorithms it may sign or verify with.

    Build keys with the class methods (:meth:`from_secret`, :meth:`from_pem`,
    :meth:`from_file`, :meth:`from_jwk`, :meth:`generate`), not the constructor.

    Attributes:
        kid: the key id that tokens name in their header (RFC 7515 §4.1.4).
            Asymmetric keys default to their RFC 7638 thumbprint.
        kty: the JWK key type: ``oct``, ``RSA``, ``EC`` or ``OKP``.
        algorithms: the algorithms this key is used with.
    """

    kid: str | None
    kty: KeyType
    algorithms: frozenset[str]
    verify_key: Any = field(repr=False)
    sign_key: Any = field(default=None, repr=False)

    @property
    def is_symmetric(self) -> bool:
        """True for HMAC secrets."""
        return self.kty == "oct"

    @property
    def can_sign(self) -> bool:
        """True when the key holds private (or secret) material."""
        return self.sign_key is not None

    @property
    def algorithm(self) -> str:
        """The one algorithm this key signs with.

        Raises:
            ValueError: the key admits several algorithms (a JWK without ``alg``).
        """
        if len(self.algorithms) != 1:
            raise ValueError(f"key {self.kid!r} admits {sorted(self.algorithms)}; name one")
        return next(iter(self.algorithms))

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_secret(
        cls, secret: str | bytes, *, algorithm: str = "HS256", kid: str | None = None
    ) -> Key:
        """An HMAC key. A ``str`` secret is used as its UTF-8 bytes, as other JWT libraries do.

        Raises:
            ValueError: unknown algorithm, or a secret shorter than the hash
                (32 bytes for HS256, 48 for HS384, 64 for HS512).
        """
        if algorithm not in HMAC_ALGORITHMS:
            raise ValueError(f"{algorithm!r} is not an HMAC algorithm")
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        try:
            # PyJWT refuses PEM, SSH and JWK text as an HMAC secret (algorithm confusion);
            # refuse it here, at configuration, rather than at the first signature.
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(raw)
        except InvalidKeyError as exc:
            raise ValueError(f"not usable as an HMAC secret: {exc}") from exc
        minimum = HMAC_ALGORITHMS[algorithm]
        if len(raw) < minimum:
            raise ValueError(
                f"{algorithm} needs a secret of at least {minimum} bytes, got {len(raw)}; "
                "`asgi-auth secret` prints a good one"
            )
        return cls(kid, "oct", frozenset({algorithm}), raw, raw)

    @classmethod
    def from_pem(
        cls,
        pem: str | bytes,
        *,
        algorithm: str | None = None,
        kid: str | None = None,
        password: bytes | None = None,
    ) -> Key:
        """A key from PEM text: a private key, a public key or an X.509 certificate.

        The algorithm follows the key type (RSA → RS256, P-256 → ES256, P-384 → ES384,
        P-521 → ES512, Ed25519/Ed448 → EdDSA) unless ``algorithm`` names another one of
        the same family.

        Raises:
            ValueError: the text is not a supported key, RSA is under 2048 bits, or
                ``algorithm`` does not fit the key.
        """
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        private: Any = None
        try:
            if b"PRIVATE KEY-----" in data:
                private = serialization.load_pem_private_key(data, password=password)
                public: Any = private.public_key()
            elif b"-----BEGIN CERTIFICATE-----" in data:
                public = x509.load_pem_x509_certificate(data).public_key()
            else:
                public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a usable PEM key: {exc}") from exc
        return cls._from_objects(public, private, algorithm=algorithm, kid=kid)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        algorithm: str | None = None,
        kid: str | None = None,
        password: bytes | None = None,
    ) -> Key:
        """A key from a PEM file, or a JWK in a JSON file (``kid`` and ``password`` apply to PEM).

        Raises:
            OSError: the file cannot be read.
            ValueError: as for :meth:`from_pem` and :meth:`from_jwk`; ``kid`` or
                ``password`` given for a JWK file.
        """
        data = Path(path).read_bytes()
        if data.lstrip().startswith(b"{"):
            if kid is not None or password is not None:
                raise ValueError("a JWK file carries its own kid and is never encrypted")
            return cls.from_jwk(data.decode("utf-8"), algorithm=algorithm)
        return cls.from_pem(data, algorithm=algorithm, kid=kid, password=password)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any] | str, *, algorithm: str | None = None) -> Key:
        """A key from a JWK (RFC 7517), as a mapping or JSON text.

        A JWK with ``alg`` is bound to it; without, to every algorithm of its type
        (an RSA key serves RS* and PS*), narrowed by ``algorithm`` when given.

        Raises:
            ValueError: not a JWK, unsupported ``kty``/``crv``, ``use`` other than
                ``sig``, RSA under 2048 bits, an oct key shorter than its hash.
        """
        try:
            obj = json.loads(jwk) if isinstance(jwk, str) else jwk
        except (ValueError, RecursionError) as exc:
            raise ValueError("JWK is not valid JSON") from exc
        if not isinstance(obj, Mapping):
            raise ValueError("a JWK must be a JSON object")
        kty, kid, alg = obj.get("kty"), obj.get("kid"), obj.get("alg")
        if not isinstance(kty, str) or kty not in _KTY_ALGORITHMS:
            raise ValueError(f"unsupported JWK kty {kty!r}")
        if kid is not None and not isinstance(kid, str):
            raise ValueError("JWK kid must be a string")
        if obj.get("use", "sig") != "sig":
            raise ValueError(f"JWK {kid!r} is not a signing key (use={obj.get('use')!r})")
        if alg is not None and algorithm is not None and alg != algorithm:
            raise ValueError(f"JWK {kid!r} is for {alg!r}, not {algorithm!r}")
        algorithm = algorithm or alg
        if algorithm is not None and not isinstance(algorithm, str):
            raise ValueError("JWK alg must be a string")
        parser: Any = {
            "oct": HMACAlgorithm,
            "RSA": RSAAlgorithm,
            "EC": ECAlgorithm,
            "OKP": OKPAlgorithm,
        }[kty]
        try:
            material = parser.from_jwk(dict(obj))
        except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"invalid {kty} JWK {kid!r}: {exc}") from exc
        if kty == "oct":
            return cls.from_secret(material, algorithm=algorithm or "HS256", kid=kid)
        if hasattr(material, "public_key"):
            return cls._from_objects(
                material.public_key(), material, algorithm=algorithm, kid=kid, jwk_family=True
            )
        return cls._from_objects(material, None, algorithm=algorithm, kid=kid, jwk_family=True)

    @classmethod
    def generate(cls, algorithm: str = "ES256", *, kid: str | None = None) -> Key:
        """A fresh random key for ``algorithm`` (RSA keys are 2048 bits; HMAC secrets 64 bytes).

        Raises:
            ValueError: unsupported algorithm.
        """
        if algorithm in HMAC_ALGORITHMS:
            return cls.from_secret(secrets.token_bytes(64), algorithm=algorithm, kid=kid)
        private: Any
        if algorithm in _RSA_ALGORITHMS:
            private = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        elif algorithm in _EC_CURVES:
            curves: dict[str, ec.EllipticCurve] = {
                "P-256": ec.SECP256R1(),
                "P-384": ec.SECP384R1(),
                "P-521": ec.SECP521R1(),
            }
            private = ec.generate_private_key(curves[_EC_CURVES[algorithm]])
        elif algorithm == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported algorithm {algorithm!r}")
        return cls._from_objects(private.public_key(), private, algorithm=algorithm, kid=kid)

    @classmethod
    def _from_objects(
        cls,
        public: Any,
        private: Any,
        *,
        algorithm: str | None,
        kid: str | None,
        jwk_family: bool = False,
    ) -> Key:
        kty: KeyType
        if isinstance(public, rsa.RSAPublicKey):
            if public.key_size < MIN_RSA_BITS:
                raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits (RFC 7518 §3.3)")
            kty, family, default = "RSA", _RSA_ALGORITHMS, "RS256"
        elif isinstance(public, ec.EllipticCurvePublicKey):
            crv = _CURVE_NAMES.get(public.curve.name)
            if crv is None:
                raise ValueError(f"unsupported elliptic curve {public.curve.name}")
            kty, default = "EC", _CURVE_ALGORITHM[crv]
            family = frozenset({default})
        elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            kty, family, default = "OKP", frozenset({"EdDSA"}), "EdDSA"
        else:
            raise ValueError(f"unsupported key type {type(public).__name__}")
        if algorithm is not None and algorithm not in family:
            raise ValueError(f"a {kty} key cannot be used with {algorithm!r}")
        if algorithm is not None:
            algorithms = frozenset({algorithm})
        else:
            algorithms = family if jwk_family else frozenset({default})
        key = cls(kid, kty, algorithms, public, private)
        if kid is None:
            object.__setattr__(key, "kid", key.thumbprint())
        return key

    # -- export -------------------------------------------------------------------------

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with ``kid``, ``use`` and (when single) ``alg``.

        Raises:
            ValueError: the key is an HMAC secret, which has no public half.
        """
        if self.is_symmetric:
            raise ValueError("an HMAC secret has no public half to publish")
        jwk: dict[str, Any] = dict(_public_members(self.verify_key))
        if self.kid is not None:
            jwk["kid"] = self.kid
        jwk["use"] = "sig"
        if len(self.algorithms) == 1:
            jwk["alg"] = self.algorithm
        return jwk

    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint of the key, base64url-encoded."""
        if self.is_symmetric:
            members: Mapping[str, Any] = {"k": _b64url(self.verify_key), "kty": "oct"}
        else:
            members = _public_members(self.verify_key)
        required = {name: members[name] for name in _ThumbprintMembers[self.kty]}
        canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
        return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (for ``asgi-auth keys``).

        Raises:
            ValueError: the key has no private half, or is an HMAC secret.
        """
        if self.is_symmetric or self.sign_key is None:
            raise ValueError("only asymmetric private keys export as PEM")
        pem: bytes = self.sign_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM.

        Raises:
            ValueError: the key is an HMAC secret.
        """
        if self.is_symmetric:
            raise ValueError("an HMAC secret has no public half")
        pem: bytes = self.verify_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem


def _public_members(public: Any) -> dict[str, Any]:
    if isinstance(public, rsa.RSAPublicKey):
        jwk: Any = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {k: v for k, v in jwk.items() if k in {"kty", "crv", "n", "e", "x", "y"}}


class KeySet:
    """An immutable set of keys, looked up by ``kid`` so that keys rotate without downtime.

    Publish the new key next to the old one, switch the issuer, and drop the old key
    once its tokens have expired.
    """

    __slots__ = ("_by_alg", "_by_kid", "_keys")

    def __init__(self, keys: Iterable[Key]) -> None:
        """Raises:
        ValueError: two keys share a ``kid``, or the set is empty.
        """
        self._keys: tuple[Key, ...] = tuple(keys)
        if not self._keys:
            raise ValueError("a KeySet needs at least one key")
        by_kid: dict[str, Key] = {}
        by_alg: dict[str, list[Key]] = {}
        for key in self._keys:
            if not isinstance(key, Key):
                raise TypeError(f"expected Key, got {type(key).__name__}")
            if key.kid is not None:
                if key.kid in by_kid:
                    raise ValueError(f"two keys share kid {key.kid!r}")
                by_kid[key.kid] = key
            for alg in key.algorithms:
                by_alg.setdefault(alg, []).append(key)
        self._by_kid = by_kid
        self._by_alg = {alg: tuple(ks) for alg, ks in by_alg.items()}

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str, *, skip_unusable: bool = False) -> KeySet:
        """A key set from a JWKS document (RFC 7517 §5).

        Args:
            skip_unusable: skip keys of unsupported types or uses instead of failing
                (a provider's JWKS often lists encryption keys too).

        Raises:
            ValueError: not a JWKS, a key is unusable (unless skipped), or no key is left.
        """
        try:
            doc = json.loads(jwks) if isinstance(jwks, str) else jwks
        except (ValueError, RecursionError) as exc:
            raise ValueError("JWKS is not valid JSON") from exc
        entries = doc.get("keys") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError("a JWKS must be an object with a 'keys' list")
        keys = []
        for entry in entries:
            try:
                keys.append(Key.from_jwk(entry))
            except ValueError:
                if not skip_unusable:
                    raise
        return cls(keys)

    @property
    def algorithms(self) -> frozenset[str]:
        """Every algorithm some key in the set admits."""
        return frozenset(self._by_alg)

    def get(self, kid: str) -> Key | None:
        """The key with this ``kid``, or None."""
        return self._by_kid.get(kid)

    def candidates(self, kid: str | None, algorithm: str) -> tuple[Key, ...]:
        """The keys that may verify a token with this header ``kid`` and ``alg``.

        A token naming a ``kid`` gets that key only (never a fallback to others);
        a token without one gets every key for its algorithm.
        """
        if kid is None:
            return self._by_alg.get(algorithm, ())
        key = self._by_kid.get(kid)
        if key is None or algorithm not in key.algorithms:
            return ()
        return (key,)

    def public_jwks(self) -> dict[str, Any]:
        """The public keys as a JWKS document; HMAC secrets are never included."""
        return {"keys": [k.public_jwk() for k in self._keys if not k.is_symmetric]}

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __repr__(self) -> str:
        return f"KeySet({[k.kid for k in self._keys]!r})"
