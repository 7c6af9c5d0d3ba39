"""Passwords checked against an LDAP directory or Active Directory, with ``ldap3``.

Two ways to find the user: a direct bind with a DN template
(``uid={username},ou=people,dc=example,dc=com``), or search-then-bind: a service
account searches for the user (``(sAMAccountName={username})``,
``(userPrincipalName={username})``, ``(uid={username})``…) and the password is then
checked by binding as the entry found. Group memberships become roles and claims
(permissions) in the token. ``ldap3`` is synchronous: every directory call runs in a
worker thread. The username is escaped for the filter (RFC 4515) and for the DN
(RFC 4514); an empty password is refused before any bind (an anonymous or
unauthenticated bind is not a login). A directory that cannot be reached is a
``ServiceUnavailable`` (503), never a failed login.

The only module that imports ``ldap3``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Final

import anyio.to_thread
import ldap3
from ldap3.core.exceptions import LDAPException, LDAPSocketOpenError, LDAPSocketReceiveError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from asgi_auth.authn.login import AuthenticatedUser
from asgi_auth.errors import ServiceUnavailable

__all__ = ["LDAPAuthenticator"]

logger: Final = logging.getLogger("asgi_auth.ldap")
_UNREACHABLE: Final = (LDAPSocketOpenError, LDAPSocketReceiveError)


class LDAPAuthenticator:
    """A :class:`~asgi_auth.authn.login.PasswordAuthenticator` over a directory.

    Args:
        url: ``ldap://host:389`` or ``ldaps://host:636``.
        user_dn: a DN template for direct binds, with ``{username}``.
        search_base, search_filter: for search-then-bind, the base and a filter with
            ``{username}``; needs ``bind_dn`` and ``bind_password`` (the service
            account) unless the directory allows anonymous searches.
        group_base: where groups live; memberships are found with ``group_filter``
            (``{dn}`` is the user's DN), and named by their ``cn``.
        roles: group name → role name, for the token's ``roles`` claim.
        permissions: group name → permissions, for the token's ``permissions`` claim.
        start_tls: upgrade ``ldap://`` with StartTLS before binding.
        tls: an ``ssl.SSLContext`` for LDAPS/StartTLS (certificate checks on by default).
        timeout: seconds to connect and to wait for each answer.

    Raises:
        ValueError: neither or both of ``user_dn`` and ``search_base`` given, or a
            template without ``{username}``.
    """

    def __init__(
        self,
        url: str,
        *,
        user_dn: str | None = None,
        search_base: str | None = None,
        search_filter: str = "(uid={username})",
        bind_dn: str | None = None,
        bind_password: str | None = None,
        group_base: str | None = None,
        group_filter: str = "(member={dn})",
        roles: Mapping[str, str] | None = None,
        permissions: Mapping[str, Iterable[str]] | None = None,
        start_tls: bool = False,
        tls: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        if (user_dn is None) == (search_base is None):
            raise ValueError("give either user_dn (direct bind) or search_base (search)")
        template = user_dn if user_dn is not None else search_filter
        if "{username}" not in template:
            raise ValueError("the DN template or search filter needs {username}")
        tls_config = ldap3.Tls(validate=ssl.CERT_REQUIRED) if tls is None else None
        if tls is not None:
            tls_config = ldap3.Tls(ssl_context=tls)
        self.server = ldap3.Server(
            url, connect_timeout=timeout, tls=tls_config, get_info=ldap3.NONE
        )
        self.user_dn = user_dn
        self.search_base = search_base
        self.search_filter = search_filter
        self.bind_dn = bind_dn
        self.bind_password = bind_password
        self.group_base = group_base
        self.group_filter = group_filter
        self.roles = dict(roles or {})
        self.permissions = {g: tuple(p) for g, p in (permissions or {}).items()}
        self.start_tls = start_tls
        self.timeout = timeout

    async def authenticate(self, username: str, password: str) -> AuthenticatedUser | None:
        """The user when the directory accepts the password, else None.

        Raises:
            ServiceUnavailable: the directory cannot be reached.
        """
        if not username or not password or len(username) > 256 or "\x00" in password:
            return None  # an empty password would be an unauthenticated bind
        return await anyio.to_thread.run_sync(self._authenticate, username, password)

    # -- in a worker thread ------------------------------------------------------------

    def _connection(self, user: str | None, password: str | None) -> ldap3.Connection:
        connection = ldap3.Connection(
            self.server,
            user=user,
            password=password,
            receive_timeout=max(1, int(self.timeout)),  # ldap3 packs it as an integer
            auto_bind=ldap3.AUTO_BIND_NONE,
            raise_exceptions=False,
        )
        try:
            connection.open()
            if self.start_tls:
                connection.start_tls()
        except BaseException:
            _close(connection)
            raise
        return connection

    def _authenticate(self, username: str, password: str) -> AuthenticatedUser | None:
        try:
            dn = self._find(username)
            if dn is None:
                return None
            connection = self._connection(dn, password)
            try:
                if not connection.bind():
                    return None
                groups = self._groups(connection, dn)
            finally:
                _close(connection)
        except _UNREACHABLE as exc:
            raise ServiceUnavailable(f"directory unreachable: {type(exc).__name__}") from exc
        except LDAPException as exc:
            logger.warning("directory refused the login of %r: %s", username[:150], exc)
            return None
        claims: dict[str, Any] = {"preferred_username": username}
        roles = sorted({self.roles[g] for g in groups if g in self.roles})
        permissions = sorted({p for g in groups for p in self.permissions.get(g, ())})
        if roles:
            claims["roles"] = roles
        if permissions:
            claims["permissions"] = permissions
        return AuthenticatedUser(subject=username, username=username, claims=claims)

    def _find(self, username: str) -> str | None:
        if self.user_dn is not None:
            return self.user_dn.format(username=escape_rdn(username))
        assert self.search_base is not None
        service = self._connection(self.bind_dn, self.bind_password)
        try:
            if self.bind_dn is not None and not service.bind():
                raise ServiceUnavailable("the directory refused the service account")
            found = service.search(
                self.search_base,
                self.search_filter.format(username=escape_filter_chars(username)),
                attributes=[],
                size_limit=2,
            )
            entries = service.entries if found else []
            # Exactly one entry, or no login: an ambiguous name logs nobody in.
            return str(entries[0].entry_dn) if len(entries) == 1 else None
        finally:
            _close(service)

    def _groups(self, connection: ldap3.Connection, dn: str) -> set[str]:
        if self.group_base is None:
            return set()
        found = connection.search(
            self.group_base,
            self.group_filter.format(dn=escape_filter_chars(dn)),
            attributes=["cn"],
        )
        if not found:
            return set()
        return {str(value) for entry in connection.entries for value in entry.cn.values}


def _close(connection: ldap3.Connection) -> None:
    """Unbind and close the socket, whatever state the connection is in."""
    with contextlib.suppress(LDAPException):
        connection.unbind()
    socket = getattr(connection, "socket", None)
    if socket is not None:
        socket.close()
