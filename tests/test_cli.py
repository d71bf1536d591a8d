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
        f"/save totals {tmp_path / 'totals.txt'}",
        f'/save totals "{tmp_path / "with space.csv"}"',
        f"/save totals {target}",
        "n",
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
    assert "unknown format .txt" in out
    assert "exists; overwrite it?" in out and "not saved" in out
    assert pd.read_csv(tmp_path / "with space.csv", index_col="region")["units"].sum() == 10
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
        with pytest.raises(DataFileError, match="Parquet files need pyarrow"):
            save(frame, str(tmp_path / "f.parquet"))
        return
    save(frame, str(tmp_path / "f.parquet"))
    assert load(str(tmp_path / "f.parquet")).frame.equals(frame)


def test_agent_stop_reason_names_are_stable():
    # `run --json` publishes these strings; scripts compare against them.
    assert {r.value for r in StopReason} >= {"completed", "max_steps", "budget", "cancelled",
                                             "model_error", "runtime_error"}


# -- run for scripts: the JSON record, --save, budgets ---------------------------------------------


def test_run_json_holds_each_cells_output_value_changes_and_structured_error(openai_api, tmp_path, capsys):
    openai_api.reply(py("share = {'East': 0.6, 'West': 0.4}\nprint('two regions')\nshare['East']"))
    openai_api.reply(py("x = 1\nbad = share['North']"))
    openai_api.reply("East has 60%.")
    out_file = tmp_path / "share.json"
    code = main(["run", "Shares?", "--json", "--base-url", openai_api.url, "--save", "share", str(out_file),
                 "--max-steps", "5", "--max-wall-s", "120"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    record = json.loads(out)
    first, second = record["cells"]
    assert first["stdout"] == "two regions\n" and first["value"] == "0.6" and first["ok"]
    assert first["changed"] == [{"name": "share", "type": "dict", "summary": first["changed"][0]["summary"]}]
    assert "East" in first["changed"][0]["summary"]
    assert second["ok"] is False and second["rolled_back"] is True
    assert {k: second["error"][k] for k in ("kind", "type", "message", "line")} == {
        "kind": "exception", "type": "KeyError", "message": "'North'", "line": 2}
    assert "bad = share['North']" in second["error"]["text"]
    assert record["stop_reason"] == "completed" and record["usage"]["total_tokens"] == 45
    assert record["saved"] == [{"name": "share", "path": str(out_file), "ok": True, "error": None}]
    assert json.loads(out_file.read_text()) == {"East": 0.6, "West": 0.4}
    assert record["signal"] is None and record["model_error"] is None


def test_run_save_of_a_missing_variable_exits_4_and_says_so(openai_api, tmp_path, capsys):
    openai_api.reply("Nothing to compute.")
    code = main(["run", "hi", "--json", "--base-url", openai_api.url,
                 "--save", "nope", str(tmp_path / "n.csv")])
    out, err = capsys.readouterr()
    assert code == EXIT_DATA
    assert json.loads(out)["saved"][0] == {"name": "nope", "path": str(tmp_path / "n.csv"), "ok": False,
                                           "error": "no variable named 'nope'"}
    assert "cannot save nope: no variable named 'nope'" in err
    assert not (tmp_path / "n.csv").exists()


def test_run_max_wall_s_is_a_budget_stop(openai_api, capsys):
    code = main(["run", "hi", "--json", "--base-url", openai_api.url, "--max-wall-s", "0.000001"])
    record = json.loads(capsys.readouterr().out)
    assert code == EXIT_INCOMPLETE and record["stop_reason"] == "budget"
    assert "wall-time budget" in record["detail"] and openai_api.requests == []


def test_version(capsys):
    from cavelite import __version__

    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"cavelite {__version__}"


# -- the model, checked early; hints that name the real cause ---------------------------------------


def test_a_wrong_model_name_fails_at_start_with_the_servers_list(openai_api, capsys):
    openai_api.models = ["qwen2.5-coder-0.5b", "llama-3.2-1b"]
    code = main(["run", "hi", "--base-url", openai_api.url, "--model", "qwen-7b"])
    err = capsys.readouterr().err
    assert code == EXIT_MODEL
    assert "does not serve a model named 'qwen-7b'" in err and "qwen2.5-coder-0.5b, llama-3.2-1b" in err
    assert "choose one with --model" in err
    assert openai_api.requests == []  # no question was sent


def test_without_model_the_servers_only_model_is_used(openai_api, capsys):
    openai_api.models = ["qwen2.5-coder-0.5b"]
    openai_api.reply("hello")
    assert main(["run", "hi", "--json", "--base-url", openai_api.url]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["model"] == "qwen2.5-coder-0.5b"
    assert openai_api.requests[0].body["model"] == "qwen2.5-coder-0.5b"


def test_several_served_models_and_none_named_asks_to_choose(openai_api, capsys):
    openai_api.models = ["a", "b"]
    assert main(["run", "hi", "--base-url", openai_api.url]) == EXIT_MODEL
    assert "serves 2 models (a, b); choose one with --model" in capsys.readouterr().err


def test_an_empty_stream_is_not_blamed_on_the_url(openai_api, capsys):
    openai_api.reply("")
    openai_api.reply("")
    code = main(["run", "hi", "--json", "--base-url", openai_api.url])
    out, err = capsys.readouterr()
    assert code == EXIT_MODEL
    assert json.loads(out)["model_error"]["kind"] == "empty_reply"
    assert "answered, but with no text" in err and "chat template" in err
    assert "--base-url" not in err


def test_no_stream_sends_plain_requests(openai_api, capsys):
    openai_api.reply("plain")
    assert main(["run", "hi", "--base-url", openai_api.url, "--no-stream"]) == EXIT_OK
    assert "stream" not in openai_api.requests[0].body
    assert capsys.readouterr().out.strip() == "plain"


def test_retries_are_a_line_on_stderr(openai_api, capsys):
    openai_api.error(503, "model loading", retry_after="0")
    openai_api.reply("ready")
    assert main(["run", "hi", "--base-url", openai_api.url]) == EXIT_OK
    err = capsys.readouterr().err
    assert "retrying the model call in 0.0 s (1 of 4)" in err and "model loading" in err


def test_a_slow_model_call_is_cut_by_call_timeout(openai_api, capsys):
    openai_api.stall("tok tok")
    try:
        code = main(["run", "hi", "--json", "--base-url", openai_api.url, "--call-timeout", "0.3"])
    finally:
        openai_api.release.set()
    out, err = capsys.readouterr()
    assert code == EXIT_MODEL
    record = json.loads(out)
    assert record["model_error"]["kind"] == "timeout" and record["last_text"] == ""
    assert "--call-timeout" in err


# -- data files: names, encodings, broken rows, every kind of "cannot read" -----------------------


def test_data_name_equals_path_chooses_the_variable(openai_api, sales_csv, capsys):
    openai_api.reply("ok")
    assert main(["run", "hi", "--base-url", openai_api.url, "--data", f"orders={sales_csv}"]) == EXIT_OK
    state = openai_api.requests[0].body["messages"][-1]["content"]
    assert "- orders (pandas.DataFrame)" in state and "sales_2024" not in state


@pytest.mark.parametrize(
    ("spec", "reason"),
    [("my-sales=x.csv", "'my-sales' is not a valid Python variable name"),
     ("class=x.csv", "'class' is not a valid Python variable name")],
)
def test_a_bad_data_name_is_refused(spec, reason):
    with pytest.raises(DataFileError, match=reason):
        load(spec)


def test_a_path_with_an_equals_sign_stays_a_path(tmp_path):
    path = tmp_path / "a=b.csv"
    path.write_text("v\n1\n")
    assert load(str(path)).name == "a_b"


@pytest.mark.parametrize("name", ["missing.csv", "missing.xlsx", "missing.parquet", "missing.txt", "missing"])
def test_a_missing_file_of_any_extension_is_no_such_file(tmp_path, name):
    with pytest.raises(DataFileError, match=f"{name}: no such file"):
        load(str(tmp_path / name))


def test_a_directory_is_named_a_directory(tmp_path):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DataFileError, match="data.csv: is a directory"):
        load(str(tmp_path / "data.csv"))


def test_encoding_is_honoured_and_a_wrong_one_says_what_to_pass(tmp_path):
    path = tmp_path / "cafes.csv"
    path.write_bytes("name,city\nCafé Müller,Zürich\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="is not UTF-8 text .*pass its encoding, e.g. --encoding latin-1"):
        load(str(path))
    frame = load(str(path), encoding="latin-1").frame
    assert frame.loc[0, "name"] == "Café Müller" and frame.loc[0, "city"] == "Zürich"
    with pytest.raises(DataFileError, match="unknown --encoding 'klingon'"):
        load(str(path), encoding="klingon")


def test_broken_csv_rows_are_named_and_can_be_skipped(openai_api, tmp_path, capsys):
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n1,10\n2,20,oops\n3,30\n4,40,x,y\n5,50\n")
    with pytest.raises(DataFileError) as info:
        load(str(path))
    message = str(info.value)
    assert "2 row(s) have (line 3 (3 fields), line 5 (4 fields)) more fields than the header's 2" in message
    assert "--on-bad-lines skip" in message
    openai_api.reply("ok")
    code = main(["run", "hi", "--base-url", openai_api.url, "--data", str(path), "--on-bad-lines", "skip"])
    assert code == EXIT_OK, capsys.readouterr().err
    loaded = load(str(path), on_bad_lines="skip")
    assert loaded.frame["id"].tolist() == [1, 3, 5]
    assert "skipped 2 malformed row(s): line 3 (3 fields), line 5 (4 fields)" in loaded.description
    assert "skipped 2 malformed row(s)" in openai_api.requests[0].body["messages"][-1]["content"]


def test_broken_rows_through_the_command_exit_4(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n1,10\n2,20,oops\n")
    done = cli("run", "hi", "--data", str(path), "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == EXIT_DATA and "line 3 (3 fields)" in done.stderr
    assert "Traceback" not in done.stderr


def test_excel_loads_its_first_sheet_and_saves(tmp_path):
    pytest.importorskip("openpyxl")
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        first = pd.DataFrame({"region": ["East", "West"], "units": [3, 4]})
        first.to_excel(writer, sheet_name="Q1", index=False)
        pd.DataFrame({"other": [1]}).to_excel(writer, sheet_name="Q2", index=False)
    loaded = load(str(path))
    assert loaded.frame.to_dict("list") == {"region": ["East", "West"], "units": [3, 4]}
    assert "the first of 2 sheets ('Q1')" in loaded.description
    save(loaded.frame, str(tmp_path / "out.xlsx"))
    assert pd.read_excel(tmp_path / "out.xlsx").equals(loaded.frame)


# -- chat commands: /history N, /transcript, /show, /save ------------------------------------------


def chat_session(model, lines: list[str], monkeypatch, width: int = 120):
    """A ChatSession reading ``lines`` (as piped input), printing to a string."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    return ChatSession(CaveLite(model), [], console), out


def test_history_n_shows_a_whole_message(monkeypatch):
    long_code = "\n".join(f"v{i} = {i}" for i in range(40))
    model = ScriptedModel([py(long_code), "Forty variables."])
    session, out = chat_session(model, ["make forty", "/history", "/history 2", "/history 9", "/quit"],
                                monkeypatch)
    with session.agent:
        assert session.loop() == EXIT_OK
    text = out.getvalue()
    assert "(python, 40 lines)" in text  # the list shows one line per message
    assert "message 2 · assistant" in text and "v0 = 0" in text and "v39 = 39" in text  # all of it
    assert "usage: /history N, with N from 1 to 4" in text


def test_transcript_saves_both_streams_as_jsonl_and_markdown(monkeypatch, tmp_path):
    model = ScriptedModel([py("total = 2 + 3\nprint('total', total)\ntotal"), "The total is 5."])
    base = tmp_path / "my chat"
    session, out = chat_session(model, ["add them", f'/transcript "{base}"', "/quit"], monkeypatch)
    with session.agent:
        session.loop()
    assert f"saved the transcript to {base}.jsonl and {base}.md" in out.getvalue()
    records = [json.loads(line) for line in (tmp_path / "my chat.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["question", "model", "cell", "model", "stop"]
    cell = records[2]
    assert cell["code"].startswith("total = 2 + 3") and cell["stdout"] == "total 5\n"
    assert cell["value"] == "5" and cell["changed"][0]["name"] == "total"
    assert "[cell ran" in cell["observation"]  # what the model read back, too
    assert records[-1]["reason"] == "completed"
    markdown = (tmp_path / "my chat.md").read_text()
    assert "## You\n\nadd them" in markdown and "The total is 5." in markdown
    assert "```python\ntotal = 2 + 3" in markdown and "Output:" in markdown


def test_show_names_a_series_a_series_and_prints_numbers_as_the_cell_did(monkeypatch):
    code = ("import pandas as pd\nrevenue = pd.Series([1234567.891, 2.5, None], index=['East', 'West', "
            "'North'], name='revenue')\nrevenue")
    model = ScriptedModel([py(code), "done"])
    session, out = chat_session(model, ["make it", "/show revenue", "/quit"], monkeypatch)
    with session.agent:
        session.loop()
        value_repr = session.agent.runtime.execute("revenue").value_repr
    text = out.getvalue()
    shown = text[text.index("/show revenue") if "/show revenue" in text else text.rindex("revenue: Series"):]
    assert "revenue: Series · 3 items · dtype float64" in shown and "DataFrame" not in shown
    for number in ("1234567.891", "2.500", "NaN"):  # pandas' own column format, as in the cell
        assert number in value_repr and number in shown


def test_save_asks_before_overwriting_and_takes_quoted_paths(monkeypatch, tmp_path):
    target = tmp_path / "a folder" / "out put.json"
    target.parent.mkdir()
    target.write_text("precious")
    model = ScriptedModel([py("result = {'a': 1}"), "saved"])
    lines = ["go", f'/save result "{target}"', "n", f"/save result '{target}'", "y", "/save result 'x",
             f"/save result {tmp_path}", "/quit"]
    session, out = chat_session(model, lines, monkeypatch)
    with session.agent:
        session.loop()
    text = out.getvalue()
    assert text.count("exists; overwrite it?") == 2 and "not saved" in text
    assert json.loads(target.read_text()) == {"a": 1}
    assert "cannot read that command: No closing quotation" in text
    assert "is a directory; give a file name" in text


def test_a_reply_cut_by_ctrl_c_stays_in_the_transcript():
    import asyncio
    import threading

    from cavelite._cli_render import drive
    from cavelite._cli_transcript import Transcript
    from cavelite.models import Model

    streamed = threading.Event()

    class Slow(Model):
        name = "slow"

        async def astream(self, system, messages):
            yield "I was saying that"
            await asyncio.Event().wait()  # never finishes by itself

    transcript = Transcript()

    def on_event(event):
        transcript.on_event(event)
        if getattr(event, "text", None) == "I was saying that":
            streamed.set()

    with CaveLite(Slow()) as agent:
        canceller = threading.Thread(target=lambda: streamed.wait(30) and agent.cancel())
        canceller.start()
        driven = drive(agent, "talk", None, on_event=on_event)
        canceller.join()
    assert driven.reply.stop_reason is StopReason.CANCELLED
    cut = [r for r in transcript.records if r["type"] == "cut_reply"]
    assert cut and cut[0]["text"] == "I was saying that"
    assert "I was saying that\n\n*(the reply was cut here)*" in transcript.markdown()
