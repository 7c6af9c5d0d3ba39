"""Who is calling: the principal a verified token becomes, and the anonymous one.

Both principals are Starlette users (``request.user``: ``is_authenticated``,
``display_name``, ``identity``) and :class:`AuthContext` is Starlette's
``AuthCredentials`` (``request.auth.scopes``), so ``starlette.authentication.requires``
works unchanged behind :class:`~asgi_auth.middleware.AuthMiddleware`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from starlette.authentication import AuthCredentials, BaseUser

from asgi_auth.errors import InvalidToken

__all__ = [
    "ANONYMOUS",
    "AnonymousPrincipal",
    "AuthContext",
    "ClaimMapping",
    "Principal",
    "freeze",
    "get_principal",
    "thaw",
]

_EMPTY: Final[frozenset[str]] = frozenset()
_NO_CLAIMS: Final[Mapping[str, Any]] = MappingProxyType({})
#: Starlette's convention: ``@requires("authenticated")`` admits any authenticated caller.
AUTHENTICATED_SCOPE: Final = "authenticated"


_CONTAINERS: Final = frozenset({dict, list})
_BLANK: Final = frozenset({""})
_AUTHENTICATED_ONLY: Final = (AUTHENTICATED_SCOPE,)


#: Deepest nesting :func:`freeze` takes: far beyond any real claim set, and far below
#: the interpreter's recursion limit.
MAX_DEPTH: Final = 100


def freeze(value: Any, _depth: int = 0) -> Any:
    """A deep read-only copy of decoded JSON: objects become read-only mappings, arrays tuples.

    Principals are cached and shared across requests, so nothing reachable from one
    may be mutable.

    Raises:
        ValueError: objects and arrays nest deeper than :data:`MAX_DEPTH` levels.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return value
    if _depth >= MAX_DEPTH:
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
    inner = _depth + 1
    if kind is dict:
        return MappingProxyType(
            {k: freeze(v, inner) if type(v) in _CONTAINERS else v for k, v in value.items()}
        )
    return tuple(freeze(v, inner) if type(v) in _CONTAINERS else v for v in value)


def freeze_decoded(claims: dict[str, Any]) -> MappingProxyType[str, Any]:
    """:func:`freeze` for a dict just decoded and owned by the caller alone: nested
    values are frozen in place and the dict itself is wrapped, not copied."""
    for name, value in claims.items():
        if type(value) in _CONTAINERS:
            claims[name] = freeze(value)  # replacing values never resizes: safe mid-loop
    return MappingProxyType(claims)


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: plain dicts and lists, ready for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """Where a token carries scopes, roles and permissions.

    Each entry is a claim name, or a dotted path into nested objects (Keycloak's
    ``realm_access.roles``); a name with ``://`` (Auth0's namespaced claims, e.g.
    ``https://example.com/roles``) is always one claim name. A claim may hold a
    space-separated string (RFC 8693 ``scope``) or a list of strings; any other type
    makes the token invalid.

    Attributes:
        scopes: claims read as OAuth scopes (``scope`` and Entra's ``scp``).
        roles: claims read as roles.
        permissions: claims read as permissions (Auth0 RBAC's ``permissions``).
    """

    scopes: tuple[str, ...] = ("scope", "scp")
    roles: tuple[str, ...] = ("roles",)
    permissions: tuple[str, ...] = ("permissions",)
    #: The top-level claims the paths of scopes, roles and permissions can start at (a
    #: dotted path: its whole name, or its first part): a token with none of a kind's
    #: has none of that kind, known without reading its paths.
    roots: tuple[frozenset[str], frozenset[str], frozenset[str]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        roots = []
        for name in ("scopes", "roles", "permissions"):
            paths = getattr(self, name)
            if isinstance(paths, str) or not all(isinstance(p, str) and p for p in paths):
                raise TypeError(f"ClaimMapping.{name} must be a tuple of non-empty claim names")
            object.__setattr__(self, name, tuple(paths))
            # A dotted path is read as a claim of that name first, then walked.
            roots.append(frozenset(paths) | {p.split(".", 1)[0] for p in paths if "://" not in p})
        object.__setattr__(self, "roots", tuple(roots))

    def read(self, claims: Mapping[str, Any], paths: tuple[str, ...]) -> frozenset[str]:
        """Collect the strings found at ``paths`` in ``claims``.

        Raises:
            InvalidToken: a claim at one of the paths has a type other than a string
                or a list of strings.
        """
        found: frozenset[str] = _EMPTY
        for path in paths:  # on every verified token: kept to plain lookups and builtins
            value = claims.get(path)
            if value is None:
                if "." not in path or "://" in path:
                    continue
                value = _walk(claims, path)
                if value is None:
                    continue
            kind = type(value)
            if kind is str:
                # RFC 6749 §3.3: scope tokens are separated by SP (not any whitespace).
                names = frozenset(value.split(" "))
                if "" in names:
                    names = names - _BLANK
            elif isinstance(value, str):  # a str subclass, from a caller's own mapping
                names = frozenset(part for part in value.split(" ") if part)
            elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                names = frozenset(value)
            else:
                raise InvalidToken(f"claim {path!r} is neither a string nor a list of strings")
            found = found | names if found else names
        return found


DEFAULT_MAPPING: Final = ClaimMapping()


def _auth_scopes(scopes: frozenset[str], permissions: frozenset[str]) -> tuple[str, ...]:
    # Computed once per principal: every request with a cached principal reuses it.
    if not permissions:
        return (*sorted(scopes), AUTHENTICATED_SCOPE) if scopes else _AUTHENTICATED_ONLY
    return (*sorted(scopes | permissions), AUTHENTICATED_SCOPE)


def _walk(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True, slots=True, repr=False)
class Principal(BaseUser):
    """An authenticated caller, built from a verified token. Immutable and hashable.

    Two principals are equal when subject, issuer, scopes, roles and permissions are:
    the same ``sub`` from two issuers is two different callers.

    Attributes:
        subject: the token's ``sub``: who the caller is (always a string).
        issuer: the token's ``iss``, if any.
        claims: every verified claim, deeply read-only (objects are read-only
            mappings, arrays tuples; :func:`thaw` gives plain JSON back). Never logged
            by ``repr``.
        scopes: OAuth scopes the token grants.
        roles: roles the token carries (roles from the store are loaded by guards).
        permissions: permissions the token carries.
    """

    subject: str
    issuer: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _NO_CLAIMS, compare=False, hash=False)
    scopes: frozenset[str] = _EMPTY
    roles: frozenset[str] = _EMPTY
    permissions: frozenset[str] = _EMPTY
    # auth_scopes, computed when first asked for: most principals are never asked.
    _auth_scopes: tuple[str, ...] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise TypeError("Principal.subject must be a non-empty string")
        if not isinstance(self.claims, MappingProxyType):
            object.__setattr__(self, "claims", freeze(dict(self.claims)))

    @property
    def auth_scopes(self) -> tuple[str, ...]:
        """Scopes and permissions, sorted, then ``"authenticated"``: what
        ``request.auth.scopes`` lists."""
        value = self._auth_scopes
        if value is None:  # two threads may both compute it: the same tuple either way
            value = _auth_scopes(self.scopes, self.permissions)
            object.__setattr__(self, "_auth_scopes", value)
        return value

    @classmethod
    def from_claims(
        cls, claims: Mapping[str, Any], mapping: ClaimMapping = DEFAULT_MAPPING
    ) -> Principal:
        """Build a principal from verified claims.

        Raises:
            InvalidToken: ``sub`` is missing or not a non-empty string, or a scope,
                role or permission claim has the wrong type.
        """
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("claim 'sub' is missing or not a non-empty string")
        issuer = claims.get("iss")
        if type(claims) is not MappingProxyType:
            claims = freeze(dict(claims))
        # A kind none of whose claims the token has is empty: no path to read.
        in_scopes, in_roles, in_permissions = mapping.roots
        read = mapping.read
        scopes = _EMPTY if in_scopes.isdisjoint(claims) else read(claims, mapping.scopes)
        roles = _EMPTY if in_roles.isdisjoint(claims) else read(claims, mapping.roles)
        permissions = (
            _EMPTY if in_permissions.isdisjoint(claims) else read(claims, mapping.permissions)
        )
        # Built field by field, as the dataclass __init__ would, minus its re-checks:
        # this runs for every token verified.
        principal = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(principal, "subject", subject)
        setattr_(principal, "issuer", issuer if isinstance(issuer, str) else None)
        setattr_(principal, "claims", claims)
        setattr_(principal, "scopes", scopes)
        setattr_(principal, "roles", roles)
        setattr_(principal, "permissions", permissions)
        setattr_(principal, "_auth_scopes", None)
        return principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        """A human name when the token has one (``preferred_username``, ``name``), else ``sub``."""
        for key in ("preferred_username", "name"):
            value = self.claims.get(key)
            if isinstance(value, str) and value:
                return value
        return self.subject

    @property
    def identity(self) -> str:
        return self.subject

    @property
    def token_id(self) -> str | None:
        """The token's ``jti``, if any."""
        value = self.claims.get("jti")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: subject, sorted scopes/roles/permissions and the claims."""
        return {
            "subject": self.subject,
            "scopes": sorted(self.scopes),
            "roles": sorted(self.roles),
            "permissions": sorted(self.permissions),
            "claims": thaw(self.claims),
        }

    def __repr__(self) -> str:
        # Claims stay out of logs: they may carry personal data.
        return (
            f"Principal(subject={self.subject!r}, issuer={self.issuer!r}, "
            f"scopes={sorted(self.scopes)!r}, "
            f"roles={sorted(self.roles)!r}, permissions={sorted(self.permissions)!r})"
        )


@dataclass(frozen=True, slots=True)
class AnonymousPrincipal(BaseUser):
    """The caller who presented no credentials. Use the :data:`ANONYMOUS` singleton."""

    subject: None = None
    claims: Mapping[str, Any] = field(
        default_factory=lambda: _NO_CLAIMS, compare=False, hash=False, repr=False
    )
    scopes: frozenset[str] = field(default=_EMPTY, repr=False)
    roles: frozenset[str] = field(default=_EMPTY, repr=False)
    permissions: frozenset[str] = field(default=_EMPTY, repr=False)
    auth_scopes: tuple[str, ...] = field(default=(), repr=False)

    @property
    def is_authenticated(self) -> bool:
        return False

    @property
    def display_name(self) -> str:
        return ""

    @property
    def identity(self) -> str:
        return ""

    @property
    def issuer(self) -> None:
        return None

    @property
    def token_id(self) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"subject": None, "scopes": [], "roles": [], "permissions": [], "claims": {}}


ANONYMOUS: Final = AnonymousPrincipal()


class AuthContext(AuthCredentials):
    """What ``scope["auth"]`` holds: Starlette's ``AuthCredentials`` plus the principal.

    ``scopes`` lists the token's scopes and permissions, so Starlette's
    ``@requires("read:items")`` is satisfied by either, plus ``"authenticated"`` for
    any authenticated caller (Starlette's ``@requires("authenticated")``).
    """

    __slots__ = ("_scopes", "principal")

    def __init__(self, principal: Principal | AnonymousPrincipal) -> None:
        # AuthCredentials.__init__ without its call: the list is made when first read.
        self.principal = principal

    @property
    def scopes(self) -> list[str]:
        """The scopes Starlette's ``@requires`` checks: a list of this request's own
        (Starlette's type), made from the principal's ``auth_scopes`` when first read."""
        try:
            return self._scopes
        except AttributeError:
            self._scopes: list[str] = list(self.principal.auth_scopes)
            return self._scopes

    @scopes.setter
    def scopes(self, scopes: list[str]) -> None:
        self._scopes = scopes


def get_principal(scope: Mapping[str, Any]) -> Principal | AnonymousPrincipal:
    """The principal :class:`~asgi_auth.middleware.AuthMiddleware` put on an ASGI scope.

    Raises:
        RuntimeError: the scope did not pass through ``AuthMiddleware``.
    """
    user = scope.get("user")
    if isinstance(user, Principal | AnonymousPrincipal):
        return user
    raise RuntimeError("no principal on this scope: is AuthMiddleware installed?")
