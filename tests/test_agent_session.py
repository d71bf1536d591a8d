"""The agent as a library user lives with it: retries seen, calls bounded, chats resumed, logs.

Model traffic goes through the real `openai` SDK to the loopback server in
`tests/fakes`; cells run in real workers; the resumed chat runs in a real
second process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap

import pytest

from cavelite import CaveLite, CaveUsageError, ModelRetrying, Runtime, StopReason, TextDelta
from cavelite.models import Message, OpenAIModel, ScriptedModel

FAST = {"max_backoff_s": 0.001, "initial_backoff_s": 0.001}


def py(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def model_for(server, **options) -> OpenAIModel:
    return OpenAIModel("qwen-test", base_url=server.url, api_key="k", **FAST, **options)


async def events_of(agent: CaveLite, message: str) -> list:
    try:
        return [event async for event in agent.stream(message)]
    finally:
        await agent.model.aclose()


# -- retries and time limits ---------------------------------------------------------------------


def test_a_retried_call_is_an_event_and_the_chat_goes_on(openai_api):
    openai_api.reply(py("kept = 41 + 1"))
    openai_api.error(503, "model is loading", retry_after="0")
    openai_api.reply("kept is 42.")
    with CaveLite(model_for(openai_api)) as agent:
        events = asyncio.run(events_of(agent, "make 42"))
        assert agent.retrieve("kept") == 42
    [retry] = [e for e in events if isinstance(e, ModelRetrying)]
    assert (retry.step, retry.attempt, retry.max_retries, retry.status) == (2, 1, 4, 503)
    assert "model is loading" in retry.reason and retry.delay_s == 0.0
    assert events[-1].reply.completed and events[-1].reply.text == "kept is 42."


def test_a_call_that_outlasts_call_timeout_is_abandoned_and_nothing_is_lost(openai_api):
    openai_api.stall("I am thinking very slo")  # streams a little, then never finishes
    try:
        with CaveLite(model_for(openai_api), call_timeout=0.3) as agent:
            agent.inject("rows", [1, 2, 3])
            events = asyncio.run(events_of(agent, "go"))
            reply = events[-1].reply
            assert reply.stop_reason is StopReason.MODEL_ERROR
            assert reply.error is not None and reply.error.kind == "timeout"
            assert "call_timeout" in reply.detail
            # the runtime and the history are intact; the abandoned call still counts its time
            assert agent.retrieve("rows") == [1, 2, 3]
            assert [m.role for m in agent.history] == ["user"]
            assert [s.step for s in reply.step_stats] == [1] and reply.step_stats[0].model_s > 0
            shown = "".join(e.text for e in events if isinstance(e, TextDelta))
            assert "I am thinking very slo".startswith(shown)  # whatever had streamed, no more
            openai_api.release.set()
            agent.call_timeout = None  # the next call may take as long as this machine needs
            agent.check_completion = False  # an answer without code is not sent back here
            openai_api.reply("It was 3 rows.")
            assert agent.chat("and now?").completed
    finally:
        openai_api.release.set()


def test_every_chat_is_bounded_by_default():
    with CaveLite(ScriptedModel(["ok"])) as agent:
        assert agent.max_wall_s == 900.0 and agent.call_timeout == 180.0
    with pytest.raises(CaveUsageError, match="call_timeout must be 0 or more"):
        CaveLite(ScriptedModel([]), call_timeout=-1)


# -- a shared runtime's settings -----------------------------------------------------------------


def test_an_agent_on_a_shared_runtime_keeps_its_limits_unless_told():
    with Runtime(cell_timeout=0.5, max_output_chars=300) as rt:
        model = ScriptedModel([py("n = 0\nwhile True:\n    n += 1"), "stuck",
                               py("for i in range(200):\n    print('row', i)"), "printed"])
        agent = CaveLite(model, runtime=rt, check_completion=False)  # "stuck" is taken as it is
        assert (agent.cell_timeout, agent.max_output_chars) == (0.5, 300)
        assert agent.chat("spin").cells[0].result.error.kind == "timeout"  # the runtime's 0.5 s
        reply = agent.chat("print")
        seen = model.calls[3].messages[-1].content
        index = reply.cells[0].result.output_index
        assert reply.cells[0].result.stdout_truncated and index is not None
        assert f"the full output is in cell_outputs[{index}]" in seen
        assert len(seen) < 1200  # cut to the runtime's 300 characters, plus notes
        assert "row 199" in rt.retrieve("cell_outputs")[index]  # and the rest is really there
        told = CaveLite(ScriptedModel([]), runtime=rt, cell_timeout=5, max_output_chars=1000)
        assert (told.cell_timeout, told.max_output_chars) == (5, 1000)


# -- a chat saved and resumed in another process -------------------------------------------------

RESUME = textwrap.dedent(
    """
    import json, sys
    from cavelite import CaveLite, Runtime
    from cavelite.models import OpenAIModel

    saved = json.load(open(sys.argv[1]))
    runtime = Runtime.restore(bytes.fromhex(saved["snapshot"]))
    model = OpenAIModel("qwen-test", base_url=sys.argv[2], api_key="k")
    with runtime, CaveLite(model, runtime=runtime, history=saved["history"]) as agent:
        reply = agent.chat("And doubled?")
        print(json.dumps({"text": reply.text, "doubled": agent.retrieve("doubled")}))
    """
)


def test_history_and_a_snapshot_resume_a_chat_in_another_process(openai_api, tmp_path):
    openai_api.reply(py("total = sum(range(10))\ntotal"))
    openai_api.reply("The total is 45.")
    with Runtime() as rt, CaveLite(model_for(openai_api), runtime=rt) as agent:
        assert agent.chat("Sum 0..9 into total.").completed
        saved = {"history": agent.history_records(), "snapshot": rt.snapshot().to_bytes().hex()}
        before = agent.history
    state = tmp_path / "chat.json"
    state.write_text(json.dumps(saved))  # the plain JSON form, through a file

    openai_api.reply(py("doubled = total * 2\ndoubled"))
    openai_api.reply("Doubled, it is 90.")
    done = subprocess.run([sys.executable, "-c", RESUME, str(state), openai_api.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"text": "Doubled, it is 90.", "doubled": 90}
    sent = openai_api.requests[2].body["messages"][1:]  # after the system prompt
    assert [Message(m["role"], m["content"]) for m in sent[: len(before)]] == list(before)
    assert sent[-1]["content"].endswith("And doubled?") and "- total (int)" in sent[-1]["content"]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}], r"history\[1\]: .*role"),
        ([{"role": "user", "text": "hi"}], r"history\[0\]: .*'role' and 'content'"),
        ([{"role": "user", "content": 3}], r"history\[0\]: .*content is a str"),
        ({"role": "user", "content": "hi"}, "a list of messages"),
    ],
)
def test_a_bad_history_is_refused_with_where(history, message):
    with pytest.raises(CaveUsageError, match=message):
        CaveLite(ScriptedModel([]), history=history)


def test_history_records_round_trip_exactly():
    history = [Message("user", "a"), Message("assistant", "```python\nx = 1\n```"), Message("user", "b")]
    with CaveLite(ScriptedModel([]), history=history) as agent:
        records = agent.history_records()
    assert json.loads(json.dumps(records)) == records
    with CaveLite(ScriptedModel([]), history=records) as again:
        assert again.history == tuple(history)


# -- logging --------------------------------------------------------------------------------------


def test_steps_cells_retries_and_stops_are_logged_below_warning(openai_api, caplog):
    openai_api.reply(py("x = 1\nx"))
    openai_api.error(500, "hiccup", retry_after="0")
    openai_api.reply("x is 1.")
    with caplog.at_level(logging.DEBUG, logger="cavelite"), CaveLite(model_for(openai_api)) as agent:
        assert agent.chat("x?").completed
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cavelite")]
    assert any("step 1: the model replied" in m for m in messages)
    assert any("step 1: cell ok" in m for m in messages)
    assert any("step 2: model call failed" in m and "retry 1 of 4" in m for m in messages)
    assert any(m.startswith("chat stopped: completed after 2 step(s)") for m in messages)
    assert all(r.levelno < logging.WARNING for r in caplog.records)
