"""The suites, by name, and how a run picks its tasks (suite, split, name filter, limit)."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.agents import suite_bfcl, suite_data, suite_stateful, suite_tokens
from benchmarks.agents.task import Task

SUITES: dict[str, Callable[[], list[Task]]] = {
    "stateful": suite_stateful.tasks,
    "tokens": suite_tokens.tasks,
    "data": suite_data.tasks,
    "bfcl": suite_bfcl.tasks,
}


def select(suites: str, split: str, name: str | None, limit: int | None) -> tuple[list[Task], list[str]]:
    """The tasks to run, and a note for each suite that had to be skipped."""
    chosen = list(SUITES) if suites == "all" else [s.strip() for s in suites.split(",") if s.strip()]
    tasks: list[Task] = []
    skipped: list[str] = []
    for suite in chosen:
        if suite not in SUITES:
            raise SystemExit(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
        try:
            found = SUITES[suite]()
        except suite_bfcl.Unavailable as exc:
            skipped.append(f"suite {suite}: {exc}")
            continue
        names = [n.strip() for n in name.split(",")] if name else []
        found = [
            t for t in found if split in ("all", t.split) and (not names or any(n in t.name for n in names))
        ]
        tasks += found[:limit] if limit is not None else found
    return tasks, skipped
