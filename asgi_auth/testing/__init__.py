"""Testing helpers: an in-process OpenID Connect provider and pytest fixtures.

:class:`IdentityProvider` is an identity provider as an ASGI app (discovery, JWKS,
userinfo, client-credentials token endpoint, key rotation and fault switches), for
tests of apps and verifiers that must run without the network. The pytest fixtures
(``identity_provider``, ``served_identity_provider``, ``mint_token``,
``override_principal``) are loaded by pytest itself through the package's ``pytest11``
entry point; :class:`TokenMinter` and :class:`PrincipalOverride` are their types, for
annotations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgi_auth.testing.provider import DEFAULT_ISSUER, PROVIDER_DEFAULT, IdentityProvider

if TYPE_CHECKING:
    from asgi_auth.testing.pytest_plugin import PrincipalOverride, TokenMinter

__all__ = [
    "DEFAULT_ISSUER",
    "PROVIDER_DEFAULT",
    "IdentityProvider",
    "PrincipalOverride",
    "TokenMinter",
]


def __getattr__(name: str) -> Any:
    # The fixtures' types live with the fixtures, which import pytest: load them only
    # when asked for, so that the provider works where pytest is not installed.
    if name in ("PrincipalOverride", "TokenMinter"):
        from asgi_auth.testing import pytest_plugin

        return getattr(pytest_plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
