"""``asgi-auth db|role|claim|user``: the store's commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from asgi_auth.cli import main


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, Any, str]:
    status = main([*argv, "--database-url", url], env={})
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() else None), err


def test_store_commands_administer_users_roles_and_claims(
    capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    assert run(capsys, store_url, "db", "init")[0] == 0
    assert run(capsys, store_url, "db", "init")[0] == 0  # idempotent
    status, role, _ = run(capsys, store_url, "role", "create", "admin", "--description", "Admins")
    assert (status, role["name"], role["description"]) == (0, "admin", "Admins")
    for claim in ("can_read", "can_delete"):
        assert run(capsys, store_url, "claim", "create", claim)[0] == 0
    status, user, _ = run(
        capsys, store_url, "user", "create", "alice", "--role", "admin", "--claim", "can_read"
    )
    assert status == 0
    assert user == {
        "id": user["id"],
        "sub": str(user["id"]),
        "username": "alice",
        "role": "admin",
        "claims": ["can_read"],
        "is_active": True,
    }
    assert run(capsys, store_url, "user", "grant", "alice", "can_delete")[1]["claims"] == [
        "can_delete",
        "can_read",
    ]
    assert run(capsys, store_url, "user", "revoke", "alice", "can_read")[1]["claims"] == [
        "can_delete"
    ]
    assert run(capsys, store_url, "user", "set-role", "alice", "-")[1]["role"] is None
    assert run(capsys, store_url, "user", "disable", "alice")[1]["is_active"] is False
    assert run(capsys, store_url, "user", "enable", "alice")[1]["is_active"] is True
    assert [r["name"] for r in run(capsys, store_url, "role", "list")[1]] == ["admin"]
    assert [c["name"] for c in run(capsys, store_url, "claim", "list")[1]] == [
        "can_delete",
        "can_read",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("user", "show", "nobody"), "no user named 'nobody'"),
        (("user", "grant", "nobody", "x"), "no user named 'nobody'"),
        (("user", "create", "bob", "--role", "ghost"), "no role named 'ghost'"),
        (("role", "create", "dup"), "a role named 'dup' exists already"),
        (("role", "create", ""), "non-empty"),
    ],
)
def test_store_command_refusals_are_clear_and_write_nothing(
    capsys: pytest.CaptureFixture[str], store_url: str, argv: tuple[str, ...], message: str
) -> None:
    run(capsys, store_url, "role", "create", "dup")
    status, out, err = run(capsys, store_url, *argv)
    assert status == 2
    assert out is None
    assert message in err
    assert "Traceback" not in err
    if argv[:2] == ("user", "create"):
        assert run(capsys, store_url, "user", "show", "bob")[0] == 2  # nothing was created


def test_an_unreachable_store_is_exit_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "postgresql://postgres@127.0.0.1:1/none", "role", "list")
    assert out is None
    assert status == 1
    assert "the store is unavailable" in err


def test_an_unsupported_database_url_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "mysql://root@127.0.0.1/db", "db", "init")
    assert status == 2
    assert "unsupported database URL" in err


def test_the_database_url_comes_from_the_environment(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "asgi_auth.cli", "role", "create", "from-env"],
        env={"ASGI_AUTH_DATABASE_URL": url, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env.db").exists()
    assert json.loads(done.stdout)["name"] == "from-env"
