"""Guards through AuthMiddleware: Guard, @guard and check() on Starlette apps, over HTTP
(httpx.ASGITransport) and WebSocket (a real uvicorn), with fake rights loaders."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, Literal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router, WebSocketRoute, request_response
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from asgi_auth import (
    ANONYMOUS,
    AuthError,
    AuthMiddleware,
    JWTVerifier,
    Key,
    Principal,
    StoreUnavailable,
    TokenIssuer,
)
from asgi_auth.authz import (
    NO_RIGHTS,
    Authorizer,
    CachedRights,
    Guard,
    Policy,
    Rights,
    authenticated,
    by_method,
    check,
    guard,
    has_claim,
    has_role,
    has_scope,
)
from asgi_auth.types import ASGIApp, Message, Receive, Scope, Send
from tests.live import serve

CHALLENGE_401: Final = 'Bearer realm="api"'
CHALLENGE_403: Final = 'Bearer realm="api", error="insufficient_scope"'
AUTHZ_LOGGER: Final = "asgi_auth.authz"
TIMEOUT: Final = 5.0

Form = Literal["Guard", "decorator", "check"]
FORMS: Final[list[Form]] = ["Guard", "decorator", "check"]
LOGGING_FORMS: Final[list[Form]] = ["Guard", "decorator"]  # check() leaves errors to the caller


# --- fixtures, loaders, apps ---------------------------------------------------------


@pytest.fixture
def key() -> Key:
    return Key.generate("HS256")


@pytest.fixture
def issuer(key: Key) -> TokenIssuer:
    return TokenIssuer(key)


@pytest.fixture
def verifier(key: Key) -> JWTVerifier:
    return JWTVerifier(key)


class FakeLoader:
    """A rights store in memory that counts its queries; ``down`` makes it unreachable."""

    def __init__(
        self,
        rights: Mapping[str, Rights] | None = None,
        *,
        down: bool = False,
        fail_for: Collection[str] = (),
    ) -> None:
        self.rights = dict(rights or {})
        self.down = down
        self.fail_for = frozenset(fail_for)
        self.calls: list[str] = []

    async def load(self, subject: str) -> Rights:
        self.calls.append(subject)
        if self.down or subject in self.fail_for:
            raise StoreUnavailable(f"rights store unreachable for {subject}")
        return self.rights.get(subject, NO_RIGHTS)


def rights(*, roles: Collection[str] = (), claims: Collection[str] = ()) -> Rights:
    return Rights(roles=frozenset(roles), claims=frozenset(claims))


def make_token(
    issuer: TokenIssuer,
    subject: str = "7",
    *,
    roles: Collection[str] = (),
    permissions: Collection[str] = (),
    scope: str | None = None,
) -> str:
    claims: dict[str, Any] = {"roles": list(roles), "permissions": list(permissions)}
    if scope is not None:
        claims["scope"] = scope
    return issuer.issue(subject, claims=claims)


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def ok(request: Request) -> Response:
    return PlainTextResponse(f"ok {request.method} {request.user.identity}")


def as_response(error: AuthError) -> Response:
    """What a handler using check() does with a refusal."""
    denial = Authorizer().responder.denial(error)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in denial.headers}
    return Response(denial.body, denial.status, headers=headers)


def checked(
    policy: Policy,
    endpoint: Callable[[Request], Awaitable[Response]] = ok,
    *,
    authorizer: Authorizer | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        try:
            await check(request.scope, policy, authorizer=authorizer)
        except AuthError as error:
            return as_response(error)
        return await endpoint(request)

    return handler


def protected_route(
    form: Form,
    policy: Policy,
    path: str = "/items",
    *,
    methods: list[str] | None = None,
    authorizer: Authorizer | None = None,
) -> Route:
    if form == "Guard":
        app = Guard(request_response(ok), policy, authorizer=authorizer)
        return Route(path, app, methods=methods)
    if form == "decorator":
        return Route(path, guard(policy, authorizer=authorizer)(ok), methods=methods)
    return Route(path, checked(policy, authorizer=authorizer), methods=methods)


def protected_app(
    verifier: JWTVerifier,
    form: Form,
    policy: Policy,
    *,
    authorizer: Authorizer | None = None,
    guard_authorizer: Authorizer | None = None,
    methods: list[str] | None = None,
    realm: str = "api",
) -> ASGIApp:
    route = protected_route(form, policy, methods=methods, authorizer=guard_authorizer)
    return AuthMiddleware(
        Starlette(routes=[route]), verifier=verifier, authorizer=authorizer, realm=realm
    )


async def request(
    app: ASGIApp, token: str | None = None, method: str = "GET", path: str = "/items"
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with (
        asyncio.timeout(TIMEOUT),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        return await client.request(method, path, headers=bearer(token))


def challenges(response: httpx.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


def error_code(response: httpx.Response) -> str:
    body = json.loads(response.content)
    assert isinstance(body, dict)
    code = body["error"]
    assert isinstance(code, str)
    return code


# --- the semantics, in every form ----------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_anonymous_is_401_with_a_bare_challenge(form: Form, verifier: JWTVerifier) -> None:
    loader = FakeLoader({"7": rights(roles={"admin"})})
    for policy in (has_role("admin"), authenticated, has_scope("items:write")):
        app = protected_app(verifier, form, policy, authorizer=Authorizer(loader))
        response = await request(app)
        assert response.status_code == 401, policy
        assert challenges(response) == [CHALLENGE_401], policy
        assert error_code(response) == "unauthorized"
        assert response.headers["cache-control"] == "no-store"
    assert loader.calls == []  # an anonymous caller has no store rights to look up


@pytest.mark.parametrize("form", FORMS)
async def test_authenticated_but_refused_is_403_insufficient_scope(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader({"7": rights(roles={"user"}, claims={"can_read"})})
    app = protected_app(verifier, form, has_role("admin"), authorizer=Authorizer(loader))
    response = await request(app, make_token(issuer, roles=["editor"], scope="items:read"))
    assert response.status_code == 403
    assert challenges(response) == [CHALLENGE_403]
    assert error_code(response) == "insufficient_scope"
    # The precise reason is for the log only.
    assert "admin" not in response.text
    assert loader.calls == ["7"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "policy",
    [
        has_scope("items:write"),
        has_scope("items:write") & authenticated,
        has_scope("items:write") | has_role("admin"),
    ],
    ids=repr,
)
async def test_a_refused_scope_is_named_in_the_challenge(
    form: Form, policy: Policy, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    app = protected_app(verifier, form, policy, authorizer=Authorizer(FakeLoader()))
    response = await request(app, make_token(issuer, scope="items:read"))
    assert response.status_code == 403
    assert challenges(response) == [CHALLENGE_403 + ', scope="items:write"']


@pytest.mark.parametrize("form", FORMS)
async def test_only_the_unmet_scopes_are_named(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    policy = has_scope("items:read") & has_scope("items:write") & has_scope("admin")
    app = protected_app(verifier, form, policy)
    response = await request(app, make_token(issuer, scope="items:read"))
    assert response.status_code == 403
    assert challenges(response) == [CHALLENGE_403 + ', scope="items:write admin"']


@pytest.mark.parametrize("form", FORMS)
async def test_allowed_is_200(form: Form, issuer: TokenIssuer, verifier: JWTVerifier) -> None:
    loader = FakeLoader({"7": rights(claims={"can_read"})})
    policy = has_claim("can_read") & has_scope("items:read")
    app = protected_app(verifier, form, policy, authorizer=Authorizer(loader))
    response = await request(app, make_token(issuer, scope="items:read"))
    assert response.status_code == 200
    assert response.text == "ok GET 7"
    assert "www-authenticate" not in response.headers
    assert loader.calls == ["7"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("cached", [False, True], ids=["bare", "cached"])
async def test_store_down_is_503_never_a_decision(
    form: Form, cached: bool, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader(down=True)
    source = CachedRights(loader) if cached else loader
    authorizer = Authorizer(source)
    for policy in (has_role("admin"), ~has_role("banned"), has_claim("c") | has_role("r")):
        app = protected_app(verifier, form, policy, authorizer=authorizer)
        response = await request(app, make_token(issuer))
        assert response.status_code == 503, policy
        assert "www-authenticate" not in response.headers
        assert error_code(response) == "temporarily_unavailable"
    assert loader.calls == ["7", "7", "7"]


@pytest.mark.parametrize("form", FORMS)
async def test_store_down_does_not_matter_when_the_token_settles_it(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader(down=True)
    policy = has_scope("items:read") | has_role("admin")
    app = protected_app(verifier, form, policy, authorizer=Authorizer(loader))
    allowed = await request(app, make_token(issuer, scope="items:read"))
    anonymous = await request(app)
    assert allowed.status_code == 200
    assert anonymous.status_code == 401
    assert loader.calls == []


# --- where roles and claims come from ------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_source_token_never_asks_the_store(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader({"7": rights(roles={"admin"}, claims={"can_read"})})
    authorizer = Authorizer(loader, source="token")
    assert authorizer.source == "token"
    role_app = protected_app(verifier, form, has_role("admin"), authorizer=authorizer)
    claim_app = protected_app(verifier, form, has_claim("can_read"), authorizer=authorizer)
    assert (await request(role_app, make_token(issuer))).status_code == 403
    assert (await request(role_app, make_token(issuer, roles=["admin"]))).status_code == 200
    assert (await request(claim_app, make_token(issuer))).status_code == 403
    assert (await request(claim_app, make_token(issuer, permissions=["can_read"]))).status_code == (
        200
    )
    assert loader.calls == []


@pytest.mark.parametrize("form", FORMS)
async def test_source_store_ignores_token_roles_and_permissions(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader(
        {
            "7": rights(roles={"user"}, claims={"can_list"}),
            "8": rights(roles={"admin"}, claims={"can_read"}),
        }
    )
    authorizer = Authorizer(loader, source="store")
    role_app = protected_app(verifier, form, has_role("admin"), authorizer=authorizer)
    claim_app = protected_app(verifier, form, has_claim("can_read"), authorizer=authorizer)
    forged = make_token(issuer, "7", roles=["admin"], permissions=["can_read"])
    assert (await request(role_app, forged)).status_code == 403
    assert (await request(claim_app, forged)).status_code == 403
    plain = make_token(issuer, "8")
    assert (await request(role_app, plain)).status_code == 200
    assert (await request(claim_app, plain)).status_code == 200
    assert loader.calls == ["7", "7", "8", "8"]


@pytest.mark.parametrize("form", FORMS)
async def test_source_store_still_reads_scopes_from_the_token(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader()
    authorizer = Authorizer(loader, source="store")
    app = protected_app(verifier, form, has_scope("items:read"), authorizer=authorizer)
    assert (await request(app, make_token(issuer, scope="items:read"))).status_code == 200
    assert (await request(app, make_token(issuer, scope="items:list"))).status_code == 403
    assert loader.calls == []


@pytest.mark.parametrize("form", FORMS)
async def test_source_both_is_the_union(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader(
        {"7": rights(claims={"can_publish"}), "8": rights(), "6": rights(roles={"editor"})}
    )
    authorizer = Authorizer(loader, source="both")
    policy = has_role("editor") & has_claim("can_publish")
    app = protected_app(verifier, form, policy, authorizer=authorizer)
    assert (await request(app, make_token(issuer, "7", roles=["editor"]))).status_code == 200
    assert (await request(app, make_token(issuer, "7"))).status_code == 403
    assert (await request(app, make_token(issuer, "8", roles=["editor"]))).status_code == 403
    union = make_token(issuer, "8", roles=["editor"], permissions=["can_publish"])
    assert (await request(app, union)).status_code == 200
    other_way = make_token(issuer, "6", permissions=["can_publish"])
    assert (await request(app, other_way)).status_code == 200
    # A role missing from the token may still be in the store: "7" without editor is
    # looked up; the union token settles everything itself.
    assert loader.calls == ["7", "7", "8", "6"]


def test_authorizer_defaults_and_validation() -> None:
    loader = FakeLoader()
    assert Authorizer().source == "token"
    assert Authorizer().loader is None
    assert Authorizer(loader).source == "both"
    assert Authorizer(loader).loader is loader
    assert Authorizer(loader, source="token").loader is None
    for source in ("store", "both"):
        with pytest.raises(ValueError, match="needs a loader"):
            Authorizer(source=source)
    with pytest.raises(ValueError, match="source"):
        Authorizer(loader, source="database")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="realm"):
        Authorizer(realm='a"b')


# --- lazy loading --------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_a_policy_the_token_settles_costs_no_query(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader({"7": rights(roles={"admin"})})
    authorizer = Authorizer(loader)
    cases = [
        (has_scope("items:read") | has_role("admin"), make_token(issuer, scope="items:read"), 200),
        (has_scope("items:write") & has_role("admin"), make_token(issuer, scope="a"), 403),
        (has_role("admin"), make_token(issuer, roles=["admin"]), 200),
        (has_role("admin"), None, 401),
        (has_claim("can_read") | authenticated, None, 401),
        (has_scope("items:read"), make_token(issuer, scope="items:read"), 200),
    ]
    for policy, token, status in cases:
        app = protected_app(verifier, form, policy, authorizer=authorizer)
        assert (await request(app, token)).status_code == status, policy
    assert loader.calls == []


def two_guard_app(verifier: JWTVerifier, authorizer: Authorizer) -> ASGIApp:
    """An outer Guard on a Mount and an inner @guard, plus a check() in the handler: all
    three need the store."""

    @guard(has_claim("can_read"))
    async def records(request: Request) -> Response:
        await check(request.scope, has_role("staff") & has_claim("can_read"))
        return PlainTextResponse("records")

    inner = Router(routes=[Route("/records", records)])
    app = Starlette(routes=[Mount("/admin", app=Guard(inner, has_role("staff")))])
    return AuthMiddleware(app, verifier=verifier, authorizer=authorizer)


async def test_two_guards_load_the_store_once_per_request(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader({"7": rights(roles={"staff"}, claims={"can_read"})})
    app = two_guard_app(verifier, Authorizer(loader))
    token = make_token(issuer)
    first = await request(app, token, path="/admin/records")
    assert first.status_code == 200
    assert first.text == "records"
    assert loader.calls == ["7"]
    second = await request(app, token, path="/admin/records")
    assert second.status_code == 200
    assert loader.calls == ["7", "7"]  # the memo lives on one request's scope only


async def test_two_guards_inner_refusal_after_one_load(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader({"7": rights(roles={"staff"})})
    app = two_guard_app(verifier, Authorizer(loader))
    response = await request(app, make_token(issuer), path="/admin/records")
    assert response.status_code == 403
    assert challenges(response) == [CHALLENGE_403]
    assert loader.calls == ["7"]


async def test_cached_rights_query_once_per_subject_across_requests(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader(
        {"7": rights(roles={"staff"}, claims={"can_read"}), "8": rights(roles={"staff"})}
    )
    app = two_guard_app(verifier, Authorizer(CachedRights(loader)))
    seven = make_token(issuer, "7")
    statuses = [(await request(app, seven, path="/admin/records")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    # A fresh token for the same subject still hits the cache.
    again = await request(app, make_token(issuer, "7", scope="x"), path="/admin/records")
    assert again.status_code == 200
    assert loader.calls == ["7"]
    eight = make_token(issuer, "8")
    assert (await request(app, eight, path="/admin/records")).status_code == 403
    assert (await request(app, eight, path="/admin/records")).status_code == 403
    assert loader.calls == ["7", "8"]


# --- method-aware policies -----------------------------------------------------------

RECORDS_POLICY: Final = by_method(
    GET=has_claim("can_read"), POST=has_claim("can_write"), DELETE=has_claim("can_delete")
)
ALL_METHODS: Final = ["GET", "POST", "PUT", "DELETE"]


@pytest.mark.parametrize("form", FORMS)
async def test_may_delete_but_not_create_or_update(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader(
        {"7": rights(claims={"can_read", "can_delete"}), "8": rights(claims={"can_write"})}
    )
    route = protected_route(form, RECORDS_POLICY, "/records", methods=ALL_METHODS)
    app = AuthMiddleware(
        Starlette(routes=[route]), verifier=verifier, authorizer=Authorizer(loader)
    )
    deleter = make_token(issuer, "7")
    writer = make_token(issuer, "8")
    got = {
        method: (await request(app, deleter, method, "/records")).status_code
        for method in ("GET", "HEAD", "DELETE", "POST", "PUT")
    }
    assert got == {"GET": 200, "HEAD": 200, "DELETE": 200, "POST": 403, "PUT": 403}
    assert (await request(app, writer, "POST", "/records")).status_code == 200
    assert (await request(app, writer, "GET", "/records")).status_code == 403
    assert (await request(app, writer, "PUT", "/records")).status_code == 403
    refused_put = await request(app, deleter, "PUT", "/records")
    assert challenges(refused_put) == [CHALLENGE_403]
    assert (await request(app, None, "DELETE", "/records")).status_code == 401
    # PUT has no rule: refused without asking the store.
    assert loader.calls.count("7") == 4
    assert loader.calls.count("8") == 2


# --- the decorator on other endpoints ------------------------------------------------


class Records(HTTPEndpoint):
    @guard(has_claim("can_read"))
    async def get(self, request: Request) -> Response:
        return PlainTextResponse(f"read by {request.user.identity}")

    @guard(has_claim("can_write"))
    async def post(self, request: Request) -> Response:
        return PlainTextResponse("written")


async def test_http_endpoint_methods_are_guarded(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    app = AuthMiddleware(Starlette(routes=[Route("/records", Records)]), verifier=verifier)
    reader = make_token(issuer, permissions=["can_read"])
    got = await request(app, reader, path="/records")
    assert got.status_code == 200
    assert got.text == "read by 7"
    posted = await request(app, reader, "POST", "/records")
    assert posted.status_code == 403
    assert challenges(posted) == [CHALLENGE_403]
    anonymous = await request(app, None, path="/records")
    assert anonymous.status_code == 401
    assert challenges(anonymous) == [CHALLENGE_401]
    writer = make_token(issuer, permissions=["can_write"])
    assert (await request(app, writer, "POST", "/records")).status_code == 200
    assert Records.get.__name__ == "get"  # functools.wraps kept the endpoint's identity


def test_a_sync_endpoint_is_refused_at_decoration() -> None:
    def sync_endpoint(request: Request) -> Response:
        return PlainTextResponse("never")

    with pytest.raises(TypeError, match="async"):
        guard(authenticated)(sync_endpoint)  # type: ignore[arg-type]


def test_a_non_policy_is_refused() -> None:
    with pytest.raises(TypeError, match="policy"):
        guard("admin")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy"):
        Guard(request_response(ok), "admin")  # type: ignore[arg-type]


def http_scope(principal: object) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/items",
        "query_string": b"",
        "headers": [],
        "user": principal,
    }


async def test_an_endpoint_without_a_request_is_refused_when_called() -> None:
    calls: list[int] = []

    @guard(authenticated)
    async def no_request(number: int, *, label: str = "") -> str:
        calls.append(number)
        return label

    with pytest.raises(TypeError, match="no Request"):
        await no_request(1, label="x")
    assert calls == []


async def test_the_request_is_found_by_type_not_by_name() -> None:
    seen: list[str] = []

    @guard(has_role("admin"))
    async def endpoint(note: str, *, incoming: Request) -> Response:
        seen.append(note)
        return PlainTextResponse("ok")

    admin = Principal(subject="7", roles=frozenset({"admin"}))
    allowed = await endpoint("a", incoming=Request(http_scope(admin)))
    refused = await endpoint("b", incoming=Request(http_scope(Principal(subject="8"))))
    anonymous = await endpoint("c", incoming=Request(http_scope(ANONYMOUS)))
    assert allowed is not None
    assert allowed.status_code == 200
    assert refused is not None
    assert refused.status_code == 403
    assert anonymous is not None
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == CHALLENGE_401
    assert seen == ["a"]


async def test_a_guard_outside_the_middleware_fails_loudly() -> None:
    @guard(authenticated)
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    with pytest.raises(RuntimeError, match="AuthMiddleware"):
        await endpoint(Request(http_scope(None)))


# --- which authorizer decides --------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_the_guards_authorizer_overrides_the_middlewares(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    middleware_loader = FakeLoader({"7": rights(roles={"admin"})})
    guard_loader = FakeLoader({"7": rights(roles={"user"})})
    token = make_token(issuer)
    token_only = protected_app(
        verifier,
        form,
        has_role("admin"),
        authorizer=Authorizer(middleware_loader),
        guard_authorizer=Authorizer(),
    )
    assert (await request(token_only, token)).status_code == 403
    own_store = protected_app(
        verifier,
        form,
        has_role("admin"),
        authorizer=Authorizer(middleware_loader),
        guard_authorizer=Authorizer(guard_loader),
    )
    assert (await request(own_store, token)).status_code == 403
    assert middleware_loader.calls == []
    assert guard_loader.calls == ["7"]
    # And the other way round: a store at the guard, none at the middleware.
    granting = protected_app(
        verifier,
        form,
        has_role("admin"),
        guard_authorizer=Authorizer(FakeLoader({"7": rights(roles={"admin"})})),
    )
    assert (await request(granting, token)).status_code == 200


@pytest.mark.parametrize("form", FORMS)
async def test_without_any_authorizer_only_the_token_counts(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    app = protected_app(verifier, form, has_role("admin") & has_claim("can_read"))
    both = make_token(issuer, roles=["admin"], permissions=["can_read"])
    assert (await request(app, both)).status_code == 200
    assert (await request(app, make_token(issuer, roles=["admin"]))).status_code == 403
    assert (await request(app, make_token(issuer, permissions=["can_read"]))).status_code == 403
    assert (await request(app)).status_code == 401


@pytest.mark.parametrize("form", LOGGING_FORMS)
async def test_the_authorizers_realm_is_in_the_challenge(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    at_guard = protected_app(
        verifier, form, has_role("admin"), guard_authorizer=Authorizer(realm="shop")
    )
    at_middleware = protected_app(
        verifier, form, has_role("admin"), authorizer=Authorizer(realm="shop")
    )
    for app in (at_guard, at_middleware):
        assert challenges(await request(app)) == ['Bearer realm="shop"']
        refused = await request(app, make_token(issuer))
        assert challenges(refused) == ['Bearer realm="shop", error="insufficient_scope"']


@pytest.mark.parametrize("form", LOGGING_FORMS)
async def test_the_middlewares_realm_reaches_guards_without_an_authorizer(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    """AuthMiddleware(realm=...) is documented as "the realm of every challenge"."""
    app = protected_app(verifier, form, has_role("admin"), realm="shop")
    invalid = await request(app, "not.a.token")
    assert challenges(invalid) == ['Bearer realm="shop", error="invalid_token"']
    anonymous = await request(app)
    assert anonymous.status_code == 401
    assert challenges(anonymous) == ['Bearer realm="shop"']


async def test_a_guard_with_its_own_loader_does_not_reuse_another_loaders_rights(
    issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    """The per-request memo must not carry one store's answer into a guard that was
    given a different store."""
    middleware_loader = FakeLoader({"7": rights(roles={"staff", "admin"})})
    guard_loader = FakeLoader({"7": rights(roles={"staff"})})

    @guard(has_role("admin"), authorizer=Authorizer(guard_loader))
    async def records(request: Request) -> Response:
        return PlainTextResponse("records")

    inner = Router(routes=[Route("/records", records)])
    app = AuthMiddleware(
        Starlette(routes=[Mount("/admin", app=Guard(inner, has_role("staff")))]),
        verifier=verifier,
        authorizer=Authorizer(middleware_loader),
    )
    response = await request(app, make_token(issuer), path="/admin/records")
    assert middleware_loader.calls == ["7"]
    assert guard_loader.calls == ["7"]
    assert response.status_code == 403


# --- logging -------------------------------------------------------------------------


@pytest.mark.parametrize("form", LOGGING_FORMS)
async def test_refusals_are_logged_with_the_policy_and_never_the_token(
    form: Form, issuer: TokenIssuer, verifier: JWTVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    loader = FakeLoader({"7": rights(roles={"user"})}, fail_for={"9"})
    policy = has_role("admin") & has_scope("items:write")
    app = protected_app(verifier, form, policy, authorizer=Authorizer(loader))
    token = make_token(issuer, roles=["user"], permissions=["p"], scope="items:write")
    down = make_token(issuer, "9", scope="items:write")
    with caplog.at_level(logging.DEBUG):
        assert (await request(app, token)).status_code == 403
        assert (await request(app)).status_code == 401
        assert (await request(app, down)).status_code == 503
    records = [r for r in caplog.records if r.name == AUTHZ_LOGGER]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO, logging.ERROR]
    denied, anonymous, unavailable = (r.getMessage() for r in records)
    assert denied.startswith("authorization denied: ")
    assert repr(policy) in denied
    assert "unmet has_role('admin')" in denied
    assert "subject='7'" in denied
    assert anonymous.startswith("authorization denied: ")
    assert repr(policy) in anonymous
    assert unavailable.startswith("authorization unavailable: ")
    assert "9" in unavailable
    assert all(getattr(r, "path", None) == "/items" for r in records)
    for secret in (token, token.rsplit(".", 1)[1], down, down.rsplit(".", 1)[1]):
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in repr(record.__dict__)


async def test_allowed_requests_are_not_logged_as_refusals(
    issuer: TokenIssuer, verifier: JWTVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    app = protected_app(verifier, "Guard", has_role("admin"))
    with caplog.at_level(logging.DEBUG, logger=AUTHZ_LOGGER):
        assert (await request(app, make_token(issuer, roles=["admin"]))).status_code == 200
    assert [r for r in caplog.records if r.name == AUTHZ_LOGGER] == []


# --- store outage and recovery -------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("cached", [False, True], ids=["bare", "cached"])
async def test_a_store_outage_then_recovery(
    form: Form, cached: bool, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    loader = FakeLoader({"7": rights(roles={"admin"})}, down=True)
    authorizer = Authorizer(CachedRights(loader) if cached else loader)
    app = protected_app(verifier, form, has_role("admin"), authorizer=authorizer)
    token = make_token(issuer)
    assert (await request(app, token)).status_code == 503
    assert (await request(app, token)).status_code == 503
    loader.down = False
    recovered = await request(app, token)
    assert recovered.status_code == 200
    assert recovered.text == "ok GET 7"
    assert loader.calls == ["7", "7", "7"]
    assert (await request(app, token)).status_code == 200
    assert len(loader.calls) == (3 if cached else 4)


# --- WebSocket -----------------------------------------------------------------------

WsForm = Literal["decorator", "Guard"]
WS_FORMS: Final[list[WsForm]] = ["decorator", "Guard"]


def ws_app(form: WsForm, policy: Policy, accepted: list[str]) -> ASGIApp:
    """A socket that records who got past the guard, accepts and says hello."""
    if form == "decorator":

        @guard(policy)
        async def socket(websocket: WebSocket) -> None:
            accepted.append(str(websocket.user.identity))
            await websocket.accept()
            await websocket.send_text("hello")
            await websocket.close()

        return Starlette(routes=[WebSocketRoute("/ws", socket)])

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        accepted.append(str(scope["user"].identity))
        message = await receive()
        assert message["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        await send({"type": "websocket.close", "code": 1000})

    return Guard(raw, policy)


def ws_url(base: str) -> str:
    return "ws" + base.removeprefix("http") + "/ws"


async def receive_text(url: str, token: str) -> str | bytes:
    async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=bearer(token)) as ws:
        return await ws.recv()


async def refused(url: str, token: str | None) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=bearer(token)) as ws:
            await ws.recv()
    return info.value


@pytest.mark.parametrize("form", WS_FORMS)
async def test_websocket_handshakes_are_decided_before_accept(
    form: WsForm, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    accepted: list[str] = []
    loader = FakeLoader({"8": rights(roles={"admin"})}, fail_for={"9"})
    app = AuthMiddleware(
        ws_app(form, has_role("admin"), accepted),
        verifier=verifier,
        authorizer=Authorizer(loader),
    )
    with serve(app) as base:
        url = ws_url(base)
        by_token = await receive_text(url, make_token(issuer, "7", roles=["admin"]))
        by_store = await receive_text(url, make_token(issuer, "8"))
        forbidden = await refused(url, make_token(issuer, "10", roles=["user"]))
        anonymous = await refused(url, None)
        unavailable = await refused(url, make_token(issuer, "9"))
    assert by_token == "hello"
    assert by_store == "hello"
    assert forbidden.response.status_code == 403
    assert forbidden.response.headers["WWW-Authenticate"] == CHALLENGE_403
    assert json.loads(bytes(forbidden.response.body))["error"] == "insufficient_scope"
    assert anonymous.response.status_code == 401
    assert anonymous.response.headers["WWW-Authenticate"] == CHALLENGE_401
    assert unavailable.response.status_code == 503
    assert "WWW-Authenticate" not in unavailable.response.headers
    # Only the allowed callers ever reached the code that accepts.
    assert accepted == ["7", "8"]
    assert loader.calls == ["8", "10", "9"]


class FakeConnection:
    """receive/send for a WebSocket handshake that is never accepted."""

    def __init__(self) -> None:
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        if self.received > 1:
            raise AssertionError("receive called after the handshake message")
        return {"type": "websocket.connect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def ws_scope(token: str | None) -> Scope:
    headers = [(b"host", b"test")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "subprotocols": [],
    }


@pytest.mark.parametrize("form", WS_FORMS)
@pytest.mark.parametrize(
    ("subject", "roles", "code"),
    [("10", ["user"], 1008), (None, [], 1008), ("9", [], 1013)],
    ids=["forbidden", "anonymous", "store-down"],
)
async def test_without_the_extension_a_refusal_is_one_close(
    form: WsForm,
    subject: str | None,
    roles: list[str],
    code: int,
    issuer: TokenIssuer,
    verifier: JWTVerifier,
) -> None:
    accepted: list[str] = []
    loader = FakeLoader(fail_for={"9"})
    app = AuthMiddleware(
        ws_app(form, has_role("admin"), accepted),
        verifier=verifier,
        authorizer=Authorizer(loader),
    )
    token = None if subject is None else make_token(issuer, subject, roles=roles)
    conn = FakeConnection()
    await app(ws_scope(token), conn.receive, conn.send)
    assert conn.sent == [{"type": "websocket.close", "code": code, "reason": ""}]
    assert conn.received == 1
    assert accepted == []


@pytest.mark.parametrize("form", WS_FORMS)
async def test_without_the_extension_an_allowed_socket_is_accepted(
    form: WsForm, issuer: TokenIssuer, verifier: JWTVerifier
) -> None:
    accepted: list[str] = []
    app = AuthMiddleware(ws_app(form, has_role("admin"), accepted), verifier=verifier)
    conn = FakeConnection()
    await app(ws_scope(make_token(issuer, roles=["admin"])), conn.receive, conn.send)
    assert accepted == ["7"]
    assert [m["type"] for m in conn.sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]


async def test_guard_passes_other_scope_types_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    await Guard(app, has_role("admin"))({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]
