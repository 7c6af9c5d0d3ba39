"""Running an ASGI app's lifespan around a test (httpx's ASGITransport does not)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from asgi_auth.types import ASGIApp, Message


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp, *, limit: float = 30) -> AsyncIterator[None]:
    """Send ``lifespan.startup`` before the block and ``lifespan.shutdown`` after it.

    Raises:
        RuntimeError: startup or shutdown failed, with the app's message.
    """
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    async def run() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    task = asyncio.create_task(run())
    try:
        await inbox.put({"type": "lifespan.startup"})
        async with asyncio.timeout(limit):
            started = await outbox.get()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup failed: {started.get('message')}")
        try:
            yield
        finally:  # shut down even when the block failed, so the failure is what shows
            await inbox.put({"type": "lifespan.shutdown"})
        async with asyncio.timeout(limit):
            stopped = await outbox.get()
        if stopped["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"shutdown failed: {stopped.get('message')}")
    finally:
        async with asyncio.timeout(limit):
            await task
