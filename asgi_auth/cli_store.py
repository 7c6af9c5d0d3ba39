"""``asgi-auth db|role|claim|user …``: the store's administrative commands.

The database comes from ``--database-url`` or ``ASGI_AUTH_DATABASE_URL`` (default: an
SQLite file in the working directory). Each command is one transaction; the
caches of running instances on a shared PostgreSQL store are invalidated through
the change feed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TextIO

from asgi_auth.errors import StoreUnavailable
from asgi_auth.store import DEFAULT_DATABASE_URL, AdminError, Store, StoreAdmin

__all__ = ["add_store_commands", "database_url"]

Action = Callable[[StoreAdmin, argparse.Namespace], Awaitable[Any]]


class StoreCommandError(Exception):
    """A refused command: printed, exit status 2 (1 when the store is down)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def database_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """The store URL: the flag, else ``ASGI_AUTH_DATABASE_URL``, else the SQLite default."""
    flag: str | None = getattr(args, "database_url", None)
    return flag or env.get("ASGI_AUTH_DATABASE_URL") or DEFAULT_DATABASE_URL


async def _with_admin(url: str, action: Action, args: argparse.Namespace) -> Any:
    try:
        store = Store(url)
    except ValueError as exc:
        raise StoreCommandError(str(exc)) from exc
    try:
        await store.connect()
        try:
            await store.init_schema()
            return await action(StoreAdmin(store), args)
        finally:
            await store.disconnect()
    except StoreUnavailable as exc:
        raise StoreCommandError(f"the store is unavailable: {exc.reason}", status=1) from exc
    except (AdminError, ValueError) as exc:
        raise StoreCommandError(str(exc)) from exc


def _runner(action: Action) -> Callable[[argparse.Namespace, Mapping[str, str], TextIO], int]:
    def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
        try:
            result = asyncio.run(_with_admin(database_url(args, env), action, args))
        except StoreCommandError as exc:
            print(f"asgi-auth: {exc}", file=sys.stderr)
            return exc.status
        if result is not None:
            print(json.dumps(result, indent=2), file=out)
        return 0

    return run


async def _init(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, str]:
    return {"database": admin.store.safe_url, "schema": "ready"}


async def _create_named(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    create = admin.create_role if args.kind == "role" else admin.create_claim
    new_id = await create(args.name, args.description)
    return {"id": new_id, "name": args.name, "description": args.description}


async def _list_named(admin: StoreAdmin, args: argparse.Namespace) -> list[dict[str, str]]:
    return [{"name": n, "description": d} for n, d in await admin.list_names(args.kind)]


async def _show(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    rights = await admin.rights(args.username)
    return {
        "id": rights.id,
        "sub": str(rights.id),
        "username": rights.username,
        "role": rights.role,
        "claims": list(rights.claims),
        "is_active": rights.is_active,
    }


async def _create_user(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    await admin.create_user(
        args.username,
        password_hash=args.password_hash,
        role=args.role,
        claims=tuple(args.claim),
        is_active=not args.disabled,
    )
    return await _show(admin, args)


async def _set_active(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    await admin.set_active(args.username, args.active)
    return await _show(admin, args)


async def _set_role(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    await admin.set_role(args.username, None if args.role == "-" else args.role)
    return await _show(admin, args)


async def _passwd(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    from asgi_auth.authn.passwords import PasswordHasher

    # From standard input (one line), never from argv: argv shows in ps and histories.
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"new password for {args.username}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    await admin.rights(args.username)  # NotFound before hashing anything
    await admin.set_password_hash(args.username, await PasswordHasher().hash(password))
    return await _show(admin, args)


async def _grant(admin: StoreAdmin, args: argparse.Namespace) -> dict[str, Any]:
    change = admin.grant if args.grant else admin.revoke
    await change(args.username, args.claim)
    return await _show(admin, args)


def add_store_commands(sub: Any) -> None:
    """Add ``db``, ``role``, ``claim`` and ``user`` to the ``asgi-auth`` parser."""

    def command(parent: Any, name: str, action: Action, help_text: str) -> Any:
        parser = parent.add_parser(name, help=help_text)
        parser.add_argument("--database-url", help="store URL (or ASGI_AUTH_DATABASE_URL)")
        parser.set_defaults(run=_runner(action))
        return parser

    db = sub.add_parser("db", help="the store's schema").add_subparsers(dest="db", required=True)
    command(db, "init", _init, "create the tables (idempotent)")

    for kind in ("role", "claim"):
        group = sub.add_parser(kind, help=f"{kind}s").add_subparsers(dest=kind, required=True)
        p = command(group, "create", _create_named, f"create a {kind}")
        p.add_argument("name")
        p.add_argument("--description", default="")
        p.set_defaults(kind=kind)
        command(group, "list", _list_named, f"list {kind}s").set_defaults(kind=kind)

    users = sub.add_parser("user", help="users").add_subparsers(dest="user", required=True)
    p = command(users, "create", _create_user, "create a user")
    p.add_argument("username")
    p.add_argument("--role")
    p.add_argument("--claim", action="append", default=[], help="grant a claim (repeatable)")
    p.add_argument("--password-hash", help="a stored password hash (login arrives later)")
    p.add_argument("--disabled", action="store_true", help="create the user disabled")
    for name, active in (("disable", False), ("enable", True)):
        p = command(users, name, _set_active, f"{name} a user")
        p.add_argument("username")
        p.set_defaults(active=active)
    p = command(users, "set-role", _set_role, "set a user's role ('-' for none)")
    p.add_argument("username")
    p.add_argument("role")
    for name, grant in (("grant", True), ("revoke", False)):
        p = command(users, name, _grant, f"{name} a claim")
        p.add_argument("username")
        p.add_argument("claim")
        p.set_defaults(grant=grant)
    p = command(users, "passwd", _passwd, "set a password (read from standard input)")
    p.add_argument("username")
    p = command(users, "show", _show, "a user's effective rights")
    p.add_argument("username")
