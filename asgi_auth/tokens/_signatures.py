"""Signature checks prepared once per key and algorithm, for the verifier's hot path.

Each check answers what PyJWT's ``Algorithm.verify(message, key, signature)`` answers
for the same algorithm and key (``tests/test_fast_path.py`` holds them to it), minus
the per-call work: PyJWT builds a new padding and hash object for every RSA or ECDSA
verification, and computes HMAC from the secret each time. Here the padding and hash
objects are built once, and HMAC (RFC 2104) starts from hash states already fed the
padded secret, so a check costs two hash copies and the message.

RSASSA-PKCS1-v1_5 (RS256…) is checked the way RFC 8017 §8.2.2 describes: OpenSSL
applies the public key and checks the ``00 01 FF…FF 00`` padding; what the padding
wraps must then equal, byte for byte, the DigestInfo of the message's hash that a
signer would have written (§9.2). Comparing the whole encoding, never parsing it,
leaves no room for the forgeries that lenient ASN.1 parsers let through. It is about
a tenth faster than OpenSSL's verify, which does the same with more set-up per call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from jwt.utils import raw_to_der_signature

from asgi_auth.tokens.keys import HMAC_ALGORITHMS, Key

__all__ = ["SignatureCheck", "signature_check"]

#: ``check(signing_input, signature)``: True when the signature is genuine.
SignatureCheck = Callable[[bytes, bytes], bool]

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_HMAC_HASHES: Final = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


def _hmac_check(secret: bytes, name: str) -> SignatureCheck:
    # RFC 2104: H((K ^ opad) || H((K ^ ipad) || m)), K padded to the block size (or
    # hashed first when longer). The two keyed states are computed here, once.
    block = hashlib.new(name).block_size
    if len(secret) > block:
        secret = hashlib.new(name, secret).digest()
    secret = secret.ljust(block, b"\0")
    inner = hashlib.new(name, bytes(b ^ 0x36 for b in secret))
    outer = hashlib.new(name, bytes(b ^ 0x5C for b in secret))
    compare = hmac.compare_digest

    def check(message: bytes, signature: bytes) -> bool:
        digest = inner.copy()
        digest.update(message)
        mac = outer.copy()
        mac.update(digest.digest())
        return compare(mac.digest(), signature)

    return check


def _pss_check(public: Any, pad: padding.AsymmetricPadding, algorithm: Any) -> SignatureCheck:
    verify = public.verify

    def check(message: bytes, signature: bytes) -> bool:
        try:
            verify(signature, message, pad, algorithm)
        except InvalidSignature:
            return False
        return True

    return check


# RFC 8017 §9.2, note 1: the DER DigestInfo before a SHA-2 hash, by hash size.
_DIGEST_INFO: Final = {
    "256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def _pkcs1_check(public: Any, bits: str) -> SignatureCheck:
    recover = public.recover_data_from_signature
    pad = padding.PKCS1v15()
    prefix = _DIGEST_INFO[bits]
    digest = getattr(hashlib, f"sha{bits}")

    def check(message: bytes, signature: bytes) -> bool:
        try:
            # Padding checked, and the signature's length equal to the modulus'.
            wrapped = recover(signature, pad, None)
        except InvalidSignature:
            return False
        return bool(wrapped == prefix + digest(message).digest())

    return check


def _ec_check(public: ec.EllipticCurvePublicKey, algorithm: Any) -> SignatureCheck:
    verify = public.verify
    curve = public.curve
    scheme = ec.ECDSA(algorithm)

    def check(message: bytes, signature: bytes) -> bool:
        try:
            der = raw_to_der_signature(signature, curve)  # wrong length: ValueError
            verify(der, message, scheme)
        except (InvalidSignature, ValueError):
            return False
        return True

    return check


def _eddsa_check(public: Any) -> SignatureCheck:
    verify = public.verify

    def check(message: bytes, signature: bytes) -> bool:
        try:
            verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return check


def signature_check(key: Key, algorithm: str) -> SignatureCheck:
    """The check of ``algorithm`` signatures made with ``key``, prepared once.

    Raises:
        ValueError: ``key`` is not for ``algorithm``, or the algorithm is unknown.
    """
    if algorithm not in key.algorithms:
        raise ValueError(f"key {key.kid!r} is not for {algorithm}")
    public = key.verify_key
    if algorithm in HMAC_ALGORITHMS:
        return _hmac_check(public, _HMAC_HASHES[algorithm])
    digest = _HASHES.get(algorithm[2:])
    if algorithm.startswith("RS") and digest is not None:
        return _pkcs1_check(public, algorithm[2:])
    if algorithm.startswith("PS") and digest is not None:
        # PyJWT signs and verifies PSS with a salt as long as the hash.
        hash_ = digest()
        pss = padding.PSS(mgf=padding.MGF1(hash_), salt_length=hash_.digest_size)
        return _pss_check(public, pss, hash_)
    if algorithm.startswith("ES") and digest is not None:
        return _ec_check(public, digest())
    if algorithm == "EdDSA":
        return _eddsa_check(public)
    raise ValueError(f"unsupported algorithm {algorithm!r}")
