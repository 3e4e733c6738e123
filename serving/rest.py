"""TF Serving's REST API on tornado: the HTTP layer of the local server (``server.py``).

Why tornado (docs/ARCHITECTURE.md has the comparison): HTTP/1.1 is where a hand-rolled server fails open —
keep-alive desync when a body is left unread, chunked bodies, malformed ``Content-Length``, slow clients, one
thread per idle connection. Tornado's HTTP/1.1 connection handles those (a response sent before its body is
read closes the connection instead of parsing the rest of the body as the next request; chunked bodies are
decoded; header and body reads have timeouts), one event loop holds thousands of idle keep-alive
connections without a thread each, and it is already in TFX's dependency set (pinned in constraints.txt),
so it adds no package. The model itself runs in a bounded thread pool (TensorFlow releases the GIL).

The contract is TF Serving's: the same paths, bodies and status codes (``protocol.py``, ``errors.py``), and
every error sluice decides — including the HTTP layer's own (unknown method, oversized body or bad
``Content-Length``, overload) — answers ``{"error": "<message>"}`` with a 4xx for anything the client did.
Requests that are not HTTP/1.1 at all (a garbage request line, an invalid chunk size, both
``Transfer-Encoding`` and ``Content-Length``) get tornado's bare ``400 Bad Request`` and a closed connection:
there is no request to answer in JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from sluice.serving.errors import ServingError, invalid, not_found

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<rest>/metadata|:predict|:classify|:regress)?/?$")


@dataclass(frozen=True)
class Limits:
    """What clients may ask of the server (REST; gRPC uses the body limit and ``max_pending``). The body
    limit fits the largest batch allowed (``protocol.MAX_BATCH`` rows of a wide signature is a few MB as
    JSON or protobuf) with a margin; ``max_buffered_bytes`` bounds the bodies held at once across all
    connections, so many clients sending large bodies get 503 instead of exhausting memory."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_buffered_bytes: int = 256 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 60.0
    """Idle keep-alive connections, and clients that send their headers too slowly, are closed after this."""
    body_timeout_s: float = 60.0
    workers: int = 8
    """Predictions computed at once (the model's thread pool)."""
    max_pending: int = 256
    """Requests queued for the pool beyond which new ones get 503 at once instead of waiting."""


def route(path: str) -> Tuple[str, Optional[int], Optional[str], str]:
    """``(model, version, label, method suffix)`` of a REST path, or NOT_FOUND / INVALID_ARGUMENT."""
    match = _PATH.match(path.split("?", 1)[0])
    if not match:
        raise not_found(f"Malformed request: {path[:200]}")
    version = match.group("version")
    if version is not None and not (version.isascii() and version.isdigit()):
        raise invalid(f"Invalid version in path: {version[:40]}")
    return match.group("name"), int(version) if version else None, match.group("label"), match.group("rest") or ""


@dataclass
class Api:
    """What the HTTP layer calls: ``get(path)`` and ``post(path, body)`` return a JSON-able dict or raise
    ``ServingError``; both run in the model's thread pool."""

    get: Callable[[str], Dict[str, Any]]
    post: Callable[[str, bytes], Dict[str, Any]]


@tornado.web.stream_request_body
class _Handler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, server: "RestServer") -> None:
        self.server = server
        self._chunks: list = []
        self._size = 0
        self._too_large = 0
        """Bytes of an oversized body seen so far: it is drained (not kept) and answered 413 once read, so the
        client reads the answer instead of a connection reset; beyond ``_drain_cap`` the connection closes."""

    def compute_etag(self) -> None:  # TF Serving sends no ETag (and never a 304)
        return None

    def set_default_headers(self) -> None:
        self.clear_header("Server")

    def _release(self) -> None:
        self.server.buffered -= self._size
        self._size = 0
        self._chunks = []

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        self._release()

    # -- errors: always JSON, 4xx for the client's mistakes -------------------------------------------
    def _fail(self, status: int, message: str, close: bool = False, allow: Optional[str] = None) -> None:
        if self._finished:
            return
        self.clear()
        self.set_status(status)
        if allow:
            self.set_header("Allow", allow)
        self.set_header("Content-Type", "application/json")
        if close:  # the body is not read: the connection cannot carry another request
            self.set_header("Connection", "close")
        self.finish(json.dumps({"error": message}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        else:
            message = f"Internal: {type(exc).__name__}: {exc}"[:500] if exc else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)

    # -- body: bounded, chunked or not ------------------------------------------------------------------
    def prepare(self) -> None:
        length = self.request.headers.get("Content-Length")
        if length is not None:
            pieces = {p.strip() for p in length.split(",")}
            if len(pieces) != 1 or not next(iter(pieces)).isascii() or not next(iter(pieces)).isdigit():
                return self._fail(400, f"Invalid Content-Length: {length[:40]!r}", close=True)
            declared = int(next(iter(pieces)))
            if declared > self._drain_cap():  # not worth reading: answer now, close the connection
                return self._fail(413, f"Request body of {declared} bytes exceeds the limit of "
                                       f"{self.server.limits.max_body_bytes} bytes", close=True)
            if declared > self.server.limits.max_body_bytes:
                self._too_large = 1  # drained in data_received, answered by the method

    def _drain_cap(self) -> int:
        return 4 * self.server.limits.max_body_bytes

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        limits = self.server.limits
        if self._too_large or self._size + len(chunk) > limits.max_body_bytes:
            self._too_large += self._size + len(chunk)
            self._release()
            if self._too_large > self._drain_cap():
                self._fail(413, f"Request body exceeds the limit of {limits.max_body_bytes} bytes", close=True)
            return
        if self.server.buffered + len(chunk) > limits.max_buffered_bytes:
            self._release()
            return self._fail(503, "Server overloaded: too many request bodies in flight; retry later", close=True)
        self._size += len(chunk)
        self.server.buffered += len(chunk)
        self._chunks.append(chunk)

    # -- the API ------------------------------------------------------------------------------------------
    def _refused_body(self) -> bool:
        if self._too_large:
            self._fail(413, f"Request body exceeds the limit of {self.server.limits.max_body_bytes} bytes")
        return bool(self._too_large)

    async def _answer(self, call: Callable[[], Dict[str, Any]]) -> None:
        if self._refused_body():
            return
        server = self.server
        if server.pending >= server.limits.max_pending:
            return self._fail(503, f"Server overloaded: {server.pending} requests pending; retry later")
        server.pending += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(server.pool, call)
        except ServingError as e:
            return self._fail(e.http_status, e.message)
        finally:
            server.pending -= 1
        if self._finished:
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result))

    def _not_allowed(self, *_: Any) -> None:
        # Answered after the body is read (like any request), so the connection stays in step and usable.
        if self._refused_body():
            return
        self._fail(405, f"Method {self.request.method} is not supported (GET or POST)", allow="GET, POST")

    head = put = delete = patch = options = _not_allowed

    async def get(self, *_: Any) -> None:
        path = self.request.path
        await self._answer(lambda: self.server.api.get(path))

    async def post(self, *_: Any) -> None:
        path, body = self.request.path, b"".join(self._chunks)
        self._chunks = []  # the joined copy is the one held; released (counted) when the request finishes
        await self._answer(lambda: self.server.api.post(path, body))


class _HTTPServer(tornado.httpserver.HTTPServer):
    def handle_stream(self, stream: Any, address: Any) -> None:
        # Keep-alive clients: without TCP_NODELAY a response written while the client's ACK of the previous
        # one is delayed waits for it (Nagle), ~40 ms per request; tornado only sets it after a response.
        stream.set_nodelay(True)
        super().handle_stream(stream, address)


class RestServer:
    """The REST endpoint on its own thread and event loop; ``port`` is known once constructed."""

    def __init__(self, api: Api, host: str, port: int, limits: Limits = Limits()) -> None:
        self.api, self.limits, self.pending, self.buffered = api, limits, 0, 0
        self.pool = futures.ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="sluice-rest")
        self._sockets = tornado.netutil.bind_sockets(port, address=host, backlog=1024)
        self.port = self._sockets[0].getsockname()[1]
        self._loop: Optional[tornado.ioloop.IOLoop] = None
        self._server: Optional[tornado.httpserver.HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "RestServer":
        ready = threading.Event()
        failed: list = []

        def run() -> None:
            try:
                asyncio.set_event_loop(asyncio.new_event_loop())
                self._loop = tornado.ioloop.IOLoop.current()
                app = tornado.web.Application([(r".*", _Handler, {"server": self})], compress_response=False,
                                              log_function=lambda handler: None)  # no access log per request
                limits = self.limits
                # The handler streams, so the body limit is enforced in data_received (JSON 413); tornado's
                # own ceiling is out of the way (it would answer a bare 400 on a large chunk header).
                self._server = _HTTPServer(
                    app, max_body_size=1 << 40, max_header_size=limits.max_header_bytes,
                    idle_connection_timeout=limits.header_timeout_s, body_timeout=limits.body_timeout_s)
                self._server.add_sockets(self._sockets)
            except BaseException as e:  # surfaces in start(), never a silent hang
                failed.append(e)
                ready.set()
                return
            ready.set()
            self._loop.start()
            self._loop.close(all_fds=True)

        self._thread = threading.Thread(target=run, name="sluice-rest", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            self.close()
            raise failed[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return self.close()

        def shutdown() -> None:
            server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Release the listening sockets of a server that never started (its constructor bound them)."""
        for sock in self._sockets:
            sock.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
