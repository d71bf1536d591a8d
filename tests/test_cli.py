"""The `cavelite` command: `main(argv)` in-process and the real console script in subprocesses.

Model traffic goes over real sockets to the loopback chat-completions server
(`tests/fakes`); cells run in real workers. Nothing waits on the clock.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fakes import fixtures as loopback
from rich.console import Console

from cavelite import CaveLite, StopReason
from cavelite._cli_chat import ChatSession
from cavelite._cli_demo import make_sales
from cavelite._cli_files import DataFileError, load, save, variable_name
from cavelite.cli import (
    EXIT_DATA,
    EXIT_INCOMPLETE,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_USAGE,
    main,
)
from cavelite.models import Message, ScriptedModel

PYTHON = sys.executable

# The loopback chat-completions server (a real HTTP server on 127.0.0.1), as fixtures here.
openai_server = loopback.openai_server
openai_api = loopback.openai_api


def py(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


@pytest.fixture
def sales_csv(tmp_path: Path) -> Path:
    path = tmp_path / "Sales 2024.csv"
    pd.DataFrame(
        {
            "date": ["2024-01-05", "2024-01-20", "2024-02-03", "2024-02-28"],
            "region": ["East", "West", "East", "West"],
            "units": [3, 1, 4, 2],
            "price": [10.0, 20.0, 10.0, 20.0],
        }
    ).to_csv(path, index=False)
    return path


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The console script's code path in a fresh process (``python -m cavelite.cli``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "CAVELITE_"))}
    env["COLUMNS"] = "120"
    return subprocess.run(
        [PYTHON, "-m", "cavelite.cli", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


# -- run --------------------------------------------------------------------------


def test_run_json_through_an_openai_compatible_server(openai_api, sales_csv, capsys):
    openai_api.reply(
        "Looking at the data.\n"
        + py(
            """
sales_2024["revenue"] = sales_2024["units"] * sales_2024["price"]
by_month = sales_2024.groupby(sales_2024["date"].dt.month)["revenue"].sum()
print(by_month.to_dict())
"""
        ),
        input_tokens=120,
        output_tokens=30,
    )
    openai_api.reply("January 50.0, February 80.0.", input_tokens=200, output_tokens=8, cache_read_tokens=50)

    code = main(["run", "Revenue per month?", "--json", "--base-url", openai_api.url,
                 "--model", "qwen-test", "--data", str(sales_csv)])

    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    record = json.loads(out)
    assert record["answer"] == "January 50.0, February 80.0."
    assert record["stop_reason"] == "completed" and record["completed"] is True
    assert record["steps"] == 2
    assert record["usage"] == {"input_tokens": 320, "output_tokens": 38, "cache_read_tokens": 50,
                               "cache_write_tokens": 0, "total_tokens": 408}
    assert record["wall_s"] > 0
    assert record["model"] == "qwen-test"
    [cell] = record["cells"]
    assert cell["ok"] and cell["error"] is None
    # the file's stem became the name, its dates became datetimes, and the cell really ran:
    observation = openai_api.requests[1].body["messages"][-1]["content"]
    assert "{1: 50.0, 2: 80.0}" in observation
    assert openai_api.requests[0].body["model"] == "qwen-test"
    assert "sales_2024" in openai_api.requests[0].body["messages"][-1]["content"]


def test_run_prints_the_answer_on_stdout_and_the_work_on_stderr(openai_api, capsys):
    openai_api.reply(py("x = 6 * 7\nx"))
    openai_api.reply("The answer is 42.")
    code = main(["run", "What is 6*7?", "--base-url", openai_api.url])
    out, err = capsys.readouterr()
    assert code == EXIT_OK
    assert out.strip() == "The answer is 42."
    assert "6 * 7" in err and "42" in err and "completed" in err


def test_run_without_an_answer_exits_1(openai_api, capsys):
    openai_api.reply(py("a = 1"))
    code = main(["run", "loop", "--json", "--max-steps", "1", "--base-url", openai_api.url])
    out, err = capsys.readouterr()
    assert code == EXIT_INCOMPLETE
    record = json.loads(out)
    assert record["stop_reason"] == "max_steps" and record["answer"] is None
    assert "no answer" in err


# -- errors and exit codes ---------------------------------------------------------


def test_no_model_configured_is_a_clear_error():
    done = cli("run", "hello")
    assert done.returncode == EXIT_MODEL
    assert "no model configured" in done.stderr and "ANTHROPIC_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_chat_without_a_model_is_the_same_error(capsys):
    assert main(["chat"]) == EXIT_MODEL
    assert "no model configured" in capsys.readouterr().err


def test_unreachable_server_is_a_model_error(capsys):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code = main(["run", "hello", "--base-url", url, "--retries", "0"])
    err = capsys.readouterr().err
    assert code == EXIT_MODEL
    assert "cannot reach" in err and url in err
    assert "Traceback" not in err


def test_server_errors_are_model_errors_with_the_status(openai_api, capsys):
    openai_api.error(401, "invalid api key")
    code = main(["run", "hello", "--json", "--base-url", openai_api.url, "--retries", "0"])
    out, err = capsys.readouterr()
    assert code == EXIT_MODEL
    assert json.loads(out)["stop_reason"] == "model_error"
    assert "401" in err and "invalid api key" in err


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.csv", None, "no such file"),
        ("broken.json", "{not json", "cannot read it as json"),
        ("notes.txt", "hello", "unsupported file type"),
    ],
)
def test_unreadable_data_file_exits_4(tmp_path, openai_api, capsys, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code = main(["run", "hi", "--data", str(path), "--base-url", openai_api.url])
    err = capsys.readouterr().err
    assert code == EXIT_DATA
    assert reason in err and "Traceback" not in err
    assert openai_api.requests == []  # nothing was sent to the model


def test_data_errors_come_before_model_errors(tmp_path):
    done = cli("run", "hi", "--data", str(tmp_path / "nope.csv"))
    assert done.returncode == EXIT_DATA
    assert "nope.csv: no such file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "q", "--bogus"], "unrecognized arguments: --bogus"),
        (["run"], "the following arguments are required: question"),
        (["chat", "--max-steps", "0"], "must be at least 1"),
        (["fly"], "invalid choice"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_usage_exits_2(capsys, args, message):
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "usage: cavelite" in err


def test_bad_option_through_the_console_script():
    done = cli("demo", "--rows", "many")
    assert done.returncode == EXIT_USAGE
    assert "argument --rows: invalid" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_exits_0(capsys):
    assert main(["--help"]) == EXIT_OK
    assert "exit codes" in capsys.readouterr().out


# -- demo ---------------------------------------------------------------------------


def test_demo_offline_computes_what_it_shows():
    done = cli("demo", "--rows", "5000", "--seed", "7")
    assert done.returncode == EXIT_OK, done.stderr
    out = done.stdout
    assert "SCRIPTED" in out and "REAL" in out
    sales = make_sales(5000, 7)
    revenue = sales["units"] * sales["price"] * (1 - sales["discount"])
    by_region = revenue.groupby(sales["region"]).sum().sort_values(ascending=False)
    monthly = revenue.groupby(sales["date"].dt.strftime("%Y-%m")).sum()
    assert f"{by_region.index[0]} earned the most: {round(by_region.iloc[0], 2):,.2f}" in out
    assert f"Best month: {monthly.idxmax()}" in out
    assert "monthly revenue (a pandas Series in the host)" in out
    assert out.count("completed ·") == 3
    assert "Traceback" not in done.stderr


# -- chat ---------------------------------------------------------------------------


def test_chat_with_slash_commands(openai_api, sales_csv, tmp_path, capsys, monkeypatch):
    openai_api.reply(
        py(
            """
totals = sales_2024.groupby("region")["units"].sum().to_frame()
totals
"""
        )
    )
    openai_api.reply("East sold 7 units, West 3.")
    target = tmp_path / "totals.csv"
    lines = [
        "/help",
        "Units per region? Keep them in `totals`.",
        "/vars",
        "/show totals",
        "/show nothing_here",
        f"/save totals {target}",
        f"/save totals {tmp_path / 'totals.json'}",
        f"/save totals {tmp_path / 'totals.xlsx'}",
        "/history",
        "/frobnicate",
        "/reset",
        "/vars",
        "/quit",
        "never read",
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    monkeypatch.setenv("COLUMNS", "160")

    code = main(["chat", "--base-url", openai_api.url, "--data", str(sales_csv)])

    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "East sold 7 units, West 3." in out
    assert "/save NAME PATH" in out  # /help
    assert "totals" in out and "sales_2024" in out and "DataFrame" in out  # /vars
    assert "no variable named 'nothing_here'" in out  # /show of a missing name
    assert "unknown format .xlsx" in out
    assert "unknown command /frobnicate" in out
    assert "reloaded sales_2024" in out
    saved = pd.read_csv(target, index_col="region")
    assert saved["units"].to_dict() == {"East": 7, "West": 3}
    assert json.loads((tmp_path / "totals.json").read_text()) == {"East": {"units": 7}, "West": {"units": 3}}
    assert len(openai_api.requests) == 2  # slash commands never reach the model
    # after /reset the cell-made variable is gone but the data file is back
    last_vars = out[out.rindex("variable(s)") - 20 :]
    assert "sales_2024" in last_vars and "totals" not in last_vars


def test_chat_ends_at_end_of_input(openai_api, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", "--base-url", openai_api.url]) == EXIT_OK


def test_ctrl_c_cancels_the_step_and_the_session_goes_on(capsys, monkeypatch):
    """A real SIGINT while the model is 'thinking' stops that step only."""

    def script(messages: tuple[Message, ...]) -> str:
        last = messages[-1].content
        if "first" in last:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C now
            return py("never_made = 1")
        if last.startswith("[cell"):
            return "z is 3."
        return py("z = 1 + 2")

    monkeypatch.setattr(sys, "stdin", io.StringIO("first question\nsecond question\n/vars\n"))
    console = Console(file=sys.stdout, width=120)
    with CaveLite(ScriptedModel(script)) as agent:
        session = ChatSession(agent, [], console)
        assert session.loop() == EXIT_OK
        names = {v.name for v in agent.variables()}
        history = agent.history
    out = capsys.readouterr().out
    assert "cancelled" in out
    assert "z is 3." in out
    assert "z" in names and "never_made" not in names
    assert history[-1].content == "z is 3."


# -- data files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "name"),
    [("Sales 2024.csv", "sales_2024"), ("2024-q1.json", "data_2024_q1"), ("class.csv", "class_"),
     ("__x__.csv", "x")],
)
def test_file_names_become_identifiers(file, name):
    assert variable_name(Path(file)) == name


def test_load_json_records_and_jsonl(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"t": "2024-03-01", "v": 1}, {"t": "2024-03-02", "v": 2}]))
    (tmp_path / "b.jsonl").write_text('{"v": 1}\n{"v": 2}\n')
    a = load(str(tmp_path / "a.json"))
    assert a.name == "a" and str(a.frame["t"].dtype).startswith("datetime64")
    assert load(str(tmp_path / "b.jsonl"), taken={"b"}).name == "b_2"


def test_save_formats(tmp_path):
    frame = pd.DataFrame({"x": [1, 2]})
    save(frame, str(tmp_path / "f.pkl"))
    assert pd.read_pickle(tmp_path / "f.pkl").equals(frame)
    save({"a": 1}, str(tmp_path / "d.json"))
    assert json.loads((tmp_path / "d.json").read_text()) == {"a": 1}
    with pytest.raises(DataFileError, match="not a table"):
        save(3, str(tmp_path / "n.csv"))


def test_parquet_round_trip_or_clear_error(tmp_path):
    frame = pd.DataFrame({"x": [1.5, 2.5]})
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(DataFileError, match="needs pyarrow"):
            save(frame, str(tmp_path / "f.parquet"))
        return
    save(frame, str(tmp_path / "f.parquet"))
    assert load(str(tmp_path / "f.parquet")).frame.equals(frame)


def test_agent_stop_reason_names_are_stable():
    # `run --json` publishes these strings; scripts compare against them.
    assert {r.value for r in StopReason} >= {"completed", "max_steps", "budget", "cancelled",
                                             "model_error", "runtime_error"}
