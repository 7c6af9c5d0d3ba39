"""The audit trail: every decision is one structured record on its area's logger, with
the caller, the client and the request id, and no secret ever reaches a log record.

The demo app (real SQLite store, real argon2 passwords, refresh rotation, throttling,
revocation) is driven through every event; a handler on the ``asgi_auth`` logger keeps
each record, and the records are searched, in every form they can be written in (the
message, the JSON line, every attribute), for the passwords, tokens, refresh tokens
and the signing secret used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_auth import AuthMiddleware, Key, TokenIssuer
from asgi_auth.audit import AUDIT_FIELDS, JSONFormatter, audit, request_id
from asgi_auth.authn.login import TokenEndpoint
from asgi_auth.authz import Authorizer, Guard, has_role
from asgi_auth.authz.rights import Rights
from asgi_auth.demo import DemoConfig, build_demo, prepare_store
from asgi_auth.errors import StoreUnavailable
from asgi_auth.principal import Principal
from asgi_auth.store import Store
from tests.lifespan import lifespan

SECRET = "audit-trail-signing-secret-of-32-bytes+"
WRONG_PASSWORD = "Tr0ub4dor&3-not-the-password"


class Collector(logging.Handler):
    """Keeps every record of the ``asgi_auth`` loggers, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    # Records carry the audit fields as attributes the LogRecord type does not declare.
    def events(self, name: str) -> list[Any]:
        return [r for r in self.records if getattr(r, "event", None) == name]

    def one(self, name: str) -> Any:
        found = self.events(name)
        assert len(found) == 1, (name, [getattr(r, "event", r.getMessage()) for r in self.records])
        return found[0]

    def renderings(self) -> Iterator[str]:
        """Every way a record can be written out: message, text and JSON lines, attributes."""
        text, as_json = logging.Formatter("%(message)s"), JSONFormatter()
        for record in self.records:
            yield record.getMessage()
            yield text.format(record)
            yield as_json.format(record)
            yield repr(record.__dict__)


@pytest.fixture
def collector() -> Iterator[Collector]:
    handler = Collector()
    root = logging.getLogger("asgi_auth")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass
class Demo:
    http: httpx.AsyncClient
    passwords: dict[str, str]
    ids: dict[str, int]
    issuer: TokenIssuer
    secrets: set[str] = field(default_factory=set)

    def remember(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    def remember_token(self, token: str) -> None:
        # The whole token, and each of its parts that is worth anything alone.
        _header, payload, signature = token.split(".")
        self.remember(token, f"{payload}.{signature}", signature)

    async def login(self, user: str, password: str, **headers: str) -> httpx.Response:
        self.remember(password)
        form = {"grant_type": "password", "username": user, "password": password}
        answer = await self.http.post("/token", data=form, headers=headers)
        if answer.status_code == 200:
            self.remember_token(answer.json()["access_token"])
            self.remember(answer.json()["refresh_token"])
        return answer


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    passwords: dict[str, str] = {}
    async with Store(url) as store:
        ids = await prepare_store(store, seed=True, passwords=passwords)
    config = DemoConfig(Key.from_secret(SECRET), database_url=url)
    app = build_demo(config)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
            state = Demo(http, passwords, ids, config.issuer_obj)
            state.remember(SECRET, *passwords.values())
            yield state


async def test_logins_refreshes_and_logouts_are_audited(demo: Demo, collector: Collector) -> None:
    alice = demo.passwords["alice"]
    answer = await demo.login("alice", alice, **{"X-Request-ID": "req-42"})
    assert answer.status_code == 200
    tokens = answer.json()
    succeeded = collector.one("login.succeeded")
    assert succeeded.name == "asgi_auth.login"
    assert succeeded.levelno == logging.INFO
    assert (
        vars(succeeded).items()
        >= {
            "username": "alice",
            "subject": str(demo.ids["alice"]),
            "client": "203.0.113.7",
            "request_id": "req-42",
            "method": "POST",
            "path": "/token",
            "status": 200,
        }.items()
    )

    assert (await demo.login("alice", WRONG_PASSWORD)).status_code == 400
    failed = collector.one("login.failed")
    assert (failed.username, failed.status, failed.client) == ("alice", 400, "203.0.113.7")
    assert len(failed.request_id) == 32  # none was sent: a new one

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = await demo.http.post("/token", data=refresh)
    assert rotated.status_code == 200
    demo.remember_token(rotated.json()["access_token"])
    demo.remember(rotated.json()["refresh_token"])
    assert collector.one("refresh.succeeded").subject == str(demo.ids["alice"])
    assert (await demo.http.post("/token", data=refresh)).status_code == 400  # reused
    reused = collector.one("refresh.reused")
    assert reused.levelno == logging.WARNING
    assert (reused.status, reused.subject) == (400, str(demo.ids["alice"]))
    assert "reused" in reused.reason
    unknown = {"grant_type": "refresh_token", "refresh_token": "not-a-refresh-token"}
    assert (await demo.http.post("/token", data=unknown)).status_code == 400
    refused = collector.one("refresh.refused")
    assert (refused.subject, refused.reason) == (None, "unknown refresh token")

    access = rotated.json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert (await demo.http.post("/logout", headers=bearer)).status_code == 200
    logout = collector.one("logout.succeeded")
    principal = Principal.from_claims(_claims(access))
    assert (logout.subject, logout.jti) == (principal.subject, principal.token_id)
    assert (await demo.http.get("/me", headers=bearer)).status_code == 401
    revoked = collector.events("token.refused")[-1]
    assert (revoked.kind, revoked.status, revoked.path) == ("RevokedToken", 401, "/me")
    assert (await demo.http.post("/logout")).status_code == 401
    assert collector.one("logout.refused").kind == "NotAuthenticated"


async def test_throttling_is_audited_with_the_wait(demo: Demo, collector: Collector) -> None:
    answers = [(await demo.login("bob", f"{WRONG_PASSWORD}{n}")).status_code for n in range(6)]
    assert answers == [400] * 5 + [429]
    throttled = collector.one("login.throttled")
    assert throttled.levelno == logging.WARNING
    assert throttled.username == "bob"
    assert isinstance(throttled.retry_after, int)
    assert throttled.retry_after > 0
    assert len(collector.events("login.failed")) == 5


async def test_token_refusals_carry_the_reason_and_kind(demo: Demo, collector: Collector) -> None:
    token = demo.issuer.issue(demo.ids["alice"])
    demo.remember_token(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    past = TokenIssuer(Key.from_secret(SECRET), lifetime=1, clock=lambda: time.time() - 60)
    expired = past.issue(1)
    demo.remember_token(forged)
    demo.remember_token(expired)
    for value in (f"Bearer {forged}", f"Bearer {expired}", "Bearer two tokens"):
        await demo.http.get("/me", headers={"Authorization": value})
    refused = collector.events("token.refused")
    assert [(r.kind, r.status) for r in refused] == [("InvalidToken", 401), ("ExpiredToken", 401)]
    assert "signature" in refused[0].reason
    assert refused[0].name == "asgi_auth.authn"
    malformed = collector.one("credentials.malformed")
    assert (malformed.status, malformed.kind) == (400, "MalformedCredentials")


async def test_denials_name_the_policy_and_what_was_missing(
    demo: Demo, collector: Collector
) -> None:
    bob = demo.issuer.issue(demo.ids["bob"])
    demo.remember_token(bob)
    assert (
        await demo.http.get("/admin", headers={"Authorization": f"Bearer {bob}"})
    ).status_code == 403
    assert (await demo.http.get("/admin")).status_code == 401
    forbidden, anonymous = collector.events("access.denied")
    assert forbidden.name == "asgi_auth.authz"
    assert forbidden.subject == str(demo.ids["bob"])
    assert "admin" in forbidden.policy
    assert forbidden.unmet
    assert forbidden.status == 403
    assert (anonymous.subject, anonymous.status) == (None, 401)
    line = json.loads(JSONFormatter().format(forbidden))
    assert line["event"] == "access.denied"
    assert line["policy"] == forbidden.policy
    assert line["unmet"] == forbidden.unmet


async def test_store_outages_are_audited_as_errors(collector: Collector) -> None:
    class Down:
        async def load(self, subject: str) -> Rights:
            raise StoreUnavailable("rights: connection refused")

        async def authenticate(self, username: str, password: str) -> None:
            raise StoreUnavailable("users: connection refused")

    key = Key.from_secret(SECRET)
    issuer = TokenIssuer(key)
    from asgi_auth import JWTVerifier

    guarded = AuthMiddleware(
        Guard(TokenEndpoint(issuer, Down()), has_role("admin")),
        verifier=JWTVerifier(key),
        authorizer=Authorizer(Down()),
    )
    login = TokenEndpoint(issuer, Down())
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://a") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=login), base_url="http://b") as b,
    ):
        token = issuer.issue(7)
        assert (await a.get("/", headers={"Authorization": f"Bearer {token}"})).status_code == 503
        form = {"grant_type": "password", "username": "u", "password": WRONG_PASSWORD}
        assert (await b.post("/token", data=form)).status_code == 503
    unavailable = collector.one("access.unavailable")
    assert (unavailable.levelno, unavailable.subject, unavailable.status) == (
        logging.ERROR,
        "7",
        503,
    )
    down = collector.one("login.unavailable")
    assert down.levelno == logging.ERROR
    assert "connection refused" in down.reason
    assert all(WRONG_PASSWORD not in text for text in collector.renderings())


async def test_no_secret_reaches_any_log_record(demo: Demo, collector: Collector) -> None:
    """Every event above, at DEBUG, with known secrets; none of them is in any record."""
    kept: list[logging.LogRecord] = []
    for step in (
        test_logins_refreshes_and_logouts_are_audited,
        test_token_refusals_carry_the_reason_and_kind,
        test_denials_name_the_policy_and_what_was_missing,
        test_throttling_is_audited_with_the_wait,
    ):
        await step(demo, collector)
        kept += collector.records
        collector.records = []
    # A password in a body that is not a well-formed request: refused, never echoed.
    await demo.http.post("/token", content=f"password={WRONG_PASSWORD}&grant_type=password")
    collector.records = kept + collector.records
    events = {getattr(r, "event", None) for r in collector.records}
    assert {
        "login.succeeded",
        "login.failed",
        "login.throttled",
        "refresh.succeeded",
        "refresh.refused",
        "refresh.reused",
        "logout.succeeded",
        "logout.refused",
        "token.refused",
        "credentials.malformed",
        "access.denied",
    } <= events
    assert len(demo.secrets) >= 10
    leaks = [
        (secret[:12], text[:200])
        for text in collector.renderings()
        for secret in demo.secrets
        if secret in text
    ]
    assert leaks == []


# -- the module's parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"req-42", True),
        (b"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"two words", False),
        (b"line\nbreak", False),
        (b'quote"d', False),
        (b"", False),
        (b"-leading-dash", False),
        ("caf\u00e9".encode(), False),
    ],
)
def test_request_ids_are_kept_only_when_plain(sent: bytes, kept: bool) -> None:
    scope = {"type": "http", "headers": [(b"x-request-id", sent)]}
    got = request_id(scope)
    if kept:
        assert got == sent.decode()
    else:
        assert got != sent.decode("latin-1")
        assert len(got) == 32
        assert got.isalnum()


def test_the_json_formatter_writes_one_line_with_every_field() -> None:
    record = logging.LogRecord(
        "asgi_auth.authz", logging.INFO, "x.py", 1, "denied %s", ("x",), None
    )
    fields: dict[str, object] = {name: f"value of {name}" for name in AUDIT_FIELDS}
    fields["unmet"] = ["has_role('admin')"]
    fields["other"] = object()
    record.__dict__.update(fields)
    line = JSONFormatter().format(record)
    assert "\n" not in line
    document = json.loads(line)
    assert document["message"] == "denied x"
    assert document["logger"] == "asgi_auth.authz"
    assert document["level"] == "INFO"
    assert document["time"].endswith("+00:00")
    assert [k for k in document if k in AUDIT_FIELDS] == list(AUDIT_FIELDS)
    assert document["unmet"] == ["has_role('admin')"]
    assert document["other"].startswith("<object object")


def test_a_hostile_username_cannot_forge_a_json_line() -> None:
    logger = logging.getLogger("asgi_auth.login")
    handler = Collector()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        name = 'mallory"}\n{"event": "login.succeeded", "username": "admin' + "x" * 500
        audit(logger, logging.INFO, "login.failed", "login failed for %r", name, username=name)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    (record,) = handler.records
    assert isinstance(getattr(record, "username", None), str)
    assert len(record.__dict__["username"]) == 150
    line = JSONFormatter().format(record)
    assert line.count("\n") == 0
    assert json.loads(line)["event"] == "login.failed"


def test_audit_costs_nothing_when_the_level_is_off() -> None:
    logger = logging.getLogger("asgi_auth.audit-test-off")
    logger.setLevel(logging.WARNING)
    handler = Collector()
    logger.addHandler(handler)
    try:

        class Exploding(dict[str, Any]):
            def get(self, *args: Any) -> Any:
                raise AssertionError("the scope was read for a record that is off")

        audit(logger, logging.INFO, "x", "x", scope=Exploding())
    finally:
        logger.removeHandler(handler)
    assert handler.records == []


def _claims(token: str) -> dict[str, Any]:
    from asgi_auth.tokens.verifier import read_unverified

    return read_unverified(token)[1]
