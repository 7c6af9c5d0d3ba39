"""The audit trail: what asgi_auth decided about whom, as structured log records.

Every decision worth auditing is one record on the stdlib logger of its area:

================  =====================================================================
logger            events
================  =====================================================================
asgi_auth.authn   ``credentials.malformed`` (400), ``token.refused`` (401, with the
                  reason and the refusal's kind), ``token.unverifiable`` (503)
asgi_auth.authz   ``access.denied`` (401/403, with the policy and what it lacked),
                  ``access.unavailable`` (503)
asgi_auth.login   ``login.succeeded``, ``login.failed``, ``login.throttled``,
                  ``login.unavailable``, ``refresh.succeeded``, ``refresh.refused``,
                  ``refresh.reused`` (a warning: the family is revoked),
                  ``logout.succeeded`` (the token revoked), ``logout.refused``,
                  ``logout.unavailable``
================  =====================================================================

Each record carries its fields as attributes (``record.event``, ``record.subject``…),
so any formatter can use them, and :class:`JSONFormatter` writes them as one JSON
object per line. Fields: ``event``; ``client`` (the peer address), ``request_id``
(the request's ``X-Request-ID`` when it is a plain identifier, else a new one),
``method`` and ``path`` for events of a request; then, where they apply, ``subject``,
``username``, ``reason``, ``kind``, ``policy``, ``unmet``, ``retry_after``, ``jti``,
``status``.

A record never carries a token, a password, a refresh token or a key: reasons
describe tokens (an algorithm, a ``kid``, a claim name) without quoting them, and
usernames are cut to 150 characters. ``tests/test_audit.py`` drives every event with
known secrets and checks that none of them reaches any record.

Route the trail to JSON with :func:`logging.config.dictConfig`::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "asgi_auth.audit.JSONFormatter"}},
        "handlers": {"audit": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {"asgi_auth": {"handlers": ["audit"], "level": "INFO"}},
    }
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from asgi_auth.errors import AuthError

__all__ = ["AUDIT_FIELDS", "JSONFormatter", "audit", "refusal", "request_context", "request_id"]

#: The attributes an audit record may carry, in the order JSON output lists them.
AUDIT_FIELDS: Final = (
    "event",
    "client",
    "request_id",
    "method",
    "path",
    "subject",
    "username",
    "status",
    "kind",
    "reason",
    "policy",
    "unmet",
    "retry_after",
    "jti",
)
#: A request id worth keeping from a client: short, and nothing that could forge a
#: log line or break a log parser.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
_USERNAME_CHARS: Final = 150
# What every LogRecord has; anything else on a record came through ``extra``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def request_id(scope: Mapping[str, Any]) -> str:
    """The request's ``X-Request-ID`` when it is a plain identifier (at most 128
    characters of letters, digits and ``._:@/+=-``), else a new random id."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def request_context(scope: Mapping[str, Any] | None) -> dict[str, Any]:
    """``client``, ``request_id``, ``method`` and ``path`` of an ASGI request scope."""
    if scope is None:
        return {}
    client = scope.get("client")
    return {
        "client": client[0] if client else None,
        "request_id": request_id(scope),
        "method": scope.get("method", "WEBSOCKET" if scope.get("type") == "websocket" else None),
        "path": scope.get("path"),
    }


def audit(
    logger: logging.Logger,
    level: int,
    event: str,
    message: str,
    *args: object,
    scope: Mapping[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Log one audit event: ``message % args`` with ``event``, the request's context
    and ``fields`` as record attributes. Costs nothing when the level is disabled."""
    if not logger.isEnabledFor(level):
        return
    extra = request_context(scope)
    extra["event"] = event
    username = fields.get("username")
    if isinstance(username, str):
        fields["username"] = username[:_USERNAME_CHARS]
    extra.update(fields)
    logger.log(level, message, *args, extra=extra, stacklevel=2)


def refusal(
    logger: logging.Logger,
    level: int,
    event: str,
    error: AuthError,
    *,
    scope: Mapping[str, Any] | None,
    status: int | None,
    said: str | None = None,
    **fields: Any,
) -> None:
    """The audit event of a refusal: ``<said>: <reason>`` (``said`` defaults to the
    event's words), with the error's reason, kind and subject and the answer's status
    (None: the request went on, e.g. as anonymous)."""
    fields.setdefault("subject", error.subject)
    audit(
        logger,
        level,
        event,
        "%s: %s",
        said or event.replace(".", " "),
        error.reason,
        scope=scope,
        reason=error.reason,
        kind=type(error).__name__,
        status=status,
        **fields,
    )


class JSONFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then the audit fields and any other ``extra`` attributes the record
    carries, then ``exception`` when there is one. Values that are not JSON are
    written as their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        for name in AUDIT_FIELDS:
            if name in attributes:
                document[name] = attributes[name]
        for name, value in attributes.items():
            if name not in _STANDARD and name not in document:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)
