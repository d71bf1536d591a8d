"""The table: per suite and overall, each system's outcomes and costs, and ratios between systems.

Each figure is summed over the suite's tasks within one repeat, then the
median over repeats is shown (with the min-max spread when there are
several). Ratios divide a system's median by a baseline's, from the same run.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmarks.agents.runner import TaskRun

BASELINES = ("json-fc", "codeact")
OVERALL = "overall"


@dataclass(frozen=True)
class Totals:
    """One system on one suite, one repeat, summed over tasks."""

    tasks: int
    solved: int
    checkpoints: int
    passed: int
    steps: int
    prompt: int
    completion: int
    cache: int
    wall_s: float


def totals(runs: Iterable[TaskRun]) -> Totals:
    runs = list(runs)
    return Totals(
        tasks=len(runs),
        solved=sum(r.solved for r in runs),
        checkpoints=sum(r.checkpoints for r in runs),
        passed=sum(r.passed for r in runs),
        steps=sum(r.steps for r in runs),
        prompt=sum(
            r.usage.input_tokens + r.usage.cache_read_tokens + r.usage.cache_write_tokens for r in runs
        ),
        completion=sum(r.usage.output_tokens for r in runs),
        cache=sum(r.usage.cache_read_tokens for r in runs),
        wall_s=sum(r.wall_s for r in runs),
    )


def grouped(runs: Sequence[TaskRun]) -> dict[tuple[str, str], list[Totals]]:
    """(suite, system) -> one `Totals` per repeat; suite "overall" sums every suite."""
    by_key: dict[tuple[str, str, int], list[TaskRun]] = defaultdict(list)
    for run in runs:
        by_key[(run.suite, run.system, run.repeat)].append(run)
        by_key[(OVERALL, run.system, run.repeat)].append(run)
    out: dict[tuple[str, str], list[Totals]] = defaultdict(list)
    for (suite, system, _), items in sorted(by_key.items()):
        out[(suite, system)].append(totals(items))
    return out


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _cell(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    text = fmt.format(_median(values))
    if len(values) > 1 and min(values) != max(values):
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def table(runs: Sequence[TaskRun]) -> str:
    """The markdown table: outcomes and costs, then ratios against each baseline."""
    groups = grouped(runs)
    suites = sorted({s for s, _ in groups} - {OVERALL}) + [OVERALL]
    named = {k[1] for k in groups}
    systems = [s for s in ("cavelite", "json-fc", "codeact") if s in named]
    systems = sorted(named - set(systems)) + systems  # relabelled cavelite rows (e.g. cavelite-before) first
    lines = [
        "| suite | system | tasks solved | checkpoints passed | steps | prompt tokens | completion tokens "
        "| cache tokens | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for suite in suites:
        for system in systems:
            reps = groups.get((suite, system))
            if not reps:
                continue
            lines.append(
                f"| {suite} | {system} | {_cell([t.solved for t in reps])}/{reps[0].tasks} "
                f"| {_cell([t.passed for t in reps])}/{reps[0].checkpoints} "
                f"| {_cell([t.steps for t in reps])} | {_cell([t.prompt for t in reps])} "
                f"| {_cell([t.completion for t in reps])} | {_cell([t.cache for t in reps])} "
                f"| {_cell([t.wall_s for t in reps], '{:.1f}')} |"
            )
    ratios = _ratio_lines(groups, suites, systems)
    if ratios:
        lines += [
            "",
            "| suite | system | against | checkpoints passed | steps | prompt tokens "
            "| completion tokens | wall |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += ratios
    return "\n".join(lines)


def _ratio_lines(
    groups: dict[tuple[str, str], list[Totals]], suites: list[str], systems: list[str]
) -> list[str]:
    lines = []
    for suite in suites:
        for system in systems:
            for baseline in BASELINES:
                mine, theirs = groups.get((suite, system)), groups.get((suite, baseline))
                if baseline == system or not mine or not theirs:
                    continue
                if system in BASELINES and BASELINES.index(baseline) < BASELINES.index(system):
                    continue  # json-fc vs codeact once, not twice
                passed = (
                    f"{_median([t.passed for t in mine]):.0f} vs {_median([t.passed for t in theirs]):.0f}"
                )
                lines.append(
                    f"| {suite} | {system} | {baseline} | {passed} "
                    f"| {_ratio(mine, theirs, 'steps')} | {_ratio(mine, theirs, 'prompt')} "
                    f"| {_ratio(mine, theirs, 'completion')} | {_ratio(mine, theirs, 'wall_s')} |"
                )
    return lines


def _ratio(mine: list[Totals], theirs: list[Totals], attribute: str) -> str:
    a = _median([getattr(t, attribute) for t in mine])
    b = _median([getattr(t, attribute) for t in theirs])
    if b == 0:
        return "n/a"
    return f"x{a / b:.2f}"


def failures(runs: Sequence[TaskRun]) -> str:
    """One line per run that did not pass every checkpoint: what failed."""
    lines = []
    for run in runs:
        if run.solved:
            continue
        why = run.error or "; ".join(run.failures)
        lines.append(f"- {run.system} {run.suite}/{run.task} (repeat {run.repeat}): {why[:300]}")
    return "\n".join(lines)
