"""Load and soak: the demo API under a steady mixed load, WebSockets alongside; no errors
allowed, and the server's memory must stay flat.

Run ``python -m benchmarks.soak --duration SECONDS [--connections N] [--json PATH]``
(needs Debian's ``wrk``). Exit status 0 when the verdict holds, 1 when it does not.

The server is the demo command itself (``python -m asgi_auth.cli demo``: uvicorn, one
worker, uvloop and httptools chosen by uvicorn's ``auto`` and checked in the process's
memory maps) on 127.0.0.1, with a fresh SQLite store in a temporary directory, seeded by
the demo's own ``prepare_store(seed=True)`` (alice: admin, every claim; bob: can_read),
plus eve (role user, no claims: the principal refused everywhere). The server is a
subprocess, stopped at the end even when something fails.

Before anything is timed, every request of the mix is sent once and must answer as
expected, and one session goes through refresh, login, logout and replay by hand.

Then, for ``--duration`` seconds:

- ``wrk`` with one connection per thread (``--connections``, 64 by default) runs
  ``benchmarks/soak_mix.lua``: each thread walks its own shuffled cycle of 100 slots
  (see :data:`KINDS`): ``GET /me`` with valid tokens; ``GET /admin`` and ``GET /records``
  as allowed and refused principals (200 and 403 are both expected answers); ``POST
  /records`` followed by the ``DELETE`` of that record; refused writes; invalid tokens
  (401); refresh-token rotations (each thread follows its own session: every refresh
  token is used once, and the new access token is used at once); and password logins
  by the clock (``--logins-per-second``, 1 by default, all threads together: argon2id
  is expensive, and logins as a share of requests take the CPUs whenever the rest runs
  fast), each followed by the logout or the replay of the session it replaces and
  checks that the revoked tokens are refused. Every answer is checked against what its
  request expects: status and, where it says who the caller is, body.
- a thread in this process opens WebSockets to ``/ws`` (``--ws-clients`` at a time, a
  short pause between attempts): with a valid token the handshake must succeed, the
  principal arrive (the right subject) and the socket close normally; with an invalid
  token (or none) the handshake must be refused (HTTP 401, or 403 from a server
  without the ``websocket.http.response`` extension).
- the server's resident memory (``VmRSS`` of the uvicorn process, from ``/proc``) and
  its open file descriptors are read every half second at most.

Errors (all must be zero): unexpected answers (status or body), requests left
unanswered, wrk's socket errors (connect, read, write) and timeouts (``--timeout``,
10 s by default), WebSocket failures, lines the server logged (but those the mix
provokes on purpose: :data:`EXPECTED_LOG`, :data:`UVICORN_DENIAL_LOG`), the server
exiting. Latency: wrk's percentiles (corrected for coordinated omission, as wrk prints
them), and the same measured per request by the Lua script, overall and per kind.

Memory: the run is cut into 10 windows; the first is the warm-up. The growth is the
RSS floor (the smallest reading) of the last window minus that of the second (right
after the warm-up). Floors, because a login holds a 64 MiB argon2id buffer while it
hashes: a reading taken during one says nothing about leaks. The growth must stay
within :data:`GROWTH_LIMIT_MIB` MiB or :data:`GROWTH_LIMIT_FRACTION` of the floor
after the warm-up, whichever is larger.

The server, wrk and the WebSocket client share the machine's CPUs with whatever else
runs: requests/s and latencies are what this machine managed, not a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    WebSocketException,
)

from asgi_auth.demo import prepare_store
from asgi_auth.store import Store, StoreAdmin
from asgi_auth.store.refresh import RefreshTokens
from asgi_auth.tokens import Key, TokenIssuer
from benchmarks.authz import (
    Server,
    free_port,
    parse_wrk,
    request,
    run_server,
    source_state,
    wrk_version,
)
from benchmarks.verify import _progress, _version
from benchmarks.verify import environment as base_environment

LUA: Final = Path(__file__).resolve().with_name("soak_mix.lua")
ISSUER: Final = "https://soak.asgi-auth.test"
AUDIENCE: Final = "asgi-auth-soak"
PACKAGES: Final = (
    "asgi-auth",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "websockets",
    "argon2-cffi",
    "databases",
    "aiosqlite",
    "SQLAlchemy",
)
DEFAULT_CONNECTIONS: Final = 64
DEFAULT_TIMEOUT: Final = 10
DEFAULT_WS_CLIENTS: Final = 4
#: Password logins per second, all threads together: each costs an argon2id hash
#: (64 MiB, t=3, p=4; about 0.15 CPU-second on the reference machine).
DEFAULT_LOGIN_RATE: Final = 1.0
#: Seconds each WebSocket client waits between two handshakes.
WS_PAUSE: Final = 0.05
#: Seconds a WebSocket attempt (handshake, message, close) may take.
WS_TIMEOUT: Final = 10.0
#: The run is cut into this many windows for the memory report; the first is the warm-up.
WINDOWS: Final = 10
#: Memory growth allowed after the warm-up: this many MiB, or this fraction of the RSS
#: floor after the warm-up, whichever is larger.
GROWTH_LIMIT_MIB: Final = 20.0
GROWTH_LIMIT_FRACTION: Final = 0.10
#: Upper bounds (ms) of the per-kind latency histogram the Lua script keeps.
BUCKETS_MS: Final = (
    0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500,
    750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000,
)  # fmt: skip
SUMMARY_PREFIX: Final = "soak_mix "
PERCENTILES: Final = (50, 90, 99, 99.9)
#: Server log lines the mix provokes on purpose: a replayed refresh token is logged as a
#: warning (a possible theft). Any other line the server writes counts as an error.
EXPECTED_LOG: Final = (re.compile(r"^refresh refused: refresh token reused\b"),)
#: What uvicorn's websockets-sansio implementation (uvicorn's choice when ``websockets`` is
#: installed) logs at ERROR after every handshake refused through the
#: ``websocket.http.response`` extension, although the refusal went out as it should:
#: it never marks such a handshake complete (https://github.com/Kludex/uvicorn/pull/3138).
#: As many as the handshakes the soak had refused are expected.
UVICORN_DENIAL_LOG: Final = "ASGI callable returned without completing handshake."
FORM: Final = "application/x-www-form-urlencoded"
JSON: Final = "application/json"
#: The seeded users the mix acts as (eve is added to the demo's seed).
USERS: Final = ("alice", "bob", "eve")


@dataclass(frozen=True)
class Kind:
    """A kind of request: the status it must get, what it is, and its slots in each
    thread's cycle of 100 (0: a follow-up of another answer, or, for logins, by the
    clock: ``--logins-per-second``)."""

    status: int
    what: str
    weight: int


KINDS: Final[dict[str, Kind]] = {
    "me": Kind(200, "GET /me, valid token (alice, bob, eve); body names the subject", 39),
    "session_me": Kind(
        200, "GET /me with the access token a login or refresh just returned (its subject)", 0
    ),
    "admin_allowed": Kind(200, "GET /admin as alice (role admin)", 7),
    "admin_forbidden": Kind(403, "GET /admin as bob, eve", 7),
    "records_allowed": Kind(200, "GET /records as alice, bob (claim can_read)", 10),
    "records_forbidden": Kind(403, "GET /records as eve (no claims)", 7),
    "record_write": Kind(201, "POST /records as alice (claim can_write)", 4),
    "record_delete": Kind(204, "DELETE /records/{id} of the record just created (can_delete)", 0),
    "write_forbidden": Kind(403, "POST /records as bob, eve; DELETE /records/1 as bob", 4),
    "invalid": Kind(
        401,
        "GET /me, /records, /admin: no token, tampered, expired, other audience, other "
        "issuer, other key, alg none, not a JWT",
        12,
    ),
    "refresh": Kind(200, "POST /token grant_type=refresh_token (the thread's session)", 10),
    "login": Kind(200, "POST /token grant_type=password (argon2id) as alice, bob; by the clock", 0),
    "logout": Kind(200, "POST /logout: the replaced session's access + refresh token", 0),
    "revoked_access": Kind(401, "GET /me with the access token just logged out", 0),
    "replayed_refresh": Kind(
        400, "POST /token with an already rotated refresh token (revokes its family)", 0
    ),
    "revoked_refresh": Kind(
        400, "POST /token with the latest refresh token of a logged-out or replayed session", 0
    ),
}
assert sum(k.weight for k in KINDS.values()) == 100


class SoakError(Exception):
    """The soak could not run (the server did not start, a check before the load failed)."""


@dataclass(frozen=True)
class Settings:
    duration: int
    connections: int = DEFAULT_CONNECTIONS
    timeout: int = DEFAULT_TIMEOUT
    ws_clients: int = DEFAULT_WS_CLIENTS
    seed: int = 0
    logins_per_second: float = DEFAULT_LOGIN_RATE

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "connections": self.connections,
            "wrk_threads": self.connections,
            "wrk_timeout_s": self.timeout,
            "ws_clients": self.ws_clients,
            "ws_pause_s": WS_PAUSE,
            "seed": self.seed,
            "logins_per_second": self.logins_per_second,
            "windows": WINDOWS,
            "growth_limit_mib": GROWTH_LIMIT_MIB,
            "growth_limit_fraction": GROWTH_LIMIT_FRACTION,
            "mix_per_100_slots": {kind: k.weight for kind, k in KINDS.items() if k.weight},
        }


# -- the store, the tokens and the mix -------------------------------------------------


@dataclass(frozen=True)
class Users:
    ids: dict[str, str]  # subject by username
    passwords: dict[str, str]  # alice's and bob's
    sessions: list[tuple[str, str]]  # (subject, refresh token): one per wrk thread, + 1


async def prepare(url: str, sessions: int) -> Users:
    """The demo's seeded store, eve, and ``sessions`` refresh-token families."""
    async with Store(url) as store:
        passwords: dict[str, str] = {}
        seeded = await prepare_store(store, seed=True, passwords=passwords)
        ids = {name: str(user_id) for name, user_id in seeded.items()}
        ids["eve"] = str(await StoreAdmin(store).create_user("eve", role="user"))
        refresh = RefreshTokens(store)
        families = []
        for n in range(sessions):
            subject = ids["alice" if n % 2 == 0 else "bob"]
            families.append((subject, await refresh.issue(subject)))
    if set(passwords) != {"alice", "bob"}:
        raise SoakError(f"the seed did not create alice and bob: {sorted(passwords)}")
    return Users(ids, passwords, families)


@dataclass(frozen=True)
class Template:
    """A request of the mix that never changes: sent as is, answered as ``KINDS`` says."""

    method: str
    path: str
    token: str | None
    label: str
    body: str | None = None
    ctype: str | None = None
    expect: str | None = None  # a substring the answer's body must hold

    def lua(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "token": self.token,
            "body": self.body,
            "ctype": self.ctype,
            "expect": self.expect,
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forged(token: str, subject: str) -> str:
    """``token`` claiming another subject, its signature kept (so no longer valid)."""
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = subject
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def unsigned(token: str) -> str:
    """``token``'s claims under ``"alg": "none"``, with no signature."""
    payload = token.split(".")[1]
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{payload}."


@dataclass(frozen=True)
class Plan:
    """Everything the load needs: tokens, templates by kind, logins, sessions."""

    subjects: dict[str, str]
    tokens: dict[str, str]
    invalid: dict[str, str | None]
    templates: dict[str, list[Template]]
    logins: list[tuple[str, str, str]]  # username, password, subject
    sessions: list[tuple[str, str]]


def make_plan(users: Users, secret: str, lifetime: int) -> Plan:
    key = Key.from_secret(secret, algorithm="HS256")
    issuer = TokenIssuer(key, issuer=ISSUER, audience=AUDIENCE)
    subjects = {name: users.ids[name] for name in USERS}
    tokens = {
        name: issuer.issue(subjects[name], claims={"preferred_username": name}, lifetime=lifetime)
        for name in USERS
    }
    alice = subjects["alice"]
    past = time.time() - 2 * 3600
    invalid: dict[str, str | None] = {
        "no token": None,
        "tampered": forged(tokens["bob"], alice),
        "expired": TokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, clock=lambda: past).issue(
            alice
        ),
        "other audience": TokenIssuer(key, issuer=ISSUER, audience="https://other.test").issue(
            alice
        ),
        "other issuer": TokenIssuer(key, issuer="https://other.test", audience=AUDIENCE).issue(
            alice
        ),
        "other key": TokenIssuer(
            Key.from_secret(secrets.token_urlsafe(32)), issuer=ISSUER, audience=AUDIENCE
        ).issue(alice),
        "alg none": unsigned(tokens["alice"]),
        "not a JWT": "not-a-jwt",
    }

    def get(path: str, name: str, expect: str | None = None) -> Template:
        return Template("GET", path, tokens[name], name, expect=expect)

    def names(name: str) -> str:
        return f'"subject":"{subjects[name]}"'

    write = json.dumps({"body": "not allowed"})
    templates = {
        "me": [get("/me", name, names(name)) for name in USERS],
        "admin_allowed": [get("/admin", "alice", names("alice"))],
        "admin_forbidden": [get("/admin", "bob"), get("/admin", "eve")],
        "records_allowed": [get("/records", name, '{"records":[') for name in ("alice", "bob")],
        "records_forbidden": [get("/records", "eve")],
        "write_forbidden": [
            Template("POST", "/records", tokens["bob"], "bob", body=write, ctype=JSON),
            Template("DELETE", "/records/1", tokens["bob"], "bob"),
            Template("POST", "/records", tokens["eve"], "eve", body=write, ctype=JSON),
        ],
        "invalid": [
            Template("GET", path, token, label)
            for label, token in invalid.items()
            for path in ("/me", "/records", "/admin")
        ],
    }
    logins = [(name, users.passwords[name], subjects[name]) for name in ("alice", "bob")]
    return Plan(subjects, tokens, invalid, templates, logins, users.sessions)


def _lua(value: Any) -> str:
    """``value`` as a Lua literal (strings byte by byte; None in a table is left out)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        out = []
        for byte in value.encode("utf-8"):
            if byte in (0x22, 0x5C):
                out.append("\\" + chr(byte))
            elif 0x20 <= byte < 0x7F:
                out.append(chr(byte))
            else:
                out.append(f"\\{byte:03d}")
        return '"' + "".join(out) + '"'
    if isinstance(value, Mapping):
        items = [f"[{_lua(str(k))}] = {_lua(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def lua_config(plan: Plan, settings: Settings) -> str:
    """The file soak_mix.lua loads: ``return {...}``."""
    stagger = 1000 / settings.logins_per_second
    document = {
        "seed": settings.seed,
        "login_stagger_ms": stagger,
        "login_every_ms": stagger * settings.connections,
        "weights": [[kind, k.weight] for kind, k in KINDS.items() if k.weight],
        "expected": {kind: k.status for kind, k in KINDS.items()},
        "buckets_ms": list(BUCKETS_MS),
        "templates": {kind: [t.lua() for t in ts] for kind, ts in plan.templates.items()},
        "author": {"token": plan.tokens["alice"], "subject": plan.subjects["alice"]},
        "logins": [{"username": u, "password": p, "subject": s} for u, p, s in plan.logins],
        "chains": [{"subject": s, "token": t} for s, t in plan.sessions],
    }
    return "return " + _lua(document) + "\n"


# -- talking to the server ---------------------------------------------------------------


def call(
    port: int,
    method: str,
    path: str,
    token: str | None = None,
    body: str | None = None,
    ctype: str | None = None,
) -> tuple[int, str]:
    """One request: its status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if ctype is not None:
            headers["Content-Type"] = ctype
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "asgi_auth.cli",
        "demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def server_env(secret: str, url: str) -> dict[str, str]:
    """The demo's configuration; variables that would change it are blanked."""
    return {
        "ASGI_AUTH_SECRET": secret,
        "ASGI_AUTH_ISSUER": ISSUER,
        "ASGI_AUTH_AUDIENCE": AUDIENCE,
        "ASGI_AUTH_DATABASE_URL": url,
        "ASGI_AUTH_PRIVATE_KEY": "",
        "ASGI_AUTH_ALGORITHM": "",
        "ASGI_AUTH_OIDC_ISSUER": "",
    }


@contextlib.contextmanager
def serve(secret: str, url: str) -> Iterator[Server]:
    """The demo command on a free port of 127.0.0.1; always stopped afterwards."""
    port = free_port()
    with run_server(
        server_command(port),
        port,
        server_env(secret, url),
        lambda port: request(port, "/")[0] == 200,
        timeout=60,
    ) as server:
        yield server


def loaded_libraries(pid: int) -> dict[str, bool]:
    """Whether uvloop's and httptools' extension modules are mapped in the process."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {"uvloop": False, "httptools": False}
    return {"uvloop": "/uvloop/" in maps, "httptools": "/httptools/" in maps}


def _status_kib(pid: int, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    found = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found[1]) if found else None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# -- checks before the load ---------------------------------------------------------------


def _tokens_in(body: str) -> tuple[str, str] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    access, refresh = document.get("access_token"), document.get("refresh_token")
    if not isinstance(access, str) or not isinstance(refresh, str):
        return None
    return access, refresh


def _refresh(port: int, token: str) -> tuple[int, str]:
    body = urlencode({"grant_type": "refresh_token", "refresh_token": token})
    return call(port, "POST", "/token", body=body, ctype=FORM)


def preflight(port: int, plan: Plan, spare: str) -> tuple[list[str], int]:
    """Every static request of the mix once, then one session by hand, and WebSockets;
    the problems, and how many WebSocket handshakes were refused."""
    problems: list[str] = []
    for kind, templates in plan.templates.items():
        for t in templates:
            status, body = call(port, t.method, t.path, t.token, t.body, t.ctype)
            expected = KINDS[kind].status
            if status != expected or (t.expect is not None and t.expect not in body):
                problems.append(
                    f"{kind}: {t.method} {t.path} ({t.label}) answered {status} "
                    f"(expected {expected}): {body[:200]}"
                )
    alice = plan.subjects["alice"]

    def step(what: str, answer: tuple[int, str], status: int, needle: str = "") -> str | None:
        if answer[0] != status or needle not in answer[1]:
            problems.append(f"{what}: {answer[0]} (expected {status}): {answer[1][:200]}")
            return None
        return answer[1]

    # A session: refresh, use the new access token, log in, log the old session out.
    first = step("refresh", _refresh(port, spare), 200, '"refresh_token"')
    pair = _tokens_in(first) if first is not None else None
    if pair is not None:
        step("GET /me, refreshed token", call(port, "GET", "/me", pair[0]), 200, '"subject"')
        form = urlencode({"grant_type": "password", "username": "alice"})
        form += "&" + urlencode({"password": plan.logins[0][1]})
        login = step("login", call(port, "POST", "/token", body=form, ctype=FORM), 200)
        fresh = _tokens_in(login) if login is not None else None
        logout = urlencode({"refresh_token": pair[1]})
        step(
            "logout",
            call(port, "POST", "/logout", pair[0], body=logout, ctype=FORM),
            200,
            "revoked",
        )
        step("GET /me, logged out", call(port, "GET", "/me", pair[0]), 401)
        step("refresh, logged out", _refresh(port, pair[1]), 400, "invalid_grant")
        # Reuse detection: replaying a rotated token revokes the family.
        if fresh is not None:
            second = step("refresh after login", _refresh(port, fresh[1]), 200)
            newer = _tokens_in(second) if second is not None else None
            if newer is not None:
                step("replayed refresh token", _refresh(port, fresh[1]), 400, "invalid_grant")
                step("refresh, replayed family", _refresh(port, newer[1]), 400, "invalid_grant")
    # A record, created and deleted.
    created = step(
        "POST /records",
        call(port, "POST", "/records", plan.tokens["alice"], '{"body": "pre-flight"}', JSON),
        201,
        '"body":"pre-flight"',
    )
    if created is not None:
        record = json.loads(created)["id"]
        step(
            "DELETE /records/{id}",
            call(port, "DELETE", f"/records/{record}", plan.tokens["alice"]),
            204,
        )
    # WebSockets.
    stats = SocketStats()
    url = f"ws://127.0.0.1:{port}/ws"
    asyncio.run(_accepted(url, plan.tokens["alice"], alice, stats))
    asyncio.run(_refused(url, plan.invalid["tampered"], stats))
    asyncio.run(_refused(url, None, stats))
    if stats.accepted != 1 or stats.refused != 2:
        problems.append(f"WebSocket checks: {stats.as_dict()}")
    return problems, stats.refused


# -- WebSockets, alongside the load ---------------------------------------------------------


@dataclass
class SocketStats:
    accepted: int = 0  # valid token: handshake, the right principal, a normal close
    refused: int = 0  # invalid token: handshake refused
    refusals: Counter[int] = field(default_factory=Counter)  # by HTTP status
    failures: Counter[str] = field(default_factory=Counter)  # by reason
    handshake_ms: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.handshake_ms)

        def at(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 2)

        return {
            "attempts": self.accepted + self.refused + self.failed,
            "accepted": self.accepted,
            "refused": self.refused,
            "refusals_by_status": {str(k): v for k, v in sorted(self.refusals.items())},
            "failures": self.failed,
            "failure_reasons": dict(self.failures.most_common()),
            "handshake_ms": {"p50": at(50), "p99": at(99), "max": at(100)},
        }


def _reason(prefix: str, exc: BaseException) -> str:
    return f"{prefix}: {type(exc).__name__}: {exc}"[:200]


async def _accepted(url: str, token: str, subject: str, stats: SocketStats) -> None:
    """A valid token: the handshake, the principal, then a normal close."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with asyncio.timeout(WS_TIMEOUT):
            async with connect(url, additional_headers=headers, open_timeout=None) as socket:
                stats.handshake_ms.append((time.perf_counter() - started) * 1000)
                message = await socket.recv()
                try:
                    extra: str | bytes | None = await socket.recv()
                except ConnectionClosedOK:
                    extra = None
    except InvalidStatus as exc:
        stats.failures[f"valid token refused: HTTP {exc.response.status_code}"] += 1
        return
    except TimeoutError:
        stats.failures["valid token: timed out"] += 1
        return
    except ConnectionClosedError as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        stats.failures[f"valid token: closed abnormally (code {code})"] += 1
        return
    except (OSError, WebSocketException) as exc:
        stats.failures[_reason("valid token", exc)] += 1
        return
    if extra is not None:
        stats.failures["valid token: a second message"] += 1
        return
    try:
        principal = json.loads(message)
    except ValueError:
        principal = None
    if not isinstance(principal, dict) or principal.get("subject") != subject:
        stats.failures["valid token: not the caller's principal"] += 1
        return
    stats.accepted += 1


async def _refused(url: str, token: str | None, stats: SocketStats) -> None:
    """An invalid token (or none): the handshake must be refused."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        async with asyncio.timeout(WS_TIMEOUT):
            async with connect(url, additional_headers=headers, open_timeout=None):
                pass
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            stats.refused += 1
            stats.refusals[status] += 1
        else:
            stats.failures[f"invalid token refused with HTTP {status}"] += 1
        return
    except TimeoutError:
        stats.failures["invalid token: timed out"] += 1
        return
    except (OSError, WebSocketException) as exc:
        stats.failures[_reason("invalid token", exc)] += 1
        return
    stats.failures["an invalid token was accepted"] += 1


async def _socket_client(
    number: int, url: str, plan: Plan, stop: threading.Event, deadline: float, stats: SocketStats
) -> None:
    valid = [(plan.tokens[name], plan.subjects[name]) for name in USERS]
    invalid = list(plan.invalid.values())
    attempt = number
    while not stop.is_set() and time.monotonic() < deadline:
        attempt += 1
        if attempt % 4 == 0:  # a quarter of the attempts: an invalid token
            await _refused(url, invalid[(attempt // 4) % len(invalid)], stats)
        else:
            token, subject = valid[attempt % len(valid)]
            await _accepted(url, token, subject, stats)
        await asyncio.sleep(WS_PAUSE)


def run_sockets(
    url: str, plan: Plan, clients: int, stop: threading.Event, deadline: float, stats: SocketStats
) -> None:
    """``clients`` WebSocket clients until ``stop`` is set (or ``deadline`` passes)."""

    async def clients_() -> None:
        await asyncio.gather(
            *(_socket_client(n, url, plan, stop, deadline, stats) for n in range(clients))
        )

    try:
        asyncio.run(clients_())
    except Exception as exc:  # counted, never lost in a thread
        stats.failures[_reason("the WebSocket client crashed", exc)] += 1


# -- memory ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the load started
    rss_kib: int
    fds: int | None


def sample_memory(
    pid: int,
    started: float,
    interval: float,
    stop: threading.Event,
    out: list[Sample],
    report: Callable[[Sample], None],
) -> None:
    """Read the server's RSS and open descriptors every ``interval`` s until ``stop``."""
    while not stop.is_set():
        rss = _status_kib(pid, "VmRSS")
        if rss is None:
            return  # the server is gone
        out.append(Sample(time.monotonic() - started, rss, open_fds(pid)))
        report(out[-1])
        stop.wait(interval)


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


def memory_report(
    samples: Sequence[Sample],
    duration: float,
    *,
    idle_kib: int | None = None,
    peak_kib: int | None = None,
) -> dict[str, Any]:
    """Per window: RSS floor and peak, descriptors; growth after the warm-up, the verdict."""
    width = duration / WINDOWS
    windows: list[dict[str, Any]] = []
    for i in range(WINDOWS):
        low = i * width
        high = (i + 1) * width
        last = i == WINDOWS - 1
        inside = [s for s in samples if low <= s.seconds and (last or s.seconds < high)]
        fds = [s.fds for s in inside if s.fds is not None]
        windows.append(
            {
                "from_s": round(low, 1),
                "to_s": round(high, 1),
                "samples": len(inside),
                "rss_floor_mib": _mib(min(s.rss_kib for s in inside)) if inside else None,
                "rss_peak_mib": _mib(max(s.rss_kib for s in inside)) if inside else None,
                "fds_min": min(fds) if fds else None,
                "fds_max": max(fds) if fds else None,
            }
        )
    baseline = windows[1]["rss_floor_mib"] if WINDOWS > 1 else None
    end = windows[-1]["rss_floor_mib"]
    report: dict[str, Any] = {
        "samples": [[round(s.seconds, 2), _mib(s.rss_kib), s.fds] for s in samples],
        "windows": windows,
        "after_warmup_mib": baseline,
        "end_mib": end,
        "idle_after_load_mib": _mib(idle_kib) if idle_kib is not None else None,
        "peak_hwm_mib": _mib(peak_kib) if peak_kib is not None else None,
        "growth_mib": None,
        "growth_fraction": None,
        "limit_mib": None,
        "slope_mib_per_hour": None,
        "ok": False,
    }
    if baseline is None or end is None:
        report["problem"] = "too few memory samples"
        return report
    limit = max(GROWTH_LIMIT_MIB, GROWTH_LIMIT_FRACTION * baseline)
    growth = end - baseline
    points = [
        ((w["from_s"] + w["to_s"]) / 2, w["rss_floor_mib"])
        for w in windows[1:]
        if w["rss_floor_mib"] is not None
    ]
    if len(points) >= 2:
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        spread = sum((x - mean_x) ** 2 for x, _ in points)
        if spread > 0:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
            report["slope_mib_per_hour"] = round(slope * 3600, 1)
    report.update(
        growth_mib=round(growth, 1),
        growth_fraction=round(growth / baseline, 3) if baseline else None,
        limit_mib=round(limit, 1),
        ok=growth <= limit,
    )
    return report


# -- the run ----------------------------------------------------------------------------------


def wrk_command(url: str, config: Path, settings: Settings) -> list[str]:
    n = settings.connections
    return [
        "wrk",
        f"-t{n}",
        f"-c{n}",
        f"-d{settings.duration}s",
        "--latency",
        "--timeout",
        f"{settings.timeout}s",
        "-s",
        str(LUA),
        url,
        str(config),
    ]


def parse_summary(stdout: str) -> dict[str, Any]:
    """The JSON document soak_mix.lua's done() printed.

    Raises:
        SoakError: there is none.
    """
    for line in stdout.splitlines():
        if line.startswith(SUMMARY_PREFIX):
            found: dict[str, Any] = json.loads(line[len(SUMMARY_PREFIX) :])
            return found
    raise SoakError(f"soak_mix.lua printed no summary; wrk printed:\n{stdout}")


def bucket_percentile(buckets: Sequence[int], q: float, max_ms: float) -> float | None:
    """The upper bound (ms) of the histogram bucket holding the ``q``-th percentile (the
    maximum when it lies beyond the last bound)."""
    count = sum(buckets)
    if not count:
        return None
    running = 0
    for bound, n in zip((*BUCKETS_MS, math.inf), buckets, strict=False):
        running += n
        if running >= q / 100 * count:
            return min(float(bound), round(max_ms, 2))
    return round(max_ms, 2)


def kinds_report(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = summary.get("kinds") or {}
    total = sum(k["count"] for k in found.values()) or 1
    timed = bool(summary.get("per_kind_latency"))
    out = {}
    for name, kind in KINDS.items():
        nothing = {"count": 0, "unexpected": 0, "statuses": {}, "ms_sum": 0, "ms_max": 0}
        seen = found.get(name, {**nothing, "buckets": [0] * (len(BUCKETS_MS) + 1)})
        count = int(seen["count"])
        out[name] = {
            "request": kind.what,
            "expected": kind.status,
            "count": count,
            "share": round(count / total, 4),
            "unexpected": int(seen["unexpected"]),
            "statuses": {str(k): int(v) for k, v in sorted(seen["statuses"].items())},
            "mean_ms": round(seen["ms_sum"] / count, 2) if timed and count else None,
            "p50_ms_at_most": (
                bucket_percentile(seen["buckets"], 50, seen["ms_max"]) if timed else None
            ),
            "p99_ms_at_most": (
                bucket_percentile(seen["buckets"], 99, seen["ms_max"]) if timed else None
            ),
            "max_ms": round(seen["ms_max"], 1) if timed and count else None,
            "buckets": list(seen.get("buckets", [])),
        }
    return out


def measured_latency(kinds: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Percentiles (bucket upper bounds, ms) over every answer, as the Lua script timed
    them: one sample per request, without wrk's coordinated-omission correction."""
    total = [0] * (len(BUCKETS_MS) + 1)
    longest = 0.0
    for kind in kinds.values():
        for i, n in enumerate(kind["buckets"]):
            total[i] += n
        longest = max(longest, kind["max_ms"] or 0.0)
    out = {f"p{q:g}".replace(".", ""): bucket_percentile(total, q, longest) for q in PERCENTILES}
    out["max"] = round(longest, 2) if sum(total) else None
    return out


def server_log(output: str, refused: int) -> tuple[Counter[str], Counter[str]]:
    """What the server wrote after the demo's banner (which ends with its "try:" line):
    the lines the mix provokes on purpose (:data:`EXPECTED_LOG`, and uvicorn's
    :data:`UVICORN_DENIAL_LOG` up to ``refused`` times), and the others, each with how
    many times it was written."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("try: curl")]
    after = lines[starts[0] + 1 :] if starts else lines
    expected: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    for line in after:
        text = line.strip()[:300]
        if not text:
            continue
        if text.endswith(UVICORN_DENIAL_LOG) and refused > 0:
            refused -= 1
            expected[text] += 1
        elif any(pattern.search(text) for pattern in EXPECTED_LOG):
            expected[text] += 1
        else:
            unexpected[text] += 1
    return expected, unexpected


def environment() -> dict[str, Any]:
    env = base_environment()
    env["packages"] = {name: _version(name) for name in PACKAGES}
    env["wrk"] = wrk_version()
    env["source"] = source_state()
    return env


def _shown(command: Sequence[str]) -> str:
    """A command as run, the temporary configuration file named ``CONFIG.lua``."""
    shown = [Path(part).name if part.endswith(".lua") else part for part in command]
    if shown and shown[-1].endswith(".lua"):
        shown[-1] = "CONFIG.lua"
    if sys.executable in shown:
        shown[shown.index(sys.executable)] = "python"
    return shlex.join(shown)


def run(settings: Settings, *, check: bool = True, quiet: bool = False) -> dict[str, Any]:
    """The whole soak; the JSON document (``--json``).

    ``check=False`` skips the checks before the load (for tests that make the mix
    expect wrong answers, to see them counted).

    Raises:
        SoakError: the server did not start, or a check before the load failed.
    """

    def progress(text: str) -> None:
        if not quiet:
            _progress(text)

    env = environment()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="asgi_auth_soak_") as scratch:
        directory = Path(scratch)
        url = f"sqlite:///{directory / 'soak.db'}"
        secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        progress("seeding the store")
        users = asyncio.run(prepare(url, settings.connections + 1))
        spare = users.sessions.pop()[1]
        plan = make_plan(users, secret, lifetime=settings.duration + 3600)
        config = directory / "soak_config.lua"
        config.write_text(lua_config(plan, settings), encoding="utf-8")
        progress("starting the demo")
        try:
            with serve(secret, url) as server:
                result = _load(server, plan, spare, config, settings, check, progress)
        except RuntimeError as exc:  # run_server: the server exited or never answered
            raise SoakError(str(exc)) from exc
    if not quiet:
        print(file=sys.stderr)
    refused = result["websocket"]["refused"] + result["preflight_refused_handshakes"]
    expected, unexpected = server_log(server.final_output, refused)
    result["server"]["log_expected"] = dict(expected.most_common(20))
    result["server"]["log_unexpected"] = dict(unexpected.most_common(50))
    result["errors"]["server_log_lines"] = sum(unexpected.values())
    result["errors"]["total"] = sum(v for k, v in result["errors"].items() if k != "total")
    env["load_average_start"] = list(load_before)
    env["load_average_end"] = list(os.getloadavg())
    result["environment"] = env
    result["verdict"] = verdict(result)
    return result


def _load(
    server: Server,
    plan: Plan,
    spare: str,
    config: Path,
    settings: Settings,
    check: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    pid = server.process.pid
    libraries = loaded_libraries(pid)
    refused_before = 0
    if check:
        progress("checking every request of the mix once")
        problems, refused_before = preflight(server.port, plan, spare)
        if problems:
            raise SoakError("the checks before the load failed:\n- " + "\n- ".join(problems))
    duration = settings.duration
    command = wrk_command(server.url("/"), config, settings)
    samples: list[Sample] = []
    sockets = SocketStats()
    stop = threading.Event()
    every = max(5.0, duration / 20)
    shown = {"next": 0.0}

    def report(sample: Sample) -> None:
        if sample.seconds >= shown["next"]:
            shown["next"] += every
            progress(
                f"soak: {sample.seconds:.0f}/{duration} s, server RSS {_mib(sample.rss_kib)} MiB, "
                f"{sockets.accepted + sockets.refused + sockets.failed} WebSocket handshakes"
            )

    started = time.monotonic()
    cpu_before = server.cpu_seconds()
    interval = min(0.5, max(0.05, duration / 100))
    sampler = threading.Thread(
        target=sample_memory,
        args=(pid, started, interval, stop, samples, report),
        name="soak memory",
        daemon=True,
    )
    clients = threading.Thread(
        target=run_sockets,
        args=(
            f"ws://127.0.0.1:{server.port}/ws",
            plan,
            settings.ws_clients,
            stop,
            started + duration + 60,
            sockets,
        ),
        name="soak websockets",
        daemon=True,
    )
    sampler.start()
    clients.start()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SoakError(f"wrk ran more than {duration + 120} s and was killed") from exc
    finally:
        stop.set()
        clients.join(WS_TIMEOUT + 10)
        sampler.join(10)
    seconds = time.monotonic() - started
    cpu_after = server.cpu_seconds()
    alive = server.process.poll() is None
    time.sleep(1.0)  # the requests in flight when wrk stopped are answered by now
    idle = _status_kib(pid, "VmRSS")
    peak = _status_kib(pid, "VmHWM")
    fds_idle = open_fds(pid)
    if done.returncode != 0:
        raise SoakError(f"wrk exited with {done.returncode}:\n{done.stderr}\n{done.stdout}")
    summary = parse_summary(done.stdout)
    wrk = parse_wrk(done.stdout)
    kinds = kinds_report(summary)
    errors = summary["wrk"]["errors"]
    latency = summary["latency_us"]
    examples = summary.get("unexpected_examples") or []
    counted = sum(k["count"] for k in kinds.values())
    memory = memory_report(samples, duration, idle_kib=idle, peak_kib=peak)
    memory["fds_idle_after_load"] = fds_idle
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "benchmark": "soak",
        "settings": settings.as_dict(),
        "commands": {
            "server": _shown(server.command),
            "load": _shown(command),
            "websocket": (
                f"{settings.ws_clients} clients in this process (websockets), "
                f"{WS_PAUSE} s between attempts; 1 in 4 with an invalid token or none"
            ),
        },
        "server": {
            "uvloop_loaded": libraries["uvloop"],
            "httptools_loaded": libraries["httptools"],
            "alive_at_end": alive,
            "cpu_seconds": None if cpu is None else round(cpu, 1),
            "cpu_busy": None if cpu is None else round(cpu / seconds, 2),
        },
        "kinds": kinds,
        "unexpected_examples": examples if isinstance(examples, list) else [],
        "requests": {
            "total": int(summary["wrk"]["requests"]),
            "checked": counted,
            "per_second": round(wrk.rps, 1),
            "seconds": round(seconds, 1),
        },
        "latency_ms": {name: round(float(v) / 1000, 2) for name, v in latency.items()},
        "latency_measured_ms": measured_latency(kinds),
        "preflight_refused_handshakes": refused_before,
        "errors": {
            "unexpected_answers": sum(k["unexpected"] for k in kinds.values()),
            "unanswered": int(summary.get("unanswered", 0)),
            "socket_connect": int(errors["connect"]),
            "socket_read": int(errors["read"]),
            "socket_write": int(errors["write"]),
            "timeouts": int(errors["timeout"]),
            "websocket": sockets.failed,
            "server_exited": 0 if alive else 1,
        },
        "websocket": sockets.as_dict(),
        "memory": memory,
    }


def verdict(result: Mapping[str, Any]) -> dict[str, Any]:
    """Pass: no errors, every kind of request sent, memory flat after the warm-up."""
    reasons = []
    errors = result["errors"]["total"]
    if errors:
        reasons.append(f"{errors} errors")
    missing = [name for name, k in result["kinds"].items() if not k["count"]]
    if missing:
        reasons.append(f"kinds never sent: {', '.join(missing)}")
    ws = result["websocket"]
    if not ws["accepted"] or not ws["refused"]:
        reasons.append("WebSockets: no accepted or no refused handshake")
    memory = result["memory"]
    if not memory["ok"]:
        if memory["growth_mib"] is None:
            reasons.append(memory.get("problem", "no memory figures"))
        else:
            reasons.append(
                f"memory grew {memory['growth_mib']} MiB after the warm-up "
                f"(limit {memory['limit_mib']} MiB)"
            )
    passed = not reasons
    return {"passed": passed, "reasons": reasons, "exit_status": 0 if passed else 1}


# -- the Markdown report --------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def render(doc: Mapping[str, Any]) -> str:
    env, settings, server = doc["environment"], doc["settings"], doc["server"]
    verdict_, errors, memory = doc["verdict"], doc["errors"], doc["memory"]
    requests, latency, ws = doc["requests"], doc["latency_ms"], doc["websocket"]
    measured = doc["latency_measured_ms"]
    versions = " · ".join(f"{name} {version}" for name, version in env["packages"].items())
    start, end = env["load_average_start"], env["load_average_end"]
    yes = {True: "yes", False: "**no**"}
    lines = [
        f"## Soak: the demo API under mixed load for {settings['duration_s']} s",
        "",
        f"- Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs; load "
        f"average {start[0]:.2f} at the start, {end[0]:.2f} at the end (the server, wrk, "
        "the WebSocket client and anything else running share these CPUs)",
        f"- {versions}",
        f"- {env['wrk']}; asgi_auth source: {env['source']}",
        f"- server: `{doc['commands']['server']}` (uvicorn, one worker; uvloop loaded: "
        f"{yes[server['uvloop_loaded']]}, httptools loaded: {yes[server['httptools_loaded']]}); "
        "SQLite store in a temporary directory, seeded (alice, bob) plus eve",
        f"- load: `{doc['commands']['load']}` (one connection per wrk thread; "
        f"password logins: {settings['logins_per_second']:g} per second in all)",
        f"- WebSockets: {doc['commands']['websocket']}",
        "",
        "### Verdict",
        "",
    ]
    if verdict_["passed"]:
        lines.append(
            f"**PASS**: 0 errors; every kind of request sent; memory growth after the "
            f"warm-up {memory['growth_mib']:+.1f} MiB (limit {memory['limit_mib']} MiB) "
            "→ exit status 0"
        )
    else:
        lines.append(f"**FAIL**: {'; '.join(verdict_['reasons'])} → exit status 1")
    lines += [
        "",
        "### Requests by kind",
        "",
        f"{requests['total']:,} requests in {requests['seconds']:.0f} s "
        f"({requests['per_second']:,.0f}/s); every answer checked against its request "
        "(status, and the subject where the body names one). Latency per kind is timed "
        "in the Lua script, from the request written to the answer parsed; *p50 ≤* and "
        "*p99 ≤* are the upper bounds of histogram buckets.",
        "",
        "| Kind | Request | Expected | Count | Share | Unexpected | Statuses | Mean ms "
        "| p50 ≤ ms | p99 ≤ ms | Max ms |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, k in doc["kinds"].items():
        statuses = ", ".join(f"{s}: {n:,}" for s, n in k["statuses"].items()) or "—"
        unexpected = f"**{k['unexpected']:,}**" if k["unexpected"] else "0"
        lines.append(
            f"| {name} | {k['request']} | {k['expected']} | {k['count']:,} "
            f"| {k['share'] * 100:.2f}% | {unexpected} | {statuses} | {_ms(k['mean_ms'])} "
            f"| {_ms(k['p50_ms_at_most'])} | {_ms(k['p99_ms_at_most'])} | {_ms(k['max_ms'])} |"
        )
    lines += [
        "",
        "### Errors",
        "",
        "| Error | Count |",
        "|---|---:|",
        f"| unexpected answers (status or body) | {errors['unexpected_answers']:,} |",
        f"| requests left unanswered | {errors['unanswered']:,} |",
        f"| socket errors: connect / read / write | {errors['socket_connect']:,} / "
        f"{errors['socket_read']:,} / {errors['socket_write']:,} |",
        f"| timeouts (> {settings['wrk_timeout_s']} s) | {errors['timeouts']:,} |",
        f"| WebSocket failures | {errors['websocket']:,} |",
        f"| lines in the server's log (other than those the mix provokes) "
        f"| {errors['server_log_lines']:,} |",
        f"| server exited during the run | {errors['server_exited']} |",
        f"| **total** | **{errors['total']:,}** |",
    ]
    for example in doc["unexpected_examples"][:10]:
        lines.append(
            f"- unexpected: {example['kind']} `{example['path']}` answered {example['status']} "
            f"(expected {example['expected']}): `{example['body'][:200]}`"
        )
    for line, n in list(doc["server"]["log_unexpected"].items())[:20]:
        lines.append(f"- server log ({n:,} times): `{line}`")
    for line, n in list(doc["server"]["log_expected"].items())[:5]:
        lines.append(f"- server log, provoked on purpose, not an error ({n:,} times): `{line}`")
    lines += [
        "",
        "### Latency (every request)",
        "",
        "*wrk*: `wrk --latency`'s figures, which wrk corrects for coordinated omission: "
        "an answer slower than a connection's mean interval adds the requests that "
        "connection did not send meanwhile, so the few slow requests (logins, writes) "
        "weigh on every percentile. *measured*: one sample per request as the Lua script timed it "
        "(upper bounds of histogram buckets). Server CPU busy: the uvicorn process's CPU "
        "time over the run's length (1.00: one whole CPU).",
        "",
        "| | Requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | Max ms | Server CPU busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| wrk | {requests['per_second']:,.0f} | {_ms(latency['p50'])} "
        f"| {_ms(latency['p90'])} | {_ms(latency['p99'])} | {_ms(latency['p999'])} "
        f"| {_ms(latency['max'])} "
        f"| {server['cpu_busy'] if server['cpu_busy'] is not None else 'n/a'} |",
        f"| measured | | ≤ {_ms(measured['p50'])} | ≤ {_ms(measured['p90'])} "
        f"| ≤ {_ms(measured['p99'])} | ≤ {_ms(measured['p999'])} | {_ms(measured['max'])} | |",
        "",
        "### WebSockets (`/ws`)",
        "",
        "| Attempts | Accepted (principal received, normal close) | Refused (invalid token) "
        "| Failures | Handshake p50 / p99 / max ms |",
        "|---:|---:|---:|---:|---:|",
        f"| {ws['attempts']:,} | {ws['accepted']:,} | {ws['refused']:,} "
        f"({', '.join(f'HTTP {s}: {n:,}' for s, n in ws['refusals_by_status'].items()) or '—'}) "
        f"| {ws['failures']:,} | {_ms(ws['handshake_ms']['p50'])} / "
        f"{_ms(ws['handshake_ms']['p99'])} / {_ms(ws['handshake_ms']['max'])} |",
    ]
    lines += [f"- failure: {reason} ({n:,})" for reason, n in ws["failure_reasons"].items()]
    lines += [
        "",
        "### Server memory (VmRSS of the uvicorn process)",
        "",
        "| Window (s) | Samples | RSS floor MiB | RSS peak MiB | Open fds |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, w in enumerate(memory["windows"]):
        label = f"{w['from_s']:g} to {w['to_s']:g}"
        if i == 0:
            label += " (warm-up)"
        elif i == 1:
            label += " (after warm-up)"
        elif i == len(memory["windows"]) - 1:
            label += " (end)"
        fds = "—" if w["fds_min"] is None else f"{w['fds_min']} to {w['fds_max']}"
        lines.append(
            f"| {label} | {w['samples']} | {_ms(w['rss_floor_mib'])} "
            f"| {_ms(w['rss_peak_mib'])} | {fds} |"
        )
    growth = memory["growth_mib"]
    lines += [
        "",
        "- growth after the warm-up (floor of the last window minus floor of the second): "
        + (
            "n/a"
            if growth is None
            else f"{growth:+.1f} MiB ({memory['growth_fraction'] * 100:+.1f}%)"
        )
        + f"; limit: the larger of {GROWTH_LIMIT_MIB:g} MiB and "
        f"{GROWTH_LIMIT_FRACTION:.0%} of the floor after the warm-up"
        + ("" if memory["limit_mib"] is None else f" ({memory['limit_mib']} MiB)"),
        "- trend of the floors after the warm-up: "
        + (
            "n/a"
            if memory["slope_mib_per_hour"] is None
            else f"{memory['slope_mib_per_hour']:+.1f} MiB/hour"
        )
        + "; floors, not single readings: a login holds a 64 MiB argon2id buffer while it hashes",
        f"- after the load (1 s idle): {_ms(memory['idle_after_load_mib'])} MiB, "
        f"{memory['fds_idle_after_load']} open fds; peak RSS of the process (VmHWM): "
        f"{_ms(memory['peak_hwm_mib'])} MiB",
    ]
    return "\n".join(lines)


# -- the command line ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--duration", type=int, required=True, metavar="SECONDS", help="how long the load runs"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        metavar="N",
        help=f"wrk connections, one thread each (default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"a request answered later counts as a timeout (default {DEFAULT_TIMEOUT})",
    )
    parser.add_argument(
        "--ws-clients",
        type=int,
        default=DEFAULT_WS_CLIENTS,
        metavar="N",
        help=f"concurrent WebSocket clients (default {DEFAULT_WS_CLIENTS})",
    )
    parser.add_argument(
        "--logins-per-second",
        type=float,
        default=DEFAULT_LOGIN_RATE,
        metavar="RATE",
        help=f"password logins (argon2id), all threads together (default {DEFAULT_LOGIN_RATE:g})",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffles each thread's cycle")
    args = parser.parse_args(argv)
    if args.duration < 2:
        parser.error("--duration must be at least 2 seconds")
    if args.connections < 1 or args.ws_clients < 1 or args.timeout < 1:
        parser.error("--connections, --ws-clients and --timeout must be at least 1")
    if not 0 < args.logins_per_second <= 100:
        parser.error("--logins-per-second must be above 0 (and at most 100)")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (https://github.com/wg/wrk; Debian: apt install wrk)")
    settings = Settings(
        args.duration,
        args.connections,
        args.timeout,
        args.ws_clients,
        args.seed,
        args.logins_per_second,
    )
    try:
        doc = run(settings)
    except SoakError as exc:
        print(f"python -m benchmarks.soak: {exc}", file=sys.stderr)
        return 1
    print(render(doc))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    status: int = doc["verdict"]["exit_status"]
    return status


if __name__ == "__main__":
    sys.exit(main())
