"""The three systems under test, each a `Session`.

- ``cavelite``: the `CaveLite` agent as shipped (two streams: the model sees
  names, types and summaries; the host retrieves the real values).
- ``codeact``: code actions in the same contained, persistent interpreter,
  but the model sees data only through what it prints (stdout, errors, and the
  value of a cell's last expression, as a notebook shows it); no state block,
  no variable listing, and the host reads results from the answer text only.
- ``json-fc``: a classic function-calling agent. The same tools as JSON
  schemas; each call's result goes back to the model as JSON text. Over a
  plain chat endpoint (a local llama.cpp server) it speaks a text protocol:
  a reply that is a JSON object ``{"name": ..., "arguments": {...}}`` (or a
  list of them) is a call; anything else is the answer. With ``--fc native``
  on an OpenAI-compatible endpoint it uses the endpoint's ``tools`` instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks.agents import tools as toolkit
from benchmarks.agents.session import Session, Settings, Transcript, TurnOutcome
from benchmarks.agents.task import World
from cavelite import CaveLite
from cavelite.errors import ModelError
from cavelite.events import Usage
from cavelite.extract import extract_code
from cavelite.models import OpenAIModel
from cavelite.models.base import Message, Model
from cavelite.runtime import Runtime
from cavelite.runtime.results import CellResult


class CaveliteSession(Session):
    system = "cavelite"
    keeps_variables = True

    def __init__(
        self, world: World, model: Model, settings: Settings, log: Transcript, **agent_options: Any
    ) -> None:
        super().__init__(world, settings, log)
        private = {k: agent_options.pop(k) for k in list(agent_options) if k.startswith("_")}
        self.agent = CaveLite(
            model,
            instructions=settings.instructions,
            max_steps=settings.max_steps,
            cell_timeout=settings.cell_timeout,
            max_output_chars=settings.max_output_chars,
            **agent_options,
        )
        for name, value in private.items():  # an internal lever, switched only to measure it
            setattr(self.agent, name, value)
        try:
            for name, value in world.tools.items():
                self.agent.inject(name, value, remote=True, description=world.descriptions.get(name))
            for cls in world.types:
                self.agent.inject_type(cls)
            for name, value in world.data.items():
                self.agent.inject(name, value, description=world.descriptions.get(name))
        except BaseException:
            self.agent.close()
            raise
        log.write("system", text=self.agent.system_prompt())

    def send(self, text: str) -> TurnOutcome:
        seen = len(self.agent.history)
        reply = self.agent.chat(text)
        cells = {cell.step: cell for cell in reply.cells}
        step = 0
        for message in self.agent.history[seen:]:
            self.log.write(message.role, text=message.content)
            if message.role == "assistant":
                step += 1
                if (cell := cells.get(step)) is not None:
                    self.log.write("cell", step=step, code=cell.code, **_cell_fields(cell.result))
        answer = reply.text if reply.completed else ""
        return TurnOutcome(
            answer, reply.steps, reply.usage, reply.stop_reason.value, reply.wall_s, reply.detail
        )

    def lookup(self, name: str) -> Any:
        return self.agent.retrieve(name)

    def close(self) -> None:
        self.agent.close()


def _cell_fields(result: CellResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "stdout": result.stdout[:2000],
        "value": (result.value_repr or "")[:2000],
        "error": result.error.for_model()[:2000] if result.error else None,
        "rolled_back": result.rolled_back,
        "changed": [v.name for v in result.changed],
    }


class _LoopSession(Session):
    """The baselines' loop: call the model, act on its reply, until it answers in plain text."""

    def __init__(self, world: World, model: Model, settings: Settings, log: Transcript) -> None:
        super().__init__(world, settings, log)
        self.model = model
        self.messages: list[Message] = []
        self.system_text = ""
        self.first_turn = True

    def send(self, text: str) -> TurnOutcome:
        started = time.monotonic()
        if self.first_turn:
            text = self.preface() + text
            self.first_turn = False
        self._say("user", text)
        usage = Usage()
        for step in range(1, self.settings.max_steps + 1):
            try:
                reply = self.model.complete(self.system_text, self.messages)
            except ModelError as exc:
                self.log.write("error", text=str(exc))
                # keep the history valid for the next turn
                self._say("assistant", "(no reply)")
                return TurnOutcome("", step - 1, usage, "model_error", time.monotonic() - started, str(exc))
            usage += reply.usage
            self._say("assistant", reply.text)
            observation = self.act(step, reply.text)
            if observation is None:
                return TurnOutcome(reply.text, step, usage, "completed", time.monotonic() - started)
            self._say("user", observation)
        return TurnOutcome("", self.settings.max_steps, usage, "max_steps", time.monotonic() - started)

    def _say(self, role: str, text: str) -> None:
        self.messages.append(Message(role, text))  # type: ignore[arg-type]
        self.log.write(role, text=text)

    def preface(self) -> str:
        return ""

    def act(self, step: int, reply: str) -> str | None:
        """Carry out the reply; the observation for the model, or None if it was the answer."""
        raise NotImplementedError


_CODEACT_HOW = """\
## How you work

You work in a persistent Python interpreter. To run code, write one ```python block
in your reply; it runs at once and the next message shows what it printed (and the
value of its last expression). Variables, imports and functions persist between
blocks and turns. You only learn about data by printing it: print what you need,
and keep output small (it is cut to about {max_chars} characters). A block that fails
changes nothing; fix it and resend. Files, network and subprocesses are not available.
When the task is done, reply in plain text without a code block: that is your answer,
and the user reads results only from it, so state every value they asked for."""


class CodeActSession(_LoopSession):
    system = "codeact"

    def __init__(self, world: World, model: Model, settings: Settings, log: Transcript) -> None:
        super().__init__(world, model, settings, log)
        self.runtime = Runtime(cell_timeout=settings.cell_timeout, max_output_chars=settings.max_output_chars)
        try:
            for name, value in world.tools.items():
                self.runtime.inject(name, value, remote=True)
            for cls in world.types:
                self.runtime.inject_type(cls)
            for name, value in world.data.items():
                self.runtime.inject(name, value)
        except BaseException:
            self.runtime.close()
            raise
        parts = [settings.instructions.strip(), _CODEACT_HOW.format(max_chars=settings.max_output_chars)]
        described = toolkit.describe_for_code(world)
        if described:
            parts.append("## Tools (already defined in the interpreter)\n\n" + described)
        self.system_text = "\n\n".join(p for p in parts if p) + "\n"
        log.write("system", text=self.system_text)

    def preface(self) -> str:
        if not self.world.data:
            return ""
        return f"(Already defined in the interpreter: {', '.join(sorted(self.world.data))}.)\n\n"

    def act(self, step: int, reply: str) -> str | None:
        extraction = extract_code(reply)
        if extraction.is_final_answer:
            return None
        if extraction.code is None:
            return "[not run] Your ```python block has no closing fence. Resend it."
        result = self.runtime.execute(extraction.code)
        self.log.write("cell", step=step, code=extraction.code, **_cell_fields(result))
        parts = []
        if result.stdout:
            parts.append(result.stdout.rstrip("\n"))
        if result.value_repr is not None:
            parts.append(f"Out: {result.value_repr}")
        if result.error is not None:
            parts.append(result.error.for_model())
        text = "\n".join(parts) if parts else "(no output)"
        return toolkit.clip(text, self.settings.max_output_chars)

    def close(self) -> None:
        self.runtime.close()


_JSONFC_HOW = """\
## How you work

You act by calling tools. To call a tool, reply with only a JSON object:
{"name": "<tool name>", "arguments": {"<parameter>": <value>, ...}}
The tool runs at once and the next message gives its result as JSON. Call one tool
per reply (a JSON list of calls also works). Results are cut to about {max_chars}
characters. When the task is done, reply in plain text without any tool call: that
is your final answer, and the user reads results only from it, so state every value
they asked for."""


class JsonFcSession(_LoopSession):
    system = "json-fc"

    def __init__(self, world: World, model: Model, settings: Settings, log: Transcript) -> None:
        super().__init__(world, model, settings, log)
        self.tools = toolkit.tools_of(world)
        parts = [
            settings.instructions.strip(),
            _JSONFC_HOW.replace("{max_chars}", str(settings.max_output_chars)),
        ]
        if self.tools:
            schemas = "\n".join(json.dumps(t.schema(), ensure_ascii=False) for t in self.tools.values())
            parts.append("## Tools\n\n" + schemas)
        else:
            parts.append("## Tools\n\nThis task has no tools: work it out and answer in plain text.")
        self.system_text = "\n\n".join(p for p in parts if p) + "\n"
        log.write("system", text=self.system_text)

    def preface(self) -> str:
        if not self.world.data:
            return ""
        data = toolkit.to_json(self.world.data, self.settings.max_output_chars)
        return f"Current data (JSON):\n{data}\n\n"

    def act(self, step: int, reply: str) -> str | None:
        calls = parse_calls(reply, set(self.tools))
        if not calls:
            return None
        results = []
        for name, arguments in calls:
            outcome = self._run(name, arguments)
            self.log.write("tool", step=step, name=name, arguments=arguments, result=outcome[:2000])
            results.append(outcome)
        if len(results) == 1:
            return results[0]
        return "\n".join(f"[{i}] {r}" for i, r in enumerate(results, 1))

    def _run(self, name: str, arguments: Any) -> str:
        tool = self.tools.get(name)
        if tool is None:
            return json.dumps({"error": f"unknown tool {name!r}; the tools are: {', '.join(self.tools)}"})
        if not isinstance(arguments, dict):
            return json.dumps({"error": "arguments must be a JSON object"})
        try:
            value = toolkit.call(tool, arguments)
        except Exception as exc:
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        return toolkit.to_json(value, self.settings.max_output_chars)


def parse_calls(text: str, tools: set[str]) -> list[tuple[str, Any]]:
    """Tool calls in a reply: JSON objects naming a tool (and its arguments), anywhere in the text.

    An object counts as a call if it names one of ``tools``, or has an
    ``arguments`` member (a call to an unknown tool gets an error back, so the
    model can correct it); other JSON, such as data in an answer, does not.
    """
    decoder = json.JSONDecoder()
    calls: list[tuple[str, Any]] = []
    index = 0
    while index < len(text):
        start = min((i for i in (text.find("{", index), text.find("[", index)) if i >= 0), default=-1)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        found = [_as_call(v, tools) for v in (value if isinstance(value, list) else [value])]
        if found and all(found):
            calls.extend(c for c in found if c)
        index = end
    return calls


def _as_call(value: Any, tools: set[str]) -> tuple[str, Any] | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # {"type": "function", "function": {...}}
        value = value["function"]
    name = value.get("name", value.get("tool"))
    keys = [k for k in ("arguments", "parameters", "args") if k in value]
    arguments = value[keys[0]] if keys else {}
    if not isinstance(name, str) or (name not in tools and not keys):
        return None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return name, arguments


class NativeJsonFcSession(JsonFcSession):
    """json-fc over the endpoint's own tool calling (OpenAI-compatible ``tools``).

    Same tools, instructions and limits as the text protocol; the calls and
    their JSON results travel as ``tool_calls`` and ``tool`` messages.
    """

    system = "json-fc"

    def __init__(self, world: World, model: Model, settings: Settings, log: Transcript) -> None:
        super().__init__(world, model, settings, log)
        if not isinstance(model, OpenAIModel):
            raise TypeError("native tool calling needs an OpenAIModel")
        self.openai_model = model
        self.wire_names = {name.replace(".", "__"): name for name in self.tools}
        how = _NATIVE_HOW.replace("{max_chars}", str(settings.max_output_chars))
        self.system_text = "\n\n".join(p for p in (settings.instructions.strip(), how) if p) + "\n"
        self.wire: list[dict[str, Any]] = [{"role": "system", "content": self.system_text}]

    def send(self, text: str) -> TurnOutcome:
        import openai

        started = time.monotonic()
        if self.first_turn:
            text = self.preface() + text
            self.first_turn = False
        self.wire.append({"role": "user", "content": text})
        self.log.write("user", text=text)
        client = openai.OpenAI(
            base_url=self.openai_model.base_url,
            api_key=self.openai_model.api_key or "none",
            max_retries=2,
            timeout=self.openai_model.timeout,
        )
        usage = Usage()
        tools = [
            {"type": "function", "function": {**t.schema(), "name": wire}}
            for wire, t in ((w, self.tools[n]) for w, n in self.wire_names.items())
        ]
        try:
            for step in range(1, self.settings.max_steps + 1):
                request: dict[str, Any] = {
                    "model": self.openai_model.name,
                    "messages": self.wire,
                    **self.openai_model.options,
                }
                if tools:
                    request["tools"] = tools
                if self.openai_model.max_tokens is not None:
                    request["max_tokens"] = self.openai_model.max_tokens
                try:
                    completion = client.chat.completions.create(**request)
                except openai.OpenAIError as exc:
                    self.log.write("error", text=str(exc))
                    self.wire.append({"role": "assistant", "content": "(no reply)"})
                    return TurnOutcome(
                        "", step - 1, usage, "model_error", time.monotonic() - started, str(exc)
                    )
                if completion.usage is not None:
                    usage += Usage(
                        input_tokens=completion.usage.prompt_tokens or 0,
                        output_tokens=completion.usage.completion_tokens or 0,
                    )
                message = completion.choices[0].message
                calls = message.tool_calls or []
                self.wire.append(message.model_dump(exclude_none=True))
                self.log.write(
                    "assistant",
                    text=message.content or "",
                    tool_calls=[c.function.model_dump() for c in calls],
                )
                if not calls:
                    return TurnOutcome(
                        message.content or "", step, usage, "completed", time.monotonic() - started
                    )
                for call in calls:
                    name = self.wire_names.get(call.function.name, call.function.name)
                    try:
                        arguments = json.loads(call.function.arguments or "{}")
                    except json.JSONDecodeError as exc:
                        arguments, result = None, json.dumps({"error": f"arguments are not JSON: {exc}"})
                    else:
                        result = self._run(name, arguments)
                    self.log.write("tool", step=step, name=name, arguments=arguments, result=result[:2000])
                    self.wire.append({"role": "tool", "tool_call_id": call.id, "content": result})
            return TurnOutcome("", self.settings.max_steps, usage, "max_steps", time.monotonic() - started)
        finally:
            client.close()


_NATIVE_HOW = """\
## How you work

You act by calling the tools you are given; each result comes back as JSON, cut to
about {max_chars} characters. When the task is done, reply in plain text without a
tool call: that is your final answer, and the user reads results only from it, so
state every value they asked for."""
