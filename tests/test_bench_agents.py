"""The agent benchmark's oracle: every right script passes, every wrong one fails (a subset per suite).

The whole oracle runs in `make bench-agent`; here two tasks per suite keep the
harness and its checkers honest within `make test`'s time. The BFCL suite
runs when bfcl-eval is installed and is skipped otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.loopback import TextReply

from benchmarks.agents.__main__ import main
from benchmarks.agents.systems import parse_calls


@pytest.mark.parametrize("suite", ["stateful", "tokens", "data", "bfcl"])
def test_oracle_right_scripts_pass_and_wrong_ones_fail(
    suite: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if suite == "bfcl":
        pytest.importorskip("bfcl_eval")
    status = main(["--model", "oracle", "--suite", suite, "--limit", "2", "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "0 problem(s)" in out
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert {r["system"] for r in runs} == {"cavelite", "json-fc", "codeact"}
    assert all(r["passed"] == r["checkpoints"] > 0 for r in runs)
    lines = [json.loads(line) for line in (tmp_path / "transcripts.jsonl").read_text().splitlines()]
    wrong = [x for x in lines if x.get("variant") == "wrong" and x["kind"] == "checkpoint"]
    assert wrong and not any(x["ok"] for x in wrong)  # and the wrong scripts failed every checkpoint
    assert "| overall | cavelite |" in (tmp_path / "table.md").read_text()


def test_a_checker_that_cannot_fail_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.agents import runner

    monkeypatch.setattr(runner, "check", lambda *args: (True, ""))  # a checker that always says yes
    status = main(
        [
            "--model",
            "oracle",
            "--suite",
            "stateful",
            "--limit",
            "1",
            "--systems",
            "cavelite",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "PROBLEM cavelite stateful/basic_types: wrong script passed 4/4 checkpoints" in out


def test_json_calls_are_found_only_when_they_name_a_tool_or_carry_arguments() -> None:
    tools = {"home.lock"}
    assert parse_calls('{"name": "Ada", "price": 19.99}', tools) == []  # data in an answer
    assert parse_calls('Sure: {"name": "home.lock", "arguments": {"door": "front"}}', tools) == [
        ("home.lock", {"door": "front"})
    ]
    assert parse_calls(
        '[{"name": "home.lock", "arguments": "{\\"door\\": \\"back\\"}"}, {"name": "x", "args": {}}]', tools
    ) == [("home.lock", {"door": "back"}), ("x", {})]


def test_native_json_fc_calls_tools_through_the_openai_sdk(openai_api, tmp_path: Path) -> None:
    from benchmarks.agents.session import Settings, Transcript
    from benchmarks.agents.suite_stateful import _bank
    from benchmarks.agents.systems import NativeJsonFcSession
    from cavelite.models import OpenAIModel

    openai_api.push(
        TextReply(
            "",
            tool_calls=(
                {"name": "bank__deposit", "arguments": {"account": "checking", "amount": "10.50"}},
                {"name": "bank__withdraw", "arguments": {"account": "savings", "amount": "1e9"}},
            ),
        ),
        TextReply("Deposited 10.50; checking is now 1260.50."),
    )
    world = _bank()
    model = OpenAIModel("fake-model", base_url=openai_api.url, temperature=0)
    log = Transcript(tmp_path / "t.jsonl")
    session = NativeJsonFcSession(world, model, Settings(max_steps=4, native_fc=True), log)
    outcome = session.send("Deposit 10.50 into checking.")
    log.close()
    assert outcome.stop == "completed" and outcome.steps == 2
    assert outcome.answer == "Deposited 10.50; checking is now 1260.50."
    assert str(world.tools["bank"].balances["checking"]) == "1260.50"  # the real object changed
    assert str(world.tools["bank"].balances["savings"]) == "5400.00"  # the refused call changed nothing
    first, second = (r.body for r in openai_api.requests)
    assert {t["function"]["name"] for t in first["tools"]} >= {"bank__deposit", "bank__balance"}
    assert first["temperature"] == 0
    results = [m for m in second["messages"] if m["role"] == "tool"]
    assert results[0]["content"] == '"1260.50"'
    assert "insufficient funds" in results[1]["content"]  # the error went back to the model as JSON
