"""The serverless and edge examples run offline (ScriptedModel) and leave the right state behind."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from cavelite import CaveUsageError, Runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    loaded: list[str] = []

    def load(name: str):
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in [*loaded, "_common"]:
        sys.modules.pop(name, None)


def test_serverless_handler_parks_and_restores_the_session(example, capsys):
    module = example("serverless_handler")
    result = module.main()
    responses = result["responses"]
    assert [r["stop_reason"] for r in responses] == ["completed"] * len(module.REQUESTS)
    # what invocations 1 and 2 made reached invocation 3 through bytes only
    assert result["total"] == module.expected_total()
    assert [e["item"] for e in result["expenses"]] == ["hotel", "train", "taxi", "team lunch"]
    assert all(r["snapshot_bytes"] > 0 for r in responses)
    assert isinstance(result["store"]["team-42"], bytes)
    assert f"The total is {module.expected_total()} EUR" in capsys.readouterr().out


def test_serverless_snapshot_holds_remote_functions_by_name_only(example):
    module = example("serverless_handler")
    store: dict[str, bytes] = {}
    module.handler(module.REQUESTS[0], store)
    with pytest.raises(CaveUsageError, match="eur_rate"):
        Runtime.restore(store["team-42"])  # the host must re-bind it


def test_edge_controller_drives_the_device(example, capsys):
    module = example("edge_controller")
    result = module.main()
    greenhouse = result["greenhouse"]
    assert greenhouse.lamp_on is False
    assert greenhouse.actions[:2] == ["fan 80%", "vent open"]
    assert len(result["latencies"]) == len(module.COMMANDS)
    assert all(latency > 0 for _, latency in result["latencies"])
    # Replay the day in the host with the same rule: the ticks ran the model's rule on the device.
    replay = module.Greenhouse(hour=12)
    expected = []
    for _ in range(24):
        replay.advance()
        t = replay.read()["temperature_c"]
        replay.fan_percent, replay.vent_open = (100 if t > 30 else 50 if t > 26 else 0), t > 26
        expected.append(replay.fan_percent)
    assert result["fans"] == expected
    assert (greenhouse.fan_percent, greenhouse.vent_open) == (replay.fan_percent, replay.vent_open)
    assert "24 control ticks" in capsys.readouterr().out
