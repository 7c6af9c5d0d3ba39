"""Property: whatever bytes a client sends, the middleware answers 400/401 or lets the app run,
never raises, and only a genuinely valid bearer token ever yields an authenticated principal."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_auth import AuthMiddleware, JWTVerifier, Key, Principal, TokenIssuer
from asgi_auth.tokens.verifier import read_unverified
from asgi_auth.types import Message, Receive, Scope, Send

KEY = Key.from_secret("property-tests-secret-of-32-bytes-or-more")
VALID = TokenIssuer(KEY).issue("alice")
VERIFIER = JWTVerifier(KEY)

header_names = st.sampled_from([b"authorization", b"cookie", b"x-other"])
header_values = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b: b"Bearer " + b, st.binary(max_size=300)),
    st.builds(lambda p, s: p + VALID.encode() + s, st.binary(max_size=12), st.binary(max_size=12)),
    st.just(b"Bearer " + VALID.encode()),
)
headers = st.lists(st.tuples(header_names, header_values), max_size=4)


async def _call(raw_headers: list[tuple[bytes, bytes]], kind: str) -> tuple[Any, list[Message]]:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["user"] = scope["user"]

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"} if kind == "websocket" else {"type": "http.request"}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = AuthMiddleware(app, verifier=VERIFIER, cookie="token", query_param="t")
    scope: Scope = {"type": kind, "headers": raw_headers, "query_string": b"", "path": "/"}
    await middleware(scope, receive, send)
    return seen.get("user"), sent


def _is_exactly_one_valid_bearer(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    values = [v for n, v in raw_headers if n == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, rest = values[0].strip(b" \t").partition(b" ")
    return scheme.lower() == b"bearer" and rest.lstrip(b" ") == VALID.encode()


@settings(max_examples=400, deadline=None)
@given(raw_headers=headers, kind=st.sampled_from(["http", "websocket"]))
async def test_any_header_bytes_get_a_defined_answer(
    raw_headers: list[tuple[bytes, bytes]], kind: str
) -> None:
    user, sent = await _call(raw_headers, kind)
    if user is None:  # refused before the app
        first = sent[0]
        if kind == "http":
            assert first["type"] == "http.response.start"
            assert first["status"] in (400, 401)
        else:
            assert first["type"] == "websocket.close"
            assert first["code"] == 1008
        return
    assert not sent
    if isinstance(user, Principal):
        # Authenticated only by the one valid token, from the header or the "token" cookie.
        assert user.subject == "alice"
        assert _is_exactly_one_valid_bearer(raw_headers) or any(
            n == b"cookie" and VALID.encode() in v for n, v in raw_headers
        )
    else:
        assert user.is_authenticated is False


class _Uncached(JWTVerifier):
    """The same verifier under another type: the middleware then never looks a token
    up before the full parse (its shortcut is for JWTVerifier itself)."""


class _DenyList:
    def __init__(self) -> None:
        self.revoked: set[str] = set()

    def is_revoked(self, jti: str) -> bool:
        return jti in self.revoked


_T = b"<token>"
_lookup_values = st.one_of(
    st.sampled_from(
        [
            b"Bearer " + _T,
            b"bearer " + _T,
            b"Bearer  " + _T,
            b"Bearer " + _T + b" ",
            b" Bearer " + _T,
            b"Bearer\t" + _T,
            b"Bearer " + _T + b"=",
            b"Bearer " + _T + "é".encode(),
            b"Bearer " + _T[:-1],
            b"Basic " + _T,
            b"Bearer ",
        ]
    ),
    st.builds(lambda p, s: p + _T + s, st.binary(max_size=8), st.binary(max_size=8)),
    st.builds(
        lambda s: b"Bearer " + _T + s,
        st.sampled_from([b" x", b" ", b"\t", b",x", b".x", b"\x00"]) | st.binary(min_size=1),
    ),
)


async def _answer(
    kind: type[JWTVerifier], values: list[bytes], revoked: bool, later: int
) -> tuple[Any, Any, Any]:
    """Status, challenge and subject for these Authorization headers, the token having
    been verified (so cached) first, then perhaps revoked, ``later`` seconds on."""
    now = [1_800_000_000.0]
    deny = _DenyList()
    verifier = kind(KEY, revocations=deny, clock=lambda: now[0])
    token = TokenIssuer(KEY, lifetime=60, clock=lambda: now[0]).issue("carol")
    verifier.verify_sync(token)
    if revoked:
        deny.revoked.add(read_unverified(token)[1]["jti"])
    now[0] += later
    seen: dict[str, Any] = {}
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["user"] = scope["user"]

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request"}

    middleware = AuthMiddleware(app, verifier=verifier)
    assert (middleware._cached is not None) is (kind is JWTVerifier)
    raw = [(b"authorization", value.replace(_T, token.encode())) for value in values]
    await middleware({"type": "http", "headers": raw, "path": "/"}, receive, send)
    if sent:
        return sent[0]["status"], dict(sent[0]["headers"]).get(b"www-authenticate"), None
    return None, None, getattr(seen["user"], "subject", None)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_lookup_values, max_size=2),
    revoked=st.booleans(),
    later=st.sampled_from([0, 59, 60, 3600]),
)
async def test_the_cache_lookup_before_the_parse_answers_as_the_parse(
    values: list[bytes], revoked: bool, later: int
) -> None:
    with_lookup = await _answer(JWTVerifier, values, revoked, later)
    assert with_lookup == await _answer(_Uncached, values, revoked, later)
