"""Running tasks: one fresh world per (system, task, repeat), turns in order, checks after turns.

`run_task` is the whole life of one run; `check` is how a checkpoint is
judged. A run that breaks (the harness, the runtime) is recorded as failed
with the reason, and the next run goes on.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.agents.compare import in_text, loosely_same, same
from benchmarks.agents.oracle import Oracle
from benchmarks.agents.session import Session, Settings, Transcript
from benchmarks.agents.systems import CaveliteSession, CodeActSession, JsonFcSession, NativeJsonFcSession
from benchmarks.agents.task import Answer, Check, State, Task, Value, World, resolve
from cavelite.events import Usage
from cavelite.models import ScriptedModel
from cavelite.models.base import Model

SYSTEMS = ("cavelite", "json-fc", "codeact")


@dataclass
class TaskRun:
    """What one system did on one task in one repeat."""

    system: str
    task: str
    suite: str
    split: str
    repeat: int
    checkpoints: int
    passed: int = 0
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def solved(self) -> bool:
        return not self.error and self.passed == self.checkpoints


def open_session(
    system: str,
    world: World,
    model: Model,
    settings: Settings,
    log: Transcript,
    agent_options: dict[str, Any],
) -> Session:
    if system == "cavelite":
        return CaveliteSession(world, model, settings, log, **agent_options)
    if system == "json-fc":
        native = settings.native_fc and not isinstance(model, ScriptedModel)
        return (NativeJsonFcSession if native else JsonFcSession)(world, model, settings, log)
    if system == "codeact":
        return CodeActSession(world, model, settings, log)
    raise ValueError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")


def run_task(
    system: str,
    task: Task,
    model: Model | Callable[[str, Task, World], Oracle],
    settings: Settings,
    log: Transcript,
    *,
    repeat: int = 0,
    variant: str = "",
    agent_options: dict[str, Any] | None = None,
) -> TaskRun:
    """Run ``task`` with ``system``; ``model`` is a `Model`, or an oracle factory."""
    run = TaskRun(system, task.name, task.suite, task.split, repeat, task.checkpoints)
    log.tag(
        system=system,
        task=task.name,
        suite=task.suite,
        split=task.split,
        repeat=repeat,
        **({"variant": variant} if variant else {}),
    )
    started = time.monotonic()
    world = task.build()
    oracle = None if isinstance(model, Model) else model(system, task, world)
    chosen = oracle.model if oracle is not None else model
    assert isinstance(chosen, Model)
    settings = dataclasses.replace(settings, instructions=task.instructions)
    try:
        session = open_session(system, world, chosen, settings, log, agent_options or {})
    except Exception as exc:
        run.error = f"could not start: {type(exc).__name__}: {exc}"
        log.write("harness_error", text=traceback.format_exc())
        return run
    try:
        for index, turn in enumerate(task.turns, 1):
            if oracle is not None:
                oracle.begin(turn)
            outcome = session.send(turn.user)
            run.steps += outcome.steps
            run.usage += outcome.usage
            log.write(
                "turn",
                turn=index,
                stop=outcome.stop,
                detail=outcome.detail,
                steps=outcome.steps,
                answer=outcome.answer,
                prompt_tokens=_prompt(outcome.usage),
                completion_tokens=outcome.usage.output_tokens,
            )
            if not turn.checks:
                continue
            verdicts = [check(c, session, world, outcome.answer) for c in turn.checks]
            failed = [why for ok, why in verdicts if not ok]
            if failed:
                run.failures.append(f"turn {index}: " + "; ".join(failed))
            else:
                run.passed += 1
            log.write("checkpoint", turn=index, ok=not failed, failures=failed)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        log.write("harness_error", text=traceback.format_exc())
    finally:
        session.close()
        run.wall_s = time.monotonic() - started
    log.write(
        "result",
        passed=run.passed,
        checkpoints=run.checkpoints,
        steps=run.steps,
        prompt_tokens=_prompt(run.usage),
        completion_tokens=run.usage.output_tokens,
        wall_s=round(run.wall_s, 3),
        error=run.error,
    )
    return run


def check(item: Check, session: Session, world: World, answer: str) -> tuple[bool, str]:
    """Judge one check; the reason is for the transcript when it fails."""
    try:
        if isinstance(item, State):
            return bool(item.holds(world)), f"state: {item.what}"
        expected = resolve(item.expected, world)
        if isinstance(item, Answer):
            return in_text(expected, answer), f"answer lacks {item.what}"
        assert isinstance(item, Value)
        if session.keeps_variables:
            try:
                actual = session.lookup(item.name)
            except Exception as exc:
                return False, f"`{item.name}` not kept ({type(exc).__name__})"
            ok = loosely_same(actual, expected) if item.loose else same(actual, expected)
            return ok, f"`{item.name}` is {actual!r:.120}"
        return in_text(expected, answer), f"answer does not state `{item.name}`"
    except Exception as exc:
        return False, f"check failed to run: {type(exc).__name__}: {exc}"


def _prompt(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
