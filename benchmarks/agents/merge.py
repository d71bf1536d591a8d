"""Print one table from saved runs: ``python -m benchmarks.agents.merge RUNS.json[:LABEL] ...``.

For a before/after comparison without re-running the baselines: the cavelite
rows of an earlier run (``before/runs.json:cavelite-before``) beside a later
run's rows. With ``:LABEL`` only that file's cavelite rows are taken, renamed
LABEL; without, every row. Only runs made with the same model and settings belong together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.agents import report
from benchmarks.agents.runner import TaskRun
from cavelite.events import Usage


def load(path: Path, label: str | None) -> list[TaskRun]:
    runs = []
    for row in json.loads(path.read_text()):
        if label and row["system"] != "cavelite":
            continue
        system = label or row["system"]
        runs.append(
            TaskRun(
                system,
                row["task"],
                row["suite"],
                row["split"],
                row["repeat"],
                row["checkpoints"],
                row["passed"],
                row["steps"],
                Usage(
                    input_tokens=row["prompt_tokens"] - row["cache_tokens"],
                    output_tokens=row["completion_tokens"],
                    cache_read_tokens=row["cache_tokens"],
                ),
                row["wall_s"],
                row["failures"],
                row["error"],
            )
        )
    return runs


def main(argv: list[str]) -> int:
    runs: list[TaskRun] = []
    for spec in argv:
        path, _, label = spec.partition(":")
        runs += load(Path(path), label or None)
    print(report.table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
