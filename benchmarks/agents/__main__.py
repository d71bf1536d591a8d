"""``python -m benchmarks.agents``: run the suites, print the table, write the transcripts.

    python -m benchmarks.agents --model oracle                      # offline, proves the checkers
    python -m benchmarks.agents --base-url http://127.0.0.1:8765/v1 --model qwen2.5-coder-0.5b
    python -m benchmarks.agents --model claude-sonnet-4-5           # with ANTHROPIC_API_KEY

Exit status: 0, or 1 when the oracle found a right script failing or a wrong one passing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.agents import report
from benchmarks.agents.oracle import Oracle
from benchmarks.agents.runner import SYSTEMS, TaskRun, run_task
from benchmarks.agents.session import Settings, Transcript
from benchmarks.agents.suites import SUITES, select
from cavelite.models.base import Model

RESULTS = Path(__file__).parent / "results"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.agents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", default="oracle", help="'oracle' (offline), a model id for --base-url, or claude-*"
    )
    p.add_argument(
        "--base-url", default=None, help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8765/v1"
    )
    p.add_argument("--api-key", default=None)
    p.add_argument("--suite", default="all", help=f"comma-separated: {', '.join(SUITES)} (default all)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated (default: all three)")
    p.add_argument("--split", choices=("dev", "test", "all"), default="all")
    p.add_argument(
        "--task", default=None, help="only tasks whose name contains one of these (comma-separated)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many tasks per suite")
    p.add_argument("--repeat", type=int, default=1, help="repeat each run; the table shows median and spread")
    p.add_argument("--seed", type=int, default=0, help="sent to the model (repeat r uses seed + r)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=768, help="per model reply")
    p.add_argument("--max-steps", type=int, default=8, help="model calls per user turn, every system")
    p.add_argument(
        "--agent-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CaveLite keyword option for the cavelite system (JSON value), e.g. compact_history=false",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="directory for table.md, runs.json, transcripts.jsonl"
    )
    p.add_argument("--fc", choices=("text", "native"), default="text",
                   help="json-fc through a JSON text protocol (any endpoint) or the endpoint's own "
                        "tool calling (OpenAI-compatible)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def make_model(args: argparse.Namespace, repeat: int) -> Model:
    options: dict[str, Any] = {"temperature": args.temperature}
    if args.base_url or not args.model.startswith("claude"):
        from cavelite.models import OpenAIModel

        # One JSON reply per call (not a stream): a dropped connection is then retried by the
        # adapter instead of ending the turn, which matters on a busy local server.
        return OpenAIModel(
            args.model,
            base_url=args.base_url,
            api_key=args.api_key,
            stream=False,
            max_retries=6,
            max_tokens=args.max_tokens,
            seed=args.seed + repeat,
            **options,
        )
    from cavelite.models import AnthropicModel

    return AnthropicModel(args.model, api_key=args.api_key, max_tokens=args.max_tokens, **options)


def agent_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        print(
            f"unknown system(s): {', '.join(sorted(unknown))}; choose from {', '.join(SYSTEMS)}",
            file=sys.stderr,
        )
        return 2
    tasks, skipped = select(args.suite, args.split, args.task, args.limit)
    for note in skipped:
        print(f"[skip] {note}", file=sys.stderr)
    oracle = args.model == "oracle"
    out = args.out or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.model.replace('/', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    log = Transcript(out / "transcripts.jsonl")
    settings = Settings(max_steps=args.max_steps, native_fc=args.fc == "native")
    options = agent_options(args.agent_option)
    runs: list[TaskRun] = []
    problems: list[str] = []
    try:
        for repeat in range(args.repeat):
            for task in tasks:
                for system in systems:
                    if oracle:
                        right = run_task(
                            system,
                            task,
                            _oracle(False),
                            settings,
                            log,
                            repeat=repeat,
                            variant="right",
                            agent_options=options,
                        )
                        wrong = run_task(
                            system,
                            task,
                            _oracle(True),
                            settings,
                            log,
                            repeat=repeat,
                            variant="wrong",
                            agent_options=options,
                        )
                        problems += oracle_problems(right, wrong)
                        runs.append(right)
                        continue
                    run = run_task(
                        system,
                        task,
                        make_model(args, repeat),
                        settings,
                        log,
                        repeat=repeat,
                        agent_options=options,
                    )
                    runs.append(run)
                    if not args.quiet:
                        print(
                            f"  {system:8} {task.suite}/{task.name}: {run.passed}/{run.checkpoints} "
                            f"checkpoints, {run.steps} steps, {run.wall_s:.0f}s {run.error}",
                            flush=True,
                        )
    finally:
        log.close()
    text = report.table(runs)
    header = (
        f"model {args.model}, suites {args.suite}, split {args.split}, systems {','.join(systems)}, "
        f"repeat {args.repeat}, max_steps {args.max_steps}, temperature {args.temperature}"
        + (f", agent options {options}" if options else "")
    )
    (out / "table.md").write_text(
        f"{header}\n\n{text}\n\n## Runs not fully passed\n\n{report.failures(runs)}\n"
    )
    (out / "runs.json").write_text(json.dumps([_run_json(r) for r in runs], indent=1))
    print(header)
    print(text)
    if oracle:
        print(f"\noracle: {len(runs)} right scripts, {len(runs)} wrong scripts, {len(problems)} problem(s)")
        for problem in problems:
            print(f"  PROBLEM {problem}")
    print(f"\ntranscripts and table: {os.path.relpath(out)}")
    return 1 if problems else 0


def _oracle(wrong: bool) -> Any:
    return lambda system, task, world: Oracle(system, task, world, wrong=wrong)


def oracle_problems(right: TaskRun, wrong: TaskRun) -> list[str]:
    """A right script must pass every checkpoint; a wrong one must fail every checkpoint."""
    where = f"{right.system} {right.suite}/{right.task}"
    problems = []
    if right.error or right.passed != right.checkpoints:
        problems.append(
            f"{where}: right script passed {right.passed}/{right.checkpoints}: "
            f"{right.error or '; '.join(right.failures)}"
        )
    if wrong.error or wrong.passed:
        problems.append(
            f"{where}: wrong script passed {wrong.passed}/{wrong.checkpoints} checkpoints"
            + (f" ({wrong.error})" if wrong.error else "")
        )
    return problems


def _run_json(run: TaskRun) -> dict[str, Any]:
    return {
        "system": run.system,
        "suite": run.suite,
        "task": run.task,
        "split": run.split,
        "repeat": run.repeat,
        "checkpoints": run.checkpoints,
        "passed": run.passed,
        "steps": run.steps,
        "prompt_tokens": run.usage.input_tokens + run.usage.cache_read_tokens + run.usage.cache_write_tokens,
        "completion_tokens": run.usage.output_tokens,
        "cache_tokens": run.usage.cache_read_tokens,
        "wall_s": round(run.wall_s, 2),
        "failures": run.failures,
        "error": run.error,
    }


if __name__ == "__main__":
    sys.exit(main())
