"""The ``asgi-auth`` command: secrets, keys, tokens, inspection and the demo server.

Configuration comes from flags, else from the environment: ``ASGI_AUTH_SECRET``
(HS256), ``ASGI_AUTH_PRIVATE_KEY`` (a PEM file; the algorithm follows the key, or
``ASGI_AUTH_ALGORITHM``), ``ASGI_AUTH_ISSUER``, ``ASGI_AUTH_AUDIENCE``, and for the
demo ``ASGI_AUTH_DATABASE_URL`` and ``ASGI_AUTH_OIDC_ISSUER``. The library
itself never reads the environment; only this module does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from asgi_auth.cli_store import add_store_commands, database_url
from asgi_auth.errors import InvalidToken, StoreUnavailable
from asgi_auth.tokens import JWTVerifier, Key, KeySet, TokenIssuer
from asgi_auth.tokens.verifier import read_unverified

__all__ = ["main", "parse_duration"]

_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class UsageError(Exception):
    """A command-line mistake: printed, exit status 2."""


def parse_duration(text: str) -> int:
    """``"90"``, ``"45s"``, ``"30m"``, ``"1h"``, ``"7d"``, ``"2w"`` → seconds.

    Raises:
        UsageError: not a positive duration.
    """
    match = _DURATION.fullmatch(text.strip())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if seconds <= 0:
        raise UsageError(f"not a positive duration: {text!r} (try 30m, 1h, 7d)")
    return seconds


def load_key(
    secret: str | None, private_key: str | None, algorithm: str | None
) -> tuple[Key, bool]:
    """The configured key, or a generated HS256 secret. Returns (key, was_generated).

    Raises:
        UsageError: both a secret and a key, or an unusable one.
    """
    if secret and private_key:
        raise UsageError("give a secret or a private key, not both")
    try:
        if private_key:
            return Key.from_file(private_key, algorithm=algorithm), False
        if secret:
            return Key.from_secret(secret, algorithm=algorithm or "HS256"), False
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return Key.from_secret(new_secret()), True


def new_secret(length: int = 32) -> str:
    """A random secret as standard base64, like ``openssl rand -base64 32``."""
    return base64.b64encode(secrets.token_bytes(length)).decode("ascii")


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    secret, private_key = getattr(args, "secret", None), getattr(args, "private_key", None)
    if not secret and not private_key:  # a key given by flag replaces both variables
        secret, private_key = env.get("ASGI_AUTH_SECRET"), env.get("ASGI_AUTH_PRIVATE_KEY")
    return {
        "secret": secret,
        "private_key": private_key,
        "algorithm": getattr(args, "algorithm", None) or env.get("ASGI_AUTH_ALGORITHM"),
        "issuer": getattr(args, "issuer", None) or env.get("ASGI_AUTH_ISSUER"),
        "audience": getattr(args, "audience", None) or env.get("ASGI_AUTH_AUDIENCE"),
    }


def _claim(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--claim wants NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def cmd_secret(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    print(new_secret(args.bytes), file=out)
    return 0


def cmd_keys(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    if args.alg.upper().startswith("HS"):
        raise UsageError("HMAC secrets have no key pair: use `asgi-auth secret`")
    try:
        key = Key.generate(args.alg, kid=args.kid)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    path = Path(args.out or f"asgi-auth-{args.alg.lower()}.pem")
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    try:
        if args.force:
            path.unlink(missing_ok=True)  # recreate, so the mode below applies
        # O_EXCL: the file is born 0600; an existing file's looser mode never carries over.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_pem())
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    print(f"wrote the private key to {path} (keep it secret)", file=sys.stderr)
    print(json.dumps(KeySet([key]).public_jwks(), indent=2), file=out)
    return 0


def cmd_token(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    settings = _settings(args, env)
    if not settings["secret"] and not settings["private_key"]:
        raise UsageError("no key: pass --secret/--private-key or set ASGI_AUTH_SECRET")
    key, _ = load_key(settings["secret"], settings["private_key"], settings["algorithm"])
    claims = dict(_claim(c) for c in args.claim)
    if args.scope:
        claims["scope"] = args.scope
    try:
        issuer = TokenIssuer(key, issuer=settings["issuer"], audience=settings["audience"])
        token = issuer.issue(args.sub, claims=claims, lifetime=parse_duration(args.expires))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    print(token, file=out)
    return 0


def cmd_inspect(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    given: str = args.token
    token = (sys.stdin.read() if given == "-" else given).strip()
    try:
        header, claims = read_unverified(token)
    except InvalidToken as exc:
        raise UsageError(f"not a JWT: {exc.reason}") from exc
    report: dict[str, Any] = {"header": header, "claims": claims}
    for name in ("iat", "nbf", "exp"):
        value = claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
            except (OverflowError, OSError, ValueError):
                moment = "out of range"
            report.setdefault("times", {})[name] = moment
    settings = _settings(args, env)
    status = 0
    if args.jwks or settings["secret"] or settings["private_key"]:
        try:
            if args.jwks:
                keys = KeySet.from_jwks(Path(args.jwks).read_text(), skip_unusable=True)
            else:
                key, _ = load_key(
                    settings["secret"], settings["private_key"], settings["algorithm"]
                )
                keys = KeySet([key])
            verifier = JWTVerifier(
                keys, issuer=settings["issuer"], audience=settings["audience"], cache_size=0
            )
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
        try:
            verifier.verify_sync(token)
            report["verified"] = True
        except InvalidToken as exc:
            report["verified"] = False
            report["refused"] = exc.reason
            status = 1
    else:
        report["verified"] = False
        report["note"] = "UNVERIFIED: no key given (--secret, --private-key or --jwks)"
    print(json.dumps(report, indent=2, sort_keys=True), file=out)
    return status


async def _prepare(
    url: str, prepare: Any, *, seed: bool, passwords: dict[str, str]
) -> dict[str, int]:
    from asgi_auth.store import Store

    store = Store(url)
    await store.connect()
    try:
        result: dict[str, int] = await prepare(store, seed=seed, passwords=passwords)
        return result
    finally:
        await store.disconnect()


def cmd_demo(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise UsageError("the demo needs uvicorn: pip install 'asgi-auth[demo]'") from exc
    from asgi_auth.demo import DemoConfig, build_demo, prepare_store

    settings = _settings(args, env)
    oidc_issuer = args.oidc_issuer or env.get("ASGI_AUTH_OIDC_ISSUER") or None
    key: Key | None = None
    generated = False
    if oidc_issuer is None or settings["secret"] or settings["private_key"]:
        key, generated = load_key(
            settings["secret"], settings["private_key"], settings["algorithm"]
        )
    from asgi_auth.store import Store

    url = database_url(args, env)
    try:
        config = DemoConfig(
            key,
            issuer=settings["issuer"],
            audience=settings["audience"],
            database_url=url,
            oidc_issuer=oidc_issuer,
        )
        passwords: dict[str, str] = {}
        seeded = asyncio.run(_prepare(url, prepare_store, seed=args.seed, passwords=passwords))
    except (ValueError, StoreUnavailable) as exc:
        raise UsageError(getattr(exc, "reason", None) or str(exc)) from exc
    base = f"http://{args.host}:{args.port}"
    shown = Store(url).safe_url
    family = "" if config.local is None else f" ({config.local.algorithm})"
    lines = [f"asgi-auth demo on {base}{family}, store {shown}"]
    if oidc_issuer is not None:
        lines.append(
            f"accepting tokens from {oidc_issuer} for the audience {config.audience} "
            "(keys through OIDC discovery)"
        )
    if config.local is None:
        print("\n".join(lines), file=out, flush=True)
        uvicorn.run(build_demo(config), host=args.host, port=args.port, log_level=args.log_level)
        return 0
    if generated and key is not None:
        secret = key.verify_key.decode("ascii")
        lines.append(f"no secret or key configured; generated one: ASGI_AUTH_SECRET={secret}")
    for username, user_id in seeded.items():
        token = config.issuer_obj.issue(user_id, claims={"preferred_username": username})
        lines.append(f"{username} (sub {user_id}), valid 1 hour:\n  {token}")
    for username, password in passwords.items():
        lines.append(f"created {username} with the password {password} (shown once)")
    if passwords:
        lines.append(
            f"log in: curl -d grant_type=password -d username=alice -d password=... {base}/token"
        )
    sample = config.issuer_obj.issue("demo", claims={"scope": "read"})
    lines += [
        f"a token for subject 'demo', valid 1 hour:\n  {sample}",
        f'try: curl -H "Authorization: Bearer {sample}" {base}/me',
    ]
    print("\n".join(lines), file=out, flush=True)
    uvicorn.run(build_demo(config), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _key_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret", help="HMAC secret (or ASGI_AUTH_SECRET)")
    parser.add_argument("--private-key", help="PEM file (or ASGI_AUTH_PRIVATE_KEY)")
    parser.add_argument("--algorithm", help="algorithm (or ASGI_AUTH_ALGORITHM)")
    parser.add_argument("--issuer", help="iss (or ASGI_AUTH_ISSUER)")
    parser.add_argument("--audience", help="aud (or ASGI_AUTH_AUDIENCE)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``asgi-auth``."""
    parser = argparse.ArgumentParser(prog="asgi-auth", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("secret", help="print a fresh random secret (base64)")
    p.add_argument("--bytes", type=int, default=32, choices=range(32, 129), metavar="N")
    p.set_defaults(run=cmd_secret)

    p = sub.add_parser("keys", help="write a private key, print its public JWKS")
    p.add_argument("--alg", default="ES256", help="RS256, PS256, ES256, ES384, ES512, EdDSA…")
    p.add_argument("--out", help="private key file (default asgi-auth-<alg>.pem)")
    p.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(run=cmd_keys)

    p = sub.add_parser("token", help="issue a token")
    p.add_argument("--sub", required=True, help="the subject (user id)")
    p.add_argument("--expires", default="1h", help="lifetime: 90, 45s, 30m, 1h, 7d")
    p.add_argument("--scope", help="space-separated scopes")
    p.add_argument("--claim", action="append", default=[], help="NAME=VALUE (JSON or text)")
    _key_flags(p)
    p.set_defaults(run=cmd_token)

    p = sub.add_parser("inspect", help="show a token's header and claims")
    p.add_argument("token", help="the token, or - to read it from stdin")
    p.add_argument("--jwks", help="verify against the keys in this JWKS file")
    _key_flags(p)
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("demo", help="serve the demo API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")
    p.add_argument("--database-url", help="store URL (or ASGI_AUTH_DATABASE_URL)")
    p.add_argument(
        "--oidc-issuer",
        help="also (or only) accept this OpenID Connect provider's tokens "
        "(or ASGI_AUTH_OIDC_ISSUER); --audience is its API identifier",
    )
    p.add_argument(
        "--seed", action="store_true", help="create roles, claims and the users alice and bob"
    )
    _key_flags(p)
    p.set_defaults(run=cmd_demo)

    add_store_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run ``asgi-auth``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args, os.environ if env is None else env, sys.stdout)
    except UsageError as exc:
        print(f"asgi-auth {args.command}: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
