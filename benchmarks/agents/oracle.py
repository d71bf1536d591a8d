"""The oracle: scripted right and wrong solutions, for every system, with no network.

The oracle plays the model. For each turn it sends the task's cell (``code``,
or ``wrong`` in the wrong run), then a plain-text answer:

- cavelite: the cell, then an answer stating the turn's `Answer` values;
- codeact: the cell plus a ``print`` of every value the turn checks, then an
  answer echoing what the interpreter printed;
- json-fc: the tool calls the cell would make, one per reply, traced by
  running the cell on a second, private copy of the world; then an answer
  stating the values that copy computed.

In the wrong run the answer states only what the wrong cell produced. The
runner then demands that every right script passes every checkpoint and that
every wrong script fails every checkpoint it reaches: a checker that cannot
fail is a bug the oracle catches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import io
import json
import math
import statistics
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.agents import tools as toolkit
from benchmarks.agents.task import Answer, Task, Turn, Value, World, resolve
from cavelite.models import ScriptedModel
from cavelite.models.base import Message

Reply = Callable[[Sequence[Message]], str]


def py(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def render(value: Any) -> str:
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return value.to_string()
    return str(value)


class Oracle:
    """A scripted model for one system on one task; call `begin` before each turn."""

    def __init__(self, system: str, task: Task, world: World, *, wrong: bool) -> None:
        self.system = system
        self.task = task
        self.world = world
        self.wrong = wrong
        self.model = ScriptedModel(self._reply, name="oracle")
        self._pending: list[Reply] = []
        self._shadow = _Shadow(task.build()) if system == "json-fc" else None

    def begin(self, turn: Turn) -> None:
        code = turn.code
        if self.wrong:
            code = turn.wrong if turn.wrong is not None else ("" if turn.checks else turn.code)
        values = [c.name for c in turn.checks if isinstance(c, Value)]
        said = "" if self.wrong else self._answers(turn)
        if self.system == "cavelite":
            self._pending = ([_fixed(py(code))] if code.strip() else []) + [_fixed(f"Done. {said}".strip())]
        elif self.system == "codeact":
            prints = "".join(f"\nprint({name})" for name in values)
            cell = (code + prints).strip()
            self._pending = ([_fixed(py(cell))] if cell else []) + [_echo(said)]
        else:
            assert self._shadow is not None
            calls, computed = self._shadow.run(code, values)
            wire = [{"name": n, "arguments": a} for n, a in calls]
            # a few calls one per reply; many in one list, as a parallel-calling model would
            batches = [[c] for c in wire] if len(wire) <= 3 else [wire]
            replies: list[Reply] = [_fixed(json.dumps(b[0] if len(b) == 1 else b)) for b in batches]
            stated = " ".join(f"{name} = {render(v)}" for name, v in computed.items())
            self._pending = replies + [_fixed(f"Done. {stated} {said}".strip())]

    def _answers(self, turn: Turn) -> str:
        return " ".join(render(resolve(c.expected, self.world)) for c in turn.checks if isinstance(c, Answer))

    def _reply(self, messages: Sequence[Message]) -> str:
        if not self._pending:
            return "Done."
        return self._pending.pop(0)(messages)


def _fixed(text: str) -> Reply:
    return lambda messages: text


def _echo(extra: str) -> Reply:
    def reply(messages: Sequence[Message]) -> str:
        last = messages[-1].content if messages and messages[-1].role == "user" else ""
        return f"Done. The interpreter printed:\n{last}\n{extra}".strip()

    return reply


class _Shadow:
    """A private copy of the world where the oracle runs its cells to learn the calls they make."""

    def __init__(self, world: World) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.namespace: dict[str, Any] = {
            "Decimal": Decimal,
            "dt": dt,
            "datetime": dt,
            "math": math,
            "statistics": statistics,
            "np": np,
            "pd": pd,
        }
        self.namespace.update({c.__name__: c for c in world.types})
        self.namespace.update(world.data)
        for name, value in world.tools.items():
            self.namespace[name] = _Recorder(name, value, self.calls)

    def run(self, code: str, names: list[str]) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
        self.calls.clear()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # what it prints is the model's business
                exec(compile(code, "<oracle>", "exec"), self.namespace)  # our own scripted cell
        except Exception:
            pass  # a wrong script may fail; the calls it made before failing still count
        computed = {n: self.namespace[n] for n in names if n in self.namespace}
        return list(self.calls), computed


class _Recorder:
    """Stands for a tool in the shadow: records each call by tool name, then makes it."""

    def __init__(self, name: str, target: Any, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self._name, self._target, self._calls = name, target, calls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _record(self._name, self._target, self._calls, args, kwargs)

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if not callable(value):
            return value
        name, calls = f"{self._name}.{attr}", self._calls
        return lambda *args, **kwargs: _record(name, value, calls, args, kwargs)


def _record(
    name: str,
    function: Any,
    calls: list[tuple[str, dict[str, Any]]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    bound = inspect.signature(function).bind(*args, **kwargs)
    calls.append((name, {k: toolkit.jsonable(v) for k, v in bound.arguments.items()}))
    return function(*args, **kwargs)
