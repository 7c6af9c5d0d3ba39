"""BearerExtractor.extract on raw ASGI scopes: header, cookie and query-parameter sources."""

from __future__ import annotations

import re
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_auth.credentials import BearerExtractor
from asgi_auth.errors import MalformedCredentials

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
B64_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"

Header = tuple[bytes, bytes]


def auth(value: bytes) -> Header:
    return (b"authorization", value)


def cookie(value: bytes) -> Header:
    return (b"cookie", value)


def http_scope(*headers: Header, query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "path": "/", "headers": list(headers), "query_string": query}


def ws_scope(*headers: Header, query: bytes = b"") -> dict[str, Any]:
    return {"type": "websocket", "path": "/ws", "headers": list(headers), "query_string": query}


# --- Authorization header ------------------------------------------------------------


def test_no_authorization_header_carries_no_token() -> None:
    assert BearerExtractor().extract(http_scope()) is None


def test_unrelated_headers_carry_no_token() -> None:
    scope = http_scope((b"host", b"example.com"), (b"x-authorization", b"Bearer t"))
    assert BearerExtractor().extract(scope) is None


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER", b"bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme: bytes) -> None:
    assert BearerExtractor().extract(http_scope(auth(scheme + b" t"))) == "t"


@pytest.mark.parametrize("spaces", [b"  ", b"   ", b" " * 10])
def test_several_spaces_after_the_scheme_are_accepted(spaces: bytes) -> None:
    assert BearerExtractor().extract(http_scope(auth(b"Bearer" + spaces + b"tok"))) == "tok"


@pytest.mark.parametrize(
    "value",
    [b"  Bearer tok", b"Bearer tok  ", b"\tBearer tok\t", b" \t Bearer tok \t ", b"\t\tBearer tok"],
)
def test_leading_and_trailing_whitespace_is_trimmed(value: bytes) -> None:
    assert BearerExtractor().extract(http_scope(auth(value))) == "tok"


@pytest.mark.parametrize(
    "token",
    [
        "abc=",
        "abc==",
        "abc===",
        "A-Z.a_z~0+9/",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
        "x",
    ],
)
def test_b64token_characters_and_trailing_padding_are_accepted(token: str) -> None:
    value = b"Bearer " + token.encode("ascii")
    assert BearerExtractor().extract(http_scope(auth(value))) == token


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"Bearer", id="scheme-alone"),
        pytest.param(b"Bearer ", id="scheme-and-space"),
        pytest.param(b"Bearer    ", id="scheme-and-spaces"),
        pytest.param(b"Bearer \t ", id="scheme-and-blank"),
        pytest.param(b"Bearer a b", id="two-words"),
        pytest.param(b"Bearer a\tb", id="tab-inside-token"),
        pytest.param(b"Bearer a,b", id="comma"),
        pytest.param(b"Bearer a, Bearer b", id="two-credentials"),
        pytest.param(b"Bearer a;b", id="semicolon"),
        pytest.param(b'Bearer "abc"', id="double-quotes"),
        pytest.param(b"Bearer 'abc'", id="single-quotes"),
        pytest.param(b"Bearer caf\xc3\xa9", id="utf8-bytes"),
        pytest.param(b"Bearer abc\xff", id="latin1-byte"),
        pytest.param(b"Bearer a\x00b", id="nul"),
        pytest.param(b"Bearer abc\x00", id="trailing-nul"),
        pytest.param(b"Bearer a\r\nb", id="crlf"),
        pytest.param(b"Bearer a\nb", id="lf"),
        pytest.param(b"Bearer a\rb", id="cr"),
        pytest.param(b"Bearer =abc", id="padding-first"),
        pytest.param(b"Bearer ab=c", id="padding-inside"),
        pytest.param(b"Bearer ===", id="padding-only"),
        pytest.param(b"Bearer a=b=", id="padding-twice"),
        pytest.param(b"Bearer token=value", id="auth-param"),
    ],
)
def test_malformed_bearer_credentials_are_refused(value: bytes) -> None:
    with pytest.raises(MalformedCredentials):
        BearerExtractor().extract(http_scope(auth(value)))


def test_tab_between_scheme_and_token_is_malformed() -> None:
    # RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. A tab is not SP, and the
    # scheme is still "Bearer" (tab is not a tchar), so this is a malformed bearer
    # credential: it must be refused, not mistaken for another scheme.
    with pytest.raises(MalformedCredentials):
        BearerExtractor().extract(http_scope(auth(b"Bearer\ttok")))


@pytest.mark.parametrize(
    "values",
    [
        [b"Bearer a", b"Bearer b"],
        [b"Bearer a", b"Bearer a"],
        [b"Bearer a", b"Basic dXNlcjpwYXNz"],
        [b"Basic dXNlcjpwYXNz", b"Bearer a"],
    ],
)
def test_two_authorization_headers_are_malformed(values: list[bytes]) -> None:
    scope = http_scope(*(auth(v) for v in values))
    with pytest.raises(MalformedCredentials):
        BearerExtractor().extract(scope)


@pytest.mark.parametrize(
    "value",
    [b"Basic dXNlcjpwYXNz", b"Digest username=x", b"Bearerish tok", b"Token tok", b"", b"   "],
)
def test_other_schemes_carry_no_bearer_token(value: bytes) -> None:
    assert BearerExtractor().extract(http_scope(auth(value))) is None


# --- cookie source -------------------------------------------------------------------


def test_cookie_is_read_when_there_is_no_header() -> None:
    extractor = BearerExtractor(cookie="access_token")
    scope = http_scope(cookie(b"theme=dark; access_token=tok123; lang=en"))
    assert extractor.extract(scope) == "tok123"


def test_cookie_in_a_second_cookie_header_is_read() -> None:
    extractor = BearerExtractor(cookie="access_token")
    scope = http_scope(cookie(b"theme=dark"), cookie(b"access_token=tok123"))
    assert extractor.extract(scope) == "tok123"


def test_quoted_cookie_value_is_unquoted() -> None:
    extractor = BearerExtractor(cookie="access_token")
    assert extractor.extract(http_scope(cookie(b'access_token="tok123"'))) == "tok123"


def test_header_wins_over_cookie() -> None:
    extractor = BearerExtractor(cookie="access_token")
    scope = http_scope(cookie(b"access_token=fromcookie"), auth(b"Bearer fromheader"))
    assert extractor.extract(scope) == "fromheader"


def test_malformed_header_is_not_rescued_by_a_cookie() -> None:
    extractor = BearerExtractor(cookie="access_token")
    scope = http_scope(cookie(b"access_token=fromcookie"), auth(b"Bearer a b"))
    with pytest.raises(MalformedCredentials):
        extractor.extract(scope)


@pytest.mark.parametrize(
    "value",
    [
        b"other=tok",
        b"access_token_2=tok",
        b"xaccess_token=tok",
        b"Access_Token=tok",
        b"access_token",
    ],
)
def test_other_cookies_are_ignored(value: bytes) -> None:
    extractor = BearerExtractor(cookie="access_token")
    assert extractor.extract(http_scope(cookie(value))) is None


def test_cookie_is_ignored_when_not_configured() -> None:
    assert BearerExtractor().extract(http_scope(cookie(b"access_token=tok"))) is None


@pytest.mark.parametrize(
    "value",
    [
        b"access_token=",
        b"access_token=a,b",
        b"access_token=a b",
        b"access_token=caf\xc3\xa9",
        b"access_token=a\x00b",
        b"access_token==abc",
        b'access_token=a"b',
    ],
)
def test_illegal_cookie_value_carries_no_token(value: bytes) -> None:
    extractor = BearerExtractor(cookie="access_token")
    assert extractor.extract(http_scope(cookie(value))) is None


@pytest.mark.parametrize("name", ["", "a=b", "caf\u00e9"])
def test_invalid_cookie_name_is_refused_at_construction(name: str) -> None:
    with pytest.raises(ValueError, match="cookie"):
        BearerExtractor(cookie=name)


# --- query parameter source ----------------------------------------------------------


def test_query_parameter_is_read_on_websocket_handshakes() -> None:
    extractor = BearerExtractor(query_param="access_token")
    assert extractor.extract(ws_scope(query=b"room=1&access_token=tok123")) == "tok123"


def test_query_parameter_is_ignored_on_http_requests() -> None:
    extractor = BearerExtractor(query_param="access_token")
    assert extractor.extract(http_scope(query=b"access_token=tok123")) is None


def test_query_parameter_on_http_does_not_clash_with_the_header() -> None:
    extractor = BearerExtractor(query_param="access_token")
    scope = http_scope(auth(b"Bearer fromheader"), query=b"access_token=fromquery")
    assert extractor.extract(scope) == "fromheader"


def test_query_parameter_is_ignored_when_not_configured() -> None:
    assert BearerExtractor().extract(ws_scope(query=b"access_token=tok123")) is None


def test_duplicated_query_parameter_is_malformed() -> None:
    extractor = BearerExtractor(query_param="access_token")
    with pytest.raises(MalformedCredentials):
        extractor.extract(ws_scope(query=b"access_token=a&access_token=b"))


def test_token_in_header_and_query_is_malformed() -> None:
    # RFC 6750 §2: clients MUST NOT use more than one method to transmit the token.
    extractor = BearerExtractor(query_param="access_token")
    scope = ws_scope(auth(b"Bearer tok"), query=b"access_token=tok")
    with pytest.raises(MalformedCredentials):
        extractor.extract(scope)


def test_percent_encoded_query_value_is_decoded() -> None:
    extractor = BearerExtractor(query_param="access_token")
    scope = ws_scope(query=b"access_token=ab%2Fcd%2Bef%3D%3D")
    assert extractor.extract(scope) == "ab/cd+ef=="


@pytest.mark.parametrize(
    "query",
    [b"access_token=", b"access_token", b"access_token=a%20b", b"access_token=a%00b"],
)
def test_empty_or_illegal_query_value_is_malformed(query: bytes) -> None:
    extractor = BearerExtractor(query_param="access_token")
    with pytest.raises(MalformedCredentials):
        extractor.extract(ws_scope(query=query))


def test_empty_query_parameter_name_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="query_param"):
        BearerExtractor(query_param="")


# --- properties ----------------------------------------------------------------------

_SCHEMES: Final = st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b""])
_SEPARATORS: Final = st.sampled_from([b" ", b"  ", b"\t", b"", b" \t"])
_B64ISH: Final = st.text(alphabet=B64_ALPHABET + "= \t,;\"'", max_size=40).map(
    lambda s: s.encode("ascii")
)
_HEADER_VALUES: Final = st.one_of(
    st.binary(),
    st.binary().map(lambda b: b"Bearer " + b),
    st.tuples(_SCHEMES, _SEPARATORS, st.one_of(st.binary(), _B64ISH)).map(b"".join),
)


@settings(max_examples=500, deadline=None)
@given(value=_HEADER_VALUES)
def test_arbitrary_header_bytes_give_a_b64token_none_or_malformed(value: bytes) -> None:
    try:
        token = BearerExtractor().extract(http_scope(auth(value)))
    except MalformedCredentials:
        return
    if token is not None:
        assert isinstance(token, str)
        assert B64TOKEN.fullmatch(token) is not None


@settings(max_examples=300, deadline=None)
@given(header=st.one_of(st.none(), _HEADER_VALUES), cookies=st.binary(), query=st.binary())
def test_arbitrary_header_cookie_and_query_give_a_b64token_none_or_malformed(
    header: bytes | None, cookies: bytes, query: bytes
) -> None:
    extractor = BearerExtractor(cookie="access_token", query_param="access_token")
    headers = [cookie(b"access_token=" + cookies)]
    if header is not None:
        headers.append(auth(header))
    try:
        token = extractor.extract(ws_scope(*headers, query=b"access_token=" + query))
    except MalformedCredentials:
        return
    if token is not None:
        assert isinstance(token, str)
        assert B64TOKEN.fullmatch(token) is not None


@settings(max_examples=200, deadline=None)
@given(
    token=st.from_regex(B64TOKEN, fullmatch=True),
    scheme=st.sampled_from([b"Bearer", b"bearer", b"BEARER"]),
    spaces=st.integers(min_value=1, max_value=5),
)
def test_any_well_formed_bearer_header_yields_its_token(
    token: str, scheme: bytes, spaces: int
) -> None:
    value = scheme + b" " * spaces + token.encode("ascii")
    assert BearerExtractor().extract(http_scope(auth(value))) == token
