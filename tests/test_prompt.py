"""What the model reads: a byte-stable system prompt, bounded state and observations."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from cavelite import prompt
from cavelite.extract import Extraction
from cavelite.runtime.results import CellError, CellResult, Injected, VariableInfo


class Mood(enum.Enum):
    CALM = "calm"
    BUSY = "busy"


@dataclass
class Order:
    """An order line."""

    sku: str
    qty: int
    price: Decimal = Decimal("0")

    def total(self) -> Decimal:
        return self.qty * self.price


class Thermostat:
    """A device."""

    def set(self, celsius: float, *, hold: bool = False) -> float:
        """Set the target temperature. Returns the new target."""
        return celsius


def injected() -> list[Injected]:
    return [
        prompt.enrich(Injected("thermo", "object", "Thermostat", methods=("set",)), Thermostat()),
        Injected("fetch", "function", "function", "(url: str) -> str", "Fetch a page.", None, True),
        prompt.enrich(Injected("Order", "type", "Order", doc="An order line."), Order),
        prompt.enrich(Injected("Mood", "type", "Mood"), Mood),
    ]


def test_system_prompt_is_byte_stable_and_order_independent():
    items = injected()
    first = prompt.system_prompt("Be exact.", items, max_output_chars=1234, modules=("numpy",))
    again = prompt.system_prompt(
        "Be exact.", list(reversed(items)), max_output_chars=1234, modules=("numpy",)
    )
    assert first == again
    assert first.startswith("Be exact.\n\n## How you work")
    assert "1234 characters" in first and "numpy" in first


def test_system_prompt_describes_what_was_injected():
    text = prompt.system_prompt("", injected())
    assert "async def fetch(url: str) -> str  # async: call it with `await`" in text
    assert "thermo: Thermostat" in text
    assert "thermo.set(celsius: float, *, hold: bool = False) -> float: Set the target temperature" in text
    assert "class Order(sku: str, qty: int, price: Decimal = Decimal('0'))" in text
    assert "total() -> Decimal" in text
    assert "members: CALM='calm', BUSY='busy'" in text


def test_state_block_lists_variables_with_bounds():
    many = [VariableInfo(f"v{i}", "int", str(i)) for i in range(100)]
    many.append(VariableInfo("_hidden", "int", "0"))
    many.append(VariableInfo("blob", "str", "x" * 5000, "a long one"))
    block = prompt.state_block(many)
    assert block.startswith("[runtime state] 101 variable(s), already in the runtime")
    assert "- v0 (int): 0" in block
    assert f"and {101 - prompt.MAX_LISTED_VARIABLES} more not listed" in block
    assert "_hidden" not in block
    assert all(len(line) <= prompt.MAX_LINE_CHARS + 2 for line in block.splitlines())
    assert prompt.state_block([]) == "[runtime state] no variables yet"


def test_turn_message_puts_state_before_the_question():
    text = prompt.turn_message("How many?", [VariableInfo("n", "int", "3")])
    assert text.index("n (int): 3") < text.index("How many?")
    listed = [VariableInfo("Order", "type", "Order"), VariableInfo("n", "int", "3")]
    hidden = prompt.turn_message("Go.", listed, hidden={"Order"})
    assert "Order" not in hidden and "n (int): 3" in hidden  # injected types are described once, above


def test_observation_reports_changes_deletions_and_ignored_blocks():
    result = CellResult(
        ok=True,
        stdout="hi\n",
        value_repr="3",
        duration_s=0.25,
        changed=(VariableInfo("total", "int", "3"),),
        deleted=("tmp",),
    )
    text = prompt.observation(result, Extraction("x", ignored_blocks=2), max_chars=1000)
    assert text.splitlines()[0] == "[cell ran in 0.25s]"
    assert "hi" in text and "[value] 3" in text
    assert "- total (int): 3" in text
    assert text.endswith(prompt.NEXT_NOTE)
    assert "[variables deleted] tmp" in text
    assert "2 more python block(s)" in text


def test_observation_for_each_failure_kind():
    cases = {
        "exception": CellError("exception", "KeyError", "'x'", traceback="  line 2\n    d['x']"),
        "timeout": CellError("timeout", "Timeout", "the cell ran longer than 1.0s."),
        "crash": CellError("crash", "WorkerCrash", "Fatal Python error: Aborted."),
        "memory": CellError("memory", "MemoryError", "the cell ran out of memory"),
        "output_limit": CellError("output_limit", "OutputLimitExceeded", "too much output"),
    }
    for kind, error in cases.items():
        result = CellResult(ok=False, error=error, rolled_back=True)
        text = prompt.observation(result, Extraction("x"), max_chars=1000)
        assert text.startswith(f"[cell failed: {kind}; the namespace is unchanged]"), text
        assert error.message in text


def test_observation_is_bounded():
    result = CellResult(ok=True, stdout="y" * 50_000)
    text = prompt.observation(result, Extraction("x"), max_chars=500)
    assert len(text) < 700
    assert "characters cut" in text


def test_clip_keeps_head_and_tail():
    text = "".join(f"{i}\n" for i in range(1000))
    clipped = prompt.clip(text, 200)
    assert clipped.startswith("0\n1\n") and clipped.endswith("999\n")
    assert len(clipped) < 260
    assert prompt.clip("short", 200) == "short"
