"""What a benchmark task is: a world of host objects, user turns, and outcome checks.

A task builds a fresh `World` for every run (tools that act, data the model
starts with, classes it may use), sends its turns in order, and after some
turns checks outcomes. Checks never read the wording of a reply: they read the
host objects' state (`State`), a value the user asked to keep (`Value`: the
runtime's variable for cavelite, the numbers and words of the answer for the
text-only systems), or numbers the answer must give (`Answer`).

Each turn also carries the oracle's scripts: ``code`` is the correct cell,
``wrong`` a plausible mistake (by default: doing nothing), so `oracle.py` can
prove every check passes on a right solution and fails on a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["dev", "test"]


@dataclass
class World:
    """The host side of one run: what the model may act on, and what the checks read."""

    tools: dict[str, Any] = field(default_factory=dict)  # remote objects and functions
    data: dict[str, Any] = field(default_factory=dict)  # variables the model starts with
    types: list[type] = field(default_factory=list)  # classes its code may use
    descriptions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # host-only state the checks read


Expected = Any | Callable[[World], Any]


@dataclass(frozen=True)
class State:
    """A fact about the host objects after the turn, read the same way for every system."""

    what: str
    holds: Callable[[World], bool]


@dataclass(frozen=True)
class Value:
    """A value the user asked to keep under ``name``.

    cavelite is checked on the variable itself (retrieved from the runtime,
    type included); a system without a runtime the host reads from must state
    it in its answer, and every number and word of the expected value must be
    there.
    """

    name: str
    expected: Expected
    loose: bool = False  # judge the variable by its numbers and words (a table may be laid out freely)


@dataclass(frozen=True)
class Answer:
    """Numbers (or words) that the reply to this turn must contain, for every system."""

    what: str
    expected: Expected


Check = State | Value | Answer


@dataclass(frozen=True)
class Turn:
    """One user message, the oracle's right and wrong cells for it, and the checks after it.

    ``wrong`` is None to mean "the wrong script does nothing this turn" on a
    checked turn (and the same as ``code`` elsewhere).
    """

    user: str
    code: str = ""
    wrong: str | None = None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Task:
    name: str
    suite: str
    split: Split
    build: Callable[[], World]
    turns: tuple[Turn, ...]
    instructions: str = ""

    @property
    def checkpoints(self) -> int:
        return sum(1 for turn in self.turns if turn.checks)


def resolve(expected: Expected, world: World) -> Any:
    """A check's expected value: computed from the world when it is a callable."""
    return expected(world) if callable(expected) and not isinstance(expected, type) else expected


def reference(task_build: Callable[[], World], turns: Sequence[Turn], upto: int) -> World:
    """A fresh world after the oracle's correct cells of the first ``upto`` turns, run in the host.

    For checks whose expected state depends on earlier steps (ship what stock
    allows, then restock...): the reference solution computes it once.
    """
    import contextlib
    import datetime
    import io
    from decimal import Decimal

    world = task_build()
    namespace: dict[str, Any] = {"Decimal": Decimal, "datetime": datetime, **world.tools, **world.data}
    namespace.update({c.__name__: c for c in world.types})
    with contextlib.redirect_stdout(io.StringIO()):
        for turn in turns[:upto]:
            exec(compile(turn.code, "<reference>", "exec"), namespace)  # our own reference cells
    return world


def split_of(index: int) -> Split:
    """Every third task of a suite is held out for the test split."""
    return "test" if index % 3 == 2 else "dev"


def tasks_with_splits(
    suite: str, specs: Sequence[tuple[str, Callable[[], World], tuple[Turn, ...]]], instructions: str = ""
) -> list[Task]:
    return [
        Task(name, suite, split_of(i), build, turns, instructions)
        for i, (name, build, turns) in enumerate(specs)
    ]
