"""ASGI type aliases, so that the core needs no framework's types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
# Any app taking (scope, receive, send): frameworks type their scopes each their own way
# (Starlette's MutableMapping, Litestar's TypedDicts), and all of them must fit.
ASGIApp: TypeAlias = Callable[[Any, Any, Any], Awaitable[None]]
