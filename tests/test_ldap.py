"""LDAP / Active Directory logins against a real OpenLDAP slapd on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_auth import JWTVerifier, Key, ServiceUnavailable, TokenIssuer
from asgi_auth.authn.ldap import LDAPAuthenticator
from asgi_auth.authn.login import TokenEndpoint
from tests.conftest import service_missing
from tests.slapd import SUFFIX, running_slapd

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
KEY = Key.from_secret("ldap-tests-secret-that-is-at-least-32-bytes")


@pytest.fixture(scope="module")
def ldap_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        service_missing("slapd is not installed (Debian packages slapd and ldap-utils)")
    with running_slapd(tmp_path_factory.mktemp("slapd")) as url:
        yield url


def direct(url: str) -> LDAPAuthenticator:
    return LDAPAuthenticator(
        url,
        user_dn=f"uid={{username}},{PEOPLE}",
        group_base=GROUPS,
        roles={"admins": "admin"},
        permissions={"editors": ["can_write", "can_read"]},
    )


def searching(
    url: str,
    *,
    field: str = "mail",
    password: str = "svc-password",  # noqa: S107
) -> LDAPAuthenticator:
    return LDAPAuthenticator(
        url,
        search_base=PEOPLE,
        search_filter=f"({field}={{username}})",
        bind_dn=f"uid=svc,{PEOPLE}",
        bind_password=password,
        group_base=GROUPS,
        roles={"admins": "admin"},
    )


async def test_a_direct_bind_logs_in_with_groups_as_roles_and_permissions(ldap_url: str) -> None:
    user = await direct(ldap_url).authenticate("alice", "alice-password")
    assert user is not None
    assert user.subject == "alice"
    assert user.claims["roles"] == ["admin"]
    assert user.claims["permissions"] == ["can_read", "can_write"]
    bob = await direct(ldap_url).authenticate("bob", "bob-password")
    assert bob is not None
    assert "roles" not in bob.claims


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong"),
        ("nobody", "alice-password"),
        ("alice", ""),  # an unauthenticated bind would "succeed": never a login
        ("", "alice-password"),
        ("alice,ou=people", "alice-password"),  # DN injection is escaped
        ("alice\x00", "alice-password"),
    ],
)
async def test_direct_bind_refusals(ldap_url: str, username: str, password: str) -> None:
    assert await direct(ldap_url).authenticate(username, password) is None


async def test_search_then_bind_finds_users_by_mail_or_uid(ldap_url: str) -> None:
    by_mail = await searching(ldap_url).authenticate("alice@example.test", "alice-password")
    assert by_mail is not None
    assert by_mail.claims["roles"] == ["admin"]
    by_uid = await searching(ldap_url, field="uid").authenticate("bob", "bob-password")
    assert by_uid is not None
    assert await searching(ldap_url).authenticate("bob@example.test", "alice-password") is None


@pytest.mark.parametrize(
    "username", ["*", "*@example.test", "alice@example.test)(uid=*", "*)(|(mail=*", "\\2a"]
)
async def test_filter_injection_logs_nobody_in(ldap_url: str, username: str) -> None:
    for password in ("alice-password", "bob-password"):
        assert await searching(ldap_url).authenticate(username, password) is None


async def test_a_directory_that_is_down_is_unavailable_not_a_refusal() -> None:
    down = LDAPAuthenticator("ldap://127.0.0.1:1", user_dn=f"uid={{username}},{PEOPLE}", timeout=2)
    with pytest.raises(ServiceUnavailable):
        await down.authenticate("alice", "alice-password")


async def test_a_refused_service_account_is_unavailable(ldap_url: str) -> None:
    with pytest.raises(ServiceUnavailable, match="service account"):
        await searching(ldap_url, password="wrong").authenticate("alice@example.test", "x")


async def test_the_token_endpoint_logs_in_through_the_directory(ldap_url: str) -> None:
    endpoint = TokenEndpoint(TokenIssuer(KEY), direct(ldap_url))
    down = TokenEndpoint(
        TokenIssuer(KEY),
        LDAPAuthenticator("ldap://127.0.0.1:1", user_dn=f"uid={{username}},{PEOPLE}", timeout=2),
    )
    form = {"grant_type": "password", "username": "alice", "password": "alice-password"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=endpoint), base_url="http://auth"
    ) as http:
        answer = await http.post("/token", data=form)
        assert answer.status_code == 200
        principal = JWTVerifier(KEY).verify_sync(answer.json()["access_token"])
        assert principal.roles == {"admin"}
        wrong = await http.post("/token", data={**form, "password": "nope"})
        assert wrong.json()["error"] == "invalid_grant"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=down), base_url="http://auth"
    ) as http:
        assert (await http.post("/token", data=form)).status_code == 503


def test_the_configuration_must_choose_one_way_to_find_users() -> None:
    with pytest.raises(ValueError, match="either"):
        LDAPAuthenticator("ldap://127.0.0.1:389")
    with pytest.raises(ValueError, match="username"):
        LDAPAuthenticator("ldap://127.0.0.1:389", user_dn="uid=x,dc=example")


async def test_the_directory_after_the_database(ldap_url: str, sqlite_url: str) -> None:
    from asgi_auth.authn import PasswordHasher
    from asgi_auth.authn.login import ChainAuthenticator, StoreAuthenticator
    from asgi_auth.store import Store, StoreAdmin

    hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
    async with Store(sqlite_url) as store:
        await store.init_schema()
        await StoreAdmin(store).create_user("carol", password_hash=await hasher.hash("db-pw"))
        chain = ChainAuthenticator(StoreAuthenticator(store, hasher), direct(ldap_url))
        from_db = await chain.authenticate("carol", "db-pw")
        from_directory = await chain.authenticate("alice", "alice-password")
        assert from_db is not None
        assert from_db.subject == "1"
        assert from_directory is not None
        assert from_directory.subject == "alice"
        assert await chain.authenticate("alice", "db-pw") is None
        await store.disconnect()
        with pytest.raises(ServiceUnavailable):  # the database is down: no fallthrough
            await chain.authenticate("alice", "alice-password")
        await store.connect()
    with pytest.raises(TypeError):
        ChainAuthenticator()
