"""A loopback HTTPS server for stand-ins (hypercorn in its own thread, TLS with a test CA).

Subclasses answer through :meth:`StandIn.handle`, with the whole request read and under a lock.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from engine.dispatch.inbox import free_port
from tests.dispatch.certs import LoopbackCA

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_PAYLOAD = 4096


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    http_version: str


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, **headers: str) -> Reply:
        return cls(status, json.dumps(value).encode(), {"content-type": "application/json", **headers})


class StandIn:
    """An HTTPS server on 127.0.0.1 in its own thread, answering through :meth:`handle`."""

    alpn: tuple[str, ...] = ("h2", "http/1.1")

    def __init__(self, ca: LoopbackCA) -> None:
        self.ca = ca
        self.port = free_port()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        request = Request(scope["method"], scope["path"],
                          {k.decode().lower(): v.decode() for k, v in scope["headers"]}, body, scope["http_version"])
        with self.lock:
            self.requests.append(request)
            reply = self.handle(request)
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()]})
        await send({"type": "http.response.body", "body": reply.body})

    def _run(self) -> None:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.certfile, config.keyfile = str(self.ca.cert_file), str(self.ca.key_file)
        config.alpn_protocols = list(self.alpn)
        config.errorlog = None
        config.accesslog = None
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()

        async def main() -> None:
            assert self._stop is not None
            server = asyncio.ensure_future(serve(self.app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
            while True:  # ready once the port accepts connections
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.01)
            self._ready.set()
            await server

        loop.run_until_complete(main())
        loop.close()

    def __enter__(self) -> StandIn:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
