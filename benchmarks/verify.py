"""In-process JWT verification throughput: asgi_auth against PyJWT and other Python libraries.

Run ``python -m benchmarks.verify [--quick] [--json PATH] [--rounds N]``.

Every contender checks the signature, ``exp``, ``iss`` and ``aud`` and requires ``sub``,
as closely as its API allows, on a key prepared once. Before anything is timed, each
one must accept a valid token and refuse a token whose payload had one character
flipped, an expired token and a token for another audience; one that does not is
reported and left out. Contenders then alternate within each round, in a new random
order every round, each timed for a number of calls calibrated to a fixed duration.
The table shows the median over the rounds and the ratio to PyJWT's ``jwt.decode``
for the same algorithm in the same run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import hmac
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import jwt
import jwt.types

from asgi_auth.tokens import JWTVerifier, Key, TokenIssuer
from asgi_auth.tokens.keys import ALGORITHMS as KEY_ALGORITHMS

ISSUER = "https://auth.example.com"
AUDIENCE = "bench-api"
SUBJECT = "user-1"
ALGORITHMS = ("HS256", "RS256", "PS256", "ES256", "EdDSA")
BASELINE = "PyJWT jwt.decode"
PACKAGES = ("PyJWT", "cryptography", "joserfc", "Authlib", "python-jose", "jwcrypto", "asgi-auth")

#: Verifies a token, raising on any invalid one.
Verify = Callable[[str], object]
#: Builds a contender's verify function for a key and algorithm.
Factory = Callable[[Key, str], Verify]


class Unavailable(Exception):
    """The contender cannot run this algorithm."""


def _public(key: Key) -> bytes:
    return key.verify_key if key.is_symmetric else key.public_pem()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def asgi_auth_uncached(key: Key, alg: str) -> Verify:
    return JWTVerifier(key, issuer=ISSUER, audience=AUDIENCE, cache_size=0).verify_sync


def asgi_auth_cached(key: Key, alg: str) -> Verify:
    return JWTVerifier(key, issuer=ISSUER, audience=AUDIENCE).verify_sync


def pyjwt(key: Key, alg: str) -> Verify:
    # key.verify_key is a cryptography key object (or the HMAC bytes): nothing to re-parse.
    options: jwt.types.Options = {"require": ["exp", "sub"]}
    return partial(
        jwt.decode,
        key=key.verify_key,
        algorithms=[alg],
        issuer=ISSUER,
        audience=AUDIENCE,
        options=options,
    )


FLOOR = "floor (minimal pure Python)"


def floor(key: Key, alg: str) -> Verify:
    """The least a correct verifier must do, written for speed and nothing else: split,
    decode, check the signature with the prepared key, parse the payload, check exp, iss,
    aud and sub. No strictness about encodings, no header checks beyond the split, no
    principal: a yardstick for how much our hot path adds, not a verifier to use."""
    signer = KEY_ALGORITHMS[alg]
    verify_signature = signer.verify
    secret = key.verify_key

    def b64(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    if alg.startswith("HS"):
        digest = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}[alg]

        def check_signature(signed: bytes, signature: bytes) -> bool:
            return hmac.compare_digest(hmac.digest(secret, signed, digest), signature)

    else:

        def check_signature(signed: bytes, signature: bytes) -> bool:
            return bool(verify_signature(signed, secret, signature))

    def verify(token: str) -> object:
        signed, _, signature = token.rpartition(".")
        if not check_signature(signed.encode("ascii"), b64(signature)):
            raise ValueError("bad signature")
        claims = json.loads(b64(signed.partition(".")[2]))
        if claims["exp"] <= time.time() or claims["iss"] != ISSUER:
            raise ValueError("expired or another issuer")
        if claims["aud"] != AUDIENCE or not isinstance(claims["sub"], str):
            raise ValueError("another audience or no subject")
        return claims

    return verify


#: Claim checks in the form joserfc's JWTClaimsRegistry and authlib's claims_options share.
ESSENTIAL_CLAIMS: Final[dict[str, Any]] = {
    "iss": {"essential": True, "value": ISSUER},
    "aud": {"essential": True, "value": AUDIENCE},
    "exp": {"essential": True},
    "sub": {"essential": True},
}


def joserfc(key: Key, alg: str) -> Verify:
    from joserfc import jwk
    from joserfc import jwt as jose_jwt

    kinds: dict[str, Any] = {"oct": jwk.OctKey, "RSA": jwk.RSAKey, "EC": jwk.ECKey}
    prepared = kinds.get(key.kty, jwk.OKPKey).import_key(_public(key))
    registry = jose_jwt.JWTClaimsRegistry(**ESSENTIAL_CLAIMS)

    def verify(token: str) -> object:
        claims = jose_jwt.decode(token, prepared, algorithms=[alg]).claims
        registry.validate(claims)  # exp, nbf and iat too
        return claims

    return verify


def authlib_jose(key: Key, alg: str) -> Verify:
    with warnings.catch_warnings():
        from authlib.deprecate import AuthlibDeprecationWarning  # installs an "always" filter

        warnings.simplefilter("ignore", AuthlibDeprecationWarning)  # so ours goes after it
        from authlib.jose import JsonWebKey, JsonWebToken  # "deprecated, use joserfc"

    prepared = JsonWebKey.import_key(_public(key), {"kty": key.kty})
    decoder = JsonWebToken([alg])

    def verify(token: str) -> object:
        claims = decoder.decode(token, prepared, claims_options=ESSENTIAL_CLAIMS)
        claims.validate()  # exp, nbf and iat too
        return claims

    return verify


def python_jose(key: Key, alg: str) -> Verify:
    from jose import jwk
    from jose import jwt as jose_jwt
    from jose.constants import ALGORITHMS as JOSE_ALGORITHMS

    if alg not in JOSE_ALGORITHMS.SUPPORTED:
        raise Unavailable(f"python-jose does not implement {alg}")
    required = {f"require_{claim}": True for claim in ("exp", "sub", "iss", "aud")}
    return partial(
        jose_jwt.decode,
        key=jwk.construct(_public(key), alg),
        algorithms=[alg],
        issuer=ISSUER,
        audience=AUDIENCE,
        options=required,
    )


def jwcrypto(key: Key, alg: str) -> Verify:
    from jwcrypto import jwk
    from jwcrypto import jwt as jwc

    if key.is_symmetric:
        prepared = jwk.JWK(kty="oct", k=_b64url(key.verify_key))
    else:
        prepared = jwk.JWK.from_pem(key.public_pem())
    # Given check_claims, jwcrypto checks exp and nbf only when they are named there.
    checks = {"iss": ISSUER, "aud": AUDIENCE, "exp": None, "nbf": None, "sub": None}

    def verify(token: str) -> object:
        parsed = jwc.JWT(algs=[alg], check_claims=checks)
        parsed.leeway = 0  # its default is 60 s; the others allow none
        parsed.deserialize(token, prepared)
        return parsed.claims

    return verify


CONTENDERS: Mapping[str, Factory] = {
    "asgi_auth (uncached)": asgi_auth_uncached,
    "asgi_auth (cached)": asgi_auth_cached,
    BASELINE: pyjwt,
    FLOOR: floor,
    "joserfc": joserfc,
    "authlib.jose": authlib_jose,
    "python-jose": python_jose,
    "jwcrypto": jwcrypto,
}


@dataclass(frozen=True)
class Tokens:
    valid: str
    #: Tokens every contender must refuse, by what is wrong with them.
    refused: Mapping[str, str]


def tamper(token: str) -> str:
    """The token with one character of its payload flipped (``sub`` "user-1" → "user-2").

    The payload stays well-formed JSON, so only the signature check can refuse it.
    """
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = raw.replace(f'"{SUBJECT}"'.encode(), f'"{SUBJECT[:-1]}2"'.encode(), 1)
    if forged == raw:
        raise ValueError("the payload does not name the benchmark subject")
    return f"{header}.{_b64url(forged)}.{signature}"


def make_tokens(key: Key) -> Tokens:
    claims = {"scope": "read write", "name": "Bench User"}
    valid = TokenIssuer(key, issuer=ISSUER, audience=AUDIENCE).issue(SUBJECT, claims=claims)
    expired = TokenIssuer(
        key, issuer=ISSUER, audience=AUDIENCE, clock=lambda: time.time() - 7200
    ).issue(SUBJECT, claims=claims)
    elsewhere = TokenIssuer(key, issuer=ISSUER, audience="another-api").issue(SUBJECT)
    refused = {
        "a tampered token": tamper(valid),
        "an expired token": expired,
        "a token for another audience": elsewhere,
    }
    return Tokens(valid, refused)


def check(verify: Verify, tokens: Tokens) -> str | None:
    """Why this contender must not be timed, or None if it tells valid from invalid tokens."""
    try:
        verify(tokens.valid)
    except Exception as exc:
        return f"refused the valid token ({type(exc).__name__}: {exc})"
    for what, token in tokens.refused.items():
        with contextlib.suppress(Exception):
            verify(token)
            return f"accepted {what}"
    return None


def _time(verify: Verify, token: str, calls: int) -> float:
    gc.disable()  # as timeit does: a collection should not land on one contender's turn
    try:
        start = time.perf_counter()
        for _ in range(calls):
            verify(token)
        return time.perf_counter() - start
    finally:
        gc.enable()


def calibrate(verify: Verify, token: str, target: float) -> int:
    """How many calls take about ``target`` seconds."""
    calls = 1
    while (elapsed := _time(verify, token, calls)) < target / 5:
        calls *= 2
    return max(1, round(calls * target / elapsed))


@dataclass
class Entry:
    algorithm: str
    contender: str
    verify: Verify
    token: str
    calls: int = 0
    samples: list[float] = field(default_factory=list)  # ops/s, one per round


@dataclass
class Report:
    entries: list[Entry]
    skipped: list[tuple[str, str, str]]  # algorithm, contender, reason
    rounds: int
    target: float


def _progress(text: str) -> None:
    print(f"\r{text:<72.72}", end="", file=sys.stderr, flush=True)


def run(
    algorithms: Sequence[str],
    *,
    rounds: int,
    target: float,
    contenders: Mapping[str, Factory] = CONTENDERS,
    seed: int | None = None,
) -> Report:
    """Check, calibrate and time every contender for every algorithm."""
    entries: list[Entry] = []
    skipped: list[tuple[str, str, str]] = []
    for alg in algorithms:
        key = Key.generate(alg)
        tokens = make_tokens(key)
        for name, factory in contenders.items():
            _progress(f"checking {alg} {name}")
            try:
                verify = factory(key, alg)
            except ImportError as exc:
                skipped.append((alg, name, f"not installed ({exc.name})"))
                continue
            except Unavailable as exc:
                skipped.append((alg, name, f"not measured: {exc}"))
                continue
            problem = check(verify, tokens)
            if problem is not None:
                skipped.append((alg, name, f"excluded: {problem}"))
                continue
            entries.append(Entry(alg, name, verify, tokens.valid))
    for entry in entries:
        _progress(f"calibrating {entry.algorithm} {entry.contender}")
        entry.calls = calibrate(entry.verify, entry.token, target)
    rng = random.Random(seed)
    done = 0
    for _ in range(rounds):
        order = entries[:]
        rng.shuffle(order)
        for entry in order:
            done += 1
            _progress(f"[{done}/{rounds * len(entries)}] {entry.algorithm} {entry.contender}")
            entry.samples.append(entry.calls / _time(entry.verify, entry.token, entry.calls))
    print(file=sys.stderr)
    return Report(entries, skipped, rounds, target)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    return {
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def records(report: Report) -> list[dict[str, Any]]:
    """One record per (algorithm, contender), fastest first within an algorithm."""
    medians = {(e.algorithm, e.contender): statistics.median(e.samples) for e in report.entries}
    out = []
    for entry in report.entries:
        median = medians[entry.algorithm, entry.contender]
        baseline = medians.get((entry.algorithm, BASELINE))
        out.append(
            {
                "algorithm": entry.algorithm,
                "contender": entry.contender,
                "ops_per_sec": round(median, 1),
                "us_per_op_p50": round(statistics.median(1e6 / s for s in entry.samples), 3),
                "ops_per_sec_min": round(min(entry.samples), 1),
                "ops_per_sec_max": round(max(entry.samples), 1),
                "ratio": None if baseline is None else round(median / baseline, 3),
                "rounds": len(entry.samples),
                "calls_per_round": entry.calls,
            }
        )
    order = {alg: i for i, alg in enumerate(dict.fromkeys(e.algorithm for e in report.entries))}
    return sorted(out, key=lambda r: (order[r["algorithm"]], -r["ops_per_sec"]))


def render(report: Report, env: Mapping[str, Any]) -> str:
    versions = " · ".join(f"{name} {version}" for name, version in env["packages"].items())
    lines = [
        "## JWT verification throughput (in-process, one thread)",
        "",
        f"- Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs",
        f"- {versions}",
        f"- {report.rounds} rounds; each contender timed ~{report.target:g} s per round, "
        "in a shuffled order; medians of the rounds",
        "",
        "| Algorithm | Contender | Median ops/s | p50 µs/op | vs jwt.decode |",
        "|---|---|---:|---:|---:|",
    ]
    for r in records(report):
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {r['algorithm']} | {r['contender']} | {r['ops_per_sec']:,.0f} "
            f"| {r['us_per_op_p50']:.2f} | {ratio} |"
        )
    if report.skipped:
        lines += ["", "Not in the table:", ""]
        lines += [f"- {alg} / {name}: {reason}" for alg, name, reason in report.skipped]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verify", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="5 rounds of ~0.1 s (< 1 minute)")
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds (default 15; 5 quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    args = parser.parse_args(argv)
    algorithms: Sequence[str] = ALGORITHMS
    if args.smoke:
        algorithms, rounds, target = ("HS256",), 1, 0.005
    elif args.quick:
        rounds, target = 5, 0.1
    else:
        rounds, target = 15, 0.3
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        rounds = args.rounds
    with warnings.catch_warnings():
        # joserfc warns on every "EdDSA" token (RFC 9864 prefers "Ed25519"); still timed.
        warnings.filterwarnings("ignore", "EdDSA is deprecated")
        report = run(algorithms, rounds=rounds, target=target)
    env = environment()
    print(render(report, env))
    if args.json is not None:
        document = {
            "environment": env,
            "settings": {"rounds": rounds, "seconds_per_round": target},
            "results": records(report),
            "skipped": [
                {"algorithm": a, "contender": c, "reason": r} for a, c, r in report.skipped
            ],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
