"""The exception tree of asgi_auth.

Every error a request can cause is an :class:`AuthError`; each subclass maps to
exactly one HTTP answer (see :mod:`asgi_auth._http`). Programming and
configuration mistakes stay builtins (``ValueError``, ``TypeError``) so that
they are never mistaken for a client's fault.

The ``reason`` of an error is for logs only: clients get a generic message.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "AuthenticationError",
    "ExpiredToken",
    "InvalidCredentials",
    "InvalidToken",
    "MalformedCredentials",
    "NotAuthenticated",
    "PermissionDenied",
    "ProviderUnavailable",
    "RevokedToken",
    "ServiceUnavailable",
    "StoreUnavailable",
    "UnknownKey",
]


class AuthError(Exception):
    """Base of every asgi_auth error; never raised itself.

    Attributes:
        reason: a precise, log-only description. Never sent to a client.
        subject: the caller concerned, when known (for the audit trail).
        policy: for a refusal by a guard, the policy that refused (for the audit trail).
        unmet: for a refusal by a guard, the requirements the caller did not meet.
    """

    def __init__(
        self,
        reason: str = "",
        *,
        subject: str | None = None,
        policy: str | None = None,
        unmet: tuple[str, ...] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subject = subject
        self.policy = policy
        self.unmet = unmet


class AuthenticationError(AuthError):
    """Who is calling could not be established."""


class MalformedCredentials(AuthenticationError):
    """The request carried credentials in a malformed way (HTTP 400 ``invalid_request``)."""


class InvalidToken(AuthenticationError):
    """The bearer token is not acceptable (HTTP 401 ``invalid_token``)."""


class ExpiredToken(InvalidToken):
    """The token's ``exp`` has passed (beyond the configured leeway)."""


class RevokedToken(InvalidToken):
    """The token was valid but has been revoked."""


class UnknownKey(InvalidToken):
    """The token names a key (``kid``) that the verifier does not hold."""


class NotAuthenticated(AuthenticationError):
    """A resource needs credentials and the request had none (HTTP 401, bare challenge)."""


class InvalidCredentials(AuthenticationError):
    """A login failed: unknown user, wrong password, disabled account (all alike)."""


class PermissionDenied(AuthError):
    """The caller is known but not allowed (HTTP 403 ``insufficient_scope``).

    Attributes:
        scopes: the scopes the refused policy names, for the ``scope`` challenge attribute.
    """

    def __init__(
        self,
        reason: str = "",
        *,
        scopes: tuple[str, ...] = (),
        policy: str | None = None,
        unmet: tuple[str, ...] = (),
    ) -> None:
        super().__init__(reason, policy=policy, unmet=unmet)
        self.scopes = scopes


class ServiceUnavailable(AuthError):
    """A dependency needed to decide is unreachable; the request fails closed (HTTP 503)."""


class StoreUnavailable(ServiceUnavailable):
    """The roles/claims store could not be reached."""


class ProviderUnavailable(ServiceUnavailable):
    """An identity provider (discovery, JWKS or userinfo) could not be reached or
    gave an unusable answer, and no key we already hold can decide."""
