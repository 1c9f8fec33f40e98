"""A lean HTTP/1.1 client for the proxy's hot path: keep-alive pools, httptools parsing.

Why not aiohttp's client here: measured on the request path it costs a few hundred
microseconds per request (request objects, middleware, timers), which is most of what a
gateway may add (issue 3 budgets 1 ms). This client writes the request in one ``write``
(headers and the body the client sent, unchanged), parses the response with httptools (the
C parser uvicorn uses) inside ``data_received``, and hands body chunks to a callback
synchronously, so a streamed token costs one parse and one ``transport.write`` on the way
back. Scrapes and health checks, off the hot path, keep using aiohttp.

Failures are :class:`UpstreamError`; ``before_response`` tells the proxy whether anything
came back yet (if not, the request may go to another endpoint). A request on a reused
keep-alive connection that the server closed before answering is retried once on a fresh
connection, as browsers and aiohttp do.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

__all__ = ["Exchange", "UpstreamError", "UpstreamPool"]


class UpstreamError(Exception):
    """Talking to an upstream failed."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class Exchange:
    """One request/response on a connection.

    ``head`` resolves with the status once headers are in; body chunks go to ``on_body``
    (set it before they arrive; until then they are buffered); ``done`` resolves at the end
    of the message or fails with :class:`UpstreamError`.
    """

    __slots__ = ("_buffer", "_conn", "_got_bytes", "_sink", "_waiter", "done", "head", "headers", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[int] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self._buffer: list[bytes] = []
        self._sink: Callable[[bytes], None] | None = None
        self._conn: _Conn | None = None
        self._got_bytes = False
        self._waiter: asyncio.Future[None] | None = None

    def header(self, name: bytes) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        """Deliver body chunks to ``sink`` from now on (buffered ones first)."""
        buf, self._buffer = self._buffer, []
        self._sink = sink
        for chunk in buf:
            sink(chunk)

    async def wait_body(self) -> None:
        """Until some body bytes are buffered or the message is over (raises on failure)."""
        if self._buffer or self.done.done():
            if self.done.done():
                self.done.result()
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self, exc: BaseException | None = None) -> None:
        w = self._waiter
        if w is not None and not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)

    def take_buffered(self) -> bytes:
        data = b"".join(self._buffer)
        self._buffer.clear()
        return data

    async def read(self) -> bytes:
        """The whole body (non-streaming responses)."""
        await self.done
        return self.take_buffered()

    def pause(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.pause_reading()

    def resume(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection (the client went away: the engine sees it and aborts)."""
        if self._conn is not None:
            self._conn.close()
        self._fail(UpstreamError("aborted", before_response=not self.head.done()))

    def _fail(self, exc: UpstreamError) -> None:
        self._wake(exc)
        if not self.head.done():
            self.head.set_exception(exc)
            self.done.set_exception(exc)
            self.done.exception()  # mark retrieved: the head failure is what callers see
        elif not self.done.done():
            self.done.set_exception(exc)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.closed = False
        self.uses = 0

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is not None:
            ex._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.close()
            if ex is not None:
                ex._fail(UpstreamError(f"malformed response: {exc}", before_response=not ex.head.done()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex, self.ex = self.ex, None
        if ex is not None:
            ex._fail(UpstreamError(f"connection lost: {exc or 'closed by peer'}", before_response=not ex.head.done()))
        self.pool._forget(self)

    # ---- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.ex is not None:
            self.ex.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        ex = self.ex
        if ex is not None and not ex.head.done():
            ex.status = self.parser.get_status_code()
            ex.head.set_result(ex.status)

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is not None:
            if ex._sink is not None:
                ex._sink(body)
            else:
                ex._buffer.append(body)
                ex._wake()

    def on_message_complete(self) -> None:
        ex, self.ex = self.ex, None
        keep = self.parser.should_keep_alive()
        if ex is not None and not ex.done.done():
            ex.done.set_result(None)
            ex._wake()
        if keep and not self.closed:
            self.pool._release(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Keep-alive connections per (host, port)."""

    def __init__(self, *, connect_timeout: float = 2.0, max_idle_per_host: int = 256) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Conn]] = defaultdict(list)

    @staticmethod
    def _key(url: str) -> tuple[str, int]:
        u = urlsplit(url)
        if u.scheme != "http":
            raise UpstreamError(
                f"only http:// upstreams are supported by the fast path, not {url}", before_response=True
            )
        return u.hostname or "127.0.0.1", u.port or 80

    async def _connect(self, key: tuple[str, int]) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(self, key), key[0], key[1]), self.connect_timeout
            )
        except (TimeoutError, OSError) as exc:
            raise UpstreamError(
                f"cannot connect to {key[0]}:{key[1]}: {exc or 'timeout'}", before_response=True
            ) from None
        return conn

    def _release(self, conn: _Conn) -> None:
        idle = self._idle[conn.key]
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    def _forget(self, conn: _Conn) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def request(
        self, base_url: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> Exchange:
        """Send a request; returns once the response headers are in (``ex.status``)."""
        key = self._key(base_url)
        head = [f"{method} {path} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\nContent-Length: {len(body)}\r\n"]
        head.extend(f"{k}: {v}\r\n" for k, v in headers)
        head.append("\r\n")
        payload = "".join(head).encode("latin-1") + body
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            idle = self._idle[key]
            reused = bool(idle)
            conn = idle.pop() if idle else await self._connect(key)
            ex = Exchange(loop)
            ex._conn = conn
            conn.ex = ex
            conn.uses += 1
            assert conn.transport is not None
            conn.transport.write(payload)
            try:
                await ex.head
            except UpstreamError:
                if reused and not ex._got_bytes and attempt == 0:
                    continue  # the server had closed this idle connection: once more, fresh
                raise
            return ex
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
