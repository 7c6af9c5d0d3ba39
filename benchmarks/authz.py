"""Authorization cost: guarded routes through a real server, and role lookups at scale.

Run ``python -m benchmarks.authz [--quick] [--json PATH] [--rounds N]
[--backend sqlite|postgresql]``.

(a) End to end. uvicorn (one worker, uvloop, httptools) serves
:mod:`benchmarks.authz_app` in a subprocess: ``/open`` (AuthMiddleware, no guard, the
baseline), ``/cached`` (``@guard(has_role("admin"))``, rights through ``CachedRights``
with a long TTL: cache hits after the warm-up) and ``/db`` (the same guard, rights from
the bare ``SQLRightsLoader``: one query per request). Before anything is timed, each
route must answer a valid admin token with 200, and the guarded ones must refuse a
non-admin (403) and an anonymous caller (401). After a warm-up, wrk loads one route at
a time, in a new random order every round; the table shows the medians over the
rounds (requests/s and wrk's p50/p99 latency) and the ratio to ``/open`` from the
same run. Queries and loader calls per request come from the app's own counters
(``/_stats``), read once the server has no request in flight; the server's CPU time
per request (user + system, all threads, from ``/proc`` on Linux) is less sensitive
than requests/s to what else runs on the machine.

(b) Role lookups. ``SQLRightsLoader.load`` (no cache) on two stores filled with N
users each (one role and two claims apiece): random existing subjects, the two
stores alternating in a shuffled order every round; median and p99 over every
lookup, and the ratio of the larger store to the smaller.

The server and wrk share the machine's CPUs (two on the reference machine), so the
absolute numbers are lower than on a dedicated server; the ratios come from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import http.client
import json
import math
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from asgi_auth.store import SQLRightsLoader, Store
from asgi_auth.store.schema import SCHEMA_VERSION, statements
from asgi_auth.tokens import Key, TokenIssuer
from benchmarks import authz_app
from benchmarks.verify import _progress, _version
from benchmarks.verify import environment as base_environment

ROOT: Final = Path(__file__).resolve().parent.parent
BASELINE: Final = "/open"
ROUTES: Final = authz_app.ROUTES
DESCRIPTIONS: Final = {
    "/open": "AuthMiddleware, no guard",
    "/cached": 'guard(has_role("admin")), CachedRights (hits)',
    "/db": 'guard(has_role("admin")), SQLRightsLoader (no cache)',
}
PACKAGES: Final = (
    "asgi-auth",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "databases",
    "SQLAlchemy",
    "aiosqlite",
    "asyncpg",
    "PyJWT",
)
#: Where the temporary PostgreSQL databases are created from (and dropped).
POSTGRES_ADMIN_URL: Final = os.environ.get(
    "ASGI_AUTH_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
WRK_THREADS: Final = 1
WRK_CONNECTIONS: Final = 32
#: The subject of the benchmark's token: an admin (odd user ids are admins).
SUBJECT: Final = 1
#: A user without the admin role, for the check that the guard refuses.
NON_ADMIN: Final = 2
ROLES: Final = ((1, "admin"), (2, "user"))
CLAIMS: Final = ((1, "can_read"), (2, "can_write"), (3, "can_delete"))
#: Targets from the issue.
CACHED_TARGET: Final = 0.85
LOOKUP_TARGET: Final = 1.5


# -- the users every store holds ---------------------------------------------------------


def role_of(user_id: int) -> int:
    """The role id of a filled user: admin (1) for odd ids, user (2) for even ones."""
    return 1 if user_id % 2 else 2


def claims_of(user_id: int) -> tuple[int, int]:
    """The two claim ids of a filled user."""
    return (user_id % 3 + 1, (user_id + 1) % 3 + 1)


def expected_rights(user_id: int) -> tuple[frozenset[str], frozenset[str]]:
    roles, claims = dict(ROLES), dict(CLAIMS)
    return frozenset({roles[role_of(user_id)]}), frozenset(claims[c] for c in claims_of(user_id))


def fill_sqlite(path: Path, users: int) -> None:
    """Create the schema and ``users`` users in a new SQLite file, in one transaction."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous = OFF")  # a throwaway file (not persistent)
        connection.execute("BEGIN")
        for statement in statements("sqlite"):
            connection.execute(statement)
        connection.execute("INSERT INTO asgi_auth_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        connection.executemany("INSERT INTO roles (id, name) VALUES (?, ?)", ROLES)
        connection.executemany("INSERT INTO claims (id, name) VALUES (?, ?)", CLAIMS)
        connection.executemany(
            "INSERT INTO users (id, username, role_id, is_active) VALUES (?, ?, ?, 1)",
            ((i, f"user{i}", role_of(i)) for i in range(1, users + 1)),
        )
        connection.executemany(
            "INSERT INTO user_claims (user_id, claim_id) VALUES (?, ?)",
            ((i, c) for i in range(1, users + 1) for c in claims_of(i)),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


async def init_schema(url: str) -> None:
    """``Store.init_schema()`` on the store at ``url``."""
    async with Store(url) as store:
        await store.init_schema()


async def _postgres(url: str, *sql: str) -> str:
    """Run statements on ``url`` (outside any transaction); returns the server version."""
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        for statement in sql:
            await connection.execute(statement)
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()


async def fill_postgresql(url: str, users: int) -> None:
    """Create the schema (``Store.init_schema``) and ``users`` users, server-side."""
    import asyncpg

    await init_schema(url)
    connection = await asyncpg.connect(url, timeout=10)
    try:
        async with connection.transaction():
            await connection.executemany("INSERT INTO roles (id, name) VALUES ($1, $2)", ROLES)
            await connection.executemany("INSERT INTO claims (id, name) VALUES ($1, $2)", CLAIMS)
            await connection.execute(
                "INSERT INTO users (id, username, role_id, is_active) "
                "SELECT i, 'user' || i, CASE WHEN i % 2 = 1 THEN 1 ELSE 2 END, TRUE "
                "FROM generate_series(1, $1::bigint) AS i",
                users,
            )
            await connection.execute(
                "INSERT INTO user_claims (user_id, claim_id) "
                "SELECT i, c FROM generate_series(1, $1::bigint) AS i "
                "CROSS JOIN LATERAL (VALUES (i % 3 + 1), ((i + 1) % 3 + 1)) AS v(c)",
                users,
            )
            for table in ("roles", "claims", "users"):
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT MAX(id) FROM {table}))"
                )
        # What autovacuum would have done to a table of this size by now.
        await connection.execute("VACUUM ANALYZE users, user_claims, roles, claims")
    finally:
        await connection.close()


@dataclass(frozen=True)
class Stores:
    """The filled stores: URL by number of users, and what the store is."""

    urls: Mapping[int, str]
    description: str


@contextlib.contextmanager
def filled_stores(backend: str, sizes: Sequence[int]) -> Iterator[Stores]:
    """Stores with each number of users: SQLite files in a temporary directory, or
    temporary PostgreSQL databases, removed (dropped) afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="asgi_auth_bench_") as directory:
            urls = {}
            for size in sizes:
                _progress(f"filling an SQLite store with {size:,} users")
                path = Path(directory) / f"users_{size}.db"
                fill_sqlite(path, size)
                urls[size] = f"sqlite:///{path}"
                # The library's own (idempotent) set-up on top: pragmas, missing tables.
                asyncio.run(init_schema(urls[size]))
            yield Stores(urls, f"SQLite {sqlite3.sqlite_version} (files in a temporary directory)")
        return
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    names = {size: f"asgi_auth_bench_{secrets.token_hex(4)}_{size}" for size in sizes}
    created: list[str] = []
    try:
        version = ""
        for size, name in names.items():
            version = asyncio.run(_postgres(POSTGRES_ADMIN_URL, f'CREATE DATABASE "{name}"'))
            created.append(name)
            _progress(f"filling a PostgreSQL store with {size:,} users")
            asyncio.run(fill_postgresql(f"{base}/{name}", size))
        host = POSTGRES_ADMIN_URL.split("@")[-1].rsplit("/", 1)[0]
        yield Stores(
            {size: f"{base}/{name}" for size, name in names.items()},
            f"PostgreSQL {version} at {host} (temporary databases)",
        )
    finally:
        for name in created:
            asyncio.run(
                _postgres(POSTGRES_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )


# -- (a) end to end ----------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run printed."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_TIME: Final = r"([\d.]+)(us|ms|s|m|h)"


def _milliseconds(text: str, percent: int) -> float:
    found = re.search(rf"^\s*{percent}(?:\.0+)?%\s+{_TIME}\s*$", text, re.MULTILINE)
    if found is None:
        raise ValueError(f"no {percent}% latency in wrk's output:\n{text}")
    return float(found[1]) * _UNITS[found[2]]


def parse_wrk(text: str) -> WrkResult:
    """Requests/s, the p50 and p99 latencies (ms) and the errors of ``wrk --latency``.

    Raises:
        ValueError: the output lacks one of them.
    """
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    count = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    if rps is None or count is None:
        raise ValueError(f"no requests/sec in wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        rps=float(rps[1]),
        p50_ms=_milliseconds(text, 50),
        p99_ms=_milliseconds(text, 99),
        requests=int(count[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def wrk_command(url: str, token: str, duration: int) -> list[str]:
    return [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNECTIONS}",
        f"-d{duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]


def run_wrk(command: Sequence[str], duration: int) -> WrkResult:
    """Run wrk (killed if it overruns by a minute) and parse what it printed.

    Raises:
        RuntimeError: wrk failed or printed nothing usable.
    """
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    try:
        return parse_wrk(done.stdout)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from exc


def wrk_version() -> str:
    """``wrk -v``'s first words ("wrk 4.1.0 [epoll]"), or "not installed"."""
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


def free_port() -> int:
    """A port the OS has just handed out on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.authz_app:app",
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "on",  # a store that cannot connect stops the server instead of a warning
    ]


def request(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    """One GET on the server: its status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class Server:
    """A running benchmark server."""

    process: subprocess.Popen[bytes]
    port: int
    command: list[str]
    log: Any  # the binary file its output goes to
    final_output: str = ""  # all of it, once the server has stopped

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        self.log.seek(0)
        text: str = self.log.read().decode("utf-8", "replace")
        return text

    def cpu_seconds(self) -> float | None:
        """User and system CPU time the server has used (Linux ``/proc``; else None)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        """``/_stats`` once no request is in flight (or after 10 s)."""
        deadline = time.monotonic() + 10
        while True:
            status, body = request(self.port, authz_app.STATS_PATH)
            if status != 200:
                raise RuntimeError(f"{authz_app.STATS_PATH} answered {status}")
            found: dict[str, Any] = json.loads(body)
            if found["in_flight"] == 0 or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@contextlib.contextmanager
def run_server(
    command: Sequence[str],
    port: int,
    env: Mapping[str, str],
    ready: Callable[[int], bool],
    timeout: float,
) -> Iterator[Server]:
    """A uvicorn ``command`` on ``port`` in a subprocess (``env`` added to ours, the
    repository on ``PYTHONPATH``), yielded once ``ready(port)`` holds; always stopped
    afterwards (SIGTERM, then SIGKILL after 15 seconds).

    Raises:
        RuntimeError: the server exited, or was not ready within ``timeout`` seconds.
    """
    path = os.environ.get("PYTHONPATH")
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}",
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        server = Server(process, port, list(command), log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited ({process.returncode}):\n{server.output()}"
                    )
                with contextlib.suppress(OSError):
                    if ready(port):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{server.output()}")
                time.sleep(0.02)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            server.final_output = server.output()


@contextlib.contextmanager
def serve(database_url: str, secret: str) -> Iterator[Server]:
    """uvicorn serving the benchmark app in a subprocess; always stopped afterwards.

    Raises:
        RuntimeError: the server did not answer within 20 seconds.
    """
    port = free_port()
    env = {authz_app.ENV_DATABASE_URL: database_url, authz_app.ENV_SECRET: secret}
    with run_server(
        server_command(port),
        port,
        env,
        lambda port: request(port, authz_app.STATS_PATH)[0] == 200,
        timeout=20,
    ) as server:
        yield server


def check_routes(server: Server, admin: str, user: str) -> None:
    """Every route answers an admin; the guarded ones refuse others, as they should.

    Raises:
        RuntimeError: a route answered otherwise (nothing is timed then).
    """
    expected: list[tuple[str, str | None, int]] = [(route, admin, 200) for route in ROUTES]
    expected += [(route, user, 403) for route in ROUTES if route != BASELINE]
    expected += [(route, None, 401) for route in ROUTES if route != BASELINE]
    for route, token, status in expected:
        got, body = request(server.port, route, token)
        who = {admin: "an admin", user: "a non-admin", None: "no token"}[token]
        if got != status:
            raise RuntimeError(f"GET {route} with {who} answered {got}, not {status}: {body!r}")
        if status == 200 and json.loads(body) != {"ok": True}:
            raise RuntimeError(f"GET {route} answered {body!r}")


@dataclass
class Run:
    """One wrk run on one route, with the server's counters over it."""

    wrk: WrkResult
    requests: int  # as the server counted them
    queries: int
    loads: int
    statuses: dict[str, int]
    cpu_seconds: float | None  # the server process's, all threads, over the wrk run


@dataclass
class RouteResult:
    route: str
    runs: list[Run] = field(default_factory=list)


def _delta(before: Mapping[str, Any], after: Mapping[str, Any], route: str) -> tuple[int, ...]:
    requests = after["requests"].get(route, 0) - before["requests"].get(route, 0)
    loads = sum(after["loads"].values()) - sum(before["loads"].values())
    return requests, after["queries"] - before["queries"], loads


def _statuses(before: Mapping[str, Any], after: Mapping[str, Any], route: str) -> dict[str, int]:
    old = Counter(before["statuses"].get(route, {}))
    new = Counter(after["statuses"].get(route, {}))
    new.subtract(old)
    return {status: n for status, n in sorted(new.items()) if n}


@dataclass
class EndToEnd:
    routes: list[RouteResult]
    server_command: list[str]
    wrk_commands: dict[str, list[str]]
    problems: list[str]


def run_end_to_end(
    database_url: str,
    *,
    rounds: int,
    duration: int,
    warmup: int,
    rng: random.Random,
) -> EndToEnd:
    """Serve the app on ``database_url``, check it, warm it up, then time every route."""
    secret = secrets.token_urlsafe(32)
    issuer = TokenIssuer(
        Key.from_secret(secret), issuer=authz_app.ISSUER, audience=authz_app.AUDIENCE
    )
    # Tokens carry no roles: the guard must ask the store (or its cache).
    admin, user = issuer.issue(SUBJECT), issuer.issue(NON_ADMIN)
    results = {route: RouteResult(route) for route in ROUTES}
    problems: list[str] = []
    with serve(database_url, secret) as server:
        _progress("checking the routes")
        check_routes(server, admin, user)
        commands = {route: wrk_command(server.url(route), admin, duration) for route in ROUTES}
        for route in ROUTES:
            _progress(f"warming up {route} ({warmup} s)")
            run_wrk(wrk_command(server.url(route), admin, warmup), warmup)
        done = 0
        for _ in range(rounds):
            order = list(ROUTES)
            rng.shuffle(order)
            for route in order:
                done += 1
                _progress(f"[{done}/{rounds * len(ROUTES)}] wrk {duration} s on {route}")
                before = server.stats()
                cpu_before = server.cpu_seconds()
                wrk = run_wrk(commands[route], duration)
                cpu_after = server.cpu_seconds()
                after = server.stats()
                requests, queries, loads = _delta(before, after, route)
                statuses = _statuses(before, after, route)
                cpu = None
                if cpu_before is not None and cpu_after is not None:
                    cpu = cpu_after - cpu_before
                run = Run(wrk, requests, queries, loads, statuses, cpu)
                results[route].runs.append(run)
        command = server.command
    log = server.final_output.strip()
    if log:
        problems.append(f"the server wrote to its log:\n{log}")
    for result in results.values():
        bad = Counter[str]()
        for run in result.runs:
            bad.update({s: n for s, n in run.statuses.items() if s != "200"})
        if bad:
            problems.append(f"{result.route}: responses other than 200: {dict(bad)}")
        errors = sum(run.wrk.socket_errors for run in result.runs)
        if errors:
            problems.append(f"{result.route}: wrk counted {errors} socket errors")
    return EndToEnd(list(results.values()), command, commands, problems)


# -- (b) role lookups ----------------------------------------------------------------------


@dataclass
class LookupResult:
    users: int
    samples_ns: list[int] = field(default_factory=list)
    round_medians_ns: list[float] = field(default_factory=list)
    wrong: int = 0  # lookups whose answer was not the user's role and claims


async def _time_lookups(
    loader: SQLRightsLoader, result: LookupResult, count: int, rng: random.Random
) -> None:
    subjects = [rng.randint(1, result.users) for _ in range(count)]
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for subject in subjects:
            start = clock()
            rights = await loader.load(str(subject))
            samples.append(clock() - start)
            if (rights.roles, rights.claims) != expected_rights(subject):
                result.wrong += 1
    finally:
        gc.enable()
    result.samples_ns += samples
    result.round_medians_ns.append(statistics.median(samples))


async def _lookups(
    urls: Mapping[int, str], *, rounds: int, lookups: int, warmup: int, rng: random.Random
) -> list[LookupResult]:
    stores = {size: Store(url) for size, url in urls.items()}
    results = {size: LookupResult(size) for size in urls}
    try:
        for store in stores.values():
            await store.connect()
        loaders = {size: SQLRightsLoader(store) for size, store in stores.items()}
        for size, loader in loaders.items():
            _progress(f"warming up lookups on {size:,} users")
            await _time_lookups(loader, LookupResult(size), warmup, rng)
        done = 0
        for _ in range(rounds):
            order = list(loaders)
            rng.shuffle(order)
            for size in order:
                done += 1
                _progress(f"[{done}/{rounds * len(loaders)}] {lookups} lookups on {size:,} users")
                await _time_lookups(loaders[size], results[size], lookups, rng)
    finally:
        for store in stores.values():
            await store.disconnect()
    return list(results.values())


def run_lookups(
    urls: Mapping[int, str], *, rounds: int, lookups: int, rng: random.Random
) -> list[LookupResult]:
    """Time ``SQLRightsLoader.load`` on each store, alternating them in rounds."""
    warmup = max(50, lookups // 5)
    return asyncio.run(_lookups(urls, rounds=rounds, lookups=lookups, warmup=warmup, rng=rng))


# -- the whole run, and its report ---------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    backend: str
    rounds: int
    duration: int  # seconds per wrk run
    warmup: int  # seconds of wrk per route before the rounds
    users: tuple[int, int]  # the smaller and the larger store
    lookups: int  # per store per round

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "rounds": self.rounds,
            "wrk_seconds_per_run": self.duration,
            "wrk_warmup_seconds_per_route": self.warmup,
            "wrk_threads": WRK_THREADS,
            "wrk_connections": WRK_CONNECTIONS,
            "users": list(self.users),
            "lookups_per_store_per_round": self.lookups,
            "cache_ttl_seconds": authz_app.CACHE_TTL,
        }


PRESETS: Final = {
    "full": dict(rounds=8, duration=6, warmup=2, users=(1_000, 1_000_000), lookups=1_000),
    "quick": dict(rounds=4, duration=3, warmup=1, users=(1_000, 100_000), lookups=500),
    "smoke": dict(rounds=1, duration=1, warmup=1, users=(1_000, 2_000), lookups=100),
}


@dataclass
class Report:
    settings: Settings
    store: str
    end_to_end: EndToEnd
    lookups: list[LookupResult]
    load_average: tuple[tuple[float, ...], tuple[float, ...]]  # at the start and the end
    seconds: float
    notes: list[str] = field(default_factory=list)  # more problems, found by the caller

    @property
    def problems(self) -> list[str]:
        found = [*self.end_to_end.problems, *self.notes]
        found += [
            f"{r.users:,} users: {r.wrong} lookups returned wrong rights"
            for r in self.lookups
            if r.wrong
        ]
        return found


def run(settings: Settings, *, seed: int | None = None) -> Report:
    """Fill the stores, then measure (a) and (b)."""
    started = time.monotonic()
    load_before = os.getloadavg()
    rng = random.Random(seed)
    small, large = settings.users
    with filled_stores(settings.backend, (small, large)) as stores:
        end_to_end = run_end_to_end(
            stores.urls[small],
            rounds=settings.rounds,
            duration=settings.duration,
            warmup=settings.warmup,
            rng=rng,
        )
        lookups = run_lookups(
            stores.urls, rounds=settings.rounds, lookups=settings.lookups, rng=rng
        )
    print(file=sys.stderr)
    return Report(
        settings,
        stores.description,
        end_to_end,
        lookups,
        (load_before, os.getloadavg()),
        time.monotonic() - started,
    )


def environment() -> dict[str, Any]:
    """:func:`benchmarks.verify.environment` with this benchmark's packages and wrk."""
    env = base_environment()
    env["packages"] = {name: _version(name) for name in PACKAGES}
    env["wrk"] = wrk_version()
    env["source"] = source_state()
    return env


def source_state() -> str:
    """The commit measured, and whether ``asgi_auth/`` differed from it (and how)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD").strip()
    if not commit:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--", "asgi_auth").splitlines()
    if not changed:
        return f"commit {commit}"
    digest = hashlib.sha256(git("diff", "HEAD", "--", "asgi_auth").encode()).hexdigest()[:12]
    return (
        f"commit {commit} + uncommitted changes to {len(changed)} files in asgi_auth/ "
        f"(diff sha256 {digest})"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _cpu_per_request(runs: Sequence[Run], served: int) -> float | None:
    seconds = [run.cpu_seconds for run in runs]
    if not served or any(s is None for s in seconds):
        return None
    return round(sum(s or 0.0 for s in seconds) / served * 1e6, 1)


def _ratio(value: float, baseline: float | None) -> float | None:
    return None if not baseline else round(value / baseline, 3)


def records(report: Report) -> list[dict[str, Any]]:
    """One record per route (end to end) and per store size (lookups)."""
    out: list[dict[str, Any]] = []
    medians = {
        r.route: statistics.median(run.wrk.rps for run in r.runs) for r in report.end_to_end.routes
    }
    baseline_runs = next(r.runs for r in report.end_to_end.routes if r.route == BASELINE)
    for result in report.end_to_end.routes:
        runs = result.runs
        served = sum(run.requests for run in runs)
        rps = medians[result.route]
        paired = [
            round(run.wrk.rps / base.wrk.rps, 3)
            for run, base in zip(runs, baseline_runs, strict=True)
            if base.wrk.rps
        ]
        out.append(
            {
                "measurement": "end_to_end",
                "contender": result.route,
                "description": DESCRIPTIONS[result.route],
                "rps": round(rps, 1),
                "rps_min": round(min(run.wrk.rps for run in runs), 1),
                "rps_max": round(max(run.wrk.rps for run in runs), 1),
                "p50_ms": round(statistics.median(run.wrk.p50_ms for run in runs), 3),
                "p99_ms": round(statistics.median(run.wrk.p99_ms for run in runs), 3),
                "ratio": _ratio(rps, medians.get(BASELINE)),
                # Each round's ratio to /open in that round: drift on a shared machine
                # moves both, so their spread shows how much the median ratio can be trusted.
                "ratio_per_round": paired,
                "ratio_round_median": round(statistics.median(paired), 3) if paired else None,
                "queries_per_request": round(sum(r.queries for r in runs) / served, 4)
                if served
                else None,
                "loads_per_request": round(sum(r.loads for r in runs) / served, 4)
                if served
                else None,
                "server_cpu_us_per_request": _cpu_per_request(runs, served),
                "requests_served": served,
                "requests_wrk": sum(run.wrk.requests for run in runs),
                "non_2xx": sum(run.wrk.non_2xx for run in runs),
                "socket_errors": sum(run.wrk.socket_errors for run in runs),
                "rounds": len(runs),
            }
        )
    baseline = report.lookups[0] if report.lookups else None
    base_median = statistics.median(baseline.samples_ns) if baseline else None
    base_p99 = percentile(baseline.samples_ns, 99) if baseline else None
    for lookup in report.lookups:
        median = statistics.median(lookup.samples_ns)
        p99 = percentile(lookup.samples_ns, 99)
        out.append(
            {
                "measurement": "role_lookup",
                "case": f"{lookup.users:,} users",
                "users": lookup.users,
                "lookups": len(lookup.samples_ns),
                "median_us": round(median / 1e3, 1),
                "p99_us": round(p99 / 1e3, 1),
                "mean_us": round(statistics.fmean(lookup.samples_ns) / 1e3, 1),
                "round_medians_us": [round(m / 1e3, 1) for m in lookup.round_medians_ns],
                "ratio": _ratio(median, base_median),
                "p99_ratio": _ratio(p99, base_p99),
                "wrong_answers": lookup.wrong,
                "rounds": len(lookup.round_medians_ns),
            }
        )
    return out


def _template(command: Sequence[str]) -> str:
    """The wrk command with the token and route as placeholders."""
    shown = [re.sub(r"Bearer \S+", "Bearer $TOKEN", part) for part in command]
    shown[-1] = re.sub(r"/[^/]*$", "/{open,cached,db}", shown[-1])
    return shlex.join(shown).replace(
        "'Authorization: Bearer $TOKEN'", '"Authorization: Bearer $TOKEN"'
    )


def _rounds(n: int) -> str:
    return f"{n} round" if n == 1 else f"{n} rounds"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(report: Report, env: Mapping[str, Any]) -> str:
    settings = report.settings
    rows = records(report)
    routes = {r["contender"]: r for r in rows if r["measurement"] == "end_to_end"}
    sizes = [r for r in rows if r["measurement"] == "role_lookup"]
    versions = " · ".join(f"{name} {version}" for name, version in env["packages"].items())
    before, after = report.load_average
    server = shlex.join(["python", *report.end_to_end.server_command[1:]])
    wrk = _template(next(iter(report.end_to_end.wrk_commands.values())))
    lines = [
        "## Authorization benchmark",
        "",
        f"- Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs; "
        f"load average {before[0]:.2f} at the start, {after[0]:.2f} at the end",
        f"- {versions}",
        f"- {env['wrk']}",
        f"- store: {report.store}",
        f"- asgi_auth source: {env['source']}",
        f"- **The server (one uvicorn worker) and wrk (one thread) run on the same "
        f"{env['cpu_count']} CPUs**, which other work shares too: absolute numbers are "
        "lower than on a dedicated server; compare the ratios, which come from one run.",
        f"- whole run: {report.seconds:.0f} s",
        "",
        "### (a) End to end through uvicorn",
        "",
        f"- server: `{server}`",
        f"- load: `{wrk}`; `$TOKEN` is an HS256 token for user {SUBJECT} (an admin in the "
        "store, no roles in the token), signed with a secret made for the run",
        f"- the store holds {settings.users[0]:,} users; `/cached` keeps rights "
        f"{authz_app.CACHE_TTL:g} s",
        f"- {_rounds(settings.rounds)} of {settings.duration} s per route in a shuffled order, "
        f"after {settings.warmup} s of warm-up per route; medians of the rounds; "
        "queries and loader calls per request from the app's counters; server CPU "
        "per request from /proc (user + system time of the uvicorn process, all its "
        "threads, over the wrk runs, divided by the requests it served)",
        "",
        "| Route | Authorization | Median req/s | p50 ms | p99 ms | vs /open "
        "| Server CPU µs/request | Queries/request | Loader calls/request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for route in ROUTES:
        r = routes[route]
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        cpu = r["server_cpu_us_per_request"]
        lines.append(
            f"| `{route}` | {r['description']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {ratio} | {'n/a' if cpu is None else f'{cpu:,.1f}'} "
            f"| {r['queries_per_request']:.3f} "
            f"| {r['loads_per_request']:.3f} |"
        )
    cached, db = routes["/cached"], routes["/db"]
    cached_ratio = cached["ratio"] or 0.0
    cached_ok = _verdict(cached_ratio >= CACHED_TARGET)
    each = cached["ratio_per_round"]
    spread = (
        f"{min(each):.2f}x to {max(each):.2f}x, median {cached['ratio_round_median']:.2f}x"
        if each
        else "n/a"
    )
    per_miss = db["queries_per_request"]
    first = f"{settings.users[0]:,}"
    lines += [
        "",
        f"- target `/cached` ≥ {CACHED_TARGET:.2f}x `/open`: {cached_ok} ({cached_ratio:.3f}x; "
        f"round by round {spread})",
        f"- target one query per request on a miss (`/db`): "
        f"{_verdict(abs(per_miss - 1) < 0.005)} ({per_miss:.3f}); "
        f"`/cached` after warm-up: {cached['queries_per_request']:.4f}",
        "",
        "### (b) Role lookup: `SQLRightsLoader.load`, no cache",
        "",
        f"- random existing users (each with a role and 2 claims); {_rounds(settings.rounds)} of "
        f"{settings.lookups:,} lookups per store, stores in a shuffled order; one asyncio "
        "event loop (stdlib), one lookup at a time",
        "",
        f"| Users | Lookups | Median µs | p99 µs | vs {first} users (median) | (p99) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sizes:
        lines.append(
            f"| {r['users']:,} | {r['lookups']:,} | {r['median_us']:,.1f} | {r['p99_us']:,.1f} "
            f"| {r['ratio']:.2f}x | {r['p99_ratio']:.2f}x |"
        )
    if len(sizes) > 1:
        largest = sizes[-1]
        lines += [
            "",
            f"- target {largest['users']:,} / {sizes[0]['users']:,} users ≤ {LOOKUP_TARGET:.1f}x: "
            f"{_verdict(largest['ratio'] <= LOOKUP_TARGET)} (median {largest['ratio']:.2f}x, "
            f"p99 {largest['p99_ratio']:.2f}x)",
        ]
    if report.problems:
        lines += ["", "### Problems", ""]
        lines += [f"- {problem}" for problem in report.problems]
    return "\n".join(lines)


def settings_for(preset: str, backend: str, rounds: int | None) -> Settings:
    values: dict[str, Any] = dict(PRESETS[preset])
    if rounds is not None:
        values["rounds"] = rounds
    return Settings(backend=backend, **values)


def json_document(settings: Settings, report: Report, env: Mapping[str, Any]) -> dict[str, Any]:
    """What ``--json`` writes: environment, settings, results and problems of a run."""
    return {
        "environment": env,
        "settings": {
            **settings.as_dict(),
            "store": report.store,
            "server_command": report.end_to_end.server_command,
            "wrk_commands": {
                route: shlex.join(command)
                for route, command in report.end_to_end.wrk_commands.items()
            },
            "load_average_start": report.load_average[0],
            "load_average_end": report.load_average[1],
            "seconds": round(report.seconds, 1),
        },
        "results": records(report),
        "problems": report.problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.authz", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 rounds of 3 s wrk runs, 1,000 vs 100,000 users (about a minute)",
    )
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds (default 8; 4 quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql"), default="sqlite", help="the store"
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (https://github.com/wg/wrk)")
    preset = "smoke" if args.smoke else "quick" if args.quick else "full"
    settings = settings_for(preset, args.backend, args.rounds)
    env = environment()
    report = run(settings)
    if source_state() != env["source"]:
        report.notes.append(
            f"asgi_auth/ changed on disk during the run (now: {source_state()}); "
            "each process measured the code it imported when it started"
        )
    print(render(report, env))
    if args.json is not None:
        document = json_document(settings, report, env)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
