"""A threaded HTTP/1.1 server on 127.0.0.1 that answers from a script.

The provider fakes (`messages_server`, `openai_server`) subclass it and only
say how to render a scripted reply. The real SDKs talk to it over real
sockets: nothing is patched. Bodies are sent chunked, so a "cut" can end the
connection mid-body the way a dropped upstream would.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class TextReply:
    """A successful reply; usage fields are what the fake reports."""

    text: str
    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    chunks: int = 3
    stop_reason: str = "end_turn"
    tool_calls: tuple[dict[str, Any], ...] = ()  # OpenAI-style calls: {"name": ..., "arguments": {...}}
    finish: bool = True  # False: the stream ends (``[DONE]``) without a finish reason


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error, optionally with a ``retry-after`` header."""

    status: int
    message: str = "scripted error"
    error_type: str = ""
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CutStream:
    """A streamed reply whose connection drops after ``text`` was sent."""

    text: str


@dataclass(frozen=True)
class StallStream:
    """A streamed reply that sends ``text``, then stalls until the test releases it, then drops.

    While it stalls, `LoopbackServer.stalled` is set: a test waits on that event
    (never on the clock) to know the client is mid-call.
    """

    text: str


Scripted = TextReply | ErrorReply | CutStream | StallStream


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away (a test killed it mid-reply): nothing to report
        super().handle_error(request, client_address)


class LoopbackServer:
    """Serve scripted replies in order; record every request."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.model_lookups: list[RecordedRequest] = []  # GET /v1/models, kept apart from the calls
        self.models: list[str] | None = None  # what GET /v1/models lists; None answers 404
        self.stall_models = False  # GET /v1/models stalls (until released) instead of answering
        self.stalled = threading.Event()  # a request is stalling now
        self.release = threading.Event()  # set by the test: stalled requests go on
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), self._handler_class())
        host, port = self._httpd.server_address[:2]
        self.origin = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL an SDK client should be given."""
        return self.origin

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        self.release.set()  # frees a handler a previous test left stalling
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.model_lookups.clear()
            self.models = None
            self.stall_models = False
        self.stalled = threading.Event()
        self.release = threading.Event()

    def _stall(self) -> None:
        """Hold this handler until the test releases it (bounded, so a failed test cannot hang)."""
        release = self.release
        self.stalled.set()
        release.wait(60)

    def push(self, *items: Scripted) -> None:
        with self._lock:
            self._script.extend(items)

    def reply(self, text: str, **usage: Any) -> None:
        self.push(TextReply(text, **usage))

    def error(self, status: int, message: str = "scripted error", **kwargs: Any) -> None:
        self.push(ErrorReply(status, message, **kwargs))

    def cut(self, text: str) -> None:
        self.push(CutStream(text))

    def stall(self, text: str = "") -> None:
        self.push(StallStream(text))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    # -- subclasses ---------------------------------------------------------
    def paths(self) -> tuple[str, ...]:
        raise NotImplementedError

    def render_json(self, item: TextReply, body: Any) -> dict[str, Any]:
        raise NotImplementedError

    def render_models(self, models: list[str]) -> dict[str, Any]:
        """The body of ``GET /v1/models``."""
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in models]}

    def render_events(self, item: TextReply | CutStream, body: Any) -> list[bytes]:
        """SSE frames for a streamed reply (for a cut: only those sent before the drop)."""
        raise NotImplementedError

    def render_error(self, item: ErrorReply) -> dict[str, Any]:
        raise NotImplementedError

    # -- plumbing -----------------------------------------------------------
    def _next(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet tests
                pass

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = RecordedRequest("GET", self.path, headers, None)
                with server._lock:
                    server.model_lookups.append(record)
                    models, stall = server.models, server.stall_models
                if stall:
                    server._stall()
                if self.path.split("?")[0] != "/v1/models" or models is None:
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                self._send_json(200, server.render_models(models))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with server._lock:
                    server.requests.append(
                        RecordedRequest(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                if self.path.split("?")[0] not in server.paths():
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                item = server._next()
                if item is None:
                    error = ErrorReply(400, "fake server: the script has no reply left")
                    self._send_json(400, server.render_error(error))
                    return
                if isinstance(item, ErrorReply):
                    headers = dict(item.headers)
                    if item.retry_after is not None:
                        headers["retry-after"] = item.retry_after
                    self._send_json(item.status, server.render_error(item), headers)
                    return
                streaming = isinstance(body, dict) and body.get("stream") is True
                if isinstance(item, StallStream):
                    frames = server.render_events(CutStream(item.text), body)
                    self._send_events(frames, cut=True, stall=True)
                elif isinstance(item, CutStream) or streaming:
                    self._send_events(server.render_events(item, body), cut=isinstance(item, CutStream))
                else:
                    self._send_json(200, server.render_json(item, body))

            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _send_events(self, frames: list[bytes], *, cut: bool, stall: bool = False) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for frame in frames:
                    self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
                    self.wfile.flush()
                if stall:
                    server._stall()
                if cut:
                    # Drop the connection without the terminating chunk: the
                    # client sees a body that ends mid-way, as with a dead upstream.
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

        return Handler


def split_text(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, chunks)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
