"""Suite 4, BFCL multi-turn base, through the ``bfcl-eval`` package (optional: ``pip install bfcl-eval``).

Each BFCL entry becomes a task: its API classes (file system, Twitter, tickets,
...) are created and loaded with the entry's initial config exactly as BFCL
does, and offered to every system as host objects (their methods minus the
entry's excluded functions); the user turns are sent in order. After every
turn that has a ground truth, BFCL's own checkers judge it: ``state_checker``
(our instances against the ground truth's, attribute by attribute) and
``response_checker`` (the ground truth's call results must all appear among
the results of the calls the system made so far). The ground truth comes
from running BFCL's answers with BFCL's executor.

When ``bfcl-eval`` is not installed, `tasks` raises `Unavailable` and the
runner skips the suite with a note.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import itertools
import json
from collections.abc import Callable
from typing import Any

from benchmarks.agents.task import State, Task, Turn, World, split_of

SUITE = "bfcl"
DEFAULT_TASKS = 9  # the first entries (6 dev, 3 test); --limit picks fewer
_TOOL_NAMES = {
    "GorillaFileSystem": "files",
    "TwitterAPI": "twitter",
    "MathAPI": "math_api",
    "MessageAPI": "messages",
    "TicketAPI": "tickets",
    "TradingBot": "trading",
    "TravelAPI": "travel",
    "VehicleControlAPI": "vehicle",
}
_runs = itertools.count()


class Unavailable(Exception):
    """bfcl-eval is not installed."""


def _bfcl() -> Any:
    try:
        from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker, multi_turn_utils
    except ImportError as exc:
        raise Unavailable("bfcl-eval is not installed (pip install --no-deps bfcl-eval mpmath)") from exc
    return multi_turn_checker, multi_turn_utils


class _Facade:
    """The methods of one BFCL instance, each recording its result as BFCL's executor would."""

    def __init__(self, instance: Any, excluded: set[str], log: list[str]) -> None:
        for name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
            if not name.startswith("_") and name not in excluded:
                setattr(self, name, _recorded(method, log))


def _recorded(method: Callable[..., Any], log: list[str]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            log.append(f"Error during execution: {exc}")
            raise
        log.append(_as_text(result))
        return result

    return call


def _as_text(result: Any) -> str:
    """A call result as BFCL's executor records it."""
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


def _instances(entry: dict[str, Any]) -> dict[str, Any]:
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING, STATELESS_CLASSES

    made = {}
    for class_name in entry["involved_classes"]:
        cls = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)
        instance = cls()
        if class_name not in STATELESS_CLASSES:
            instance._load_scenario(
                copy.deepcopy(entry["initial_config"].get(class_name, {})), long_context=False
            )
        made[class_name] = instance
    return made


def _world(entry: dict[str, Any]) -> World:
    instances = _instances(entry)
    log: list[str] = []
    excluded = set(entry.get("excluded_function", []))
    tools = {_TOOL_NAMES.get(c, c.lower()): _Facade(i, excluded, log) for c, i in instances.items()}
    return World(tools=tools, extra={"instances": instances, "log": log})


def _ground_truth(entry: dict[str, Any], answers: list[list[str]]) -> list[tuple[dict[str, Any], list[str]]]:
    """After each turn: deep copies of BFCL's ground-truth instances, and that turn's call results."""
    _, utils = _bfcl()
    name = f"cavelite_bench_{next(_runs)}"
    after = []
    for calls in answers:
        results, instances = utils.execute_multi_turn_func_call(
            calls, entry["initial_config"], entry["involved_classes"], name, entry["id"], is_evaL_run=True
        )
        after.append((copy.deepcopy(instances), results))
    return after


def _checkpoint(truth: Callable[[], list[tuple[dict[str, Any], list[str]]]], index: int) -> State:
    def holds(world: World) -> bool:
        checker, _ = _bfcl()
        instances, results = truth()[index]
        state = checker.state_checker(world.extra["instances"], instances)
        response = checker.response_checker(list(world.extra["log"]), results, index)
        return bool(state["valid"] and response["valid"])

    return State(f"BFCL state and response checks after turn {index + 1}", holds)


def _task(i: int, entry: dict[str, Any], answers: list[list[str]]) -> Task:
    _, utils = _bfcl()
    truth = functools.cache(lambda: _ground_truth(entry, answers))
    world = _world(entry)
    mapping = {m: t for t, facade in world.tools.items() for m in vars(facade)}
    turns = []
    for index, (question, calls) in enumerate(zip(entry["question"], answers, strict=True)):
        text = "\n".join(m["content"] for m in question if m.get("role") == "user")
        code = "\n".join(utils._process_method_calls(c, mapping) for c in calls)
        checks = (_checkpoint(truth, index),) if calls else ()
        turns.append(Turn(text, code, checks=checks))
    return Task(
        entry["id"],
        SUITE,
        split_of(i),
        lambda: _world(entry),
        tuple(turns),
        "You operate the user's tools. Do exactly what each request asks, using the tools.",
    )


def tasks(limit: int = DEFAULT_TASKS) -> list[Task]:
    _bfcl()
    from importlib.resources import files

    data = files("bfcl_eval") / "data"
    entries = [
        json.loads(line) for line in (data / "BFCL_v4_multi_turn_base.json").read_text().splitlines()[:limit]
    ]
    answers = {
        row["id"]: row["ground_truth"]
        for row in map(
            json.loads, (data / "possible_answer" / "BFCL_v4_multi_turn_base.json").read_text().splitlines()
        )
    }
    return [_task(i, entry, answers[entry["id"]]) for i, entry in enumerate(entries)]
