"""Presets for well-known identity providers: an :class:`OIDCVerifier` that knows
where each provider puts its issuer, audience, scopes, roles and permissions.

Each preset builds the issuer URL from identifiers it validates strictly (a domain,
a region, a tenant, a realm...), so that no value can point the verifier at another
host or path, and passes every other keyword argument through to
:class:`~asgi_auth.tokens.oidc.OIDCVerifier` (``http_client=``, ``leeway=``,
``revocations=``, ``timeout=``...). Options a preset sets itself (its ``audience``,
``mapping`` and, for some, ``extra_issuers``) cannot be passed again: use
:func:`generic` for a provider configured differently. An ``expect=`` given by the
caller is merged with the preset's own (for instance Cognito's ``token_use``).

Example::

    verifier = auth0("example.eu.auth0.com", "https://api.example.com",
                     roles_claim="https://example.com/roles")
    app = AuthMiddleware(app, verifier=verifier)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from asgi_auth.principal import ClaimMapping
from asgi_auth.tokens.oidc import OIDCVerifier

__all__ = ["auth0", "cognito", "entra", "generic", "google", "keycloak", "okta"]

_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: A DNS host name (lower case after normalisation) with an optional port.
_DOMAIN: Final = re.compile(rf"(?P<host>{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>[1-9][0-9]{{0,4}}))?")
#: https://host[:port][/path] with plain path segments (Keycloak before 17 used /auth).
_SERVER_URL: Final = re.compile(
    r"(?P<scheme>https?)://(?P<netloc>[^/?#@\\\s]+)(?P<path>(?:/[A-Za-z0-9._~-]+)*)/?"
)
_REGION: Final = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_POOL_ID: Final = re.compile(r"(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})_[A-Za-z0-9]{1,55}")
_COGNITO_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9_+]{1,128}")
_GUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ENTRA_ALIASES: Final = frozenset({"common", "organizations", "consumers"})
_PATH_SEGMENT: Final = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,255}")
_OKTA_SERVER: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Claim names usable inside a dotted ClaimMapping path (no dots, no whitespace).
_PATH_KEY: Final = re.compile(r"[^.\s]{1,255}")
_NOTHING: Final[tuple[str, ...]] = ()


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _domain(value: object, what: str, example: str) -> str:
    """A host name with an optional port, lower-cased; anything else is a ValueError."""
    if isinstance(value, str) and value.isascii():
        lowered = value.lower()
        found = _DOMAIN.fullmatch(lowered)
        if (
            found is not None
            and len(found["host"]) <= 253
            and (found["port"] is None or int(found["port"]) <= 65_535)
        ):
            return lowered
    hint = ""
    if isinstance(value, str) and "://" in value:
        hint = " (the bare host name, without https:// or a path)"
    raise ValueError(
        f"{what} must be a DNS host name with an optional :port, "
        f"e.g. {example!r}{hint}; got {_show(value)}"
    )


def _identifiers(
    value: object, what: str, pattern: re.Pattern[str] | None = None
) -> tuple[str, ...]:
    """One string or a non-empty collection of non-empty strings, as a tuple."""
    values: tuple[object, ...]
    if isinstance(value, str):
        values = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        values = tuple(value)
    else:
        raise TypeError(f"{what} must be a string or a collection of strings, got {_show(value)}")
    if not values:
        raise ValueError(f"{what} must name at least one value")
    checked: dict[str, None] = {}
    for item in values:
        if not isinstance(item, str) or not item or item != item.strip():
            raise ValueError(f"{what}: {_show(item)} is not a non-empty string")
        if pattern is not None and pattern.fullmatch(item) is None:
            raise ValueError(f"{what}: {_show(item)} is not a valid identifier")
        checked[item] = None
    return tuple(checked)


def _claim_names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"{what} must be a tuple of claim names, not a string: ({value!r},)")
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a tuple of claim names, got {_show(value)}")
    names = tuple(value)
    if not all(isinstance(name, str) and name for name in names):
        raise TypeError(f"{what} must hold non-empty claim names, got {_show(names)}")
    return names


def _build(
    preset: str,
    issuer: str,
    options: Mapping[str, Any],
    *,
    expect: Mapping[str, str | tuple[str, ...]] | None = None,
    **fixed: Any,
) -> OIDCVerifier:
    clash = sorted(options.keys() & {"issuer", *fixed})
    if clash:
        raise TypeError(
            f"{preset}() sets {', '.join(clash)} itself; "
            "use generic() for a provider configured differently"
        )
    merged = dict(options)
    if expect:
        given = merged.pop("expect", None) or {}
        if not isinstance(given, Mapping):
            raise TypeError("expect must be a mapping of claim name to accepted value(s)")
        overlap = sorted(given.keys() & expect.keys())
        if overlap:
            raise ValueError(f"{preset}() sets expect[{', '.join(map(repr, overlap))}] itself")
        merged["expect"] = {**given, **expect}
    return OIDCVerifier(issuer, **fixed, **merged)


def auth0(
    domain: str,
    audience: str | Iterable[str],
    *,
    roles_claim: str | None = None,
    **options: Any,
) -> OIDCVerifier:
    """A verifier for access tokens issued by an Auth0 tenant.

    Claims read:

    - scopes from ``scope`` (a space-separated string);
    - permissions from ``permissions`` (a list), present when the API has RBAC
      enabled with "Add Permissions in the Access Token" (Dashboard > Applications >
      APIs > your API > Settings > RBAC Settings);
    - roles from ``roles_claim`` only when given. Auth0 puts no roles in tokens by
      itself: add them with a post-login Action, under a namespaced claim, e.g.
      ``api.accessToken.setCustomClaim("https://example.com/roles",
      event.authorization.roles)``, and pass that name here (a URL is read as one
      claim name, not as a dotted path).

    Machine-to-machine tokens (client credentials) verify too: their ``sub`` is
    ``"{client_id}@clients"``, ``gty`` is ``"client-credentials"``, and they carry the
    granted ``scope`` and ``permissions``.

    Args:
        domain: the tenant's domain, exactly as in its tokens' ``iss`` (e.g.
            ``"example.eu.auth0.com"``, or a custom domain when tokens are requested
            through it). The issuer is ``https://{domain}/``, with the slash.
        audience: the API identifier(s) (Dashboard > Applications > APIs), which
            clients pass as ``audience`` when requesting tokens. Without one, Auth0
            issues opaque tokens that cannot be verified here.
        roles_claim: the custom claim holding the user's roles.
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier (keys are fetched on first use or :meth:`OIDCVerifier.start`).

    Raises:
        ValueError: ``domain`` is not a host name, or an identifier is empty.
        TypeError: an option the preset sets itself was passed.
    """
    host = _domain(domain, "Auth0 domain", "example.eu.auth0.com")
    audiences = _identifiers(audience, "Auth0 audience (API identifier)")
    roles = _NOTHING
    if roles_claim is not None:
        if (
            not isinstance(roles_claim, str)
            or not roles_claim
            or roles_claim != roles_claim.strip()
        ):
            raise ValueError(f"roles_claim must be a claim name, got {_show(roles_claim)}")
        roles = (roles_claim,)
    mapping = ClaimMapping(scopes=("scope",), roles=roles, permissions=("permissions",))
    return _build("auth0", f"https://{host}/", options, audience=audiences, mapping=mapping)


def keycloak(
    server_url: str,
    realm: str,
    *,
    audience: str | Iterable[str],
    client_id: str | None = None,
    **options: Any,
) -> OIDCVerifier:
    """A verifier for access tokens issued by a Keycloak realm.

    Claims read:

    - scopes from ``scope`` (a space-separated string, client scopes included);
    - roles from ``realm_access.roles`` (realm roles) and, when ``client_id`` is
      given, ``resource_access.{client_id}.roles`` (that client's roles);
    - no permissions (Keycloak's Authorization Services permissions are objects,
      not strings).

    Only tokens whose ``typ`` claim is ``"Bearer"`` are accepted: Keycloak's ID tokens
    (``"ID"``) carry the client id as audience and must not pass as access tokens, and
    DPoP-bound tokens (``"DPoP"``) need a proof of possession this verifier does not
    check.

    Keycloak puts only ``"account"`` in ``aud`` by default. Add an *Audience* mapper
    (Client scopes > a scope assigned to the calling clients > Mappers > By
    configuration > Audience, "Included Client Audience" = the API's client) so that
    the API's client id appears in ``aud``, and pass that id as ``audience``.

    Args:
        server_url: the server's base URL, https (http only on loopback or with
            ``allow_http=True``), with the path prefix if any (``/auth`` before
            Keycloak 17); a trailing slash is dropped. It must match the hostname
            Keycloak writes into ``iss`` (its ``KC_HOSTNAME``).
        realm: the realm name.
        audience: the client id(s) expected in ``aud`` (see the Audience mapper).
        client_id: the client whose client roles become roles (usually the API's
            own client id).
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier; its issuer is ``{server_url}/realms/{realm}``.

    Raises:
        ValueError: ``server_url``, ``realm`` or ``client_id`` is unsafe or
            malformed, or ``server_url`` is plain http elsewhere than loopback.
        TypeError: an option the preset sets itself was passed.
    """
    found = _SERVER_URL.fullmatch(server_url) if isinstance(server_url, str) else None
    if found is None:
        raise ValueError(
            "Keycloak server_url must be https://host[:port][/path] without query, "
            f"fragment or credentials, e.g. 'https://sso.example.com'; got {_show(server_url)}"
        )
    netloc = _domain(found["netloc"], "Keycloak server_url host", "sso.example.com")
    path = found["path"]
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError(f"Keycloak server_url path has a '.' or '..' segment: {_show(server_url)}")
    if not isinstance(realm, str) or _PATH_SEGMENT.fullmatch(realm) is None:
        raise ValueError(
            "Keycloak realm must be a name of letters, digits, '.', '_' and '-' "
            f"(not '.' or '..'); got {_show(realm)}"
        )
    audiences = _identifiers(audience, "Keycloak audience")
    roles: tuple[str, ...] = ("realm_access.roles",)
    if client_id is not None:
        if not isinstance(client_id, str) or _PATH_KEY.fullmatch(client_id) is None:
            raise ValueError(
                "Keycloak client_id must be a non-empty name without dots or spaces "
                f"(it is read through the path resource_access.<client_id>.roles); "
                f"got {_show(client_id)}"
            )
        roles = (*roles, f"resource_access.{client_id}.roles")
    mapping = ClaimMapping(scopes=("scope",), roles=roles, permissions=())
    issuer = f"{found['scheme']}://{netloc}{path}/realms/{realm}"
    return _build(
        "keycloak",
        issuer,
        options,
        expect={"typ": "Bearer"},
        audience=audiences,
        mapping=mapping,
    )


def entra(
    tenant: str,
    audience: str | Iterable[str],
    *,
    accept_v1: bool = True,
    **options: Any,
) -> OIDCVerifier:
    """A verifier for access tokens issued by Microsoft Entra ID (Azure AD) to your API.

    Claims read:

    - scopes from ``scp`` (delegated permissions, space-separated, e.g.
      ``"access_as_user"``);
    - roles from ``roles`` (app roles: assigned to users, or granted to applications
      as application permissions; app-only tokens carry ``roles`` and no ``scp``);
    - no permissions.

    At the provider: register the API (App registrations), expose its scopes
    ("Expose an API") and define its app roles; clients request
    ``api://{app-id}/.default`` or a named scope. Which token version the API gets
    is its manifest's ``accessTokenAcceptedVersion`` (``requestedAccessTokenVersion``),
    not the endpoint the client used: v2 tokens (``ver`` ``"2.0"``) have the issuer
    ``https://login.microsoftonline.com/{tenant}/v2.0`` and the client id as ``aud``;
    v1 tokens (``ver`` ``"1.0"``) have ``https://sts.windows.net/{tenant}/`` and
    usually the Application ID URI as ``aud``. Pass both as ``audience`` unless the
    version is pinned. Tokens for Microsoft Graph are not for you and cannot be
    verified. Sovereign clouds and Entra External ID use other hosts: use
    :func:`generic` there.

    Args:
        tenant: the directory (tenant) ID, a GUID (Entra admin center > Overview, or
            the ``tid`` claim). Tokens and the discovery document name the tenant by
            its GUID, so a domain name cannot be matched. The multi-tenant aliases
            ``common``, ``organizations`` and ``consumers`` are refused: tokens must
            be pinned to one tenant.
        audience: the API's application (client) ID and/or Application ID URI
            (``api://...``).
        accept_v1: also accept v1 tokens (issuer ``https://sts.windows.net/{tenant}/``).
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier; discovery at
        ``https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration``.

    Raises:
        ValueError: ``tenant`` is not a GUID (a multi-tenant alias, a domain name,
            anything else).
        TypeError: an option the preset sets itself was passed.
    """
    if isinstance(tenant, str) and tenant.lower() in _ENTRA_ALIASES:
        raise ValueError(
            f"Entra tenant {tenant!r} is a multi-tenant alias: its tokens can come from any "
            "tenant, so nothing would pin who issued them. Tokens must be pinned to one "
            "tenant: pass your directory (tenant) ID, a GUID"
        )
    if not isinstance(tenant, str) or not tenant.isascii() or not _GUID.fullmatch(tenant.lower()):
        hint = ""
        if isinstance(tenant, str) and "." in tenant and "/" not in tenant:
            hint = (
                ": Entra names the tenant by its ID in the iss of every token and in its "
                "discovery document, even when asked by domain name, so a domain can never "
                "match; find the ID in the Entra admin center (Overview) or a token's 'tid'"
            )
        raise ValueError(
            f"Entra tenant must be a directory (tenant) ID GUID{hint}; got {_show(tenant)}"
        )
    tenant_id = tenant.lower()
    audiences = _identifiers(audience, "Entra audience")
    if not isinstance(accept_v1, bool):
        raise TypeError("accept_v1 must be a bool")
    extra = (f"https://sts.windows.net/{tenant_id}/",) if accept_v1 else ()
    mapping = ClaimMapping(scopes=("scp",), roles=("roles",), permissions=())
    return _build(
        "entra",
        f"https://login.microsoftonline.com/{tenant_id}/v2.0",
        options,
        audience=audiences,
        extra_issuers=extra,
        mapping=mapping,
    )


def cognito(
    region: str,
    user_pool_id: str,
    *,
    client_ids: str | Iterable[str],
    token_use: Literal["access", "id"] = "access",  # noqa: S107 (a token kind, not a secret)
    **options: Any,
) -> OIDCVerifier:
    """A verifier for tokens issued by an Amazon Cognito user pool.

    Claims read:

    - scopes from ``scope`` (``"openid email"``, ``"aws.cognito.signin.user.admin"``,
      or resource-server scopes like ``"orders/read"``);
    - roles from ``cognito:groups`` (the user's groups in the pool);
    - no permissions.

    Access tokens have no ``aud``: they name the app client in ``client_id`` and say
    ``token_use: "access"``, and both are checked. ID tokens name the app client in
    ``aud`` and say ``token_use: "id"``. Either kind is refused where the other is
    expected. Client-credentials tokens (``sub`` is the app client id, scopes of a
    resource server) are access tokens and verify alike: define the resource server
    and its custom scopes in the pool (App integration > Resource servers) and allow
    them on the app client.

    Args:
        region: the pool's AWS region, e.g. ``"eu-west-1"``.
        user_pool_id: the pool id, e.g. ``"eu-west-1_AbC123xyz"`` (its prefix must be
            ``region``).
        client_ids: the app client id(s) whose tokens are accepted.
        token_use: ``"access"`` (APIs) or ``"id"``.
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier; its issuer is
        ``https://cognito-idp.{region}.amazonaws.com/{user_pool_id}``.

    Raises:
        ValueError: a malformed region, pool id or client id, or a pool of another
            region.
        TypeError: an option the preset sets itself was passed.
    """
    if not isinstance(region, str) or _REGION.fullmatch(region) is None:
        raise ValueError(f"Cognito region must look like 'eu-west-1'; got {_show(region)}")
    pool = _POOL_ID.fullmatch(user_pool_id) if isinstance(user_pool_id, str) else None
    if pool is None:
        raise ValueError(
            f"Cognito user_pool_id must look like 'eu-west-1_AbC123xyz'; got {_show(user_pool_id)}"
        )
    if pool["region"] != region:
        raise ValueError(f"user pool {user_pool_id!r} is not in region {region!r}")
    clients = _identifiers(client_ids, "Cognito client_ids", _COGNITO_CLIENT_ID)
    mapping = ClaimMapping(scopes=("scope",), roles=("cognito:groups",), permissions=())
    issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
    kind: str = token_use
    if kind not in ("access", "id"):
        raise ValueError(f"token_use must be 'access' or 'id', got {_show(token_use)}")
    if kind == "access":
        # Access tokens have no aud: the app client is in client_id.
        return _build(
            "cognito",
            issuer,
            options,
            expect={"token_use": "access", "client_id": clients},
            audience=None,
            mapping=mapping,
        )
    return _build(
        "cognito",
        issuer,
        options,
        expect={"token_use": "id"},
        audience=clients,
        mapping=mapping,
    )


def okta(
    domain: str,
    audience: str | Iterable[str],
    *,
    authorization_server: str = "default",
    **options: Any,
) -> OIDCVerifier:
    """A verifier for access tokens issued by an Okta custom authorization server.

    Claims read:

    - scopes from ``scp`` (a list);
    - roles from ``groups``, which Okta does not add by itself: in Security > API >
      Authorization Servers > your server > Claims, add a ``groups`` claim to the
      access token (value type Groups, with a filter such as "Matches regex ``.*``");
    - no permissions.

    Only custom authorization servers (including the one called ``default``) issue
    access tokens meant for your APIs; the org authorization server's tokens
    (issuer ``https://{domain}``) are for Okta's own APIs and must not be validated
    locally.

    Args:
        domain: the Okta org's domain, e.g. ``"example.okta.com"`` or a custom domain.
        audience: the authorization server's audience (``"api://default"`` for the
            ``default`` server), as in Security > API > Authorization Servers.
        authorization_server: the authorization server id (``"default"``, or an id
            like ``"aus1a2b3c4d5E6F7g8h9"``).
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier; its issuer is ``https://{domain}/oauth2/{authorization_server}``.

    Raises:
        ValueError: a malformed domain or authorization server id.
        TypeError: an option the preset sets itself was passed.
    """
    host = _domain(domain, "Okta domain", "example.okta.com")
    if (
        not isinstance(authorization_server, str)
        or _OKTA_SERVER.fullmatch(authorization_server) is None
    ):
        raise ValueError(
            "Okta authorization_server must be an id of letters, digits, '_' and '-' "
            f"(e.g. 'default'); got {_show(authorization_server)}"
        )
    audiences = _identifiers(audience, "Okta audience")
    mapping = ClaimMapping(scopes=("scp",), roles=("groups",), permissions=())
    return _build(
        "okta",
        f"https://{host}/oauth2/{authorization_server}",
        options,
        audience=audiences,
        mapping=mapping,
    )


def google(client_ids: str | Iterable[str], **options: Any) -> OIDCVerifier:
    """A verifier for Google ID tokens ("Sign in with Google", Google Cloud identity tokens).

    Google issues JWT *ID* tokens, not JWT access tokens (its access tokens are opaque
    and can only be checked by calling Google), so this verifies the ID token the
    client obtained, whose ``aud`` is your OAuth client id (or, for identity tokens
    minted by Google Cloud service accounts, the audience they were requested for).
    Both issuers Google uses, ``https://accounts.google.com`` and
    ``accounts.google.com``, are accepted.

    ID tokens carry no scopes, roles or permissions: the principal has none, and
    authorization must come from elsewhere (e.g. roles loaded from a store by
    ``email``/``sub``). To admit only a Google Workspace domain, pass
    ``expect={"hd": "example.com"}``; check ``email_verified`` before trusting
    ``email``.

    Args:
        client_ids: your OAuth 2.0 client id(s) (Google Cloud console > APIs &
            Services > Credentials), e.g. ``"1234-abc.apps.googleusercontent.com"``.
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier.

    Raises:
        ValueError: no client id, or an empty one.
        TypeError: an option the preset sets itself was passed.
    """
    audiences = _identifiers(client_ids, "Google client_ids")
    mapping = ClaimMapping(scopes=(), roles=(), permissions=())
    return _build(
        "google",
        "https://accounts.google.com",
        options,
        audience=audiences,
        extra_issuers=("accounts.google.com",),
        mapping=mapping,
    )


def generic(
    issuer: str,
    audience: str | Iterable[str] | None = None,
    *,
    scopes: Iterable[str] = ("scope", "scp"),
    roles: Iterable[str] = ("roles",),
    permissions: Iterable[str] = ("permissions",),
    **options: Any,
) -> OIDCVerifier:
    """A verifier for any OpenID Connect provider, given where its tokens put things.

    Claims read: scopes from the claims named in ``scopes``, roles from ``roles``,
    permissions from ``permissions``; each is a claim name or a dotted path into
    nested objects (``realm_access.roles``), holding a space-separated string or a
    list of strings.

    At the provider: find its issuer identifier (the ``issuer`` of
    ``{issuer}/.well-known/openid-configuration``, which must equal the tokens'
    ``iss`` exactly) and make it put your API's identifier in the access tokens'
    ``aud``.

    Args:
        issuer: the issuer identifier, an https URL.
        audience: accepted ``aud`` value(s); when unset, tokens naming an audience
            are refused.
        scopes: claims read as scopes.
        roles: claims read as roles.
        permissions: claims read as permissions.
        **options: passed to :class:`~asgi_auth.tokens.oidc.OIDCVerifier`.

    Returns:
        The verifier.

    Raises:
        ValueError: ``issuer`` is not an acceptable URL.
        TypeError: a claim list is a bare string, or ``mapping`` was passed.
    """
    mapping = ClaimMapping(
        scopes=_claim_names(scopes, "scopes"),
        roles=_claim_names(roles, "roles"),
        permissions=_claim_names(permissions, "permissions"),
    )
    audiences = None if audience is None else _identifiers(audience, "audience")
    return _build("generic", issuer, options, audience=audiences, mapping=mapping)
