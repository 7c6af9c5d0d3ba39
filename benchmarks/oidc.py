"""Remote keys against local ones: OIDCVerifier's steady state, and a flood of unknown ``kid``.

Run ``python -m benchmarks.oidc [--quick] [--json PATH] [--rounds N]``.

The identity provider is served in-process: an ``httpx.AsyncClient`` over
``httpx.MockTransport`` answers the discovery document (whose ``issuer`` is the
configured one) and the JWKS, and counts the requests it serves. Tokens are signed
with PyJWT (``jwt.encode`` with the provider's private key and its ``kid``).

(1) Steady state. For each algorithm, :class:`~asgi_auth.OIDCVerifier` (keys already
fetched by ``start()``) against :class:`~asgi_auth.JWTVerifier` built with the same
public key (from the same JWK) and the same checks (``iss``, ``aud``, ``exp``, ``sub``),
each without a cache (``cache_size=0``) and with the default one. Both are awaited the
same way: a coroutine running N ``await verify(token)`` in a loop inside one running
event loop, timed with ``perf_counter`` (and ``thread_time``), so the coroutine overhead
is the same on both sides. ``JWTVerifier.verify_sync`` (called, not awaited) is timed
too, as a labelled reference only. Before anything is timed, each contender must accept
a valid token and refuse a token whose payload had one character flipped, a token signed
by another key under the same ``kid``, an expired token and a token for another
audience; one that does not is reported and left out. Each contender is timed for a
number of calls calibrated to a fixed duration per round. Every round takes the cases
(algorithm and cache setting) in a new random order, and within a case the contenders
take turns, in a random order, over ten slices of their calls, so that a busy moment on
a shared machine falls on all of them alike. The table shows the median ops/s over the
rounds and the ratio to the local verifier (same algorithm, same cache setting, same
run): the median over the rounds of the ratio within each round, which the target
judges, and the same ratio from the thread's CPU time, which other processes do not
inflate. The JSON also has the plain ratio of the medians (``ratio_of_medians``).

(2) The random-``kid`` flood. Tokens each naming a different random ``kid`` (signed
once, up front, with the provider's key) go through ``OIDCVerifier.verify`` in batches
of concurrent ``asyncio.gather``. With an injected ``monotonic`` clock that advances a
fixed step per token, the flood spans a fixed number of refresh cooldown windows, so
the count of JWKS fetches is deterministic; a second flood uses the real clock. Every
flood token must be refused with ``UnknownKey`` (never accepted, never
``ProviderUnavailable`` while the provider is up), and the verifier must fetch at most
once per cooldown window.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import jwt

from asgi_auth import InvalidToken, JWTVerifier, Key, ProviderUnavailable, UnknownKey
from asgi_auth.tokens.oidc import OIDCVerifier
from asgi_auth.tokens.verifier import DEFAULT_CACHE_SIZE
from benchmarks.verify import (
    AUDIENCE,
    ISSUER,
    SUBJECT,
    Tokens,
    _progress,
    _version,
    calibrate,
    check,
    environment,
    tamper,
)

ALGORITHMS: Final = ("RS256", "ES256", "PS256", "EdDSA")
DISCOVERY_URL: Final = ISSUER + "/.well-known/openid-configuration"
JWKS_URI: Final = ISSUER + "/keys"
#: The JWKS is served with this ``max-age``, so no refresh for staleness starts mid-run.
MAX_AGE: Final = 3600
TARGET_RATIO: Final = 0.95
#: Each contender's calls in a round are timed in this many slices, taking turns with
#: the other contenders of the same case.
SLICES: Final = 10
#: At most this many JWKS fetches per refresh cooldown window during a flood.
TARGET_FETCHES_PER_WINDOW: Final = 1.0

REMOTE: Final = "remote OIDCVerifier"
LOCAL: Final = "local JWTVerifier"
REFERENCE: Final = "local verify_sync (reference, not awaited)"
#: Order of the rows within an (algorithm, cache) group.
CONTENDERS: Final = (LOCAL, REMOTE, REFERENCE)

#: ``await verify(token)``.
AsyncVerify = Callable[[str], Awaitable[object]]


class Provider:
    """An identity provider in memory: discovery and JWKS, with request counters."""

    def __init__(self, keys: Sequence[Key]) -> None:
        self.jwks = {"keys": [key.public_jwk() for key in keys]}
        self.requests: Counter[str] = Counter()

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests[url] += 1
        headers = {"Cache-Control": f"public, max-age={MAX_AGE}"}
        if url == DISCOVERY_URL:
            document = {"issuer": ISSUER, "jwks_uri": JWKS_URI}
            return httpx.Response(200, json=document, headers=headers)
        if url == JWKS_URI:
            return httpx.Response(200, json=self.jwks, headers=headers)
        return httpx.Response(404)

    @property
    def jwks_requests(self) -> int:
        return self.requests[JWKS_URI]

    @property
    def discovery_requests(self) -> int:
        return self.requests[DISCOVERY_URL]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def sign(key: Key, body: Mapping[str, Any], *, kid: str | None = None) -> str:
    """A token signed with PyJWT, naming ``kid`` (the key's own by default)."""
    headers = {"kid": key.kid if kid is None else kid}
    return jwt.encode(dict(body), key.private_pem(), algorithm=key.algorithm, headers=headers)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": now,
        "exp": now + 3600,
        "scope": "read write",
        "name": "Bench User",
    }
    return base | changes


def make_tokens(key: Key) -> Tokens:
    """A valid token and the tokens every contender must refuse."""
    valid = sign(key, claims())
    impostor = Key.generate(key.algorithm, kid=key.kid)
    now = int(time.time())
    refused = {
        "a tampered token": tamper(valid),
        "a token signed by another key under the same kid": sign(impostor, claims()),
        "an expired token": sign(key, claims(iat=now - 7200, exp=now - 3600)),
        "a token for another audience": sign(key, claims(aud="another-api")),
    }
    return Tokens(valid, refused)


async def check_async(verify: AsyncVerify, tokens: Tokens) -> str | None:
    """Why this contender must not be timed, or None if it tells valid from invalid tokens.

    The async twin of :func:`benchmarks.verify.check`; a refusal must be an
    ``InvalidToken`` (anything else would be a 5xx, not a 401).
    """
    try:
        await verify(tokens.valid)
    except Exception as exc:
        return f"refused the valid token ({type(exc).__name__}: {exc})"
    for what, token in tokens.refused.items():
        try:
            await verify(token)
        except InvalidToken:
            continue
        except Exception as exc:
            return f"refused {what} with {type(exc).__name__}, not InvalidToken"
        return f"accepted {what}"
    return None


async def _atime(verify: AsyncVerify, token: str, calls: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``calls`` awaits of ``verify(token)``.

    The twin of ``benchmarks.verify._time``, which also reads this thread's CPU time:
    unlike the wall clock, it does not count the moments another process had the CPU.
    """
    gc.disable()  # as timeit does: a collection should not land on one contender's turn
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            await verify(token)
        return time.perf_counter() - wall, time.thread_time() - cpu
    finally:
        gc.enable()


def _time_sync(verify: Callable[[str], object], token: str, calls: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``calls`` calls of ``verify(token)`` (not awaited)."""
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            verify(token)
        return time.perf_counter() - wall, time.thread_time() - cpu
    finally:
        gc.enable()


async def _acalibrate(verify: AsyncVerify, token: str, target: float) -> int:
    """How many awaits take about ``target`` seconds; the twin of ``verify.calibrate``."""
    calls = 1
    while (elapsed := (await _atime(verify, token, calls))[0]) < target / 5:
        calls *= 2
    return max(1, round(calls * target / elapsed))


@dataclass
class Entry:
    algorithm: str
    cached: bool
    contender: str
    token: str
    verify: AsyncVerify | None = None  # awaited
    verify_sync: Callable[[str], object] | None = None  # called (the reference)
    calls: int = 0
    samples: list[float] = field(default_factory=list)  # ops/s (wall clock), one per round
    cpu_samples: list[float] = field(default_factory=list)  # ops/s (CPU time), one per round

    @property
    def cache(self) -> str:
        return "cached" if self.cached else "uncached"

    async def calibrate(self, target: float) -> None:
        if self.verify is not None:
            self.calls = await _acalibrate(self.verify, self.token, target)
        else:
            assert self.verify_sync is not None
            self.calls = calibrate(self.verify_sync, self.token, target)

    async def time(self, calls: int) -> tuple[float, float]:
        """Wall and CPU seconds for ``calls`` verifications of the entry's token."""
        if self.verify is not None:
            return await _atime(self.verify, self.token, calls)
        assert self.verify_sync is not None
        return _time_sync(self.verify_sync, self.token, calls)


async def measure_case(entries: Sequence[Entry], rng: random.Random) -> None:
    """One round of one case: one sample per entry, its calls timed in interleaved slices.

    The entries take turns (in a random order) for ``SLICES`` slices of their calls,
    so that each sample sees the same share of whatever else the machine is doing.
    """
    order = rng.sample(list(entries), len(entries))
    per_slice = {id(e): max(1, e.calls // SLICES) for e in order}
    wall = dict.fromkeys(per_slice, 0.0)
    cpu = dict.fromkeys(per_slice, 0.0)
    for _ in range(SLICES):
        for entry in order:
            seconds, cpu_seconds = await entry.time(per_slice[id(entry)])
            wall[id(entry)] += seconds
            cpu[id(entry)] += cpu_seconds
    for entry in order:
        calls = per_slice[id(entry)] * SLICES
        entry.samples.append(calls / wall[id(entry)])
        # thread_time ticks finely on Linux; guard against a coarse clock reading 0.
        entry.cpu_samples.append(calls / max(cpu[id(entry)], 1e-9))


@dataclass
class SteadyReport:
    entries: list[Entry]
    skipped: list[tuple[str, str, str]]  # "ALG cache", contender, reason
    rounds: int
    target: float
    fetches: dict[str, int]  # verifier.fetches per remote contender, after the timing


async def steady_state(
    algorithms: Sequence[str],
    *,
    rounds: int,
    target: float,
    seed: int | None = None,
) -> SteadyReport:
    """Check, calibrate and time the remote and local verifiers for every algorithm."""
    entries: list[Entry] = []
    skipped: list[tuple[str, str, str]] = []
    remotes: dict[str, OIDCVerifier] = {}
    clients: list[httpx.AsyncClient] = []
    try:
        for alg in algorithms:
            _progress(f"preparing {alg}")
            key = Key.generate(alg, kid=f"{alg.lower()}-{secrets.token_hex(4)}")
            tokens = make_tokens(key)
            provider = Provider([key])
            for cached in (False, True):
                size = DEFAULT_CACHE_SIZE if cached else 0
                client = provider.client()
                clients.append(client)
                remote = OIDCVerifier(
                    ISSUER, audience=AUDIENCE, http_client=client, cache_size=size
                )
                await remote.start()
                group = f"{alg} {'cached' if cached else 'uncached'}"
                remotes[group] = remote
                # The same public key, from the same JWK the provider publishes.
                local = JWTVerifier(
                    Key.from_jwk(key.public_jwk()),
                    issuer=ISSUER,
                    audience=AUDIENCE,
                    cache_size=size,
                )
                for name, averify in ((LOCAL, local.verify), (REMOTE, remote.verify)):
                    _progress(f"checking {group} {name}")
                    problem = await check_async(averify, tokens)
                    if problem is None:
                        entries.append(Entry(alg, cached, name, tokens.valid, verify=averify))
                    else:
                        skipped.append((group, name, f"excluded: {problem}"))
                problem = check(local.verify_sync, tokens)
                if problem is None:
                    entries.append(
                        Entry(alg, cached, REFERENCE, tokens.valid, verify_sync=local.verify_sync)
                    )
                else:
                    skipped.append((group, REFERENCE, f"excluded: {problem}"))
        for entry in entries:
            _progress(f"calibrating {entry.algorithm} {entry.cache} {entry.contender}")
            await entry.calibrate(target)
        rng = random.Random(seed)
        groups: dict[tuple[str, bool], list[Entry]] = {}
        for entry in entries:
            groups.setdefault((entry.algorithm, entry.cached), []).append(entry)
        cases = list(groups.values())
        for number in range(rounds):
            # A new random order every round; within a case (algorithm and cache
            # setting) the contenders interleave, so that their ratio in the round
            # shares the machine's conditions of the moment.
            rng.shuffle(cases)
            for index, case in enumerate(cases):
                _progress(
                    f"round {number + 1}/{rounds}, case {index + 1}/{len(cases)}: "
                    f"{case[0].algorithm} {case[0].cache}"
                )
                await measure_case(case, rng)
        print(file=sys.stderr)
        # One fetch each (start()): none for staleness or rotation while timing.
        fetches = {case: remote.fetches for case, remote in remotes.items()}
    finally:
        for client in clients:
            await client.aclose()
    return SteadyReport(entries, skipped, rounds, target, fetches)


def steady_records(report: SteadyReport) -> list[dict[str, Any]]:
    """One record per (algorithm, cache, contender), with the ratio to the local verifier."""
    by_case = {(e.algorithm, e.cached, e.contender): e for e in report.entries}
    out = []
    for entry in report.entries:
        median = statistics.median(entry.samples)
        base = by_case.get((entry.algorithm, entry.cached, LOCAL))
        ratio = of_medians = cpu_ratio = None
        if base is not None:
            # Samples of one round were taken interleaved: their ratio cancels the load
            # the machine had at that moment, which a ratio of medians does not.
            pairs = zip(entry.samples, base.samples, strict=True)
            ratio = round(statistics.median(mine / local for mine, local in pairs), 3)
            of_medians = round(median / statistics.median(base.samples), 3)
            cpu_pairs = zip(entry.cpu_samples, base.cpu_samples, strict=True)
            cpu_ratio = round(statistics.median(mine / local for mine, local in cpu_pairs), 3)
        target = TARGET_RATIO if entry.contender == REMOTE else None
        out.append(
            {
                "algorithm": entry.algorithm,
                "cached": entry.cached,
                "contender": entry.contender,
                "awaited": entry.verify is not None,
                "ops_per_sec": round(median, 1),
                "us_per_op_p50": round(statistics.median(1e6 / s for s in entry.samples), 3),
                "ops_per_sec_min": round(min(entry.samples), 1),
                "ops_per_sec_max": round(max(entry.samples), 1),
                "cpu_ops_per_sec": round(statistics.median(entry.cpu_samples), 1),
                "baseline": LOCAL,
                "ratio": ratio,
                "ratio_cpu": cpu_ratio,
                "ratio_of_medians": of_medians,
                "target_ratio": target,
                "met": None if target is None or ratio is None else ratio >= target,
                "rounds": len(entry.samples),
                "calls_per_round": max(1, entry.calls // SLICES) * SLICES,
            }
        )
    algs = {alg: i for i, alg in enumerate(dict.fromkeys(e.algorithm for e in report.entries))}
    return sorted(
        out,
        key=lambda r: (algs[r["algorithm"]], r["cached"], CONTENDERS.index(r["contender"])),
    )


class SteppedClock:
    """A ``monotonic`` clock the flood moves forward, a fixed step per token."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Flood:
    clock: str  # "simulated" or "real"
    tokens: int
    concurrency: int
    refresh_cooldown: float
    span_seconds: float  # simulated or real time the flood took
    elapsed_seconds: float  # real time
    fetches_before: int  # verifier.fetches after start(), before the flood
    fetches: int  # verifier.fetches during the flood
    failures: int  # verifier.failures during the flood
    jwks_requests: int  # JWKS requests the provider served during the flood
    discovery_requests: int
    outcomes: dict[str, int]  # UnknownKey, accepted, ProviderUnavailable, ...
    valid_after: bool  # a valid token still verifies after the flood

    @property
    def windows(self) -> int:
        """Cooldown windows the flood spans (a partial window counts as one)."""
        return max(1, math.ceil(self.span_seconds / self.refresh_cooldown - 1e-9))

    @property
    def fetches_per_window(self) -> float:
        return max(self.fetches, self.jwks_requests) / self.windows

    @property
    def all_refused(self) -> bool:
        return self.outcomes.get("UnknownKey", 0) == self.tokens

    @property
    def met(self) -> bool:
        return (
            self.fetches_per_window <= TARGET_FETCHES_PER_WINDOW
            and self.all_refused
            and self.valid_after
        )

    def record(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "tokens": self.tokens,
            "concurrency": self.concurrency,
            "refresh_cooldown": self.refresh_cooldown,
            "span_seconds": round(self.span_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "tokens_per_sec": round(self.tokens / self.elapsed_seconds, 1),
            "windows": self.windows,
            "fetches_before": self.fetches_before,
            "fetches": self.fetches,
            "failures": self.failures,
            "jwks_requests": self.jwks_requests,
            "discovery_requests": self.discovery_requests,
            "fetches_per_window": round(self.fetches_per_window, 3),
            "target_fetches_per_window": TARGET_FETCHES_PER_WINDOW,
            "outcomes": dict(self.outcomes),
            "all_refused_unknown_key": self.all_refused,
            "valid_after": self.valid_after,
            "met": self.met,
        }


def flood_tokens(key: Key, count: int) -> list[str]:
    """``count`` tokens signed by ``key``, each naming a different random ``kid``."""
    body = claims()
    kids: dict[str, None] = {}  # distinct, in the order drawn
    while len(kids) < count:
        kid = secrets.token_urlsafe(12)
        if kid != key.kid:
            kids[kid] = None
    return [sign(key, body, kid=kid) for kid in kids]


async def flood(key: Key, tokens: Sequence[str], *, concurrency: int, windows: int | None) -> Flood:
    """Send ``tokens`` through a fresh OIDCVerifier, ``concurrency`` at a time.

    With ``windows``, the verifier's ``monotonic`` clock advances by a fixed step per
    token so that the flood spans that many refresh cooldown windows; otherwise it
    runs on the real clock.
    """
    provider = Provider([key])
    clock = SteppedClock()
    options: dict[str, Any] = {} if windows is None else {"monotonic": clock}
    async with provider.client() as client:
        verifier = OIDCVerifier(ISSUER, audience=AUDIENCE, http_client=client, **options)
        await verifier.start()
        cooldown = verifier.refresh_cooldown
        step = 0.0 if windows is None else windows * cooldown / len(tokens)
        before = (verifier.fetches, verifier.failures)
        served = (provider.jwks_requests, provider.discovery_requests)
        outcomes: Counter[str] = Counter()

        async def one(index: int, token: str) -> None:
            if windows is not None:
                clock.now = (index + 1) * step  # not summed: no drift over 10,000 steps
            try:
                await verifier.verify(token)
            except UnknownKey:
                outcomes["UnknownKey"] += 1
            except ProviderUnavailable:
                outcomes["ProviderUnavailable"] += 1
            except InvalidToken as exc:
                outcomes[f"InvalidToken: {exc.reason}"] += 1
            except Exception as exc:
                outcomes[f"{type(exc).__name__}"] += 1
            else:
                outcomes["accepted"] += 1

        started = time.perf_counter()
        real_start = time.monotonic()
        for first in range(0, len(tokens), concurrency):
            batch = tokens[first : first + concurrency]
            await asyncio.gather(*(one(first + i, t) for i, t in enumerate(batch)))
        elapsed = time.perf_counter() - started
        span = clock.now if windows is not None else time.monotonic() - real_start
        fetches = verifier.fetches - before[0]
        failures = verifier.failures - before[1]
        jwks = provider.jwks_requests - served[0]
        discovery = provider.discovery_requests - served[1]
        try:
            await verifier.verify(sign(key, claims()))
        except Exception:
            valid_after = False
        else:
            valid_after = True
    return Flood(
        clock="real" if windows is None else "simulated",
        tokens=len(tokens),
        concurrency=concurrency,
        refresh_cooldown=cooldown,
        span_seconds=span,
        elapsed_seconds=elapsed,
        fetches_before=before[0],
        fetches=fetches,
        failures=failures,
        jwks_requests=jwks,
        discovery_requests=discovery,
        outcomes=dict(outcomes),
        valid_after=valid_after,
    )


async def floods(count: int, *, concurrency: int, windows: int) -> list[Flood]:
    _progress(f"signing {count:,} flood tokens")
    key = Key.generate("ES256", kid="provider-key")
    tokens = flood_tokens(key, count)
    results = []
    for simulated in (windows, None):
        _progress(
            f"flood of {count:,} unknown kids "
            f"({'real' if simulated is None else 'simulated'} clock)"
        )
        results.append(await flood(key, tokens, concurrency=concurrency, windows=simulated))
    print(file=sys.stderr)
    return results


def _yes(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def render(report: SteadyReport, results: Sequence[Flood], env: Mapping[str, Any]) -> str:
    versions = " · ".join(f"{name} {version}" for name, version in env["packages"].items())
    lines = [
        "## OIDCVerifier: remote keys against local ones (in-process provider, one thread)",
        "",
        f"- Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs, "
        f"{env['event_loop']} event loop",
        f"- {versions}",
        f"- {report.rounds} rounds; each contender timed ~{report.target:g} s per round, "
        f"in {SLICES} slices taking turns with the others of its case, cases in a "
        "shuffled order; medians of the rounds",
        "- remote and local are both awaited (`await v.verify(token)` in a loop); "
        "the reference row calls `verify_sync` without a coroutine",
        "",
        "### Steady-state verification (keys already fetched)",
        "",
        "| Algorithm | Cache | Contender | Median ops/s | p50 µs/op | vs local "
        "| vs local (CPU time) | Target | Met |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in steady_records(report):
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        cpu = "n/a" if r["ratio_cpu"] is None else f"{r['ratio_cpu']:.2f}x"
        target = "—" if r["target_ratio"] is None else f"≥ {r['target_ratio']:.2f}x"
        met = "—" if r["target_ratio"] is None else _yes(r["met"])
        lines.append(
            f"| {r['algorithm']} | {'cached' if r['cached'] else 'uncached'} | {r['contender']} "
            f"| {r['ops_per_sec']:,.0f} | {r['us_per_op_p50']:.2f} | {ratio} | {cpu} "
            f"| {target} | {met} |"
        )
    lines += [
        "",
        "*vs local*: median over the rounds of the ratio to the local verifier (same "
        "algorithm, cache setting and round; wall clock), which *Met* judges. "
        "*vs local (CPU time)*: the same from this thread's CPU time, which does not "
        "count the moments other processes had the CPU.",
    ]
    if report.skipped:
        lines += ["", "Not in the table:", ""]
        lines += [f"- {group} / {name}: {reason}" for group, name, reason in report.skipped]
    lines += [
        "",
        "### Random-`kid` flood (ES256 provider, every token naming an unknown `kid`)",
        "",
        "| Clock | Tokens | Concurrency | Span (s) | Cooldown windows | JWKS fetches "
        "| JWKS requests served | Fetches/window | Refused (UnknownKey) | Accepted "
        "| Other errors | Tokens/s | Target | Met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in results:
        accepted = f.outcomes.get("accepted", 0)
        others = f.tokens - accepted - f.outcomes.get("UnknownKey", 0)
        lines.append(
            f"| {f.clock} | {f.tokens:,} | {f.concurrency} | {f.span_seconds:.2f} "
            f"| {f.windows} | {f.fetches} | {f.jwks_requests} | {f.fetches_per_window:.2f} "
            f"| {f.outcomes.get('UnknownKey', 0):,} | {accepted} | {others} "
            f"| {f.tokens / f.elapsed_seconds:,.0f} "
            f"| ≤ {TARGET_FETCHES_PER_WINDOW:g}/window, all refused | {_yes(f.met)} |"
        )
    lines += [
        "",
        "JWKS fetches and requests count those during the flood only (each verifier "
        "first fetched once in `start()`); span is simulated time for the simulated "
        "clock, real time otherwise; a partial cooldown window counts as one.",
    ]
    for f in results:
        problems = [o for o in f.outcomes if o != "UnknownKey"]
        if problems or not f.valid_after:
            lines.append(
                f"- {f.clock} clock: outcomes {f.outcomes}; valid token after: {f.valid_after}"
            )
    return "\n".join(lines)


def _environment(event_loop: str) -> dict[str, Any]:
    env = environment()
    env["packages"]["httpx"] = _version("httpx")
    env["event_loop"] = event_loop
    return env


async def run(
    algorithms: Sequence[str],
    *,
    rounds: int,
    target: float,
    flood_count: int,
    concurrency: int,
    windows: int,
) -> tuple[SteadyReport, list[Flood], str]:
    """Both parts, in one running event loop; also the loop's class, for the record."""
    loop = type(asyncio.get_running_loop())
    report = await steady_state(algorithms, rounds=rounds, target=target)
    results = await floods(flood_count, concurrency=concurrency, windows=windows)
    return report, results, f"{loop.__module__}.{loop.__qualname__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.oidc", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="5 rounds of ~0.1 s (< 1 minute)")
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds (default 15; 5 quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--flood", type=int, default=10_000, metavar="N", help="flood tokens (default 10000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=100, metavar="N", help="flood batch (default 100)"
    )
    parser.add_argument(
        "--windows",
        type=int,
        default=5,
        metavar="N",
        help="cooldown windows the simulated flood spans (default 5)",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    args = parser.parse_args(argv)
    algorithms: Sequence[str] = ALGORITHMS
    flood_count, concurrency = args.flood, args.concurrency
    if args.smoke:
        algorithms, rounds, target = ("ES256",), 1, 0.005
        flood_count, concurrency = min(flood_count, 200), min(concurrency, 20)
    elif args.quick:
        rounds, target = 5, 0.1
    else:
        rounds, target = 15, 0.3
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        rounds = args.rounds
    if flood_count < 1 or concurrency < 1 or args.windows < 1:
        parser.error("--flood, --concurrency and --windows must be at least 1")
    report, results, event_loop = asyncio.run(
        run(
            algorithms,
            rounds=rounds,
            target=target,
            flood_count=flood_count,
            concurrency=concurrency,
            windows=args.windows,
        )
    )
    env = _environment(event_loop)
    print(render(report, results, env))
    if args.json is not None:
        document = {
            "environment": env,
            "settings": {
                "rounds": rounds,
                "seconds_per_round": target,
                "target_ratio": TARGET_RATIO,
                "flood_tokens": flood_count,
                "flood_concurrency": concurrency,
                "flood_windows": args.windows,
            },
            "results": steady_records(report),
            "skipped": [
                {"case": group, "contender": name, "reason": reason}
                for group, name, reason in report.skipped
            ],
            "fetches_while_timing": report.fetches,
            "flood": [f.record() for f in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
