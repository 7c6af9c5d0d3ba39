"""Login benchmark: logins/s through the token endpoint against raw argon2 verification,
and ``GET /me`` latency on the same server while logins saturate it.

Run: ``python -m benchmarks.login [--quick] [--json PATH]`` (needs Debian's ``wrk``).
Both sides use argon2-cffi's production parameters (64 MiB, t=3, p=4) and the same
concurrency (the hasher's 4 worker threads); rounds alternate, medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import argon2

from asgi_auth import Key, TokenIssuer
from asgi_auth.authn import PasswordHasher
from asgi_auth.store import Store, StoreAdmin
from benchmarks.authz import WrkResult, free_port, run_wrk, wrk_version
from benchmarks.verify import environment

USERNAME: Final = "bench"
PASSWORD: Final = "bench-password-of-a-usual-length"
SECRET: Final = "benchmark-secret-of-at-least-32-bytes!"
THREADS: Final = os.cpu_count() or 1  # PasswordHasher's default max_concurrency
LOGIN_CONNECTIONS: Final = 8
ME_CONNECTIONS: Final = 2


@dataclass
class Round:
    raw_per_sec: float
    logins: WrkResult
    me_idle: WrkResult
    me_loaded: WrkResult


def raw_argon2(stored: str, seconds: float) -> float:
    """Verifications/s of argon2-cffi itself with ``THREADS`` threads."""
    hasher = argon2.PasswordHasher()
    stop = time.monotonic() + seconds
    counts = [0] * THREADS

    def work(slot: int) -> None:
        while time.monotonic() < stop:
            hasher.verify(stored, PASSWORD)
            counts[slot] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    return sum(counts) / (time.monotonic() - started)


async def _prepare(url: str) -> str:
    async with Store(url) as store:
        await store.init_schema()
        stored = await PasswordHasher().hash(PASSWORD)
        await StoreAdmin(store).create_user(USERNAME, password_hash=stored)
        return stored


@contextlib.contextmanager
def server(url: str) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "ASGI_AUTH_BENCH_DATABASE_URL": url, "ASGI_AUTH_BENCH_SECRET": SECRET}
    command = [
        sys.executable, "-m", "uvicorn", "benchmarks.login_app:app", "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
        "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the login benchmark server did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr is not None:
            process.stderr.close()


def _lua(directory: Path) -> Path:
    script = directory / "login.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "grant_type=password&username={USERNAME}&password={PASSWORD}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
    )
    return script


def login_command(port: int, script: Path, seconds: int) -> list[str]:
    return [
        "wrk", "-t1", f"-c{LOGIN_CONNECTIONS}", f"-d{seconds}s", "--latency",
        "--timeout", "30s", "-s", str(script), f"http://127.0.0.1:{port}/token",
    ]  # fmt: skip


def me_command(port: int, token: str, seconds: int) -> list[str]:
    return [
        "wrk", "-t1", f"-c{ME_CONNECTIONS}", f"-d{seconds}s", "--latency",
        "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}/me",
    ]  # fmt: skip


def run(rounds: int, seconds: int) -> tuple[list[Round], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        url = f"sqlite:///{directory / 'login.db'}"
        stored = asyncio.run(_prepare(url))
        script = _lua(directory)
        token = TokenIssuer(Key.from_secret(SECRET)).issue(1)
        results: list[Round] = []
        with server(url) as port:
            for n in range(rounds):
                print(f"[{n + 1}/{rounds}] raw argon2, logins, /me", file=sys.stderr)
                raw = raw_argon2(stored, seconds)
                me_idle = run_wrk(me_command(port, token, seconds), seconds)
                logins = run_wrk(login_command(port, script, seconds), seconds)
                # /me while another wrk keeps the token endpoint saturated.
                load = login_command(port, script, seconds + 2)
                background = threading.Thread(target=run_wrk, args=(load, seconds + 2))
                background.start()
                time.sleep(1)
                me_loaded = run_wrk(me_command(port, token, seconds), seconds)
                background.join()
                results.append(Round(raw, logins, me_idle, me_loaded))
        commands = {
            "logins": " ".join(login_command(0, Path("login.lua"), seconds)),
            "me": " ".join(me_command(0, "$TOKEN", seconds)),
        }
        return results, commands


def summary(results: Sequence[Round]) -> dict[str, float]:
    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    raw = median([r.raw_per_sec for r in results])
    logins = median([r.logins.rps for r in results])
    return {
        "raw_argon2_per_sec": raw,
        "logins_per_sec": logins,
        "ratio": logins / raw if raw else 0.0,
        "me_p99_ms_idle": median([r.me_idle.p99_ms for r in results]),
        "me_p99_ms_under_logins": median([r.me_loaded.p99_ms for r in results]),
        "me_rps_under_logins": median([r.me_loaded.rps for r in results]),
        "non_2xx": float(sum(r.logins.non_2xx + r.me_loaded.non_2xx for r in results)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.login", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (5 if args.quick else 10)
    results, commands = run(rounds, seconds)
    figures = summary(results)
    env = environment()
    print("## Login benchmark\n")
    print(f"- {env.get('python', '')} · {env.get('cpu_count', '?')} CPUs · {wrk_version()}")
    print(f"- argon2id m=64 MiB t=3 p=4, {THREADS} threads on both sides; {rounds} rounds of "
          f"{seconds} s, medians")  # fmt: skip
    print(f"- logins: `{commands['logins']}`; /me: `{commands['me']}`\n")
    print("| measure | value |\n|---|---:|")
    print(f"| raw argon2 verifications/s | {figures['raw_argon2_per_sec']:.1f} |")
    print(f"| logins/s through POST /token | {figures['logins_per_sec']:.1f} |")
    print(f"| logins vs raw argon2 (target >= 0.9x) | {figures['ratio']:.2f}x |")
    print(f"| GET /me p99, idle | {figures['me_p99_ms_idle']:.2f} ms |")
    print(f"| GET /me p99 while logins saturate (target < 10 ms) | "
          f"{figures['me_p99_ms_under_logins']:.2f} ms |")  # fmt: skip
    print(f"| non-2xx answers | {int(figures['non_2xx'])} |")
    if args.json:
        document = {
            "environment": env,
            "commands": commands,
            "summary": figures,
            "rounds": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
