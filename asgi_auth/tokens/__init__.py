"""Tokens: keys, verification and issuing. The only package that imports PyJWT."""

from asgi_auth.tokens.issuer import TokenIssuer
from asgi_auth.tokens.keys import Key, KeySet
from asgi_auth.tokens.oidc import IssuerRouter, OIDCVerifier
from asgi_auth.tokens.verifier import JWTVerifier, TokenVerifier

__all__ = [
    "IssuerRouter",
    "JWTVerifier",
    "Key",
    "KeySet",
    "OIDCVerifier",
    "TokenIssuer",
    "TokenVerifier",
]
