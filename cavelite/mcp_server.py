"""``cavelite mcp``: a persistent, contained Python runtime for any Model Context Protocol client.

Built on the official ``mcp`` SDK (``pip install 'cavelite[mcp]'``), over stdio
or streamable HTTP. Each client connection gets its own `Runtime`, made on its
first tool call and closed with the connection: for stdio that is the
process (one client, until its stdin closes); for HTTP it is the protocol's
session (``Mcp-Session-Id``), closed when the client ends it (``DELETE``),
after ``idle_timeout`` without a call, or when the server stops. Over HTTP the
2026 session-less protocol has no connection to keep variables in, so the
server refuses ``server/discover`` (clients in ``auto`` mode fall back to the
handshake) and any tool call that comes without a session.

Tools: ``run_python`` (stdout, value, error, changed variables, and figures
as image content), ``list_variables``, ``describe_variable``, ``reset``, and,
when the server was started with ``--data-dir``, ``list_data_files`` and
``load_data``: a host-side loader that reads CSV, JSON, Parquet or Excel files
into DataFrames from those directories only (never a path outside them, also
not through a symlink); cells themselves still cannot open files.
"""

from __future__ import annotations

import base64
import contextlib
import keyword
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from cavelite.errors import CaveliteError, CaveUsageError
from cavelite.runtime import Runtime
from cavelite.runtime.results import CellResult
from cavelite.runtime.runtime import FIGURES_PRELOAD
from cavelite.security import Policy

log = logging.getLogger("cavelite.mcp")

SESSION_HEADER = "mcp-session-id"
_STDIO = "stdio"


@dataclass(frozen=True)
class ServerOptions:
    """How `serve_stdio` / `serve_http` make each connection's runtime, and what they serve."""

    data_dirs: tuple[Path, ...] = ()
    preload: tuple[str, ...] | None = None  # None: numpy, pandas and matplotlib where installed
    policy: Policy | None = None
    cell_timeout: float = 30.0
    memory_limit_mb: int | None = 2048
    max_output_chars: int = 20_000
    max_sessions: int = 16
    idle_timeout: float = 1800.0

    def new_runtime(self) -> Runtime:
        kwargs: dict[str, Any] = {"cell_timeout": self.cell_timeout, "memory_limit_mb": self.memory_limit_mb,
                                  "max_output_chars": self.max_output_chars, "policy": self.policy}
        kwargs["preload"] = self.preload if self.preload is not None else FIGURES_PRELOAD
        return Runtime(**kwargs)


@dataclass
class _Session:
    runtime: Runtime
    last_used: float = field(default_factory=time.monotonic)


class Sessions:
    """The runtimes of the open connections, by connection key (thread-safe)."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._open: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Runtime:
        with self._lock:
            session = self._open.get(key)
            if session is None:
                if len(self._open) >= self.options.max_sessions:
                    raise CaveUsageError(f"this server already holds {self.options.max_sessions} sessions; "
                                         "close one (or start the server with a larger --max-sessions)")
                session = self._open[key] = _Session(self.options.new_runtime())
                log.info("session %s: runtime started (pid %d)", key[:12], session.runtime.pid)
            session.last_used = time.monotonic()
            return session.runtime

    def close(self, key: str) -> bool:
        with self._lock:
            session = self._open.pop(key, None)
        if session is None:
            return False
        session.runtime.close()
        log.info("session %s: runtime closed", key[:12])
        return True

    def close_idle(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [k for k, s in self._open.items() if now - s.last_used > self.options.idle_timeout]
        return [key for key in idle if self.close(key)]

    def close_all(self) -> None:
        with self._lock:
            keys = list(self._open)
        for key in keys:
            self.close(key)

    def __len__(self) -> int:
        return len(self._open)


# --- the tools ----------------------------------------------------------------------------------

def _tool(name: str, description: str, properties: dict[str, Any], required: Sequence[str] = (),
          read_only: bool = False) -> types.Tool:
    schema = {"type": "object", "properties": properties, "required": list(required),
              "additionalProperties": False}
    return types.Tool(name=name, description=description, input_schema=schema,
                      annotations=types.ToolAnnotations(read_only_hint=read_only, open_world_hint=False))


def tool_list(options: ServerOptions) -> list[types.Tool]:
    tools = [
        _tool("run_python", "Run Python code in a persistent, contained runtime (numpy, pandas, "
              "matplotlib). Variables persist between calls. Returns what the code printed, the "
              "value of a final expression, the variables it created or changed, and the figures it "
              "drew as images. A failed call changes nothing. Files, network and processes are off "
              "limits inside the runtime.",
              {"code": {"type": "string", "description": "Python source to run"}}, ["code"]),
        _tool("list_variables", "List the runtime's variables with their types and short summaries.",
              {}, read_only=True),
        _tool("describe_variable", "Describe one variable: its type, summary and a bounded repr.",
              {"name": {"type": "string"}}, ["name"], read_only=True),
        _tool("reset", "Forget every variable: a fresh runtime for this connection.", {}),
    ]
    if options.data_dirs:
        roots = ", ".join(str(d) for d in options.data_dirs)
        tools += [
            _tool("list_data_files", f"List the data files the server may load (under {roots}).", {},
                  read_only=True),
            _tool("load_data", "Load a CSV, TSV, JSON(L), Parquet or Excel file into the runtime as a "
                  f"pandas DataFrame. Only files under {roots} can be loaded.",
                  {"path": {"type": "string", "description": "a path under a data directory, or "
                            "relative to one"},
                   "name": {"type": "string", "description": "the variable name (default: from the "
                            "file name)"}}, ["path"]),
        ]
    return tools


def _text(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


def cell_result(result: CellResult) -> types.CallToolResult:
    """A cell's outcome as tool content: its text, then one image per figure."""
    parts = [result.for_model()]
    if result.changed:
        parts.append("[variables created or changed]\n"
                     + "\n".join("- " + info.for_model() for info in result.changed))
    if result.deleted:
        parts.append("[variables deleted] " + ", ".join(result.deleted))
    if result.error is not None and result.rolled_back:
        parts.append("[the runtime is unchanged: the call was rolled back]")
    content: list[Any] = [types.TextContent(type="text", text="\n".join(parts))]
    content += [types.ImageContent(type="image", data=base64.b64encode(f.data).decode("ascii"),
                                   mime_type=f.mime_type) for f in result.figures]
    return types.CallToolResult(content=content, is_error=not result.ok)


def _describe(runtime: Runtime, name: str) -> types.CallToolResult:
    if not name.isidentifier():
        return _text(f"{name!r} is not a variable name", error=True)
    info = next((v for v in runtime.variables() if v.name == name), None)
    if info is None:
        return _text(f"no variable named {name!r}; list_variables shows them", error=True)
    shown = runtime.execute(name)
    body = info.for_model()
    if shown.ok and shown.value_repr is not None:
        body += f"\n[repr]\n{shown.value_repr}"
    return _text(body)


def resolve_data_path(options: ServerOptions, path_text: str) -> Path:
    """The real path of a data file, only if it lies under one of the data directories."""
    if not options.data_dirs:
        raise CaveUsageError("this server was started without --data-dir: it loads no files")
    if "\x00" in path_text:
        raise CaveUsageError("a path cannot contain NUL")
    candidates = [Path(path_text)] if os.path.isabs(path_text) else [d / path_text for d in options.data_dirs]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))  # symlinks followed: where the bytes really are
        for root in options.data_dirs:
            if real.is_relative_to(root) and real.is_file():
                return real
    raise CaveUsageError(f"{path_text!r} is not a file under the data directories "
                         f"({', '.join(str(d) for d in options.data_dirs)})")


def _list_data_files(options: ServerOptions, limit: int = 500) -> types.CallToolResult:
    from cavelite._cli_files import LOADABLE

    found: list[str] = []
    for root in options.data_dirs:
        for directory, _dirs, files in os.walk(root):
            for name in sorted(files):
                if Path(name).suffix.lower() in LOADABLE and len(found) < limit:
                    found.append(str(Path(directory, name).relative_to(root)))
    return _text("\n".join(found) if found else "(no loadable files)")


def _load(options: ServerOptions, runtime: Runtime, path_text: str, name: str | None) -> types.CallToolResult:
    from cavelite._cli_files import load

    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        # Checked here, not by the loader: a name it did not take for one would make
        # "NAME=PATH" a path of its own, one that was never resolved against the roots.
        raise CaveUsageError(f"{name!r} is not a valid Python variable name")
    real = resolve_data_path(options, path_text)
    spec = f"{name}={real}" if name else str(real)
    item = load(spec)
    runtime.inject(item.name, item.frame, description=item.description)
    info = next(v for v in runtime.variables() if v.name == item.name)
    return _text(f"loaded {real.name} as {info.for_model()}" + (f"\n[note] {item.note}" if item.note else ""))


def call_tool(sessions: Sessions, key: str, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    """Run one tool for the connection ``key`` (blocking: called in a worker thread)."""
    options = sessions.options
    try:
        if name == "run_python":
            return cell_result(sessions.get(key).execute(_string(arguments, "code")))
        if name == "list_variables":
            listed = sessions.get(key).variables()
            return _text("\n".join(v.for_model() for v in listed) if listed else "(no variables)")
        if name == "describe_variable":
            return _describe(sessions.get(key), _string(arguments, "name"))
        if name == "reset":
            sessions.get(key).reset()
            return _text("the runtime was reset: no variables")
        if name == "list_data_files" and options.data_dirs:
            return _list_data_files(options)
        if name == "load_data" and options.data_dirs:
            chosen = arguments.get("name")
            if chosen is not None and not isinstance(chosen, str):
                raise CaveUsageError("'name' must be a string")
            return _load(options, sessions.get(key), _string(arguments, "path"), chosen)
    except CaveliteError as exc:
        return _text(f"{type(exc).__name__}: {exc}", error=True)
    return _text(f"unknown tool {name!r}", error=True)


def _string(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str):
        raise CaveUsageError(f"the argument {key!r} must be a string")
    return value


# --- the server ---------------------------------------------------------------------------------

def build_server(sessions: Sessions, key_of: Callable[[ServerRequestContext[Any]], str | None],
                 lifespan: Callable[[Server[Any]], contextlib.AbstractAsyncContextManager[Any]] | None = None,
                 *, sessionless_era: bool = True) -> Server[Any]:
    """The low-level SDK server: the tools, routed to the connection's runtime by ``key_of``.

    ``sessionless_era=False`` (HTTP) refuses ``server/discover``, so that clients
    pick the handshake, whose session is what keeps the variables. (On stdio the
    process is the connection: either era keeps them.)
    """
    from cavelite import __version__

    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list(sessions.options))

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        key = key_of(ctx)
        if key is None:
            return _text("this server keeps one Python session per connection, and this request "
                         "came without one: connect with the initialize handshake (a session)", error=True)
        return await anyio.to_thread.run_sync(call_tool, sessions, key, params.name,
                                              dict(params.arguments or {}))

    async def discover(ctx: ServerRequestContext[Any], params: Any) -> Any:
        # The 2026 protocol has no sessions; clients in "auto" mode fall back to the handshake.
        raise MCPError(code=types.METHOD_NOT_FOUND,
                       message="cavelite keeps a session per connection: use the initialize handshake")

    kwargs: dict[str, Any] = {"lifespan": lifespan} if lifespan is not None else {}
    server: Server[Any] = Server(
        "cavelite", version=__version__,
        instructions="A persistent Python runtime: variables survive between run_python calls. "
                     "Print or end with an expression to see results; figures come back as images.",
        on_list_tools=list_tools, on_call_tool=on_call_tool, **kwargs)
    if not sessionless_era:
        server.add_request_handler("server/discover", types.RequestParams, discover)
    return server


def serve_stdio(options: ServerOptions) -> None:
    """Serve one client over stdin/stdout until it closes them; its runtime closes then."""
    sessions = Sessions(options)
    server = build_server(sessions, lambda ctx: _STDIO)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    try:
        anyio.run(main)
    finally:  # end of input, or a signal: the runtime goes with the connection
        sessions.close_all()


def http_app(options: ServerOptions, *, host: str = "127.0.0.1") -> tuple[Any, Sessions]:
    """The streamable-HTTP ASGI app (at ``/mcp``) and its sessions."""
    sessions = Sessions(options)

    def key_of(ctx: ServerRequestContext[Any]) -> str | None:
        request = ctx.request
        headers = getattr(request, "headers", None)
        value = headers.get(SESSION_HEADER) if headers is not None else None
        return value or None

    @contextlib.asynccontextmanager
    async def reaping(_server: Server[Any]) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(_reap, sessions)
            try:
                yield None
            finally:
                group.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sessions.close_all)

    server = build_server(sessions, key_of, reaping, sessionless_era=False)
    app = server.streamable_http_app(host=host, session_idle_timeout=options.idle_timeout,
                                     max_sessions=options.max_sessions)

    async def closing_sessions(scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app, plus: a client's DELETE of its session closes that session's runtime."""
        await app(scope, receive, send)
        if scope.get("type") == "http" and scope.get("method") == "DELETE":
            for name, value in scope.get("headers", ()):
                if name == SESSION_HEADER.encode():
                    await anyio.to_thread.run_sync(sessions.close, value.decode("latin-1"))

    return closing_sessions, sessions


async def _reap(sessions: Sessions) -> None:
    """Close the runtimes of sessions idle for longer than the idle timeout."""
    period = max(1.0, min(60.0, sessions.options.idle_timeout / 4))
    while True:
        await anyio.sleep(period)
        await anyio.to_thread.run_sync(sessions.close_idle)


def serve_http(options: ServerOptions, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted (port 0: any free one).

    The socket is bound and listening before the address is printed on stderr,
    so a client may connect as soon as it reads that line.
    """
    import socket

    import uvicorn

    app, sessions = http_app(options, host=host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    bound = listener.getsockname()[1]
    print(f"cavelite mcp: serving on http://{host}:{bound}/mcp", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
        sessions.close_all()
