"""End to end: ``GET /me`` through uvicorn, asgi_auth against what users would write instead.

Run ``python -m benchmarks.e2e [--quick] [--json PATH] [--rounds N]``.

Each contender is one app of :mod:`benchmarks.e2e_apps`, served alone by uvicorn (one
worker, uvloop, httptools) in a subprocess; one server runs at a time. Every round
starts a new server per contender, in a new random order each round. A new server is
first checked (a valid token gets 200 and the caller's subject; no token, a tampered
token, an expired one, one without ``exp`` and one without ``sub`` get 401; a
contender that answers otherwise is left out and reported), then warmed up, then
loaded by wrk (``--latency``, one thread, 32 connections).

``asgi_auth repeated`` and every other contender send one token over and over (the
verifier's cache answers after the first request); ``asgi_auth fresh`` sends a
different valid token on every request (``fresh_tokens.lua`` cycles through a pool of
distinct tokens several times larger than the verifier's cache, so that every
request is a miss: a full HS256 verification).

The table shows the medians over the rounds of requests/s and of wrk's p50/p99
latencies, the ratio to ``bare`` (a Starlette app without authentication) from the
same run, and the server's CPU time per request (user + system, all its threads,
from ``/proc``), which is less sensitive than requests/s to whatever else runs on
the machine: wrk and the server share its CPUs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import jwt

from asgi_auth.tokens import Key, TokenIssuer
from asgi_auth.tokens.verifier import DEFAULT_CACHE_SIZE
from benchmarks import authz, e2e_apps
from benchmarks.authz import WRK_CONNECTIONS, WRK_THREADS, Server, WrkResult
from benchmarks.verify import SUBJECT, _progress, _version, tamper
from benchmarks.verify import environment as base_environment

__all__ = [
    "BASELINE",
    "CONTENDERS",
    "PRESETS",
    "TARGETS",
    "Contender",
    "Settings",
    "main",
    "measure",
    "render",
    "run",
]

ROOT: Final = authz.ROOT
LUA_SCRIPT: Final = Path(__file__).resolve().with_name("fresh_tokens.lua")
BASELINE: Final = "bare"
FASTAPI_BASELINE: Final = "FastAPI bare"
APP: Final = "benchmarks.e2e_apps:from_environment"
PACKAGES: Final = (
    "asgi-auth",
    "starlette",
    "fastapi",
    "pydantic",
    "litestar",
    "msgspec",
    "PyJWT",
    "cryptography",
    "uvicorn",
    "uvloop",
    "httptools",
)
#: Tokens live this long: longer than any run.
TOKEN_LIFETIME: Final = 12 * 3600
#: Requests sent one at a time to a new server before wrk warms it up further.
WARMUP_REQUESTS: Final = 200
#: The subjects of the fresh tokens: ``fresh-0``, ``fresh-1``…
FRESH_PREFIX: Final = "fresh-"
_FRESH_LINE: Final = re.compile(
    r"^fresh_tokens: thread (\d+) sent (\d+) requests from token (\d+) of (\d+)$", re.MULTILINE
)


class BenchmarkError(Exception):
    """The benchmark cannot give a result (its baseline failed)."""


@dataclass(frozen=True)
class Contender:
    """One row of the table."""

    name: str
    app: str  # a key of benchmarks.e2e_apps.APPS
    framework: Literal["Starlette", "FastAPI", "Litestar"]
    tokens: Literal["repeated", "fresh"]
    authenticates: bool  # False: a reference without authentication
    description: str
    #: What a missing Authorization header may be answered with.
    no_token: tuple[int, ...] = (401,)


CONTENDERS: Final = (
    Contender(
        BASELINE,
        "bare",
        "Starlette",
        "repeated",
        False,
        "Starlette, no authentication (the baseline)",
    ),
    Contender(
        "empty middleware",
        "empty_middleware",
        "Starlette",
        "repeated",
        False,
        "a pure ASGI middleware that copies the scope and calls the app; no authentication",
    ),
    Contender(
        "asgi_auth repeated",
        "asgi_auth",
        "Starlette",
        "repeated",
        True,
        "`AuthMiddleware(JWTVerifier(key))`; one token (cache hits)",
    ),
    Contender(
        "asgi_auth fresh",
        "asgi_auth",
        "Starlette",
        "fresh",
        True,
        "the same app; a new token every request (cache misses)",
    ),
    Contender(
        "asgi_auth guard on Starlette",
        "asgi_auth_guard",
        "Starlette",
        "repeated",
        True,
        "`AuthMiddleware` + `@guard(authenticated)`; one token",
    ),
    Contender(
        "starlette AuthenticationMiddleware + PyJWT",
        "starlette_authentication",
        "Starlette",
        "repeated",
        True,
        "`AuthenticationMiddleware`, a backend calling `jwt.decode`",
    ),
    Contender(
        "pure ASGI + PyJWT",
        "pure_asgi",
        "Starlette",
        "repeated",
        True,
        "a minimal ASGI middleware calling `jwt.decode`",
    ),
    Contender(
        FASTAPI_BASELINE,
        "fastapi_bare",
        "FastAPI",
        "repeated",
        False,
        "FastAPI, no authentication (reference for the FastAPI rows)",
    ),
    Contender(
        "asgi_auth guard on FastAPI",
        "fastapi_asgi_auth",
        "FastAPI",
        "repeated",
        True,
        "`add_middleware(AuthMiddleware)` + `Depends(current_principal)`; one token",
    ),
    Contender(
        "FastAPI HTTPBearer + PyJWT",
        "fastapi_http_bearer",
        "FastAPI",
        "repeated",
        True,
        "`Depends(HTTPBearer())` + an async dependency calling `jwt.decode`",
        no_token=(401, 403),  # 403 in FastAPI versions before ~0.115, 401 since
    ),
    Contender(
        "Litestar JWTAuth",
        "litestar_jwt",
        "Litestar",
        "repeated",
        True,
        "`litestar.security.jwt.JWTAuth` (HS256, `require_claims=[exp, sub]`)",
    ),
)


@dataclass(frozen=True)
class Target:
    contender: str
    baseline: str
    ratio: float

    @property
    def name(self) -> str:
        return f"{self.contender} >= {self.ratio:g}x {self.baseline}"


#: The targets from the issue: requests/s of ``contender`` over ``baseline``'s.
TARGETS: Final = (
    Target("asgi_auth repeated", BASELINE, 0.9),
    Target("asgi_auth fresh", BASELINE, 0.7),
    Target("asgi_auth guard on FastAPI", "FastAPI HTTPBearer + PyJWT", 2.0),
)


@dataclass(frozen=True)
class Settings:
    rounds: int
    duration: int  # seconds of each timed wrk run
    warmup: int  # seconds of wrk before each timed run (0: only the warm-up requests)
    pool: int  # fresh tokens
    #: The contenders timed; the others are only checked. None: all of them.
    timed: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "wrk_seconds_per_run": self.duration,
            "warmup_requests_per_server": WARMUP_REQUESTS,
            "wrk_warmup_seconds_per_server": self.warmup,
            "wrk_threads": WRK_THREADS,
            "wrk_connections": WRK_CONNECTIONS,
            "fresh_token_pool": self.pool,
            "verifier_cache_size": DEFAULT_CACHE_SIZE,
            "token_lifetime_seconds": TOKEN_LIFETIME,
            "timed": list(self.timed) if self.timed is not None else None,
        }


PRESETS: Final = {
    "full": Settings(rounds=5, duration=5, warmup=1, pool=150_000),
    "quick": Settings(rounds=2, duration=1, warmup=0, pool=50_000),
    # The test's: every contender checked, those the targets need timed once.
    "smoke": Settings(
        rounds=1,
        duration=1,
        warmup=0,
        pool=20_000,
        timed=tuple(dict.fromkeys(n for t in TARGETS for n in (t.contender, t.baseline))),
    ),
}


# -- tokens ----------------------------------------------------------------------------


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass(frozen=True)
class Tokens:
    secret: str
    valid: str  # for SUBJECT: the one token of the "repeated" contenders
    #: Tokens every authenticating contender must refuse with a 401, by what is wrong.
    refused: Mapping[str, str]
    #: Probes whose answers are recorded but not judged, by what they are.
    informational: Mapping[str, str]
    pool: Path  # the fresh tokens, one a line
    pool_size: int
    samples: tuple[tuple[str, str], ...]  # (token, subject) from the pool, for the checks
    #: Distinct pool tokens from its end, for the warm-up requests of the "fresh" servers
    #: (the timed runs start at the top of the pool).
    warm: tuple[str, ...]


def sign_pool(template: str, secret: str, count: int, *, now: int) -> Iterator[str]:
    """``count`` distinct valid tokens shaped as ``template`` (a ``TokenIssuer`` token:
    its header, and the same claims ``sub``, ``iat``, ``nbf``, ``exp``, ``jti``), each
    with subject ``fresh-N``: HS256 by hand, a few µs each (``TokenIssuer.issue`` takes
    ~60 µs on the reference machine, too long for 50,000 tokens)."""
    header = template.split(".", 1)[0].encode("ascii") + b"."
    signer = hmac.new(secret.encode("utf-8"), header, hashlib.sha256)
    nonce = secrets.token_urlsafe(6)
    times = f'"iat":{now},"nbf":{now},"exp":{now + TOKEN_LIFETIME}'
    for n in range(count):
        payload = _b64url(f'{{"sub":"{FRESH_PREFIX}{n}",{times},"jti":"{nonce}.{n}"}}'.encode())
        mac = signer.copy()
        mac.update(payload)
        yield (header + payload + b"." + _b64url(mac.digest())).decode("ascii")


def make_tokens(directory: Path, pool: int) -> Tokens:
    """A secret for the run, the token of every probe, and the fresh pool (in a file)."""
    secret = secrets.token_urlsafe(32)
    key = Key.from_secret(secret)
    issuer = TokenIssuer(key, lifetime=TOKEN_LIFETIME)
    valid = issuer.issue(SUBJECT)
    now = int(time.time())
    expired = TokenIssuer(key, clock=lambda: time.time() - 7200).issue(SUBJECT)
    without_exp = jwt.encode(
        {"sub": SUBJECT, "iat": now, "jti": secrets.token_urlsafe(8)}, secret, algorithm="HS256"
    )
    without_sub = jwt.encode(
        {"iat": now, "exp": now + TOKEN_LIFETIME, "jti": secrets.token_urlsafe(8)},
        secret,
        algorithm="HS256",
    )
    with_aud = issuer.issue(SUBJECT, audience="another-api")
    path = directory / "fresh_tokens.txt"
    with path.open("w", encoding="ascii") as out:
        for token in sign_pool(valid, secret, pool, now=now):
            out.write(token + "\n")
    lines = path.read_text(encoding="ascii").splitlines()
    # Checked by every server too.
    picks = (0, pool // 2, pool - 1)
    samples = tuple((lines[i], f"{FRESH_PREFIX}{i}") for i in picks)
    return Tokens(
        secret=secret,
        valid=valid,
        refused={
            "tampered": tamper(valid),
            "expired": expired,
            "no exp": without_exp,
            "no sub": without_sub,
        },
        informational={"unexpected aud": with_aud},
        pool=path,
        pool_size=pool,
        samples=samples,
        warm=tuple(lines[-WARMUP_REQUESTS:]),
    )


# -- the server and the load -----------------------------------------------------------


def server_command(port: int) -> list[str]:
    """The house uvicorn command (:func:`benchmarks.authz.server_command`), serving
    :func:`benchmarks.e2e_apps.from_environment` as a factory."""
    command = authz.server_command(port)
    at = command.index("benchmarks.authz_app:app")
    command[at : at + 1] = ["--factory", APP]
    return command


@contextlib.contextmanager
def serve(app: str, secret: str) -> Iterator[Server]:
    """uvicorn serving one app of :mod:`benchmarks.e2e_apps`; always stopped afterwards.

    Raises:
        RuntimeError: the server exited, or did not answer within 30 seconds.
    """
    port = authz.free_port()

    def up(port: int) -> bool:
        authz.request(port, e2e_apps.PATH)  # any answer: it is up
        return True

    env = {e2e_apps.ENV_APP: app, e2e_apps.ENV_SECRET: secret}
    with authz.run_server(server_command(port), port, env, up, timeout=30) as server:
        yield server


def wrk_command(
    url: str, duration: int, token: str | None, *, pool: Path | None = None, start: int = 0
) -> list[str]:
    """The house wrk command (:func:`benchmarks.authz.wrk_command`); with ``pool``, the
    token comes from ``fresh_tokens.lua`` instead of ``-H``, starting at ``start``."""
    command = authz.wrk_command(url, token or "", duration)
    if pool is None:
        return command
    at = command.index("-H")
    del command[at : at + 2]
    script = ["-s", str(LUA_SCRIPT.relative_to(ROOT))]
    return [*command[:-1], *script, url, str(pool), str(start), str(WRK_THREADS)]


@dataclass(frozen=True)
class FreshReport:
    """What ``fresh_tokens.lua`` printed: requests sent per thread, where each started."""

    sent: tuple[int, ...]
    first: tuple[int, ...]
    pool: int


def parse_fresh(text: str) -> FreshReport | None:
    found = _FRESH_LINE.findall(text)
    if not found:
        return None
    return FreshReport(
        tuple(int(f[1]) for f in found), tuple(int(f[2]) for f in found), int(found[0][3])
    )


def run_wrk(command: Sequence[str], duration: int) -> tuple[WrkResult, str]:
    """wrk's parsed numbers (:func:`benchmarks.authz.parse_wrk`) and its whole output.

    Raises:
        RuntimeError: wrk failed or printed nothing usable.
    """
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    try:
        return authz.parse_wrk(done.stdout), done.stdout
    except ValueError as exc:
        raise RuntimeError(str(exc)) from exc


# -- checks ----------------------------------------------------------------------------


class CheckFailed(Exception):
    """A contender answered a probe wrongly: it is left out."""


def _answer(server: Server, token: str | None) -> tuple[int, Any]:
    status, body = authz.request(server.port, e2e_apps.PATH, token)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")[:200]


def check(server: Server, contender: Contender, tokens: Tokens) -> dict[str, int]:
    """Probe a new server; the statuses it answered, by probe.

    Raises:
        CheckFailed: a wrong status, or a 200 without the caller's subject.
    """
    seen: dict[str, int] = {}

    def expect(label: str, token: str | None, statuses: tuple[int, ...], subject: str) -> None:
        status, body = _answer(server, token)
        seen[label] = status
        if status not in statuses:
            wanted = " or ".join(map(str, statuses))
            raise CheckFailed(f"{label}: answered {status}, not {wanted}: {body!r}")
        if status == 200 and body != {"sub": subject}:
            raise CheckFailed(f"{label}: answered {body!r}, not {{'sub': {subject!r}}}")

    if not contender.authenticates:
        expect("valid token", tokens.valid, (200,), e2e_apps.ANONYMOUS)
        expect("no token", None, (200,), e2e_apps.ANONYMOUS)
        return seen
    expect("valid token", tokens.valid, (200,), SUBJECT)
    expect("no token", None, contender.no_token, "")
    for label, token in tokens.refused.items():
        expect(label, token, (401,), "")
    for n, (token, subject) in enumerate(tokens.samples, 1):
        expect(f"pool token {n}", token, (200,), subject)
    for label, token in tokens.informational.items():
        seen[label] = _answer(server, token)[0]
    return seen


# -- one measurement -------------------------------------------------------------------


@dataclass
class Run:
    """One timed wrk run on a new server."""

    round: int
    wrk: WrkResult
    cpu_seconds: float | None  # the server process's, all threads, over the wrk run
    duration: int
    fresh: FreshReport | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.wrk.requests:
            return None
        return self.cpu_seconds / self.wrk.requests * 1e6


@dataclass
class Result:
    contender: Contender
    runs: list[Run] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)
    excluded: str | None = None


def warm_up(server: Server, contender: Contender, tokens: Tokens, seconds: int) -> None:
    """Requests one at a time on one connection (the app's first-request work, the
    verifier's cache), then wrk for ``seconds`` (none when 0)."""
    fresh = contender.tokens == "fresh"
    chosen = tokens.warm if fresh else (tokens.valid,) * WARMUP_REQUESTS
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for token in chosen:
            connection.request("GET", e2e_apps.PATH, headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise CheckFailed(f"warm-up: answered {response.status}")
    finally:
        connection.close()
    if seconds:
        # The fresh warm-up starts half-way through the pool; the timed run at the top.
        start = tokens.pool_size // 2
        pool = tokens.pool if fresh else None
        command = wrk_command(
            server.url(e2e_apps.PATH), seconds, tokens.valid, pool=pool, start=start
        )
        run_wrk(command, seconds)


def time_server(
    server: Server, contender: Contender, tokens: Tokens, duration: int, round_: int
) -> tuple[Run, list[str]]:
    """One timed wrk run; the run, and the exact command."""
    pool = tokens.pool if contender.tokens == "fresh" else None
    command = wrk_command(server.url(e2e_apps.PATH), duration, tokens.valid, pool=pool)
    before = server.cpu_seconds()
    result, output = run_wrk(command, duration)
    after = server.cpu_seconds()
    cpu = None if before is None or after is None else after - before
    fresh = parse_fresh(output) if pool is not None else None
    return Run(round_, result, cpu, duration, fresh), command


# -- the whole run ---------------------------------------------------------------------


@dataclass
class Measurement:
    settings: Settings
    results: list[Result]
    commands: dict[str, list[str]]  # "server", "repeated", "fresh": the last ones run
    problems: list[str]
    load_average: tuple[tuple[float, ...], tuple[float, ...]]
    seconds: float
    pool_size: int


def _shown(command: Sequence[str]) -> str:
    """The command as a shell would take it, the bearer token elided."""
    shown = [re.sub(r"Bearer \S+", "Bearer <token>", part) for part in command]
    return shlex.join(shown)


def measure_all(
    settings: Settings,
    progress: Callable[[str], None],
    *,
    contenders: Sequence[Contender] = CONTENDERS,
    seed: int | None = None,
) -> Measurement:
    """Check, warm up and time every contender, one new server per contender and round."""
    started = time.monotonic()
    load_before = os.getloadavg()
    rng = random.Random(seed)
    results = {c.name: Result(c) for c in contenders}
    timed = [c for c in contenders if settings.timed is None or c.name in settings.timed]
    checked_only = [c for c in contenders if c not in timed]
    problems: list[str] = []
    commands: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="asgi_auth_e2e_") as directory:
        progress(f"signing {settings.pool:,} fresh tokens")
        tokens = make_tokens(Path(directory), settings.pool)
        for contender in checked_only:
            progress(f"checking {contender.name} (not timed in this run)")
            _one(contender, results[contender.name], tokens, settings, None, problems, commands)
        total = settings.rounds * len(timed)
        done = 0
        for round_ in range(settings.rounds):
            order = [c for c in timed if results[c.name].excluded is None]
            rng.shuffle(order)
            for contender in order:
                done += 1
                progress(f"[{done}/{total}] {contender.name}")
                _one(
                    contender, results[contender.name], tokens, settings, round_, problems, commands
                )
    for result in results.values():
        if result.excluded is not None:
            result.runs.clear()
            continue
        bad = sum(r.wrk.non_2xx for r in result.runs)
        errors = sum(r.wrk.socket_errors for r in result.runs)
        name = result.contender.name
        if bad:
            problems.append(f"{name}: {bad} answers other than 2xx under load")
        if errors:
            problems.append(f"{name}: wrk counted {errors} socket errors")
        if result.contender.tokens == "fresh":
            for run in result.runs:
                problems += _fresh_problems(name, run, tokens.pool_size)
    return Measurement(
        settings,
        list(results.values()),
        commands,
        problems,
        (load_before, os.getloadavg()),
        time.monotonic() - started,
        tokens.pool_size,
    )


def _one(
    contender: Contender,
    result: Result,
    tokens: Tokens,
    settings: Settings,
    round_: int | None,
    problems: list[str],
    commands: dict[str, list[str]],
) -> None:
    """One new server: check it, and unless ``round_`` is None warm it up and time it."""
    try:
        with serve(contender.app, tokens.secret) as server:
            result.checks = check(server, contender, tokens)
            commands["server"] = server.command
            if round_ is not None:
                warm_up(server, contender, tokens, settings.warmup)
                run, command = time_server(server, contender, tokens, settings.duration, round_)
                result.runs.append(run)
                commands[contender.tokens] = command
    except (CheckFailed, RuntimeError, OSError, http.client.HTTPException) as exc:
        result.excluded = str(exc).strip() or type(exc).__name__
        return
    log = server.final_output.strip()
    if log:
        problems.append(f"{contender.name}: the server wrote to its log:\n{log}")


def _fresh_problems(name: str, run: Run, pool: int) -> list[str]:
    if run.fresh is None:
        return [f"{name}: fresh_tokens.lua reported nothing (round {run.round + 1})"]
    problems = []
    if sum(run.fresh.sent) < run.wrk.requests:
        problems.append(f"{name}: the script sent fewer requests than wrk counted")
    if run.fresh.pool != pool:
        problems.append(f"{name}: the script loaded {run.fresh.pool} tokens, not {pool}")
    if any(sent > pool for sent in run.fresh.sent):
        problems.append(f"{name}: a wrk thread went round the whole pool (tokens repeated)")
    return problems


# -- the document ----------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def records(measurement: Measurement) -> list[dict[str, Any]]:
    """One record per contender that was timed and passed its checks, in table order."""
    timed = {r.contender.name: r for r in measurement.results if r.runs}
    rps = {name: _median([run.wrk.rps for run in r.runs]) for name, r in timed.items()}
    cpu: dict[str, float | None] = {}
    for name, r in timed.items():
        per_run = [v for run in r.runs if (v := run.cpu_us_per_request) is not None]
        cpu[name] = _median(per_run) if len(per_run) == len(r.runs) else None
    base_rounds = {run.round: run for run in timed[BASELINE].runs} if BASELINE in timed else {}
    out = []
    for name, result in timed.items():
        contender = result.contender
        runs = result.runs
        paired = [
            round(run.wrk.rps / base_rounds[run.round].wrk.rps, 3)
            for run in runs
            if run.round in base_rounds and base_rounds[run.round].wrk.rps
        ]
        base_cpu, own_cpu = cpu.get(BASELINE), cpu[name]
        busy = [run.cpu_seconds / run.duration for run in runs if run.cpu_seconds is not None]
        record: dict[str, Any] = {
            "group": "e2e",
            "case": "GET /me",
            "contender": name,
            "unit": "req/s",
            "value": round(rps[name], 1),
            "p50_ms": round(_median([run.wrk.p50_ms for run in runs]), 3),
            "p99_ms": round(_median([run.wrk.p99_ms for run in runs]), 3),
            "cpu_us_per_request": _round(own_cpu, 1),
            "baseline": BASELINE,
            "ratio": round(rps[name] / rps[BASELINE], 3) if BASELINE in rps else None,
            "rounds": len(runs),
            # More than the schema asks for:
            "description": contender.description,
            "framework": contender.framework,
            "tokens": contender.tokens,
            "reference": not contender.authenticates,
            "ratio_cpu": round(base_cpu / own_cpu, 3) if base_cpu and own_cpu else None,
            "ratio_per_round": paired,
            "ratio_round_median": round(_median(paired), 3) if paired else None,
            "ratio_to_fastapi_bare": (
                round(rps[name] / rps[FASTAPI_BASELINE], 3)
                if contender.framework == "FastAPI" and FASTAPI_BASELINE in rps
                else None
            ),
            "rps_per_round": [[run.round, round(run.wrk.rps, 1)] for run in runs],
            "rps_min": round(min(run.wrk.rps for run in runs), 1),
            "rps_max": round(max(run.wrk.rps for run in runs), 1),
            "server_cpu_busy": round(_median(busy), 3) if busy else None,
            "requests": sum(run.wrk.requests for run in runs),
            "non_2xx": sum(run.wrk.non_2xx for run in runs),
            "socket_errors": sum(run.wrk.socket_errors for run in runs),
        }
        out.append(record)
    return out


def targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each target with the ratio from this run (requests/s), and by CPU time too."""
    by_name = {r["contender"]: r for r in rows}
    out = []
    for target in TARGETS:
        mine, theirs = by_name.get(target.contender), by_name.get(target.baseline)
        entry: dict[str, Any] = {
            "name": target.name,
            "ratio": 0.0,
            "target": target.ratio,
            "met": False,
            "contender": target.contender,
            "baseline": target.baseline,
        }
        if mine is None or theirs is None:
            entry["missing"] = "not measured (excluded or not timed)"
            out.append(entry)
            continue
        ratio = mine["value"] / theirs["value"]
        cpu_mine, cpu_theirs = mine["cpu_us_per_request"], theirs["cpu_us_per_request"]
        by_cpu = cpu_theirs / cpu_mine if cpu_mine and cpu_theirs else None
        pairs = {n: rps for n, rps in theirs["rps_per_round"]}
        each = [round(rps / pairs[n], 3) for n, rps in mine["rps_per_round"] if pairs.get(n)]
        entry.update(
            ratio=round(ratio, 3),
            met=ratio >= target.ratio,
            ratio_cpu=_round(by_cpu, 3),
            met_by_cpu=None if by_cpu is None else by_cpu >= target.ratio,
        )
        if each:
            entry["ratio_per_round"] = each
            entry["ratio_round_median"] = round(_median(each), 3)
        out.append(entry)
    return out


def environment(measurement: Measurement) -> dict[str, Any]:
    env = base_environment()
    env["packages"] = {name: _version(name) for name in PACKAGES}
    env["wrk"] = authz.wrk_version()
    env["source"] = authz.source_state()
    commands = measurement.commands
    env["server"] = shlex.join(commands["server"]) if "server" in commands else None
    env["load_generator"] = _shown(commands["repeated"]) if "repeated" in commands else None
    env["load_generator_fresh"] = _shown(commands["fresh"]) if "fresh" in commands else None
    env["load_average_start"] = list(measurement.load_average[0])
    env["load_average_end"] = list(measurement.load_average[1])
    env["seconds"] = round(measurement.seconds, 1)
    return env


def document(measurement: Measurement) -> dict[str, Any]:
    rows = records(measurement)
    return {
        "benchmark": "e2e",
        "environment": environment(measurement),
        "settings": measurement.settings.as_dict(),
        "records": rows,
        "targets": targets(rows),
        "checks": {
            r.contender.name: {
                "passed": r.excluded is None,
                "answers": r.checks,
                "timed": bool(r.runs),
                **({"reason": r.excluded} if r.excluded is not None else {}),
            }
            for r in measurement.results
        },
        "excluded": [
            {"contender": r.contender.name, "reason": r.excluded}
            for r in measurement.results
            if r.excluded is not None
        ],
        "problems": measurement.problems,
    }


def measure(
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    *,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark with ``settings``; the JSON document.

    Raises:
        BenchmarkError: the baseline (``bare``) failed its checks.
    """
    measurement = measure_all(settings, progress or _progress, seed=seed)
    if progress is None:
        print(file=sys.stderr)
    base = next(r for r in measurement.results if r.contender.name == BASELINE)
    if base.excluded is not None:
        raise BenchmarkError(f"the baseline ({BASELINE}) failed: {base.excluded}")
    return document(measurement)


def run(
    quick: bool, rounds: int | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The whole benchmark (``--quick`` or not); the JSON document ``--json`` writes.

    Raises:
        BenchmarkError: the baseline failed its checks.
        ValueError: ``rounds`` below 1.
    """
    settings = PRESETS["quick" if quick else "full"]
    if rounds is not None:
        if rounds < 1:
            raise ValueError("rounds must be at least 1")
        settings = replace(settings, rounds=rounds)
    return measure(settings, progress)


# -- the Markdown report ---------------------------------------------------------------

#: The probes' columns in the checks table.
_PROBES: Final = (
    "valid token",
    "no token",
    "tampered",
    "expired",
    "no exp",
    "no sub",
    "unexpected aud",
)


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render(doc: Mapping[str, Any]) -> str:
    """The Markdown report of a document from :func:`run`."""
    env, settings = doc["environment"], doc["settings"]
    versions = " · ".join(f"{name} {version}" for name, version in env["packages"].items())
    start, end = env["load_average_start"], env["load_average_end"]
    rounds = settings["rounds"]
    warm = f"{settings['warmup_requests_per_server']} requests one at a time"
    if settings["wrk_warmup_seconds_per_server"]:
        warm += f", then wrk for {settings['wrk_warmup_seconds_per_server']} s"
    lines = [
        "## End to end: `GET /me` through uvicorn",
        "",
        f"- Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs; load "
        f"average {start[0]:.2f} at the start, {end[0]:.2f} at the end",
        f"- {versions}",
        f"- {env['wrk']}",
        f"- asgi_auth source: {env['source']}",
        f"- **The server (one uvicorn worker) and wrk (one thread) run on the same "
        f"{env['cpu_count']} CPUs**, which other work shares too: absolute numbers are lower "
        "than on a dedicated server; compare the ratios (from one run) and the server's "
        "CPU time per request.",
        f"- whole run: {env['seconds']:.0f} s",
        f"- server, one at a time, a new one for every contender and round (the app "
        f"chosen by `{e2e_apps.ENV_APP}`): `{env['server']}`",
        f"- load, one token: `{env['load_generator']}`",
    ]
    if env["load_generator_fresh"]:
        lines.append(
            f"- load, a new token per request: `{env['load_generator_fresh']}` (the file holds "
            f"{settings['fresh_token_pool']:,} distinct valid HS256 tokens; the verifier "
            f"caches {settings['verifier_cache_size']:,}; each run starts at the top of the "
            "pool and the warm-up elsewhere, so every timed request is a cache miss)"
        )
    lines += [
        "- the port changes with every server; `<token>` is an HS256 token for "
        f"`{SUBJECT}` (`sub`, `iat`, `nbf`, `exp`, `jti`), signed with a secret made for the run",
        f"- {rounds} round{'s' if rounds != 1 else ''} of {settings['wrk_seconds_per_run']} s "
        f"per contender in a new random order each round; each new server is checked, then "
        f"warmed up ({warm}); medians over the rounds; server CPU per request from /proc "
        "(user + system time of the uvicorn process over the wrk run, divided by the "
        "requests wrk completed); *CPU busy*: that time over the run's length (1.00: the "
        "server had a whole CPU to itself)",
        "",
        "| Contender | What | Median req/s | p50 ms | p99 ms | vs bare | vs FastAPI bare "
        "| Server CPU µs/request | vs bare by CPU | CPU busy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["records"]:
        cpu = r["cpu_us_per_request"]
        busy = r["server_cpu_busy"]
        lines.append(
            f"| {r['contender']} | {r['description']} | {r['value']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {_x(r['ratio'])} | {_x(r['ratio_to_fastapi_bare'])} "
            f"| {'n/a' if cpu is None else f'{cpu:,.1f}'} | {_x(r['ratio_cpu'])} "
            f"| {'n/a' if busy is None else f'{busy:.2f}'} |"
        )
    lines += ["", "### Targets", ""]
    for t in doc["targets"]:
        if "missing" in t:
            lines.append(
                f"- `{t['contender']}` ≥ {t['target']:.2f}x `{t['baseline']}`: "
                f"{_verdict(False)} ({t['missing']})"
            )
            continue
        detail = f"{t['ratio']:.3f}x"
        if t.get("ratio_cpu") is not None:
            detail += f"; by server CPU per request {t['ratio_cpu']:.3f}x"
        each = t.get("ratio_per_round") or []
        if len(each) > 1:
            detail += (
                f"; round by round {min(each):.2f}x to {max(each):.2f}x, "
                f"median {t['ratio_round_median']:.2f}x"
            )
        lines.append(
            f"- `{t['contender']}` ≥ {t['target']:.2f}x `{t['baseline']}` (req/s): "
            f"{_verdict(t['met'])} ({detail})"
        )
    lines += [
        "",
        "### Checks (every new server, before it is timed)",
        "",
        "Statuses answered; 200s carried the caller's subject. "
        "*unexpected aud*: a token with an `aud` none of them configured, recorded only.",
        "",
        "| Contender | " + " | ".join(_PROBES) + " | pool tokens |",
        "|---|" + "---:|" * (len(_PROBES) + 1),
    ]
    for name, checked in doc["checks"].items():
        answers = checked["answers"]
        pool = [s for label, s in answers.items() if label.startswith("pool token")]
        pooled = f"{len(pool)} x {pool[0]}" if pool and len(set(pool)) == 1 else "—"
        cells = [str(answers.get(p, "—")) for p in _PROBES]
        suffix = "" if checked["timed"] or not checked["passed"] else " (not timed)"
        lines.append(f"| {name}{suffix} | " + " | ".join(cells) + f" | {pooled} |")
    lines += ["", "### What each contender verifies", ""]
    lines += [f"- {note}" for note in _notes(doc)]
    if doc["excluded"]:
        lines += ["", "### Left out", ""]
        lines += [f"- {e['contender']}: {e['reason']}" for e in doc["excluded"]]
    if doc["problems"]:
        lines += ["", "### Problems", ""]
        lines += [f"- {problem}" for problem in doc["problems"]]
    return "\n".join(lines)


def _notes(doc: Mapping[str, Any]) -> list[str]:
    checks = doc["checks"]
    bearer = checks.get("FastAPI HTTPBearer + PyJWT", {}).get("answers", {}).get("no token")
    litestar_aud = checks.get("Litestar JWTAuth", {}).get("answers", {}).get("unexpected aud")
    fastapi = doc["environment"]["packages"].get("fastapi")
    notes = [
        'asgi_auth (all rows): `JWTVerifier(Key.from_secret(secret), algorithms=["HS256"])` '
        "defaults: signature, `exp` required and not passed, `sub` a non-empty string, "
        "`nbf`/`iat` not in the future, an `aud` refused when none is configured, `cnf` "
        "refused; a strict base64url parse; verified tokens cached (10,000) until `exp`.",
        "PyJWT rows (Starlette `AuthenticationMiddleware`, pure ASGI, FastAPI `HTTPBearer`): "
        '`jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", '
        '"sub"]})` on every request: signature, `exp`, `nbf`, `iat`, an unexpected `aud` '
        "refused, `sub` a string; no cache.",
        "Litestar `JWTAuth`: PyJWT's `jwt.decode` with `require=[exp, sub]` and, with no "
        "audience configured, `verify_aud=False`: "
        + (
            f"a token with an `aud` nobody configured is accepted ({litestar_aud}), "
            if litestar_aud == 200
            else f"a token with an `aud` nobody configured answered {litestar_aud}, "
        )
        + "where asgi_auth and plain `jwt.decode` refuse it; it also requires `iat` (its "
        "`Token` dataclass), builds a `Token` through msgspec and awaits "
        "`retrieve_user_handler` on every request; it takes whatever follows the first "
        "space of the header as the token, whatever the scheme; no cache.",
        f"FastAPI `HTTPBearer()` (FastAPI {fastapi}) answers a missing header with "
        f"{bearer if bearer is not None else 'n/a'} (403 before FastAPI ~0.115, 401 since).",
        "The endpoints behind `AuthMiddleware` alone and `AuthenticationMiddleware` refuse "
        "anonymous callers themselves (`if not request.user.is_authenticated`), so that "
        "those rows compare the middlewares; the pure ASGI middleware refuses them itself; "
        "`@guard(authenticated)` and `Depends(current_principal)` are asgi_auth's own ways.",
    ]
    return notes


# -- the command line ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 1 s per contender (about 40 s)"
    )
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds (default 5; 2 quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (https://github.com/wg/wrk)")
    try:
        if args.smoke:
            settings = PRESETS["smoke"]
            if args.rounds is not None:
                settings = replace(settings, rounds=args.rounds)
            doc = measure(settings)
        else:
            doc = run(args.quick, args.rounds)
    except BenchmarkError as exc:
        print(f"python -m benchmarks.e2e: {exc}", file=sys.stderr)
        return 1
    print(render(doc))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
