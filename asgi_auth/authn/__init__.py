"""Authentication: password hashing (login, refresh, revocation and LDAP are to come)."""

from asgi_auth.authn.passwords import PasswordHasher, Verification

__all__ = ["PasswordHasher", "Verification"]
