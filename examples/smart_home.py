"""A smart-home controller injected as a remote object.

The controller stays in the host (it could hold a network client or a device
handle); the model's code gets a proxy with the same methods and docstrings,
and every call runs here, with the host's privileges, on the real object.

    python examples/smart_home.py
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from _common import pick_model, py, show

from cavelite import CaveLite
from cavelite.models import Model

REQUEST = (
    "It's bedtime. Turn off every light except the bedroom, dim the bedroom to 30%, "
    "set the thermostat to 19.5 °C and lock the front door. Then tell me what changed."
)

SCRIPT = [
    py("home.status()"),
    py(
        """
for room in home.rooms():
    if room != "bedroom":
        home.set_light(room, on=False)
home.set_light("bedroom", on=True, brightness=30)
home.set_temperature(19.5)
home.lock("front")
home.status()
"""
    ),
    "All lights are off except the bedroom (dimmed to 30%), the thermostat is set to "
    "19.5 °C and the front door is locked.",
]


@dataclass
class Light:
    on: bool = False
    brightness: int = 100


@dataclass
class SmartHome:
    """The host-side controller; in real life this would talk to a hub."""

    lights: dict[str, Light] = field(
        default_factory=lambda: {
            "kitchen": Light(True, 80),
            "living room": Light(True, 100),
            "bedroom": Light(True, 100),
            "hallway": Light(False, 50),
        }
    )
    temperature_c: float = 21.0
    locks: dict[str, bool] = field(default_factory=lambda: {"front": False, "back": True})
    log: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rooms(self) -> list[str]:
        """Names of the rooms that have a light."""
        return sorted(self.lights)

    def status(self) -> dict:
        """Lights (on, brightness), thermostat set point and door locks."""
        return {
            "lights": {r: {"on": x.on, "brightness": x.brightness} for r, x in self.lights.items()},
            "temperature_c": self.temperature_c,
            "locks": dict(self.locks),
        }

    def set_light(self, room: str, on: bool, brightness: int | None = None) -> str:
        """Switch a room's light; brightness is 0-100 percent."""
        if room not in self.lights:
            raise KeyError(f"no light in {room!r}; rooms: {self.rooms()}")
        if brightness is not None and not 0 <= brightness <= 100:
            raise ValueError("brightness must be between 0 and 100")
        with self._lock:
            light = self.lights[room]
            light.on = on
            if brightness is not None:
                light.brightness = brightness
            self.log.append(f"light {room} -> {'on' if on else 'off'} {light.brightness}%")
        return f"{room}: {'on' if on else 'off'}"

    def set_temperature(self, celsius: float) -> float:
        """Set the thermostat (10-30 °C)."""
        if not 10 <= celsius <= 30:
            raise ValueError("the thermostat accepts 10-30 °C")
        self.temperature_c = float(celsius)
        self.log.append(f"thermostat -> {celsius}")
        return self.temperature_c

    def lock(self, door: str) -> bool:
        """Lock a door ('front' or 'back')."""
        if door not in self.locks:
            raise KeyError(f"no door {door!r}")
        self.locks[door] = True
        self.log.append(f"lock {door}")
        return True


def main(model: Model | None = None) -> dict[str, object]:
    home = SmartHome()
    with CaveLite(
        model or pick_model(SCRIPT),
        instructions="You control a smart home through the `home` object. Be brief.",
        max_steps=8,
    ) as agent:
        agent.inject("home", home, remote=True, description="the house controller")
        reply = agent.chat(REQUEST)
        show("smart home", reply)
    print("device log:", *home.log, sep="\n  ")
    return {"reply": reply, "home": home}


if __name__ == "__main__":
    main()
