"""Every benchmark in one run, reported together.

Run ``python -m benchmarks [--quick] [--only verify,e2e,authz,login,oidc] [--json PATH]
[--plot PATH] [--rounds N]``.

Each benchmark module measures one thing and writes its own JSON document
(:mod:`benchmarks.verify`, :mod:`benchmarks.e2e`, :mod:`benchmarks.authz`,
:mod:`benchmarks.login`, :mod:`benchmarks.oidc`); this suite runs them one after the
other in this process, normalises each document into one shape with a small adapter
per module (:data:`BENCHMARKS`), and prints one Markdown table per group, a table of
the targets the modules state, and optionally one JSON document and a PNG chart.

The full run is each module's own full run (its ``main`` with its defaults). The
quick run picks, per module, fewer rounds and shorter timings than the module's own
``--quick`` and only the cases its targets need (see ``--help``), so that the whole
suite takes under a minute on a 2-CPU machine. Ratios in a quick run are noisier than
in a full one; the absolute numbers depend on the machine in any run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TextIO

#: A progress message from a module ("RS256 round 2/5").
Progress = Callable[[str], None]
#: A module's own JSON document, or one normalised record or target.
Document = dict[str, Any]

MODES: Final = ("full", "quick", "smoke")

# -- records and targets in the suite's shape --------------------------------------------


def record(
    group: str,
    case: str,
    contender: str,
    unit: str,
    value: float | None,
    *,
    baseline: str | None,
    ratio: float | None,
    rounds: int | None,
    p50_ms: float | None = None,
    p99_ms: float | None = None,
    cpu_us_per_request: float | None = None,
) -> Document:
    """One contender in one case, in the suite's shape (None where not relevant)."""
    return {
        "group": group,
        "case": case,
        "contender": contender,
        "unit": unit,
        "value": value,
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
        "cpu_us_per_request": cpu_us_per_request,
        "baseline": baseline,
        "ratio": ratio,
        "rounds": rounds,
    }


#: How a target compares: the symbol shown, and the test.
COMPARISONS: Final[Mapping[str, tuple[str, Callable[[float, float], bool]]]] = {
    ">=": ("≥", lambda measured, target: measured >= target),
    "<=": ("≤", lambda measured, target: measured <= target),
    "<": ("<", lambda measured, target: measured < target),
    "~=": ("=", lambda measured, target: abs(measured - target) < 0.005),
}


def target(
    group: str,
    name: str,
    measured: float | None,
    op: str,
    threshold: float | None,
    *,
    unit: str = "x",
    met: bool | None = None,
    case: str | None = None,
    contender: str | None = None,
    note: str = "",
) -> Document:
    """A stated target and what this run measured.

    ``met`` is the module's own verdict when it gives one, else computed here; None
    when nothing was measured. ``case`` and ``contender`` name the record whose ratio
    the target judges (same baseline), so the chart can mark the target on its bar.
    """
    if met is None and measured is not None and threshold is not None:
        met = COMPARISONS[op][1](measured, threshold)
    return {
        "group": group,
        "name": name,
        "measured": measured,
        "unit": unit,
        "op": op,
        "target": threshold,
        "met": met,
        "case": case,
        "contender": contender,
        "note": note,
    }


@dataclass
class Normalised:
    """One module's results in the suite's shape."""

    records: list[Document]
    targets: list[Document]
    #: Package versions the module reports.
    packages: dict[str, str] = field(default_factory=dict)
    #: The load generator's commands, exactly as run (tokens replaced by ``$TOKEN``).
    load_generator: list[str] = field(default_factory=list)
    #: The servers' commands.
    servers: list[str] = field(default_factory=list)
    #: What the module ran with.
    settings: dict[str, Any] = field(default_factory=dict)
    #: Problems, contenders left out, and anything else a reader should know.
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        document: Document,
        records: list[Document],
        targets: list[Document],
        notes: list[str],
        **more: Any,
    ) -> Normalised:
        """A module's results, with the packages and settings its document reports."""
        return cls(
            records,
            targets,
            packages=dict(document["environment"].get("packages", {})),
            settings=dict(document.get("settings", {})),
            notes=notes,
            **more,
        )


_BEARER: Final = re.compile(r"Bearer [A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def without_token(command: str) -> str:
    """The command with any bearer JWT replaced by ``$TOKEN``."""
    return _BEARER.sub("Bearer $TOKEN", command)


def _by(rows: Sequence[Document], *keys: str) -> dict[tuple[Any, ...], Document]:
    return {tuple(row[k] for k in keys): row for row in rows}


# -- the modules, and how to read each one's document ------------------------------------


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module: how to run it in each mode, and how to read its document."""

    name: str
    #: What it measures, in one line.
    summary: str
    #: What ``--quick`` runs, for ``--help``.
    quick: str
    #: Executables it needs (checked before it runs).
    tools: tuple[str, ...]
    #: Rough seconds per mode: only the progress bar's proportions.
    seconds: Mapping[str, float]
    #: (mode, rounds or None, progress) → the module's own JSON document.
    run: Callable[[str, int | None, Progress], Document]
    #: The module's document → the suite's shape.
    adapt: Callable[[Document], Normalised]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def call_main(name: str, argv: Sequence[str]) -> Document:
    """``benchmarks.<name>.main([*argv, "--json", tmp])`` in this process; its JSON.

    Its Markdown (stdout) is discarded: the suite prints its own. Its progress
    (stderr) goes wherever the caller sends stderr.

    Raises:
        RuntimeError: ``main`` exited with a non-zero status (an argparse error too).
    """
    with tempfile.TemporaryDirectory(prefix="asgi_auth_suite_") as scratch:
        path = Path(scratch) / f"{name}.json"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                status = _module(name).main([*argv, "--json", str(path)])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        if status:
            raise RuntimeError(f"python -m benchmarks.{name} {shlex.join(argv)} exited {status}")
        document: Document = json.loads(path.read_text(encoding="utf-8"))
        return document


def _rounds_argv(rounds: int | None) -> list[str]:
    return [] if rounds is None else ["--rounds", str(rounds)]


# verify ------------------------------------------------------------------------------------

#: The contenders the verification targets compare (the quick run times only these).
UNCACHED: Final = "asgi_auth (uncached)"
CACHED: Final = "asgi_auth (cached)"
#: verify.py's pure-Python floor (verify.FLOOR), when it has one.
FLOOR: Final = "floor (minimal pure Python)"
#: The contenders the verification targets compare (the quick run times only these).
VERIFY_QUICK_CONTENDERS: Final = (UNCACHED, CACHED, "PyJWT jwt.decode", FLOOR)
VERIFY_QUICK_ALGORITHMS: Final = ("HS256", "RS256")
VERIFY_QUICK_ROUNDS: Final = 5
VERIFY_QUICK_SECONDS: Final = 0.1
#: Targets from the issue (verify.py itself states none): uncached against jwt.decode
#: per algorithm, and cached against jwt.decode for every algorithm.
VERIFY_UNCACHED_TARGETS: Final = {"HS256": 4.0, "RS256": 2.5}
VERIFY_CACHED_TARGET: Final = 100.0
VERIFY_FLOOR_TARGET: Final = 1.5


def run_verify(mode: str, rounds: int | None, progress: Progress) -> Document:
    if mode == "full":
        return call_main("verify", _rounds_argv(rounds))
    from benchmarks import verify

    if mode == "smoke":
        algorithms: Sequence[str] = ("HS256",)
        count, seconds = 1, 0.005
    else:
        algorithms = VERIFY_QUICK_ALGORITHMS
        count, seconds = VERIFY_QUICK_ROUNDS, VERIFY_QUICK_SECONDS
    count = rounds or count
    contenders = {
        name: verify.CONTENDERS[name]
        for name in VERIFY_QUICK_CONTENDERS
        if name in verify.CONTENDERS  # a verify.py without a floor: not measured
    }
    report = verify.run(algorithms, rounds=count, target=seconds, contenders=contenders)
    # The document verify.main writes, from the same functions.
    return {
        "environment": verify.environment(),
        "settings": {
            "rounds": count,
            "seconds_per_round": seconds,
            "algorithms": list(algorithms),
            "contenders": list(contenders),
        },
        "results": verify.records(report),
        "skipped": [{"algorithm": a, "contender": c, "reason": r} for a, c, r in report.skipped],
    }


def adapt_verify(document: Document) -> Normalised:
    from benchmarks.verify import BASELINE

    group = "verify"
    results = document["results"]
    records = [
        record(
            group,
            r["algorithm"],
            r["contender"],
            "ops/s",
            r["ops_per_sec"],
            baseline=BASELINE,
            ratio=r["ratio"],
            rounds=r["rounds"],
        )
        for r in results
    ]
    found = _by(results, "algorithm", "contender")
    algorithms = list(dict.fromkeys(r["algorithm"] for r in results))
    targets = []

    def ratio_of(alg: str, contender: str) -> float | None:
        row = found.get((alg, contender))
        return None if row is None else row["ratio"]

    for alg, threshold in VERIFY_UNCACHED_TARGETS.items():
        if alg not in algorithms:
            continue
        name = UNCACHED
        targets.append(
            target(
                group,
                f"{alg}: asgi_auth uncached vs jwt.decode",
                ratio_of(alg, name),
                ">=",
                threshold,
                case=alg,
                contender=name,
            )
        )
    for alg in algorithms:
        name = CACHED
        targets.append(
            target(
                group,
                f"{alg}: asgi_auth cached vs jwt.decode",
                ratio_of(alg, name),
                ">=",
                VERIFY_CACHED_TARGET,
                case=alg,
                contender=name,
            )
        )
    # Within 1.5x of the floor: the floor's ops/s over ours, per algorithm, at most 1.5.
    floors = [alg for alg in algorithms if (alg, FLOOR) in found]
    for alg in floors:
        ours, floor = found.get((alg, UNCACHED)), found[alg, FLOOR]
        targets.append(
            target(
                group,
                f"{alg}: asgi_auth uncached, distance to the pure-Python floor "
                "(floor ops/s over ours)",
                round(floor["ops_per_sec"] / ours["ops_per_sec"], 3) if ours else None,
                "<=",
                VERIFY_FLOOR_TARGET,
                note="" if ours else "asgi_auth (uncached) not measured",
            )
        )
    if not floors:
        targets.append(
            target(
                group,
                "asgi_auth uncached, distance to the pure-Python floor",
                None,
                "<=",
                VERIFY_FLOOR_TARGET,
                note="not measured: no pure-Python floor contender in this verify run "
                "(benchmarks/verify.py has none)",
            )
        )
    notes = [
        f"verify: {s['algorithm']} / {s['contender']} not in the table: {s['reason']}"
        for s in document.get("skipped", [])
    ]
    return Normalised.of(document, records, targets, notes)


# e2e ---------------------------------------------------------------------------------------

#: Rounds of the quick run; it times only the contenders e2e's targets compare.
E2E_QUICK_ROUNDS: Final = 1


def e2e_target_contenders(e2e: ModuleType) -> tuple[str, ...]:
    """The contenders e2e's targets compare (its smoke run times the same ones)."""
    return tuple(dict.fromkeys(n for t in e2e.TARGETS for n in (t.contender, t.baseline)))


def run_e2e(mode: str, rounds: int | None, progress: Progress) -> Document:
    if mode == "smoke":
        return call_main("e2e", ["--smoke", *_rounds_argv(rounds)])
    e2e = _module("e2e")
    if mode == "full":
        full: Document = e2e.run(quick=False, rounds=rounds, progress=progress)
        return full
    if not hasattr(e2e, "measure_all"):  # only the documented interface: all contenders
        quick: Document = e2e.run(quick=True, rounds=rounds or 1, progress=progress)
        return quick
    # e2e's own quick settings, E2E_QUICK_ROUNDS rounds, and only the contenders the
    # targets compare: the others are neither timed nor started.
    timed = e2e_target_contenders(e2e)
    settings = dataclasses.replace(
        e2e.PRESETS["quick"], rounds=rounds or E2E_QUICK_ROUNDS, timed=timed
    )
    chosen = [c for c in e2e.CONTENDERS if c.name in timed]
    measurement = e2e.measure_all(settings, progress, contenders=chosen)
    base = next(r for r in measurement.results if r.contender.name == e2e.BASELINE)
    if base.excluded is not None:  # as e2e.measure does
        raise RuntimeError(f"the baseline ({e2e.BASELINE}) failed: {base.excluded}")
    document: Document = e2e.document(measurement)
    return document


def adapt_e2e(document: Document) -> Normalised:
    group = "e2e"
    records = [
        record(
            group,
            r.get("case", "GET /me"),
            r["contender"],
            r.get("unit", "req/s"),
            r.get("value"),
            baseline=r.get("baseline"),
            ratio=r.get("ratio"),
            rounds=r.get("rounds"),
            p50_ms=r.get("p50_ms"),
            p99_ms=r.get("p99_ms"),
            cpu_us_per_request=r.get("cpu_us_per_request"),
        )
        for r in document["records"]
    ]
    baselines = {r["contender"]: r["baseline"] for r in records}
    targets = []
    for t in document.get("targets", []):
        # Marked on a bar only when its ratio is that bar's (to the same baseline); the
        # FastAPI guard's target compares it with HTTPBearer + PyJWT, not with bare.
        name = t.get("contender")
        on_bar = name in baselines and t.get("baseline", baselines[name]) == baselines[name]
        missing = t.get("missing")
        notes = []
        if missing:
            notes.append(str(missing))
        if t.get("ratio_cpu") is not None:
            cpu_met = t.get("met_by_cpu")
            notes.append(
                f"by server CPU time: {t['ratio_cpu']:.2f}x"
                + ("" if cpu_met is None else f", {'met' if cpu_met else 'missed'}")
            )
        targets.append(
            target(
                group,
                t["name"],
                None if missing else t.get("ratio"),
                t.get("op", ">="),
                t.get("target"),
                met=None if missing else t.get("met"),
                case="GET /me" if on_bar else None,
                contender=name if on_bar else None,
                note="; ".join(notes),
            )
        )
    env = document.get("environment", {})
    commands = [env.get(k) for k in ("load_generator", "load_generator_fresh")]
    servers = env.get("server_command") or env.get("server")
    notes = [f"e2e: {p}" for p in document.get("problems", [])]
    notes += [
        f"e2e: {x['contender']} left out: {x['reason']}" for x in document.get("excluded", [])
    ]
    return Normalised(
        records,
        targets,
        packages=dict(env.get("packages", {})),
        load_generator=[
            without_token(c).replace("Bearer <token>", "Bearer $TOKEN")
            for c in commands
            if isinstance(c, str)
        ],
        servers=[servers] if isinstance(servers, str) else list(servers or []),
        settings=dict(document.get("settings", {})),
        notes=notes,
    )


# authz -------------------------------------------------------------------------------------

AUTHZ_QUICK: Final[dict[str, Any]] = {
    "rounds": 2,
    "duration": 1,
    "warmup": 1,
    "users": (1_000, 100_000),
    "lookups": 200,
}


def run_authz(mode: str, rounds: int | None, progress: Progress) -> Document:
    if mode != "quick":
        return call_main(
            "authz", [*(["--smoke"] if mode == "smoke" else []), *_rounds_argv(rounds)]
        )
    from benchmarks import authz

    values: dict[str, Any] = {**AUTHZ_QUICK, "backend": "sqlite"}
    if rounds is not None:
        values["rounds"] = rounds
    settings = authz.Settings(**values)
    env = authz.environment()
    report = authz.run(settings)
    return authz.json_document(settings, report, env)


def adapt_authz(document: Document) -> Normalised:
    from benchmarks.authz import BASELINE, CACHED_TARGET, LOOKUP_TARGET

    results = document["results"]
    routes = [r for r in results if r["measurement"] == "end_to_end"]
    sizes = [r for r in results if r["measurement"] == "role_lookup"]

    def label(row: Document) -> str:
        return f"{row['contender']} ({row['description']})"

    case = "GET through uvicorn"
    base = next((label(r) for r in routes if r["contender"] == BASELINE), BASELINE)
    records = [
        record(
            "authz",
            case,
            label(r),
            "req/s",
            r["rps"],
            baseline=base,
            ratio=r["ratio"],
            rounds=r["rounds"],
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
            cpu_us_per_request=r.get("server_cpu_us_per_request"),
        )
        for r in routes
    ]
    lookup_case = "SQLRightsLoader.load, no cache"
    smallest = f"{sizes[0]['users']:,} users" if sizes else None
    records += [
        record(
            "authz lookup",
            lookup_case,
            f"{r['users']:,} users",
            "µs/lookup",
            r["median_us"],
            baseline=smallest,
            ratio=r["ratio"],
            rounds=r["rounds"],
            p50_ms=r["median_us"] / 1e3,
            p99_ms=r["p99_us"] / 1e3,
        )
        for r in sizes
    ]
    targets = []
    by_route = {r["contender"]: r for r in routes}
    if "/cached" in by_route:
        cached = by_route["/cached"]
        targets.append(
            target(
                "authz",
                "/cached (guard, rights cached) vs /open (no guard)",
                cached["ratio"],
                ">=",
                CACHED_TARGET,
                case=case,
                contender=label(cached),
            )
        )
    if "/db" in by_route:
        targets.append(
            target(
                "authz",
                "/db: one query per request when rights are not cached",
                by_route["/db"]["queries_per_request"],
                "~=",
                1.0,
                unit="queries/request",
            )
        )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        note = ""
        if large["users"] < 1_000_000:
            note = f"the target is stated for 1,000,000 users; this run filled {large['users']:,}"
        targets.append(
            target(
                "authz lookup",
                f"role lookup, {large['users']:,} vs {small['users']:,} users (median)",
                large["ratio"],
                "<=",
                LOOKUP_TARGET,
                case=lookup_case,
                contender=f"{large['users']:,} users",
                note=note,
            )
        )
    settings = dict(document.get("settings", {}))
    commands = settings.get("wrk_commands", {})
    server = settings.get("server_command")
    env = document.get("environment", {})
    packages = dict(env.get("packages", {}))
    return Normalised(
        records,
        targets,
        packages=packages,
        load_generator=[without_token(c) for c in commands.values()],
        servers=[shlex.join(server)] if server else [],
        settings={k: v for k, v in settings.items() if k not in ("wrk_commands", "server_command")},
        notes=[f"authz: {p}" for p in document.get("problems", [])],
    )


# login -------------------------------------------------------------------------------------

LOGIN_QUICK: Final[dict[str, int]] = {"rounds": 1, "seconds": 2}
LOGIN_RATIO_TARGET: Final = 0.9
LOGIN_ME_P99_TARGET_MS: Final = 10.0


def run_login(mode: str, rounds: int | None, progress: Progress) -> Document:
    argv: list[str] = []
    if mode != "full":  # login.py has no --smoke: its shortest run is the quick one here
        argv = ["--rounds", str(LOGIN_QUICK["rounds"]), "--seconds", str(LOGIN_QUICK["seconds"])]
    document = call_main("login", [*argv, *_rounds_argv(rounds)])
    document.setdefault("settings", {"rounds": len(document["rounds"])})
    return document


def adapt_login(document: Document) -> Normalised:
    rounds: list[Document] = document["rounds"]
    summary = document["summary"]
    count = len(rounds)

    def median(path: tuple[str, str]) -> float:
        return float(statistics.median(r[path[0]][path[1]] for r in rounds))

    token_case, me_case = "POST /token", "GET /me"
    raw = "argon2-cffi verify, raw (same threads)"
    endpoint = "asgi_auth TokenEndpoint"
    idle, loaded = "idle", "while logins saturate /token"
    me_idle = median(("me_idle", "rps"))
    me_loaded = median(("me_loaded", "rps"))
    records = [
        record(
            "login",
            token_case,
            raw,
            "verifications/s",
            summary["raw_argon2_per_sec"],
            baseline=raw,
            ratio=1.0,
            rounds=count,
        ),
        record(
            "login",
            token_case,
            endpoint,
            "logins/s",
            summary["logins_per_sec"],
            baseline=raw,
            ratio=summary["ratio"],
            rounds=count,
            p50_ms=median(("logins", "p50_ms")),
            p99_ms=median(("logins", "p99_ms")),
        ),
        record(
            "login",
            me_case,
            idle,
            "req/s",
            me_idle,
            baseline=idle,
            ratio=1.0,
            rounds=count,
            p50_ms=median(("me_idle", "p50_ms")),
            p99_ms=summary["me_p99_ms_idle"],
        ),
        record(
            "login",
            me_case,
            loaded,
            "req/s",
            me_loaded,
            baseline=idle,
            ratio=me_loaded / me_idle if me_idle else None,
            rounds=count,
            p50_ms=median(("me_loaded", "p50_ms")),
            p99_ms=summary["me_p99_ms_under_logins"],
        ),
    ]
    targets = [
        target(
            "login",
            "logins through POST /token vs raw argon2 verifications",
            summary["ratio"],
            ">=",
            LOGIN_RATIO_TARGET,
            case=token_case,
            contender=endpoint,
        ),
        target(
            "login",
            "GET /me p99 while logins saturate the token endpoint",
            summary["me_p99_ms_under_logins"],
            "<",
            LOGIN_ME_P99_TARGET_MS,
            unit="ms",
        ),
    ]
    notes = []
    if summary.get("non_2xx"):
        notes.append(f"login: {int(summary['non_2xx'])} answers other than 2xx")
    commands = document.get("commands", {})
    return Normalised.of(
        document,
        records,
        targets,
        notes,
        load_generator=[without_token(c) for c in commands.values()],
    )


# oidc --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OIDCQuick:
    """What the quick run of benchmarks.oidc runs."""

    algorithms: tuple[str, ...] = ("RS256",)
    rounds: int = 3
    seconds_per_round: float = 0.1
    flood_tokens: int = 2_000
    flood_concurrency: int = 100
    flood_windows: int = 5


OIDC_QUICK: Final = OIDCQuick()


def run_oidc(mode: str, rounds: int | None, progress: Progress) -> Document:
    if mode != "quick":
        return call_main("oidc", [*(["--smoke"] if mode == "smoke" else []), *_rounds_argv(rounds)])
    from benchmarks import oidc

    q = OIDC_QUICK
    count = rounds or q.rounds
    report, floods, event_loop = asyncio.run(
        oidc.run(
            q.algorithms,
            rounds=count,
            target=q.seconds_per_round,
            flood_count=q.flood_tokens,
            concurrency=q.flood_concurrency,
            windows=q.flood_windows,
        )
    )
    # The document oidc.main writes, from the same functions.
    return {
        "environment": oidc._environment(event_loop),
        "settings": {
            "rounds": count,
            "seconds_per_round": q.seconds_per_round,
            "target_ratio": oidc.TARGET_RATIO,
            "flood_tokens": q.flood_tokens,
            "flood_concurrency": q.flood_concurrency,
            "flood_windows": q.flood_windows,
            "algorithms": list(q.algorithms),
        },
        "results": oidc.steady_records(report),
        "skipped": [
            {"case": group, "contender": name, "reason": reason}
            for group, name, reason in report.skipped
        ],
        "fetches_while_timing": report.fetches,
        "flood": [f.record() for f in floods],
    }


def adapt_oidc(document: Document) -> Normalised:
    group = "oidc"

    def case(row: Document) -> str:
        return f"{row['algorithm']} {'cached' if row['cached'] else 'uncached'}"

    results = document["results"]
    records = [
        record(
            group,
            case(r),
            r["contender"],
            "ops/s",
            r["ops_per_sec"],
            baseline=r["baseline"],
            ratio=r["ratio"],
            rounds=r["rounds"],
        )
        for r in results
    ]
    targets = [
        target(
            group,
            f"{case(r)}: remote-key OIDCVerifier vs local JWTVerifier",
            r["ratio"],
            ">=",
            r["target_ratio"],
            met=r["met"],
            case=case(r),
            contender=r["contender"],
        )
        for r in results
        if r.get("target_ratio") is not None
    ]
    floods = document.get("flood", [])
    for f in floods:
        flood_case = f"{f['tokens']:,} unknown kids, {f['clock']} clock"
        records.append(
            record(
                "oidc flood",
                flood_case,
                "OIDCVerifier",
                "JWKS fetches/window",
                f["fetches_per_window"],
                baseline=None,
                ratio=None,
                rounds=1,
            )
        )
        problems = [o for o in f["outcomes"] if o != "UnknownKey"]
        fetches, windows = f["fetches"], f["windows"]
        note = (
            f"{fetches} JWKS fetch{'' if fetches == 1 else 'es'} over {windows} cooldown "
            f"window{'' if windows == 1 else 's'}"
        )
        if problems or not f["valid_after"]:
            note += f"; outcomes {f['outcomes']}, valid token after: {f['valid_after']}"
        targets.append(
            target(
                "oidc flood",
                f"random-kid flood ({f['clock']} clock): fetches per cooldown window, "
                "every token refused",
                f["fetches_per_window"],
                "<=",
                f["target_fetches_per_window"],
                unit="fetches/window",
                met=f["met"],
                note=note,
            )
        )
    notes = [
        f"oidc: {s['case']} / {s['contender']} not in the table: {s['reason']}"
        for s in document.get("skipped", [])
    ]
    return Normalised.of(document, records, targets, notes)


BENCHMARKS: Final[Mapping[str, Benchmark]] = {
    b.name: b
    for b in (
        Benchmark(
            "verify",
            "in-process JWT verification: asgi_auth uncached and cached against PyJWT's "
            "jwt.decode and other libraries, per algorithm",
            f"{' and '.join(VERIFY_QUICK_ALGORITHMS)}; asgi_auth uncached and cached, "
            "jwt.decode and the pure-Python floor only; "
            f"{VERIFY_QUICK_ROUNDS} rounds of ~{VERIFY_QUICK_SECONDS:g} s",
            (),
            {"full": 170, "quick": 4, "smoke": 1},
            run_verify,
            adapt_verify,
        ),
        Benchmark(
            "e2e",
            "requests/s end to end through uvicorn + wrk: our middleware and guards against "
            "bare Starlette and other authentication stacks",
            f"e2e's own quick settings (1 s wrk runs, one new server per contender and "
            f"round), {E2E_QUICK_ROUNDS} round, only the contenders its targets compare "
            "(bare, asgi_auth repeated and fresh, asgi_auth guard on FastAPI, FastAPI "
            "HTTPBearer + PyJWT)",
            ("wrk",),
            {"full": 400, "quick": 12, "smoke": 16},
            run_e2e,
            adapt_e2e,
        ),
        Benchmark(
            "authz",
            "guarded routes through uvicorn + wrk (/open, /cached, /db) and role lookups "
            "in a small and a large store",
            f"SQLite; {AUTHZ_QUICK['rounds']} rounds of {AUTHZ_QUICK['duration']} s wrk runs "
            f"per route after {AUTHZ_QUICK['warmup']} s of warm-up; "
            f"{AUTHZ_QUICK['users'][0]:,} vs {AUTHZ_QUICK['users'][1]:,} users, "
            f"{AUTHZ_QUICK['lookups']} lookups per store per round",
            ("wrk",),
            {"full": 200, "quick": 14, "smoke": 10},
            run_authz,
            adapt_authz,
        ),
        Benchmark(
            "login",
            "logins/s through the token endpoint against raw argon2, and GET /me latency "
            "while logins saturate the server",
            f"{LOGIN_QUICK['rounds']} round of {LOGIN_QUICK['seconds']} s per measurement "
            "(raw argon2, logins, /me idle, /me under logins)",
            ("wrk",),
            {"full": 130, "quick": 13, "smoke": 13},
            run_login,
            adapt_login,
        ),
        Benchmark(
            "oidc",
            "OIDCVerifier with remote keys against JWTVerifier with local ones, and a "
            "flood of unknown kids against the JWKS refresh cooldown",
            f"{' and '.join(OIDC_QUICK.algorithms)} only, uncached and cached; "
            f"{OIDC_QUICK.rounds} rounds of ~{OIDC_QUICK.seconds_per_round:g} s; "
            f"a flood of {OIDC_QUICK.flood_tokens:,} tokens",
            (),
            {"full": 150, "quick": 4, "smoke": 2},
            run_oidc,
            adapt_oidc,
        ),
    )
}


def missing_tools(benchmark: Benchmark) -> list[str]:
    """The executables ``benchmark`` needs that are not on the PATH."""
    return [tool for tool in benchmark.tools if shutil.which(tool) is None]


# -- the progress bar ----------------------------------------------------------------------

_FRACTION: Final = re.compile(r"(\d+)/(\d+)")


class ProgressBar:
    """``[#####...............] 3/5   41s authz: [4/6] wrk 1 s on /cached`` on stderr.

    On a terminal, the line is redrawn in place (``\\r``) for every message, and each
    module's last line stays. Otherwise (a log, CI) one line per step: a module's
    start and end, each time the bar gains a cell, and at least every ``quiet``
    seconds while a module keeps talking. The fill weighs each module by its expected
    duration and, within a module, follows the ``k/N`` its messages show (step k of N
    under way).
    """

    def __init__(
        self,
        stream: TextIO,
        names: Sequence[str],
        weights: Sequence[float],
        *,
        width: int = 20,
        quiet: float = 5.0,
    ) -> None:
        self.stream = stream
        self.names = list(names)
        total = sum(weights) or 1.0
        self.weights = [w / total for w in weights]
        self.width = width
        self.quiet = quiet
        self.tty = stream.isatty()
        self.index = -1
        self.within = 0.0
        self.started = time.monotonic()
        self._shown = 0  # characters on the terminal's line
        self._cells = -1  # filled cells on the last line written (not a terminal)
        self._written = 0.0  # when that line was written

    @property
    def fraction(self) -> float:
        if self.index < 0:
            return 0.0
        done = sum(self.weights[: self.index])
        return min(1.0, done + self.weights[self.index] * self.within)

    @property
    def cells(self) -> int:
        return round(self.fraction * self.width)

    def line(self, message: str) -> str:
        bar = "#" * self.cells + "." * (self.width - self.cells)
        number = max(self.index, 0) + 1
        name = self.names[self.index] if self.index >= 0 else ""
        elapsed = time.monotonic() - self.started
        return f"[{bar}] {number}/{len(self.names)} {elapsed:4.0f}s {name}: {message}"

    def start(self, index: int) -> None:
        self.index, self.within = index, 0.0
        self._draw("starting", force=True)

    def update(self, message: str) -> None:
        message = " ".join(message.split())
        if not message:
            return
        found = _FRACTION.search(message)
        if found is not None and int(found[2]) > 0:
            self.within = max(self.within, min(1.0, (int(found[1]) - 1) / int(found[2])))
        self._draw(message)

    def done(self, message: str) -> None:
        self.within = 1.0
        self._draw(message, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = 0

    def _draw(self, message: str, *, force: bool = False) -> None:
        text = self.line(message)
        if self.tty:
            columns = shutil.get_terminal_size((100, 24)).columns
            text = text[: max(20, columns - 1)]
            padding = " " * max(0, self._shown - len(text))
            self.stream.write(f"\r{text}{padding}")
            self._shown = len(text)
        else:
            now = time.monotonic()
            if not (force or self.cells != self._cells or now - self._written >= self.quiet):
                return
            self.stream.write(text + "\n")
            self._cells, self._written = self.cells, now
        self.stream.flush()


class ProgressStream(io.StringIO):
    """A text stream handing each line (ended by ``\\n``, ``\\r`` or a flush) to a callback.

    What the modules print to stderr while they run (their own progress lines) goes
    through this, to the suite's progress bar. ``last`` is the last line handed on.
    """

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress
        self.pending = ""
        self.last = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = re.split(r"[\r\n]", self.pending)
        for line in lines:
            self._hand_on(line)
        return len(text)

    def _hand_on(self, line: str) -> None:
        if line.strip():
            self.last = line.strip()
            self.progress(self.last)

    def flush(self) -> None:
        # "\rchecking RS256" is complete once flushed: the next "\r" may be minutes away.
        self._hand_on(self.pending)
        self.pending = ""

    def isatty(self) -> bool:
        return False


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One module's run: its normalised results, or why there are none."""

    name: str
    seconds: float
    result: Normalised | None = None
    error: str | None = None


def run_one(benchmark: Benchmark, mode: str, rounds: int | None, bar: ProgressBar) -> Outcome:
    """Run one module (its stdout discarded, its stderr fed to the bar), then adapt."""
    started = time.monotonic()
    missing = missing_tools(benchmark)
    if missing:
        return Outcome(benchmark.name, 0.0, error=f"not run: {', '.join(missing)} not installed")
    stream = ProgressStream(bar.update)
    try:
        with contextlib.redirect_stderr(stream), warnings.catch_warnings():
            # joserfc warns on every "EdDSA" token (RFC 9864 prefers "Ed25519").
            warnings.filterwarnings("ignore", "EdDSA is deprecated")
            document = benchmark.run(mode, rounds, bar.update)
        result = benchmark.adapt(document)
    except Exception as exc:
        stream.flush()
        last = f" (during: {stream.last})" if stream.last else ""
        detail = f"{type(exc).__name__}: {exc}{last}"
        return Outcome(benchmark.name, time.monotonic() - started, error=detail)
    return Outcome(benchmark.name, time.monotonic() - started, result=result)


def _wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(outcomes: Sequence[Outcome]) -> Document:
    """Where and with what the suite ran: the machine, the packages, the commands."""
    packages: dict[str, str] = {"asgi-auth": _version("asgi-auth")}
    load_generator: dict[str, list[str]] = {}
    servers: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.result is None:
            continue
        packages.update(outcome.result.packages)
        if outcome.result.load_generator:
            load_generator[outcome.name] = outcome.result.load_generator
        if outcome.result.servers:
            servers[outcome.name] = outcome.result.servers
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
        "wrk": _wrk_version() if load_generator else None,
        "load_generator": load_generator,
        "servers": servers,
    }


@dataclass
class Results:
    mode: str
    rounds: int | None
    seconds: float
    environment: Document
    outcomes: list[Outcome]

    @property
    def records(self) -> list[Document]:
        return [r for o in self.outcomes if o.result for r in o.result.records]

    @property
    def targets(self) -> list[Document]:
        found: list[Document] = []
        for outcome in self.outcomes:
            if outcome.result is not None:
                found += outcome.result.targets
            else:
                found.append(
                    target(
                        outcome.name,
                        f"{outcome.name}: every target",
                        None,
                        ">=",
                        None,
                        note=f"not measured: {outcome.error}",
                    )
                )
        return found

    def document(self) -> Document:
        return {
            "suite": "asgi_auth benchmarks",
            "mode": self.mode,
            "rounds_override": self.rounds,
            "seconds": round(self.seconds, 1),
            "environment": self.environment,
            "modules": {
                o.name: {
                    "seconds": round(o.seconds, 1),
                    "error": o.error,
                    "settings": o.result.settings if o.result else None,
                    "notes": o.result.notes if o.result else [],
                }
                for o in self.outcomes
            },
            "records": self.records,
            "targets": self.targets,
        }


# -- Markdown ------------------------------------------------------------------------------

#: Each group's heading, in the order the tables come.
GROUPS: Final = {
    "verify": "JWT verification in-process, one thread (ratio to PyJWT `jwt.decode`, "
    "same algorithm)",
    "e2e": "End to end through uvicorn + wrk, `GET /me` (ratio to bare Starlette)",
    "authz": "Authorization through uvicorn + wrk (ratio to `/open`)",
    "authz lookup": "Role lookup without cache (µs per lookup; ratio to the smallest "
    "store: lower is better)",
    "login": "Logins against raw argon2, and `GET /me` while logins saturate the server",
    "oidc": "Remote keys (OIDCVerifier) against local ones (JWTVerifier), awaited "
    "(ratio to the local verifier: median of the per-round ratios)",
    "oidc flood": "Random-`kid` flood against OIDCVerifier",
}
#: Groups whose ratio is a cost: lower is better.
LOWER_IS_BETTER: Final = frozenset({"authz lookup"})


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits == 0 and abs(value) < 100 and value != int(value):
        digits = 2 if abs(value) < 10 else 1
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:,.{digits}f}x"


def _measured(t: Document) -> str:
    if t["measured"] is None:
        return t["note"] or "not measured"
    if t["unit"] == "x":
        return _ratio(t["measured"])
    return f"{_number(t['measured'], 2)} {t['unit']}"


def _threshold(t: Document) -> str:
    if t["target"] is None:
        return "—"
    symbol = COMPARISONS[t["op"]][0]
    shown = _ratio(t["target"]) if t["unit"] == "x" else f"{_number(t['target'], 2)} {t['unit']}"
    return f"{symbol} {shown}"


def verdict(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def render(results: Results) -> str:
    env = results.environment
    outcomes = results.outcomes
    ran = ", ".join(f"{o.name} {o.seconds:.1f} s" for o in outcomes)
    lines = [
        f"# asgi_auth benchmarks ({results.mode} run)",
        "",
        f"- Python {env['python']} ({env['implementation']}) on {env['platform']}, "
        f"{env['cpu_count']} CPUs; load average {env['load_average'][0]:.2f} at the end",
        f"- whole run {results.seconds:.1f} s: {ran}",
        "- packages: " + " · ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "- servers and load generators share this machine's CPUs: absolute numbers vary by "
        "machine and load, the ratios (each from one run) are the claim",
    ]
    if results.mode != "full":
        lines.append(
            f"- {results.mode} run: fewer rounds and shorter timings than the full run, so "
            "noisier ratios; judge a target on a full run (`python -m benchmarks`)"
        )
    if env.get("wrk"):
        lines.append(f"- {env['wrk']}")
    for name, commands in env["load_generator"].items():
        lines += [f"- {name} load: `{command}`" for command in commands]
    records = results.records
    groups = list(dict.fromkeys([*GROUPS, *(r["group"] for r in records)]))
    for group in groups:
        rows = [r for r in records if r["group"] == group]
        if not rows:
            continue
        has_latency = any(r["p50_ms"] is not None or r["p99_ms"] is not None for r in rows)
        has_cpu = any(r["cpu_us_per_request"] is not None for r in rows)
        has_ratio = any(r["ratio"] is not None for r in rows)
        header = ["Case", "Contender", "Value"]
        header += ["p50 ms", "p99 ms"] if has_latency else []
        header += ["CPU µs/req"] if has_cpu else []
        header += ["Ratio", "Baseline"] if has_ratio else []
        header += ["Rounds"]
        align = ["---" if h in ("Case", "Contender", "Baseline") else "---:" for h in header]
        lines += [
            "",
            f"## {group}: {GROUPS.get(group, group)}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(align) + "|",
        ]
        for r in rows:
            cells = [r["case"], r["contender"], f"{_number(r['value'])} {r['unit']}"]
            if has_latency:
                cells += [_number(r["p50_ms"], 2), _number(r["p99_ms"], 2)]
            if has_cpu:
                cells += [_number(r["cpu_us_per_request"], 1)]
            if has_ratio:
                cells += [_ratio(r["ratio"]), r["baseline"] or "—"]
            cells += [str(r["rounds"]) if r["rounds"] is not None else "—"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Targets", "", "| Target | Goal | Measured | Met |", "|---|---|---:|---|"]
    for t in results.targets:
        measured = _measured(t)
        if t["measured"] is not None and t["note"]:
            measured += f" ({t['note']})"
        lines.append(f"| {t['name']} | {_threshold(t)} | {measured} | {verdict(t['met'])} |")
    notes = [n for o in outcomes if o.result for n in o.result.notes]
    notes += [f"{o.name}: {o.error}" for o in outcomes if o.error]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


# -- the chart -------------------------------------------------------------------------------


def _footnote(t: Document) -> str:
    line = f"target: {t['name']} {_threshold(t)}: {_measured(t)} ({verdict(t['met'])})"
    return line.replace("**", "")


def plot(results: Results, path: Path) -> None:
    """A PNG: per group, horizontal bars of each contender's ratio to its baseline.

    Grey bars are baselines; a bar a target judges is green (met) or red (missed),
    with the target drawn across it as a dashed line. Targets that judge no single
    bar (a latency, a count, a ratio between two contenders) are written under the
    group's chart. Log scale when a group's ratios span more than a factor of 20.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    records = [r for r in results.records if r["ratio"] is not None]
    groups = list(dict.fromkeys(r["group"] for r in records))
    if not groups:
        raise ValueError("nothing to plot: no record has a ratio")
    targets = results.targets
    footnotes: dict[str, list[str]] = {g: [] for g in groups}
    for t in targets:
        if t["contender"] is not None and t["group"] in groups:
            continue  # drawn on its bar
        # A group without bars (the oidc flood) writes under its family's chart.
        family = t["group"].split()[0]
        home = t["group"] if t["group"] in groups else None
        home = home or next((g for g in groups if g.split()[0] == family), groups[-1])
        footnotes[home] += textwrap.wrap(
            _footnote(t), 110, break_on_hyphens=False, subsequent_indent="    "
        )
    sizes = [sum(r["group"] == g for r in records) for g in groups]
    heights = [
        n * 0.32 + 0.8 + 0.16 * len(footnotes[g]) for g, n in zip(groups, sizes, strict=True)
    ]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(11, sum(heights) + 1.0),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
        layout="constrained",
    )
    env = results.environment
    figure.suptitle(
        f"asgi_auth benchmarks ({results.mode} run): ratio to each case's baseline\n"
        f"{env['cpu_count']} CPUs, {env['machine']}, Python {env['python']} "
        f"({env['implementation']})\n"
        "grey: baseline · green / red: target met / missed (dashed line) · blue: no target",
        fontsize=10,
    )
    for ax, group in zip(axes[:, 0], groups, strict=True):
        rows = [r for r in records if r["group"] == group]
        several = len({r["case"] for r in rows}) > 1
        labels = [f"{r['case']} · {r['contender']}" if several else r["contender"] for r in rows]
        ratios = [float(r["ratio"]) for r in rows]
        marks = {
            (t["case"], t["contender"]): t
            for t in targets
            if t["group"] == group and t["contender"] is not None and t["target"]
        }
        colours = []
        for r in rows:
            mark = marks.get((r["case"], r["contender"]))
            if r["contender"] == r["baseline"]:
                colours.append("#9e9e9e")
            elif mark is not None and mark["met"] is not None:
                colours.append("#2e7d32" if mark["met"] else "#c62828")
            else:
                colours.append("#1f77b4")
        positions = list(range(len(rows)))
        low = min(x for x in ratios if x > 0) if any(x > 0 for x in ratios) else 1.0
        high = max([*ratios, *(t["target"] for t in marks.values()), 1.0])
        log = high / low > 20
        left = low / 2 if log else 0.0
        ax.barh(positions, [max(x, left) - left for x in ratios], left=left, color=colours)
        if log:
            ax.set_xscale("log")
        ax.set_xlim(left, high * (4 if log else 1.3))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_yticks(positions, labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="#616161", linewidth=0.8)
        for y, x, r in zip(positions, ratios, rows, strict=True):
            mark = marks.get((r["case"], r["contender"]))
            # Past the target's line when it is near the bar's end, so they do not overlap.
            at = max(x, mark["target"]) if mark and mark["target"] < x * 1.3 else x
            ax.text(at, y, f"  {_ratio(x)}", va="center", fontsize=7)
        for y, r in zip(positions, rows, strict=True):
            mark = marks.get((r["case"], r["contender"]))
            if mark is None:
                continue
            ax.plot([mark["target"]] * 2, [y - 0.45, y + 0.45], color="black", ls="--", lw=1.2)
            symbol = COMPARISONS[mark["op"]][0]
            ax.text(
                mark["target"], y - 0.42, f"{symbol}{_ratio(mark['target'])}",
                fontsize=6, ha="center", va="bottom",
            )  # fmt: skip
        direction = "lower is better" if group in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{group} ({direction})", fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        ax.set_axisbelow(True)
        if footnotes[group]:
            ax.annotate(
                "\n".join(footnotes[group]), (0, 0), xycoords="axes fraction",
                xytext=(0, -16), textcoords="offset points", va="top", fontsize=7,
            )  # fmt: skip
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- the command line ----------------------------------------------------------------------


def _wrap(text: str, first: str, then: str) -> list[str]:
    return textwrap.wrap(
        text, 88, initial_indent=first, subsequent_indent=then, break_on_hyphens=False
    )


def _help_epilog() -> str:
    lines = ["what each benchmark measures, and what --quick runs of it:", ""]
    for b in BENCHMARKS.values():
        lines += _wrap(f"{b.name}: {b.summary}.", "  ", "      ")
        lines += _wrap(f"--quick: {b.quick}.", "      ", "        ")
    lines += [
        "",
        "Without --quick, each module runs its own full run (python -m benchmarks.<name>);",
        "that takes tens of minutes. --rounds N overrides every module's rounds.",
        "verify and oidc run in this process; e2e, authz and login start uvicorn and load",
        "it with wrk (Debian package wrk), which shares this machine's CPUs.",
    ]
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or '(none)'}; choose from "
            + ",".join(BENCHMARKS)
        )
    return names


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=_help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run of every benchmark (under a minute on 2 CPUs; see below)",
    )
    parser.add_argument(
        "--only",
        type=_names,
        metavar="NAMES",
        help=f"comma-separated benchmarks to run (default all: {','.join(BENCHMARKS)})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every result as JSON")
    parser.add_argument(
        "--plot", type=Path, metavar="PATH", help="draw the ratios as a PNG chart (matplotlib)"
    )
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds for every benchmark")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.quick and args.smoke:
        parser.error("--quick and --smoke exclude each other")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib: pip install -e '.[bench]'")
    return args


def run(
    names: Sequence[str], mode: str, rounds: int | None, *, stderr: TextIO | None = None
) -> Results:
    """Run the named benchmarks one after the other, with a progress bar on ``stderr``."""
    chosen = [BENCHMARKS[name] for name in BENCHMARKS if name in names]
    bar = ProgressBar(
        stderr or sys.stderr, [b.name for b in chosen], [b.seconds[mode] for b in chosen]
    )
    started = time.monotonic()
    outcomes = []
    for index, benchmark in enumerate(chosen):
        bar.start(index)
        outcome = run_one(benchmark, mode, rounds, bar)
        bar.done(f"done in {outcome.seconds:.1f} s" if outcome.error is None else outcome.error)
        outcomes.append(outcome)
    return Results(mode, rounds, time.monotonic() - started, environment(outcomes), outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    results = run(args.only or list(BENCHMARKS), mode, args.rounds)
    print(render(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results.document(), indent=2) + "\n", encoding="utf-8")
    failed = any(o.error for o in results.outcomes)
    if args.plot is not None:
        try:
            plot(results, args.plot)
        except ValueError as exc:
            print(f"python -m benchmarks: --plot: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
