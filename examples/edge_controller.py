"""An edge/IoT loop: one runtime kept alive, a device injected as a remote object.

The greenhouse controller stays in the host (in real life it holds a serial
port or a GPIO handle); cells get a proxy whose method calls run here. The
runtime lives as long as the loop, so nothing is re-imported or re-sent per
command. Operator commands go through the agent; once the model has written a
control rule (`control`), the loop calls it on every sensor tick with
`Runtime.execute`, without the model, at cell latency.

Cells here are atomic (a failed cell leaves the namespace as it was), which
costs a checkpoint fork per cell. A loop that needs sub-millisecond ticks and
can live without rollback can give the agent `Runtime(atomic=False)` instead.

    python examples/edge_controller.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import pick_model, py

from cavelite import CaveLite
from cavelite.models import Message

DAILY_C = [18, 18, 17, 17, 17, 18, 19, 21, 23, 25, 27, 29, 31, 32, 31, 30, 28, 26, 24, 22, 21, 20, 19, 18]


@dataclass
class Greenhouse:
    """The device driver. Readings follow a fixed daily curve so runs are repeatable."""

    hour: int = 12
    fan_percent: int = 0
    vent_open: bool = False
    lamp_on: bool = True
    actions: list[str] = field(default_factory=list)

    def read(self) -> dict[str, float]:
        """Current sensor values: temperature_c, humidity_pct, light_lux."""
        cooling = self.fan_percent / 25 + (2 if self.vent_open else 0)
        return {"temperature_c": round(DAILY_C[self.hour % 24] - cooling, 1),
                "humidity_pct": 60.0 - self.fan_percent / 10,
                "light_lux": 20000.0 if 7 <= self.hour % 24 <= 19 else 5.0}

    def set_fan(self, percent: int) -> None:
        """Fan speed, 0 to 100 percent."""
        if not 0 <= percent <= 100:
            raise ValueError(f"fan percent must be 0..100, got {percent}")
        self.fan_percent = int(percent)
        self.actions.append(f"fan {percent}%")

    def set_vent(self, open: bool) -> None:
        """Open or close the roof vent."""
        self.vent_open = bool(open)
        self.actions.append("vent " + ("open" if open else "closed"))

    def set_lamp(self, on: bool) -> None:
        """Grow lamp on or off."""
        self.lamp_on = bool(on)
        self.actions.append("lamp " + ("on" if on else "off"))

    def advance(self, hours: int = 1) -> None:
        """Move the simulated clock (the real device would just be read later)."""
        self.hour = (self.hour + hours) % 24


COMMANDS = [
    "Read the sensors and tell me the temperature.",
    "It's too hot in there: set the fan to 80% and open the vent.",
    "Define `control(reading)` that sets the fan to 100% above 30 °C, 50% above 26 °C and 0% "
    "otherwise, opens the vent above 26 °C and closes it otherwise, and returns the fan percent.",
    "Turn the grow lamp off for the night.",
]

_CODE = {
    "Read the sensors": "reading = greenhouse.read()\nreading",
    "too hot": "greenhouse.set_fan(80)\ngreenhouse.set_vent(True)\ngreenhouse.read()",
    "Define `control": """
def control(reading):
    t = reading["temperature_c"]
    fan = 100 if t > 30 else 50 if t > 26 else 0
    greenhouse.set_fan(fan)
    greenhouse.set_vent(t > 26)
    return fan

control(greenhouse.read())
""",
    "grow lamp off": "greenhouse.set_lamp(False)\ngreenhouse.lamp_on",
}


def offline_reply(messages: Sequence[Message]) -> str:
    """The scripted model: code for the command, then a reply that reads the cell's value."""
    last = messages[-1].content
    if last.startswith("[cell"):
        values = [line.removeprefix("[value] ") for line in last.splitlines() if line.startswith("[value] ")]
        value = values[0] if values else ""
        return f"Done. The device answered: {value}" if last.startswith("[cell ran") else "That failed."
    for key, code in _CODE.items():
        if key in last:
            return py(code)
    return "I only know the example's commands offline."


def main() -> dict[str, Any]:
    greenhouse = Greenhouse()
    latencies: list[tuple[str, float]] = []
    ticks: list[float] = []
    with CaveLite(pick_model(offline_reply), instructions="You operate a greenhouse. Be brief.", max_steps=6,
                  cell_timeout=2.0) as agent:
        agent.inject("greenhouse", greenhouse, remote=True, description="the greenhouse controller")
        for command in COMMANDS:
            started = time.perf_counter()
            reply = agent.chat(command)
            latency = (time.perf_counter() - started) * 1000
            cell_ms = sum(c.result.duration_s for c in reply.cells) * 1000
            latencies.append((command, latency))
            print(f"{latency:8.2f} ms  (cells {cell_ms:6.2f} ms)  {command[:60]}")
            print(f"             -> {reply.text}")
        # The control loop: the model's rule runs on each tick, without the model.
        fans = []
        for _ in range(24):
            greenhouse.advance()
            started = time.perf_counter()
            result = agent.runtime.execute("control(greenhouse.read())", timeout=1.0)
            ticks.append((time.perf_counter() - started) * 1000)
            if not result.ok:
                raise RuntimeError(result.error.for_model() if result.error else "tick failed")
            fans.append(int(result.value_repr or 0))
    print(f"24 control ticks: median {statistics.median(ticks):.2f} ms, max {max(ticks):.2f} ms per tick")
    print(f"fan over the day: {fans}")
    return {"greenhouse": greenhouse, "latencies": latencies, "ticks": ticks, "fans": fans}


if __name__ == "__main__":
    main()
