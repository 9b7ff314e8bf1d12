"""Misbehaving upstreams for tests: a fault-injecting TCP proxy and an HTTP fault server.

``FaultProxy`` listens on 127.0.0.1 and forwards every connection to a target
host:port (asyncio streams). Its ``mode`` can be switched at any time; it
applies to connections opened afterwards (``set`` closes the open ones, so
clients reconnect):

- ``"pass"``: bytes flow both ways untouched.
- ``"latency"``: the answer is held back ``latency`` seconds (tests set the
  source's ``timeout`` small and never actually wait that long: closing the
  proxy cancels the held connections).
- ``"reset"``: the response's headers and ``after_bytes`` bytes of its body
  are forwarded, then the connection is reset (RST, SO_LINGER 0).
- ``"truncate"``: the same, but the connection is closed cleanly (FIN): the
  body ends early.

``HttpFaults`` is a tiny aiohttp reverse proxy in front of a target URL that
can answer HTTP-level faults instead of forwarding: status storms (500/503
with ``Retry-After``), 429, and a redirect loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

MODES = ("pass", "latency", "reset", "truncate")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
                "content-encoding"}


class FaultProxy:
    """A TCP proxy on loopback whose behaviour a test switches with ``mode``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.mode = "pass"
        self.latency = 30.0
        self.after_bytes = 100
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, scheme: str = "http", path: str = "/") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def set(self, mode: str, *, latency: float | None = None,
            after_bytes: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        if latency is not None:
            self.latency = latency
        if after_bytes is not None:
            self.after_bytes = after_bytes
        # Idle keep-alive connections would carry on in the old mode: drop them.
        for writer in list(self._writers):
            writer.close()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        mode, latency, after = self.mode, self.latency, self.after_bytes
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port)
            self._writers.add(upstream_writer)
            upload = asyncio.create_task(_pump(reader, upstream_writer))
            self._tasks.add(upload)
            try:
                if mode == "latency":
                    await asyncio.sleep(latency)
                if mode in ("reset", "truncate"):
                    await _pump_cut(upstream_reader, writer, after)
                    if mode == "reset":
                        _reset(writer)
                else:
                    await _pump(upstream_reader, writer)
            finally:
                upload.cancel()
                self._tasks.discard(upload)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    with contextlib.suppress(Exception):
                        w.close()
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _pump_cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    body_bytes: int) -> None:
    """Forward the first response's headers and ``body_bytes`` of its body, then stop."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = await reader.read(65536)
        if not data:
            writer.write(head)
            return
        head += data
    end = head.index(b"\r\n\r\n") + 4
    sent = head[:end + body_bytes]
    remaining = end + body_bytes - len(sent)
    while remaining > 0:
        data = await reader.read(min(remaining, 65536))
        if not data:
            break
        sent += data
        remaining -= len(data)
    writer.write(sent)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class HttpFaults:
    """An HTTP reverse proxy to ``target`` (a base URL) that can answer faults instead.

    ``fail(status, count, retry_after)`` answers the next ``count`` requests (None:
    all) with ``status``; ``redirect_loop = True`` answers every request with a
    302 to itself (``/loop/<n>`` → ``/loop/<n+1>`` → …).
    """

    target: str
    status: int | None = None
    remaining: int | None = None
    retry_after: str | None = None
    redirect_loop: bool = False
    seen: list[tuple[str, str]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    port: int = 0

    def fail(self, status: int, count: int | None = None, retry_after: str | None = None) -> None:
        self.status, self.remaining, self.retry_after = status, count, retry_after

    def heal(self) -> None:
        self.status, self.remaining, self.redirect_loop = None, None, False

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> HttpFaults:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        sockets = site._server.sockets  # type: ignore[attr-defined]
        self.port = int(sockets[0].getsockname()[1])
        self._session = aiohttp.ClientSession(trust_env=False)
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs))
        if self.redirect_loop:
            n = int(request.query.get("hop", "0")) + 1
            self.answered.append(302)
            raise web.HTTPFound(f"{request.path}?hop={n}")
        if self.status is not None and (self.remaining is None or self.remaining > 0):
            if self.remaining is not None:
                self.remaining -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            self.answered.append(self.status)
            return web.json_response(
                {"error": {"code": self.status, "message": "injected fault",
                           "errors": [{"reason": "backendError"}]}},
                status=self.status, headers=headers)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        async with self._session.request(
                request.method, self.target.rstrip("/") + request.path_qs, headers=headers,
                data=body or None, allow_redirects=False) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            self.answered.append(upstream.status)
            return web.Response(status=upstream.status, body=payload, headers=out)
