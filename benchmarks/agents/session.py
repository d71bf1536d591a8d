"""What every system under test offers the runner: send a turn, read back a value, close.

A `Session` is one system (cavelite, json-fc, codeact) working on one task's
`World` with one `Model`. The runner sends the task's user turns in order and
gets a `TurnOutcome` for each; `Settings` (step limit, output budget, cell
timeout) are the same for every system of a run, so no baseline is handicapped.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from benchmarks.agents.task import World
from cavelite.events import Usage


@dataclass(frozen=True)
class Settings:
    instructions: str = ""
    max_steps: int = 8
    max_output_chars: int = 4000
    cell_timeout: float = 30.0
    native_fc: bool = False  # json-fc through the endpoint's own tool calling


@dataclass(frozen=True)
class TurnOutcome:
    """One user turn as a system handled it. ``answer`` is "" when it never answered."""

    answer: str
    steps: int
    usage: Usage
    stop: str
    wall_s: float
    detail: str = ""


class NotKept(Exception):
    """This system keeps no variables the host can read: values must come in the answer."""


class Transcript:
    """JSONL lines, one per thing said or run, tagged with run, system, task and repeat."""

    def __init__(self, path: Path | None) -> None:
        self._file: TextIO | None = path.open("a", encoding="utf-8") if path else None
        self._tags: dict[str, Any] = {}
        self._lock = threading.Lock()

    def tag(self, **tags: Any) -> None:
        self._tags = tags

    def write(self, kind: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps({**self._tags, "kind": kind, **fields}, default=str, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Session(ABC):
    """One system on one world; subclasses say how a turn is worked."""

    system: str = ""
    keeps_variables: bool = False

    def __init__(self, world: World, settings: Settings, log: Transcript) -> None:
        self.world = world
        self.settings = settings
        self.log = log

    @abstractmethod
    def send(self, text: str) -> TurnOutcome:
        """Give the system one user message and let it work until it answers or stops."""

    def lookup(self, name: str) -> Any:
        """The value the system keeps under ``name`` (only systems the host can read)."""
        raise NotKept(name)

    def close(self) -> None:
        return None
