"""CaveLite end to end with ScriptedModel and real runtimes (forked workers, real cells)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Sequence

import pandas as pd
import pytest

from cavelite import (
    CaveLite,
    CaveUsageError,
    CellFinished,
    CodeExtracted,
    FinalAnswer,
    ModelError,
    ModelReplied,
    PolicyViolated,
    Reply,
    Runtime,
    Stopped,
    StopReason,
    TextDelta,
    Usage,
    guidance,
)
from cavelite.models import (
    AnthropicModel,
    Message,
    Model,
    ModelReply,
    OpenAIModel,
    ScriptedModel,
)


def py(code: str) -> str:
    return f"```python\n{code}\n```"


def orders_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["North", "South", "North", "South", "East", "East"] * 50,
            "year": [2023, 2023, 2024, 2024, 2023, 2024] * 50,
            "amount": [100.0, 80.0, 130.0, 84.0, 50.0, 60.0] * 50,
        }
    )


class HangingModel(Model):
    """A model whose call never returns: for cancel and wall-time tests (no sleeps)."""

    name = "hanging"

    def __init__(self) -> None:
        self.started = threading.Event()

    async def astream(self, system: str, messages: Sequence[Message]) -> AsyncIterator[str | ModelReply]:
        self.started.set()
        yield "thinking"
        await asyncio.Event().wait()  # never set
        raise AssertionError("unreachable")


@pytest.fixture
def agent_factory():
    agents: list[CaveLite] = []

    def make(replies, **kwargs) -> CaveLite:
        model = replies if isinstance(replies, Model) else ScriptedModel(replies)
        agent = CaveLite(model, **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


# -- the loop ------------------------------------------------------------------------------


def test_multi_step_analysis_on_a_dataframe(agent_factory):
    model = ScriptedModel(
        [
            "First a look at the data.\n" + py("orders.groupby(['region', 'year'])['amount'].sum()"),
            py(
                "totals = orders.pivot_table(index='region', columns='year', values='amount',"
                " aggfunc='sum')\n"
                "growth = (totals[2024] / totals[2023] - 1).sort_values(ascending=False)\n"
                "growth.round(3)"
            ),
            "North grew most: +30% from 2023 to 2024. The table is in `growth`.",
        ]
    )
    agent = agent_factory(model, instructions="You are a retail analyst.")
    agent.inject("orders", orders_frame(), description="2023-2024 orders")
    reply = agent.chat("Which region grew most? Store the table in `growth`.")

    assert isinstance(reply, Reply)
    assert reply.stop_reason is StopReason.COMPLETED and reply.completed
    assert reply.text.startswith("North grew most")
    assert reply.steps == 3
    assert [cell.result.ok for cell in reply.cells] == [True, True]
    growth = agent.retrieve("growth")
    assert isinstance(growth, pd.Series)
    assert growth.index[0] == "North"
    assert growth["North"] == pytest.approx(0.3)

    first = model.calls[0]
    assert first.system.startswith("You are a retail analyst.")
    state = first.messages[0].content
    assert "orders (pandas.DataFrame)" in state and "2023-2024 orders" in state
    assert "300" in state  # its shape, not its rows
    assert "North" not in state  # never the bulk of the data
    assert "Which region grew most?" in state
    # The system prompt is byte-stable across the steps of a chat.
    assert len({call.system for call in model.calls}) == 1
    assert reply.usage.cache_read_tokens > 0


def test_model_learns_which_variables_each_cell_created_changed_or_deleted(agent_factory):
    model = ScriptedModel(
        [
            py("a = 1\nb = [1, 2, 3]"),
            py("b.append(4)\ndel a"),
            "ok",
            "and now?",
        ]
    )
    agent = agent_factory(model)
    agent.chat("make some variables")
    created, changed = model.calls[1].messages[-1].content, model.calls[2].messages[-1].content
    assert "- a (int): 1" in created and "- b (list): 3 items: [1, 2, 3]" in created
    assert "- b (list): 4 items: [1, 2, 3, 4]" in changed
    assert "[variables deleted] a" in changed
    agent.chat("what is there?")
    state = model.calls[3].messages[-1].content
    assert "b (list)" in state
    assert "a (int)" not in state


# -- observations ----------------------------------------------------------------------------


def run_one_cell(agent_factory, code: str, **kwargs) -> tuple[Reply, str]:
    model = ScriptedModel([py(code), "done"])
    kwargs.setdefault("check_completion", False)  # these look at one observation, failed or not
    agent = agent_factory(model, **kwargs)
    reply = agent.chat("run it")
    return reply, model.calls[1].messages[-1].content


def test_observation_stdout_and_value(agent_factory):
    reply, seen = run_one_cell(agent_factory, "print('hello from the cave')\n40 + 2")
    assert "hello from the cave" in seen
    assert "[value] 42" in seen
    assert reply.cells[0].result.ok


def test_observation_exception_with_the_cells_own_line_numbers(agent_factory):
    reply, seen = run_one_cell(agent_factory, "x = 1\ny = 0\nz = x / y")
    assert "[cell failed: exception; the namespace is unchanged]" in seen
    assert "line 3" in seen and "z = x / y" in seen
    assert "ZeroDivisionError" in seen
    assert reply.completed
    assert reply.cells[0].result.error.line == 3


def test_failed_cell_leaves_no_variables(agent_factory):
    model = ScriptedModel([py("x = 1\nraise ValueError('nope')"), "gave up"])
    agent = agent_factory(model)
    agent.chat("try")
    assert "x" not in {v.name for v in agent.variables()}


def test_observation_policy_violation_with_hint(agent_factory):
    model = ScriptedModel([py("import os\nos.listdir('/')"), "cannot"])
    agent = agent_factory(model)
    events = asyncio.run(collect(agent, "list files"))
    refused = [e for e in events if isinstance(e, PolicyViolated)]
    assert len(refused) == 1
    assert refused[0].violations and refused[0].violations[0].line == 1
    seen = model.calls[1].messages[-1].content
    assert "[cell refused]" in seen and "import" in seen and "hint" in seen


def test_observation_timeout(agent_factory):
    reply, seen = run_one_cell(agent_factory, "n = 0\nwhile True:\n    n += 1", cell_timeout=0.3)
    assert reply.cells[0].result.error.kind == "timeout"
    assert "Timeout" in seen and "unchanged" in seen


def test_observation_output_limit_keeps_head_and_tail(agent_factory):
    code = "for i in range(3000):\n    print('line', i)"
    reply, seen = run_one_cell(agent_factory, code, max_output_chars=400)
    result = reply.cells[0].result
    assert result.stdout_truncated
    assert "line 0" in seen and "line 2999" in seen
    assert "truncated" in seen
    assert len(seen) < 1500


def _abort() -> None:
    os.abort()


def test_observation_crash_rolls_back(agent_factory):
    model = ScriptedModel([py("survivor = {'a': 1}"), py("survivor['b'] = 2\nboom()"), "crashed"])
    agent = agent_factory(model)
    agent.inject("boom", _abort, remote=False)
    reply = agent.chat("crash it")
    assert reply.cells[1].result.error.kind == "crash"
    seen = model.calls[2].messages[-1].content
    assert "[cell failed: crash; the namespace is unchanged]" in seen
    assert agent.retrieve("survivor") == {"a": 1}


def test_observation_memory_blow_up(agent_factory):
    with Runtime(memory_limit_mb=256) as small:
        model = ScriptedModel([py("hog = bytearray(2 * 1024**3)"), "too big"])
        agent = agent_factory(model, runtime=small)
        reply = agent.chat("allocate")
        assert reply.cells[0].result.error.kind == "memory"
        assert "[cell failed: memory" in model.calls[1].messages[-1].content


def test_observation_print_flood_hits_the_hard_output_limit(agent_factory):
    with Runtime(hard_output_limit=100_000, max_output_chars=4000) as small:  # the agent keeps 4000
        model = ScriptedModel([py("while True:\n    print('spam' * 100)"), "flooded"])
        agent = agent_factory(model, runtime=small)
        reply = agent.chat("flood")
        assert reply.cells[0].result.error.kind == "output_limit"
        seen = model.calls[1].messages[-1].content
        assert "[cell failed: output_limit" in seen
        assert len(seen) < 6000


def test_injected_data_survives_a_failed_first_cell(agent_factory):
    model = ScriptedModel([py("total = budget * 2\nraise ValueError('not yet')"), "stop"])
    agent = agent_factory(model)
    agent.inject("budget", 21)
    agent.chat("double it")
    assert agent.retrieve("budget") == 21


def test_unterminated_block_is_not_run_and_the_model_is_told(agent_factory):
    model = ScriptedModel(["```python\nx = 1\n", py("x = 2"), "x is 2"])
    agent = agent_factory(model)
    reply = agent.chat("set x")
    assert "no closing" in model.calls[1].messages[-1].content
    assert len(reply.cells) == 1
    assert agent.retrieve("x") == 2


def test_extra_blocks_do_not_run_and_the_model_is_told(agent_factory):
    model = ScriptedModel([py("a = 1") + "\nthen\n" + py("b = 2"), "done"])
    agent = agent_factory(model)
    agent.chat("go")
    names = {v.name for v in agent.variables()}
    assert "a" in names and "b" not in names
    assert "1 more python block" in model.calls[1].messages[-1].content


# -- events --------------------------------------------------------------------------------


async def collect(agent: CaveLite, message: str) -> list:
    return [event async for event in agent.stream(message)]


def test_stream_yields_typed_events_in_order_and_stopped_last(agent_factory):
    agent = agent_factory([py("x = 6 * 7\nx"), "It is 42."])
    events = asyncio.run(collect(agent, "compute"))
    kinds = [type(e) for e in events]
    assert kinds[-1] is Stopped
    assert kinds.count(Stopped) == 1
    first_step = kinds[: kinds.index(CellFinished) + 1]
    assert first_step[0] is TextDelta
    assert first_step[-3:] == [ModelReplied, CodeExtracted, CellFinished]
    assert kinds[-2] is FinalAnswer
    cell = next(e for e in events if isinstance(e, CellFinished))
    assert cell.code == "x = 6 * 7\nx" and "[value] 42" in cell.observation
    texts = "".join(e.text for e in events if isinstance(e, TextDelta) and e.step == 2)
    assert texts == "It is 42."
    stopped = events[-1]
    assert stopped.reason is StopReason.COMPLETED and stopped.reply.text == "It is 42."


def test_leaving_the_stream_early_keeps_history_valid(agent_factory):
    import contextlib

    model = ScriptedModel([py("never_run = 1"), "answered"])
    agent = agent_factory(model)

    async def main() -> None:
        async with contextlib.aclosing(agent.stream("go")) as events:
            async for event in events:
                if isinstance(event, CodeExtracted):
                    break

    asyncio.run(main())
    assert "never_run" not in {v.name for v in agent.variables()}
    assert "[not run]" in agent.history[-1].content
    assert_alternates(agent.history)
    assert agent.chat("go on").text == "answered"


def test_achat_and_per_step_usage(agent_factory):
    agent = agent_factory([py("y = 1"), py("y += 1"), "y is 2"])
    reply = asyncio.run(agent.achat("count"))
    assert reply.steps == 3 and len(reply.step_stats) == 3
    total = Usage()
    for stats in reply.step_stats:
        total += stats.usage
        assert stats.usage.output_tokens > 0
        assert stats.model_s >= 0
    assert total == reply.usage
    assert reply.step_stats[0].cell_s > 0
    assert reply.wall_s >= sum(s.model_s for s in reply.step_stats)


# -- stop reasons and history --------------------------------------------------------------


def assert_alternates(history: Sequence[Message]) -> None:
    """Each assistant message is followed by a user message, except a final answer."""
    assert history[0].role == "user"
    for before, after in zip(history, history[1:], strict=False):
        if before.role == "assistant":
            assert after.role == "user"


def test_max_steps_then_the_next_chat_continues(agent_factory):
    model = ScriptedModel([py("a = 1"), py("b = 2"), py("c = a + b"), "c is 3"])
    agent = agent_factory(model, max_steps=2)
    first = agent.chat("compute c")
    assert first.stop_reason is StopReason.MAX_STEPS
    assert first.steps == 2
    assert_alternates(agent.history)
    second = agent.chat("go on")
    assert second.completed and second.text == "c is 3"
    assert agent.retrieve("c") == 3
    # The model saw the whole first chat before the second began.
    seen = model.calls[2].messages
    assert seen[: len(seen) - 1] == agent.history[: len(seen) - 1]
    assert "go on" in seen[-1].content
    assert_alternates(agent.history)


def test_token_budget(agent_factory):
    agent = agent_factory([py("a = 1"), py("b = 2"), "done"], max_tokens_total=1)
    reply = agent.chat("go")
    assert reply.stop_reason is StopReason.BUDGET
    assert "token budget" in reply.detail
    assert reply.steps == 1
    assert agent.retrieve("a") == 1  # the code the model wrote still ran


def test_wall_time_budget_before_any_call(agent_factory):
    model = ScriptedModel(["never"])
    reply = agent_factory(model, max_wall_s=0).chat("go")
    assert reply.stop_reason is StopReason.BUDGET
    assert reply.steps == 0 and model.calls == []


def test_wall_time_budget_abandons_a_hanging_model(agent_factory):
    agent = agent_factory(HangingModel(), max_wall_s=0.2)
    reply = agent.chat("go")
    assert reply.stop_reason is StopReason.BUDGET
    assert "wall-time" in reply.detail
    assert_alternates(agent.history)


def test_wall_time_budget_bounds_a_cell(agent_factory):
    model = ScriptedModel([py("while True:\n    pass"), "never reached"])
    agent = agent_factory(model, max_wall_s=0.3, cell_timeout=30)
    reply = agent.chat("spin")
    assert reply.stop_reason is StopReason.BUDGET
    assert reply.cells[0].result.error.kind == "timeout"


def test_model_error_leaves_runtime_and_history_usable(agent_factory):
    model = ScriptedModel(
        [py("kept = 'safe'"), ModelError("provider down", status=503, retryable=True), "fine now"]
    )
    agent = agent_factory(model, check_completion=False)  # "fine now" needs no code
    reply = agent.chat("store something")
    assert reply.stop_reason is StopReason.MODEL_ERROR
    assert "provider down" in reply.detail
    assert agent.retrieve("kept") == "safe"
    assert agent.history[-1].role == "user"
    again = agent.chat("are you back?")
    assert again.completed and again.text == "fine now"
    assert agent.history[-2].role == "user" and "are you back?" in agent.history[-2].content


def test_a_bug_in_a_model_propagates_and_the_agent_stays_usable(agent_factory):
    def script(messages):
        if len(messages) == 1:
            raise TypeError("a bug in the model adapter")
        return "recovered"

    agent = agent_factory(ScriptedModel(script))
    with pytest.raises(TypeError, match="a bug in the model adapter"):
        agent.chat("first")
    assert agent.chat("second").text == "recovered"
    assert_alternates(agent.history)


def test_script_running_out_is_a_model_error(agent_factory):
    reply = agent_factory([]).chat("hello")
    assert reply.stop_reason is StopReason.MODEL_ERROR
    assert "ran out of replies" in reply.detail


def test_cancel_from_the_model_side_before_the_cell_runs(agent_factory):
    holder: dict[str, CaveLite] = {}

    def script(messages):
        holder["agent"].cancel()
        return py("should_not_exist = 1")

    agent = agent_factory(ScriptedModel(script))
    holder["agent"] = agent
    reply = agent.chat("go")
    assert reply.stop_reason is StopReason.CANCELLED
    assert "should_not_exist" not in {v.name for v in agent.variables()}
    assert "[not run]" in agent.history[-1].content
    assert_alternates(agent.history)


def test_cancel_from_another_thread_while_the_model_hangs(agent_factory):
    model = HangingModel()
    agent = agent_factory(model)

    def cancel_when_started() -> None:
        assert model.started.wait(10)
        agent.cancel()

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    reply = agent.chat("go")
    canceller.join()
    assert reply.stop_reason is StopReason.CANCELLED
    agent.model = ScriptedModel(["back"])
    assert agent.chat("again").text == "back"


def test_asyncio_task_cancellation_keeps_the_agent_usable(agent_factory):
    model = HangingModel()
    agent = agent_factory(model)

    async def main() -> None:
        task = asyncio.create_task(agent.achat("go"))
        await asyncio.to_thread(model.started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    agent.model = ScriptedModel([py("v = 5"), "v is 5"])
    assert agent.chat("again").completed
    assert agent.retrieve("v") == 5
    assert_alternates(agent.history)


def test_task_cancelled_while_a_cell_runs_leaves_a_usable_agent(agent_factory):
    model = ScriptedModel([py("spin = 0\nwhile True:\n    spin += 1"), py("after = 1"), "ok"])
    agent = agent_factory(model, cell_timeout=0.5)

    async def main() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            async for event in agent.stream("spin"):
                if isinstance(event, CodeExtracted):
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "[interrupted]" in agent.history[-1].content
    assert_alternates(agent.history)
    reply = agent.chat("again")  # the abandoned cell was interrupted: the runtime is free
    assert reply.completed
    assert agent.retrieve("after") == 1
    assert "spin" not in {v.name for v in agent.variables()}


def test_cancel_interrupts_a_running_cell_and_keeps_the_namespace(agent_factory):
    started = threading.Event()
    model = ScriptedModel([py("partial = 1\nstarted()\nwhile True:\n    partial += 1"), "unused"])
    agent = agent_factory(model, cell_timeout=60)
    agent.inject("kept", {"a": 1})
    agent.inject("started", started.set)

    def cancel_when_the_cell_runs() -> None:
        assert started.wait(30)
        agent.cancel()

    canceller = threading.Thread(target=cancel_when_the_cell_runs)
    canceller.start()
    reply = agent.chat("spin")
    canceller.join()
    assert reply.stop_reason is StopReason.CANCELLED
    error = reply.cells[0].result.error
    assert error is not None and error.kind == "interrupted", error  # not the 60 s timeout
    names = {v.name for v in agent.variables()}
    assert "partial" not in names and agent.retrieve("kept") == {"a": 1}  # rolled back, kept
    agent.model = ScriptedModel([py("after = 2"), "done"])
    assert agent.chat("again").completed and agent.retrieve("after") == 2


def test_cancel_lets_a_cell_of_a_non_atomic_runtime_finish(agent_factory):
    with Runtime(atomic=False) as rt:
        model = ScriptedModel([py("count = 0\ncancel()\nfor i in range(1000):\n    count += 1"),
                               "unused"])
        agent = agent_factory(model, runtime=rt)
        agent.inject("cancel", agent.cancel)  # the cell itself cancels the chat, mid-cell
        reply = agent.chat("count")
        assert reply.stop_reason is StopReason.CANCELLED
        assert reply.cells[0].result.ok and rt.retrieve("count") == 1000  # let finish: nothing lost


def test_cancel_without_a_chat_does_nothing(agent_factory):
    agent = agent_factory(["hi"])
    agent.cancel()
    assert agent.chat("hello").completed


def test_runtime_failure_is_a_runtime_error_stop(agent_factory):
    runtime = Runtime()
    holder: dict[str, Runtime] = {"rt": runtime}

    def script(messages):
        holder["rt"].close()
        return py("x = 1")

    agent = agent_factory(ScriptedModel(script), runtime=runtime)
    reply = agent.chat("go")
    assert reply.stop_reason is StopReason.RUNTIME_ERROR
    assert "[interrupted]" in agent.history[-1].content
    later = agent.chat("still there?")
    assert later.stop_reason is StopReason.RUNTIME_ERROR
    assert "RuntimeClosedError" in later.detail
    assert later.steps == 0


def test_one_chat_at_a_time(agent_factory):
    model = HangingModel()
    agent = agent_factory(model)

    async def main() -> None:
        task = asyncio.create_task(agent.achat("first"))
        await asyncio.to_thread(model.started.wait, 10)
        with pytest.raises(CaveUsageError):
            await agent.achat("second")
        agent.cancel()
        assert (await task).stop_reason is StopReason.CANCELLED

    asyncio.run(main())


# -- lifecycle, sharing, agents in agents -----------------------------------------------------


def test_reset_forgets_history_and_variables(agent_factory):
    agent = agent_factory([py("gone = 1"), "ok", "fresh"])
    agent.chat("make")
    agent.reset()
    assert agent.history == ()
    assert "gone" not in {v.name for v in agent.variables()}
    assert agent.chat("hi").text == "fresh"


def test_context_manager_closes_its_own_runtime_only():
    shared = Runtime()
    try:
        with CaveLite(ScriptedModel(["ok"]), runtime=shared) as guest:
            guest.chat("hi")
        assert not shared.closed
        with CaveLite(ScriptedModel(["ok"])) as owner:
            own = owner.runtime
        assert own.closed
        with pytest.raises(CaveUsageError):
            owner.chat("closed")
    finally:
        shared.close()


def test_policy_goes_to_the_shared_runtime_not_the_agent():
    with Runtime() as runtime, pytest.raises(CaveUsageError):
        CaveLite(ScriptedModel([]), runtime=runtime, policy=object())


def test_inject_type_lets_the_model_build_instances(agent_factory):
    from decimal import Decimal  # a stdlib class stands in for a user type

    agent = agent_factory([py("price = Price('19.99') * 3\nprice"), "59.97"])
    agent.inject_type(Decimal, name="Price", description="exact money")
    reply = agent.chat("three items")
    assert "[value] Decimal('59.97')" in reply.cells[0].result.for_model()
    assert "Price" in agent.system_prompt()
    assert agent.retrieve("price") == Decimal("59.97")


def test_two_agents_share_one_runtime():
    with Runtime() as runtime:
        writer_model = ScriptedModel([py("shared_total = 41"), "stored"])
        reader_model = ScriptedModel([py("answer = shared_total + 1"), "42"])
        writer = CaveLite(writer_model, runtime=runtime)
        reader = CaveLite(reader_model, runtime=runtime)
        assert writer.chat("store 41").completed
        assert reader.chat("add one").completed
        assert "shared_total (int): 41" in reader_model.calls[0].messages[0].content
        assert runtime.retrieve("answer") == 42
        writer.close()
        reader.close()
        assert not runtime.closed


def test_an_agent_injected_into_another_agents_runtime(agent_factory):
    analyst = agent_factory(
        [
            py("growth = {'North': 0.3, 'South': 0.05, 'East': 0.2}"),
            "North grew most (+30%).",
        ]
    )
    orchestrator_model = ScriptedModel(
        [
            py(
                "reply = analyst.chat('Which region grew most? Keep the numbers in growth.')\n"
                "print(reply.text)"
            ),
            py("growth = analyst.retrieve('growth')\nmax(growth, key=growth.get)"),
            "The analyst found that North grew most.",
        ]
    )
    orchestrator = agent_factory(orchestrator_model)
    orchestrator.inject("analyst", analyst, remote=True, description="a data analyst agent")
    reply = orchestrator.chat("Ask the analyst which region grew most.")
    assert reply.completed, reply.detail
    outputs = [cell.result for cell in reply.cells]
    assert all(result.ok for result in outputs), [r.for_model() for r in outputs]
    assert "North grew most (+30%)." in outputs[0].stdout
    assert outputs[1].value_repr == "'North'"
    assert "analyst: CaveLite" in orchestrator.system_prompt()
    assert analyst.history[-1].content == "North grew most (+30%)."


# -- a real model, when one is configured ------------------------------------------------------

# Read at import: an autouse fixture hides provider variables from every test.
_REAL_ENV = {
    name: os.environ.get(name)
    for name in (
        "CAVELITE_TEST_BASE_URL",
        "CAVELITE_TEST_API_KEY",
        "CAVELITE_TEST_MODEL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
    )
}


def _real_model() -> Model | None:
    if _REAL_ENV["CAVELITE_TEST_BASE_URL"]:
        return OpenAIModel(
            _REAL_ENV["CAVELITE_TEST_MODEL"] or "qwen2.5-coder",
            base_url=_REAL_ENV["CAVELITE_TEST_BASE_URL"],
            api_key=_REAL_ENV["CAVELITE_TEST_API_KEY"],
            temperature=0,
        )
    if _REAL_ENV["ANTHROPIC_API_KEY"]:
        return AnthropicModel(
            _REAL_ENV["CAVELITE_TEST_MODEL"] or "claude-sonnet-4-5",
            api_key=_REAL_ENV["ANTHROPIC_API_KEY"],
            base_url=_REAL_ENV["ANTHROPIC_BASE_URL"],
        )
    return None


@pytest.mark.realmodel
@pytest.mark.skipif(_real_model() is None, reason="set CAVELITE_TEST_BASE_URL or ANTHROPIC_API_KEY")
def test_a_real_model_works_the_runtime(agent_factory):
    agent = agent_factory(_real_model(), instructions="You are a precise analyst.", max_steps=10)
    agent.inject("orders", orders_frame(), description="orders for 2023 and 2024")
    reply = agent.chat(
        "Store in `top_region` (a str) the region with the largest total amount in 2024, "
        "then answer with its name."
    )
    assert reply.stop_reason is StopReason.COMPLETED, (reply.detail, agent.history)
    assert reply.cells, "the model answered without looking at the data"
    assert agent.retrieve("top_region") == "North"
    assert "North" in reply.text
    assert reply.usage.output_tokens > 0 and reply.usage.total_tokens > 0


def test_a_repeated_cell_is_not_run_twice(agent_factory):
    block = py("number += 15")
    agent = agent_factory(ScriptedModel([block, block, "number is 25"]))
    agent.inject("number", 10)
    reply = agent.chat("Add 15 to `number`.")
    assert reply.stop_reason is StopReason.COMPLETED
    assert agent.retrieve("number") == 25  # not 40: the repeat did not run
    assert len(reply.cells) == 1
    observations = [m.content for m in agent.history if m.role == "user"]
    assert observations[2].startswith("[not run] This block is the same as your previous one, which already")


def test_a_model_that_repeats_a_refused_block_is_stopped_as_stuck(agent_factory):
    block = py("number += 15")
    model = ScriptedModel([block, block, block, py("number"), "25"])
    agent = agent_factory(model, max_steps=8)
    agent.inject("number", 10)
    reply = agent.chat("Add 15 to `number`.")
    assert reply.stop_reason is StopReason.STUCK and reply.steps == 3  # not the 8 it may take
    assert agent.retrieve("number") == 25 and len(reply.cells) == 1
    assert agent.history[-1].content.startswith("[stopped] You sent the same block again")
    assert_alternates(agent.history)
    reply = agent.chat("And now?")  # the history stayed valid: the next chat goes on
    assert reply.stop_reason is StopReason.COMPLETED and reply.text == "25"
    assert agent.retrieve("number") == 25


def test_a_repeated_failing_cell_gets_its_error_back_without_running(agent_factory):
    block = py("total = prices.sum()")
    agent = agent_factory(ScriptedModel([block, block, py("total = 3"), "done"]))
    reply = agent.chat("sum it")
    assert [c.result.ok for c in reply.cells] == [False, True]
    observations = [m.content for m in agent.history if m.role == "user"]
    assert "which failed with: NameError: name 'prices' is not defined" in observations[2]
    assert "Change the code." in observations[2]


def test_repeats_run_again_when_the_guard_is_off(agent_factory):
    block = py("number += 15")
    agent = agent_factory(ScriptedModel([block, block, "done"]), guard_repeats=False)
    agent.inject("number", 10)
    agent.chat("Add 15 to `number`.")
    assert agent.retrieve("number") == 40


def test_an_answer_while_the_asked_variable_is_missing_is_sent_back(agent_factory):
    model = ScriptedModel(["I will compute it: growth = 3", py("growth = 3"), "Stored.",
                           "No.", "Still no.", "Never."])
    agent = agent_factory(model, check_completion=True)
    reply = agent.chat("Put the growth in `growth`.")
    assert reply.completed and reply.text == "Stored." and agent.retrieve("growth") == 3
    assert model.calls[1].messages[-1].content.startswith("[not done] You were asked for `growth`")
    reply = agent.chat("And keep the loss in `loss`.")  # sent back twice, then the answer stands
    assert reply.completed and reply.text == "Never." and reply.steps == 3


def test_a_reply_that_repeats_the_request_is_not_taken_as_the_answer(agent_factory):
    model = ScriptedModel(["Close every valve that is open.", "[runtime state] no variables yet\n\nClose",
                           py("closed = 2"), "Closed 2 valves."])
    agent = agent_factory(model, check_completion=True)
    reply = agent.chat("Close every valve that is open.")
    assert reply.completed and reply.text == "Closed 2 valves." and reply.steps == 4
    assert model.calls[1].messages[-1].content == guidance.ECHO_NOTE
    assert model.calls[2].messages[-1].content == guidance.ECHO_NOTE


def test_what_a_model_writes_after_its_block_is_not_kept(agent_factory):
    model = ScriptedModel([py("x = 1") + "\n\n[runtime state] 1 variable(s):\n- x (int): 2", "x is 1"])
    agent = agent_factory(model)
    agent.chat("make x")
    assert agent.history[1] == Message("assistant", py("x = 1"))
    assert "x (int): 2" not in model.calls[1].messages[1].content


def test_old_turns_are_compacted_and_recent_ones_kept_whole(agent_factory):
    replies = []
    for i in range(5):
        replies += [py(f"v{i} = list(range(200))\nprint(v{i})"), f"made v{i}"]
    model = ScriptedModel(replies)
    agent = agent_factory(model, keep_turns=2)
    for i in range(5):
        agent.chat(f"make `v{i}`")
    sent = model.calls[-1].messages
    assert sent[0].content == "[earlier turn] make `v0`"
    assert len(sent[2].content) < 300 and "[changed] v0" in sent[2].content  # observation shortened
    assert sent[-1].content.startswith("[cell ran") and "197, 198, 199]" in sent[-1].content  # this turn
    assert sent[-3].content.startswith("[runtime state]")
    assert sent[-7].content.startswith("[runtime state]") and "199]" in sent[-5].content  # the one before
    assert sent[-8].content == "made v2"
    whole = agent_factory(ScriptedModel(replies), compact_history=False)
    for i in range(5):
        whole.chat(f"make `v{i}`")
    assert sum(len(m.content) for m in sent) < 0.6 * sum(len(m.content) for m in whole.history)
    assert agent.retrieve("v0") == list(range(200))  # nothing is lost in the runtime


def test_an_agent_can_call_another_agent_that_shares_its_runtime(agent_factory):
    analyst = agent_factory(ScriptedModel(["```python\nshared_total = 40 + 2\n```", "Stored 42."]))
    boss = agent_factory(
        ScriptedModel([
            "```python\nanswer = analyst.chat('compute the total')\n```",
            "The analyst said so.",
        ]),
        runtime=analyst.runtime,
    )
    boss.inject("analyst", analyst, remote=True)
    reply = boss.chat("ask the analyst")
    assert reply.stop_reason is StopReason.COMPLETED, reply.detail
    assert boss.retrieve("shared_total") == 42


class _Farm:
    def fields(self) -> list[str]:
        """Field names."""
        return ["east", "west"]


def test_a_bare_method_call_gets_a_hint_naming_its_object(agent_factory):
    model = ScriptedModel([py("print(fields())"), py("print(farm.fields())"), py("print(totl)"),
                           "done"])
    agent = agent_factory(model, check_completion=False)
    agent.inject("farm", _Farm(), remote=True)
    agent.inject("total", 3)
    agent.chat("which fields?")
    observations = [m.content for m in agent.history if m.role == "user"]
    assert observations[1].endswith("[hint] `fields` is a method of `farm`: call `farm.fields(...)`.")
    assert "[hint]" not in observations[2] and "['east', 'west']" in observations[2]
    assert observations[3].endswith("[hint] There is no `totl`; did you mean `total`?")


def test_an_invented_name_gets_a_hint_listing_what_exists(agent_factory):
    def orders(region: str | None = None) -> pd.DataFrame:
        """The orders."""
        return pd.DataFrame({"region": ["east"], "amount": [2.0]})

    def load(region: str) -> pd.DataFrame:
        """One region's orders."""
        return orders(region)

    model = ScriptedModel([py("df.amount.sum()"), py("df = orders()\ndf.amount.sum()"), "2.0"])
    agent = agent_factory(model, check_completion=False)
    agent.inject("orders", orders)
    agent.chat("total?")
    observations = [m.content for m in agent.history if m.role == "user"]
    assert observations[1].endswith("[hint] There is no `df`; the runtime holds `orders`. To use what "
                                    "`orders` returns, call it: `df = orders()`.")
    assert "[hint]" not in observations[2]
    other = agent_factory(ScriptedModel([py("data.head()"), "no"]), check_completion=False)
    other.inject("load", load)
    other.chat("head?")
    assert other.history[-2].content.endswith("call it: `data = load(...)`.")  # it needs an argument


def test_an_answer_for_which_no_code_ran_is_queried_once(agent_factory):
    model = ScriptedModel(["The valves are open.", py("opened = ['east']"), "Opened east.",
                           "Yes, east.", "It has 3 valves.", "It has 1 valve."])
    agent = agent_factory(model, check_completion=True)
    agent.inject("valves", {"east": 0})
    reply = agent.chat("Open the valves that need it.")
    assert reply.text == "Opened east." and agent.retrieve("opened") == ["east"]
    assert model.calls[1].messages[-1].content == guidance.NO_CODE_NOTE
    reply = agent.chat("Sure?")  # names nothing the runtime holds, states no number: it stands
    assert reply.completed and reply.text == "Yes, east." and reply.steps == 1
    reply = agent.chat("How many?")  # a number nobody computed is queried once, then stands
    assert reply.text == "It has 1 valve." and reply.steps == 2
    empty = agent_factory(ScriptedModel(["Hello!"]), check_completion=True)
    assert empty.chat("hi").steps == 1  # nothing in the runtime: nothing to look up
    default = agent_factory(ScriptedModel(["The valves are open."]))  # off by default
    default.inject("valves", {"east": 0})
    assert default.chat("Open the valves that need it.").steps == 1


def test_an_answer_after_only_failed_blocks_is_sent_back(agent_factory):
    model = ScriptedModel([py("x = undefined_thing"), "The error is in the first line.", py("x = 1"),
                           "x is 1."])
    agent = agent_factory(model, check_completion=True)
    reply = agent.chat("make x")
    assert reply.text == "x is 1." and agent.retrieve("x") == 1
    assert model.calls[2].messages[-1].content == guidance.FAILED_NOTE
