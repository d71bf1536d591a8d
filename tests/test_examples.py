"""Every example runs offline (ScriptedModel) and gets the right answer from real cells."""

from __future__ import annotations

import importlib
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from cavelite import StopReason

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str):
        module = importlib.import_module(name)
        return module

    yield load
    for name in ("sales_analysis", "smart_home", "ledger", "two_agents", "_common"):
        sys.modules.pop(name, None)


def assert_clean_run(reply) -> None:
    assert reply.stop_reason is StopReason.COMPLETED, reply.detail
    failed = [cell.result.for_model() for cell in reply.cells if not cell.result.ok]
    assert not failed, failed


def test_sales_analysis(example, capsys):
    result = example("sales_analysis").main()
    assert_clean_run(result["reply"])
    orders = result["orders"]
    by_year = orders.assign(year=orders["date"].dt.year).pivot_table(
        index="region", columns="year", values="amount", aggfunc="sum"
    )
    expected = (by_year[2024] / by_year[2023] - 1).idxmax()
    growth = result["growth"]
    assert len(orders) == 50_000
    assert list(growth.columns) == ["rev_2023", "rev_2024", "growth_pct"]
    assert growth.index[0] == expected == "East"
    assert "growth_pct" in capsys.readouterr().out


def test_smart_home(example):
    result = example("smart_home").main()
    assert_clean_run(result["reply"])
    home = result["home"]
    assert {room: light.on for room, light in home.lights.items()} == {
        "kitchen": False,
        "living room": False,
        "bedroom": True,
        "hallway": False,
    }
    assert home.lights["bedroom"].brightness == 30
    assert home.temperature_c == 19.5
    assert home.locks["front"] is True


def test_ledger(example):
    module = example("ledger")
    result = module.main()
    for reply in result["replies"]:
        assert_clean_run(reply)
    assert len(result["replies"]) == len(module.TURNS)
    ledger = result["ledger"]
    assert all(type(entry).__name__ == "Entry" for entry in ledger)
    assert all(isinstance(entry.amount, Decimal) for entry in ledger)
    assert result["balance"] == module.expected_balance() == Decimal("591.86")


def test_two_agents(example):
    result = example("two_agents").main()
    for reply in result["replies"]:
        assert_clean_run(reply)
    raw = result["raw"]
    valid = raw[raw["temp_c"].between(0, 60)]
    expected = valid.groupby("sensor")["temp_c"].agg(["mean", "max", "count"])
    report = result["report"]
    assert sorted(report) == ["attic", "cellar", "kitchen"]
    for sensor, row in expected.iterrows():
        assert report[sensor]["n"] == row["count"]
        assert report[sensor]["max_c"] == pytest.approx(row["max"], abs=0.005)
        assert report[sensor]["mean_c"] == pytest.approx(row["mean"], abs=0.005)
