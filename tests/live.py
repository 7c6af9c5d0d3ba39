"""Serving an ASGI app over real HTTP on 127.0.0.1 for the length of a test."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

from asgi_auth.types import ASGIApp


@contextlib.contextmanager
def serve(
    app: ASGIApp,
    *,
    ws: str = "websockets-sansio",
    lifespan: Literal["auto", "on", "off"] = "off",
    **config: Any,
) -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread; yield its base URL (``http://127.0.0.1:PORT``).

    ``ws`` picks uvicorn's WebSocket implementation; each of ``websockets-sansio``,
    ``wsproto`` and ``websockets`` offers the ``websocket.http.response`` extension.
    The server stops when the block ends (forced after 10 seconds); startup is bounded
    to 10 seconds.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws=ws, lifespan=lifespan, **config)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()
