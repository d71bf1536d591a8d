"""Compiling and running one cell inside the worker.

compile: parse -> policy rules (layer 1) -> CaveTransformer (layer 2) ->
rewrite a final bare expression into a display assignment -> compile with
top-level ``await`` allowed. run: execute in the persistent namespace with
stdout/stderr captured, and turn any failure into a structured error with
the cell's own line numbers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import io
import linecache
import sys
import time
import traceback
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any

from ..security.policy import Policy
from ..security.transformer import CaveTransformer
from ..security.violation import Violation
from .namespace import bounded, describing, safe_repr
from .results import CellError, ErrorKind
from .wire import plain_text

DISPLAY_NAME = "_display_"


class OutputLimitExceeded(BaseException):
    """Raised into a cell whose output passed the hard cap (a print flood)."""


class Capture(io.TextIOBase):
    """A text stream that keeps everything up to a hard cap, then stops the cell."""

    def __init__(self, hard_limit: int):
        self.parts: list[str] = []
        self.size = 0
        self.hard_limit = hard_limit
        self.exceeded = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if type(s) is not str:
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.size += len(s)
        if self.size > self.hard_limit:
            self.exceeded = True
            keep = len(s) - (self.size - self.hard_limit)
            if keep > 0:
                self.parts.append(s[:keep])
            raise OutputLimitExceeded(f"output passed the hard limit of {self.hard_limit} chars")
        self.parts.append(s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)

    def isatty(self) -> bool:
        return False


@dataclass
class Compiled:
    code: CodeType | None
    filename: str
    display: bool
    error: CellError | None = None


def compile_cell(source: str, policy: Policy, filename: str) -> Compiled:
    """Check and compile a cell; on refusal ``error`` holds a structured error."""
    try:
        tree = ast.parse(source, filename, "exec", type_comments=False)
    except SyntaxError as exc:
        return Compiled(None, filename, False, _syntax_error(exc))
    violations = policy.check(tree, source)
    errors: list[str] = []
    warnings: list[str] = []
    used: dict[str, bool] = {}
    CaveTransformer(errors, warnings, used).visit(tree)
    if errors:
        from ..security.policy import merge_violations

        violations = merge_violations(violations, _transformer_violations(errors, source))
    if violations:
        return Compiled(None, filename, False, CellError(
            "policy", "PolicyViolation", "; ".join(v.message for v in violations),
            line=violations[0].line, violations=tuple(violations)))
    display = False
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        assign = ast.Assign(targets=[ast.Name(DISPLAY_NAME, ast.Store())], value=last.value)
        ast.copy_location(assign, last)
        tree.body[-1] = assign
        display = True
    ast.fix_missing_locations(tree)
    try:
        code = compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        return Compiled(None, filename, False, _syntax_error(exc))
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return Compiled(code, filename, display)


def _syntax_error(exc: SyntaxError) -> CellError:
    text = (exc.text or "").rstrip("\n")
    tb = f'  line {exc.lineno}\n    {text.strip()}' if exc.lineno else ""
    if text and exc.offset:
        pad = max(exc.offset - 1 - (len(text) - len(text.lstrip())), 0)
        tb += "\n    " + " " * pad + "^"
    return CellError("exception", type(exc).__name__, exc.msg or str(exc), tb, exc.lineno)


def _transformer_violations(errors: list[str], source: str) -> list[Violation]:
    lines = source.splitlines()
    found = []
    for err in errors:
        # RestrictedPython formats errors as "Line N: message"
        head, _, message = err.partition(": ")
        try:
            lineno = int(head.split()[-1])
        except ValueError:
            lineno, message = 1, err
        snippet = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        found.append(Violation("restricted", message.rstrip("."), lineno, 0, snippet,
                               "use public attributes and plain names; names like _x_ and "
                               "interpreter internals are off limits"))
    return found


@dataclass
class Outcome:
    ok: bool
    stdout: str
    stderr: str
    value_repr: str | None
    error: CellError | None
    duration_s: float
    value: Any = None  # the displayed value itself (a figure is captured from it)


_LOOP: asyncio.AbstractEventLoop | None = None


def prepare_event_loop() -> None:
    """Create this process's event loop for top-level ``await``, before any cell runs.

    Each spare makes its own after the fork (never the zygote, whose loop every
    worker would share: one epoll instance and one self-pipe for all sessions).
    It uses select(), which keeps no kernel object, so a checkpoint that takes
    over inherits nothing the worker it replaces could have changed. It is made
    up front because its self-pipe is a socketpair, which cells may not create.
    """
    global _LOOP
    import selectors

    _LOOP = asyncio.SelectorEventLoop(selectors.SelectSelector())


def run_coroutine(main: Any, *, debug: bool | None = None) -> Any:
    """``asyncio.run`` for cells: on this worker's own loop (a new loop needs a socketpair).

    Models write ``asyncio.run(main())`` often; inside a cell that already awaits,
    ``await main()`` is the way (as in Jupyter), and the message says so.
    """
    if not inspect.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {type(main).__name__}")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        main.close()
        raise RuntimeError("asyncio.run() cannot be called from a running event loop: "
                           "write `await main()` instead")
    if _LOOP is None:
        prepare_event_loop()
    assert _LOOP is not None
    return _LOOP.run_until_complete(main)


def run_cell(compiled: Compiled, ns: dict[str, Any], *, hard_output_limit: int,
             max_repr_chars: int) -> Outcome:
    """Run a compiled cell in ``ns``; never raises (except BaseExceptions we must not catch)."""
    out, err = Capture(hard_output_limit), Capture(hard_output_limit)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    started = time.perf_counter()
    error: CellError | None = None
    value_repr = None
    value = None
    try:
        assert compiled.code is not None
        result = eval(compiled.code, ns)  # noqa: S307 - the code was checked and guarded
        if inspect.iscoroutine(result):
            if _LOOP is None:
                prepare_event_loop()
            assert _LOOP is not None
            _LOOP.run_until_complete(result)
        if compiled.display:
            value = ns.pop(DISPLAY_NAME, None)
            if value is not None:
                with describing():
                    value_repr = safe_repr(value, max_repr_chars)
    except OutputLimitExceeded as exc:
        error = CellError("output_limit", "OutputLimitExceeded", str(exc))
    except KeyboardInterrupt as exc:
        error = CellError("timeout", "Timeout", "the cell was interrupted",
                          _format_exc_tb(exc.__traceback__, compiled.filename)[0])
    except MemoryError as exc:
        error = _exception_error(exc, compiled.filename, kind="memory")
    except Exception as exc:
        error = _exception_error(exc, compiled.filename)
    except SystemExit as exc:
        error = _exception_error(exc, compiled.filename)
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        ns.pop(DISPLAY_NAME, None)
    if error is None and (out.exceeded or err.exceeded):
        error = CellError("output_limit", "OutputLimitExceeded",
                          f"output passed the hard limit of {hard_output_limit} chars")
    duration = time.perf_counter() - started
    return Outcome(error is None, out.getvalue(), err.getvalue(), value_repr, error, duration, value)


def _exception_error(exc: BaseException, filename: str, kind: ErrorKind = "exception") -> CellError:
    """The error of a failed cell, in plain text: the exception's own code runs bounded."""
    tb_text, line = _format_exc_tb(exc.__traceback__, filename)
    unreadable = "<the exception's message could not be read>"
    try:
        with describing():
            message = bounded(str, exc, fallback=unreadable)  # a cell-made __str__ may spin
    except Exception:  # or fail
        message = unreadable
    if kind == "memory":
        message = message or "the cell ran out of memory (the worker's memory limit)"
    remote_type = getattr(exc, "remote_type", None)
    return CellError(kind, plain_text(remote_type or type(exc).__name__, 200),
                     plain_text(message, 20_000), tb_text, line)


def _format_exc_tb(tb: TracebackType | None, filename: str) -> tuple[str, int | None]:
    frames = traceback.extract_tb(tb)
    lines: list[str] = []
    last_cell_line = None
    for i, frame in enumerate(frames):
        if frame.filename == filename:
            last_cell_line = frame.lineno
            where = "" if frame.name == "<module>" else f", in {frame.name}"
            lines.append(f"  line {frame.lineno}{where}")
            if frame.line:
                lines.append(f"    {frame.line.strip()}")
        elif i == len(frames) - 1 and lines:
            # the innermost library frame says where the error really surfaced
            short = _short_path(frame.filename)
            lines.append(f"  [in {short}, line {frame.lineno}, in {frame.name}]")
    return "\n".join(lines), last_cell_line


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        idx = path.find(marker)
        if idx >= 0:
            return path[idx + len(marker):]
    return path.rsplit("/", 1)[-1]
