"""Plain JSON forms of what a chat produced, for ``run --json`` and ``/transcript``.

Scripts read these, so the keys are a contract: ``tests/test_cli.py`` pins
them. Everything is built from the frozen result types (strings and
numbers), never from a live object.
"""

from __future__ import annotations

from typing import Any

from cavelite.errors import ModelError
from cavelite.events import Reply
from cavelite.runtime.results import CellError, CellResult, VariableInfo
from cavelite.usage import Usage


def usage_record(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "total_tokens": usage.total_tokens,
    }


def variable_record(info: VariableInfo) -> dict[str, str]:
    return {"name": info.name, "type": info.type_name, "summary": info.summary}


def cell_error_record(error: CellError | None) -> dict[str, Any] | None:
    """kind (exception, timeout, crash, memory, policy, output_limit), type, message, line, text."""
    if error is None:
        return None
    return {
        "kind": error.kind,
        "type": error.type,
        "message": error.message,
        "line": error.line,
        "violations": [{"rule": v.rule, "message": v.message, "line": v.line, "hint": v.hint}
                       for v in error.violations],
        "text": error.for_model(),
    }


def figure_records(result: CellResult, paths: list[str] | None = None) -> list[dict[str, Any]]:
    """The cell's figures: where the CLI saved each (None if it did not), size and bytes."""
    paths = paths or []
    return [{"path": paths[i] if i < len(paths) else None, "mime_type": f.mime_type,
             "width": f.width, "height": f.height, "bytes": len(f.data)}
            for i, f in enumerate(result.figures)]


def cell_record(step: int, code: str, result: CellResult,
                figure_paths: list[str] | None = None) -> dict[str, Any]:
    """One cell: the code, what it printed, the value shown, what changed, and how it failed."""
    return {
        "step": step,
        "code": code,
        "ok": result.ok,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "value": result.value_repr,
        "changed": [variable_record(v) for v in result.changed],
        "deleted": list(result.deleted),
        "error": cell_error_record(result.error),
        "rolled_back": result.rolled_back,
        "stdout_truncated": result.stdout_truncated,
        "output_index": result.output_index,
        "duration_s": round(result.duration_s, 6),
        "figures": figure_records(result, figure_paths),
    }


def model_error_record(error: ModelError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"kind": error.kind, "status": error.status, "retryable": error.retryable,
            "message": str(error)}


def reply_record(reply: Reply, model_name: str,
                 figure_paths: dict[int, list[str]] | None = None) -> dict[str, Any]:
    """The whole of one chat, as ``run --json`` prints it (``figure_paths`` by step)."""
    figure_paths = figure_paths or {}
    return {
        "answer": reply.text if reply.completed else None,
        "last_text": reply.text,
        "stop_reason": reply.stop_reason.value,
        "completed": reply.completed,
        "detail": reply.detail,
        "model_error": model_error_record(reply.error),
        "steps": reply.steps,
        "cells": [cell_record(c.step, c.code, c.result, figure_paths.get(c.step))
                  for c in reply.cells],
        "usage": usage_record(reply.usage),
        "wall_s": round(reply.wall_s, 6),
        "model": model_name,
    }
