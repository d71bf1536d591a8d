"""Suite 1, stateful management: many types, many variables at once, two long conversations.

The type tasks create and modify str, int, float, Decimal, list, dict, set,
tuple, dataclass and enum instances, numpy arrays, DataFrames and datetimes;
checks read the variables (cavelite) or the answer (text-only systems). The
multi-variable tasks change 5, 10 and 25 variables in one turn. The long
conversations (a smart home over a day, a bank account with exact Decimal
arithmetic) are 20+ turns with checkpoints that read the real host objects.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from benchmarks.agents.domains import Bank, SmartHome
from benchmarks.agents.task import Answer, State, Task, Turn, Value, World, tasks_with_splits

SUITE = "stateful"


class Priority(enum.Enum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass
class Ticket:
    """A support ticket."""

    title: str
    priority: Priority
    hours: float


def _basic() -> World:
    return World(data={"number": 10, "name": "Ada", "price": 19.99, "words": ["kiwi", "apple", "fig"]})


BASIC = (
    Turn("Add 15 to `number`.", "number += 15", wrong="number += 16", checks=(Value("number", 25),)),
    Turn(
        "Make `greeting` the text 'Hello, ' followed by `name`, and put its length in `greeting_len`.",
        "greeting = 'Hello, ' + name\ngreeting_len = len(greeting)",
        checks=(Value("greeting", "Hello, Ada"), Value("greeting_len", 10)),
    ),
    Turn(
        "Store three times `price`, rounded to 2 decimals, in `total`.",
        "total = round(price * 3, 2)",
        wrong="total = price * 3 // 1",
        checks=(Value("total", 59.97),),
    ),
    Turn(
        "Sort `words` alphabetically in place and add 'pear' at the end.",
        "words.sort()\nwords.append('pear')",
        wrong="words.append('pear')",
        checks=(Value("words", ["apple", "fig", "kiwi", "pear"]),),
    ),
)


def _containers() -> World:
    return World(data={"scores": {"ann": 81, "bob": 74}, "queue": [3, 1, 2], "seen": {1, 2}, "point": (2, 3)})


CONTAINERS = (
    Turn(
        "Add 'cy' with a score of 90 to `scores` and raise bob's score by 5.",
        "scores['cy'] = 90\nscores['bob'] += 5",
        checks=(Value("scores", {"ann": 81, "bob": 79, "cy": 90}),),
    ),
    Turn(
        "Remove the first item of `queue` and keep it in `head`; then append 7 to `queue`.",
        "head = queue.pop(0)\nqueue.append(7)",
        wrong="head = queue.pop()\nqueue.append(7)",
        checks=(Value("head", 3), Value("queue", [1, 2, 7])),
    ),
    Turn(
        "Add 3 and 5 to the set `seen`, and make `point` the tuple with both coordinates doubled.",
        "seen.update({3, 5})\npoint = (point[0] * 2, point[1] * 2)",
        checks=(Value("seen", {1, 2, 3, 5}), Value("point", (4, 6))),
    ),
)


def _exact() -> World:
    return World(
        data={"fee": Decimal("2.50"), "due": dt.datetime(2024, 5, 1, 9, 0)}, types=[Priority, Ticket]
    )


EXACT = (
    Turn(
        "Create `ticket`: a Ticket titled 'Printer jam' with priority HIGH and 1.5 hours.",
        "ticket = Ticket('Printer jam', Priority.HIGH, 1.5)",
        checks=(Value("ticket", Ticket("Printer jam", Priority.HIGH, 1.5)),),
    ),
    Turn(
        "Move `due` 3 days later (keep it a datetime) and add 0.75 to `fee`, exactly (it is a Decimal).",
        "import datetime\nfrom decimal import Decimal\n"
        "due = due + datetime.timedelta(days=3)\nfee = fee + Decimal('0.75')",
        wrong="import datetime\ndue = due + datetime.timedelta(hours=3)\nfee = float(fee) + 0.75",
        checks=(Value("due", dt.datetime(2024, 5, 4, 9, 0)), Value("fee", Decimal("3.25"))),
    ),
    Turn(
        "Lower `ticket`'s priority to LOW and double its hours.",
        "ticket.priority = Priority.LOW\nticket.hours *= 2",
        checks=(Value("ticket", Ticket("Printer jam", Priority.LOW, 3.0)),),
    ),
)


def _arrays() -> World:
    staff = pd.DataFrame(
        {
            "name": ["Ann", "Bob", "Cy", "Dee", "Eve"],
            "dept": ["ops", "dev", "ops", "dev", "sales"],
            "salary": [4200.0, 5100.0, 3900.0, 6000.0, 4500.0],
        }
    )
    return World(data={"readings": np.array([12.0, 15.0, 11.0, 19.0, 17.0, 13.0]), "staff": staff})


def _raised() -> pd.DataFrame:
    staff = _arrays().data["staff"].copy()
    staff.loc[staff.dept == "ops", "salary"] *= 1.1
    return staff


ARRAYS = (
    Turn(
        "Put the mean of `readings` in `mean_reading`, and `readings` min-max scaled to 0..1 in `scaled`.",
        "mean_reading = float(readings.mean())\n"
        "scaled = (readings - readings.min()) / (readings.max() - readings.min())",
        wrong="mean_reading = float(readings.mean())\nscaled = readings / readings.max()",
        checks=(Value("mean_reading", 14.5), Value("scaled", np.array([0.125, 0.5, 0.0, 1.0, 0.75, 0.25]))),
    ),
    Turn(
        "Give everyone in the 'ops' department of `staff` a 10% raise (change `staff` itself), then put "
        "the total salary per department in `payroll`, a Series indexed by department.",
        "staff.loc[staff.dept == 'ops', 'salary'] *= 1.1\npayroll = staff.groupby('dept')['salary'].sum()",
        wrong="payroll = staff.groupby('dept')['salary'].sum()",
        checks=(Value("staff", _raised()), Value("payroll", _raised().groupby("dept")["salary"].sum())),
    ),
)


def _stock(n: int) -> World:
    return World(data={f"stock_{i:02d}": 10 + 3 * i for i in range(1, n + 1)})


def _delivery(n: int) -> tuple[Turn, ...]:
    names = [f"stock_{i:02d}" for i in range(1, n + 1)]
    code = "\n".join(f"{name} += 12" for name in names)
    wrong = "\n".join(f"{name} += 12" for name in names[:-1])
    return (
        Turn(
            f"A delivery came in: add 12 to each of the {n} variables {names[0]} to {names[-1]}.",
            code,
            wrong=wrong,
            checks=tuple(Value(name, 10 + 3 * i + 12) for i, name in enumerate(names, 1)),
        ),
    )


def _day() -> World:
    return World(tools={"home": SmartHome()}, descriptions={"home": "the house's controller"})


def _light(room: str, on: bool, brightness: int | None = None) -> State:
    def holds(world: World) -> bool:
        light = world.tools["home"].lights[room]
        return bool(light.on == on and (brightness is None or light.brightness == brightness))

    return State(f"{room} light {'on' if on else 'off'} {brightness or ''}".strip(), holds)


def _home(what: str, holds: object) -> State:
    return State(what, lambda world: bool(holds(world.tools["home"])))  # type: ignore[operator]


DAY = (
    Turn("Good morning! Open the bedroom blinds fully.", "home.set_blinds('bedroom', 100)"),
    Turn("Turn on the kitchen light at 70% brightness.", "home.set_light('kitchen', True, 70)"),
    Turn(
        "Set the thermostat to 21.5 degrees.",
        "home.set_thermostat(21.5)",
        checks=(
            _home("blinds open", lambda h: h.blinds["bedroom"] == 100),
            _light("kitchen", True, 70),
            _home("21.5 C", lambda h: h.thermostat_c == 21.5),
        ),
    ),
    Turn(
        "Start the coffee machine with the 'espresso' program.", "home.start_appliance('coffee', 'espresso')"
    ),
    Turn("Coffee is done: stop the coffee machine.", "home.stop_appliance('coffee')"),
    Turn(
        "I'm leaving for work. Turn off every light that is on.",
        "for room in home.rooms():\n    home.set_light(room, False)",
    ),
    Turn(
        "Lock the front door and the back door.",
        "home.lock('front')\nhome.lock('back')",
        checks=(
            *(_light(r, False) for r in ("kitchen", "living", "bedroom", "hall")),
            _home("doors locked", lambda h: all(h.locks.values())),
            _home("coffee off", lambda h: h.appliances["coffee"] is None),
        ),
    ),
    Turn(
        "Lower the thermostat by 3 degrees while nobody is home.",
        "home.set_thermostat(home.status()['thermostat_c'] - 3)",
        checks=(_home("18.5 C", lambda h: h.thermostat_c == 18.5),),
    ),
    Turn("Start the washing machine on 'eco'.", "home.start_appliance('washer', 'eco')"),
    Turn("Half-close the living room blinds (50% open) against the sun.", "home.set_blinds('living', 50)"),
    Turn(
        "How many kWh has the house used so far today?",
        "used = home.energy_used()",
        checks=(Answer("energy so far", 2.9),),
    ),
    Turn(
        "The washer finished. Stop it.",
        "home.stop_appliance('washer')",
        checks=(
            _home("washer off", lambda h: h.appliances["washer"] is None),
            _home("living blinds 50", lambda h: h.blinds["living"] == 50),
        ),
    ),
    Turn("I'm on my way home: set the thermostat back to 21.5.", "home.set_thermostat(21.5)"),
    Turn("Unlock the front door only.", "home.unlock('front')"),
    Turn(
        "Turn on the hall light at 40% and the living room light at 80%.",
        "home.set_light('hall', True, 40)\nhome.set_light('living', True, 80)",
        checks=(
            _home("front unlocked, back locked", lambda h: h.locks == {"front": False, "back": True}),
            _light("hall", True, 40),
            _light("living", True, 80),
            _home("21.5 C again", lambda h: h.thermostat_c == 21.5),
        ),
    ),
    Turn("Start the oven on 'bake'.", "home.start_appliance('oven', 'bake')"),
    Turn(
        "Dinner is ready: stop the oven and dim the living room light to 30%.",
        "home.stop_appliance('oven')\nhome.set_light('living', True, 30)",
    ),
    Turn(
        "Close all blinds completely.",
        "for room in home.blinds:\n    home.set_blinds(room, 0)",
        checks=(
            _home("all blinds closed", lambda h: all(v == 0 for v in h.blinds.values())),
            _home("oven off", lambda h: h.appliances["oven"] is None),
            _light("living", True, 30),
        ),
    ),
    Turn(
        "Going to bed: turn off all lights except the bedroom, which should be at 20%.",
        "for room in home.rooms():\n"
        "    home.set_light(room, room == 'bedroom', 20 if room == 'bedroom' else 100)",
    ),
    Turn("Lock the front door again.", "home.lock('front')"),
    Turn(
        "Set the night temperature: 2 degrees below the current setting.",
        "home.set_thermostat(home.status()['thermostat_c'] - 2)",
        checks=(
            _light("bedroom", True, 20),
            *(_light(r, False) for r in ("kitchen", "living", "hall")),
            _home("all locked", lambda h: all(h.locks.values())),
            _home("19.5 C", lambda h: h.thermostat_c == 19.5),
        ),
    ),
)


def _bank() -> World:
    return World(tools={"bank": Bank()}, descriptions={"bank": "the customer's accounts (Decimal amounts)"})


def _balance(account: str, amount: str) -> State:
    return State(f"{account} = {amount}", lambda w: w.tools["bank"].balances[account] == Decimal(amount))


LEDGER = (
    Turn(
        "What are my account balances?",
        "print(bank.balances_now())",
        checks=(Answer("balances", [Decimal("1250.00"), Decimal("5400.00")]),),
    ),
    Turn(
        "Deposit my salary of 2,345.67 into checking.",
        "bank.deposit('checking', Decimal('2345.67'), 'salary')",
    ),
    Turn("Pay the rent, 1,150.00, from checking.", "bank.withdraw('checking', Decimal('1150.00'), 'rent')"),
    Turn(
        "Pay the electricity bill of 84.37 from checking.",
        "bank.withdraw('checking', Decimal('84.37'), 'electricity')",
        checks=(_balance("checking", "2361.30"),),
    ),
    Turn("Move 500 from checking to savings.", "bank.transfer('checking', 'savings', Decimal('500'))"),
    Turn(
        "Apply 30 days of interest to savings at 3.6% a year.",
        "bank.apply_interest('savings', Decimal('3.6'), 30)",
    ),
    Turn(
        "Buy groceries for 63.19 from checking.",
        "bank.withdraw('checking', Decimal('63.19'), 'groceries')",
        checks=(_balance("checking", "1798.11"), _balance("savings", "5917.46")),
    ),
    Turn("A refund of 12.40 arrived in checking.", "bank.deposit('checking', Decimal('12.40'), 'refund')"),
    Turn("Pay the phone bill, 39.99, from checking.", "bank.withdraw('checking', Decimal('39.99'), 'phone')"),
    Turn(
        "What is the checking balance now?",
        "print(bank.balance('checking'))",
        checks=(Answer("checking balance", Decimal("1770.52")), _balance("checking", "1770.52")),
    ),
    Turn(
        "Transfer a tenth of the savings balance to checking (round to the cent).",
        "bank.transfer('savings', 'checking', (bank.balance('savings') / 10).quantize(Decimal('0.01')))",
    ),
    Turn(
        "Pay the insurance, 212.08, from checking.",
        "bank.withdraw('checking', Decimal('212.08'), 'insurance')",
    ),
    Turn(
        "Withdraw 200 in cash from checking.",
        "bank.withdraw('checking', Decimal('200'), 'cash')",
        checks=(_balance("savings", "5325.71"), _balance("checking", "1950.19")),
    ),
    Turn("Deposit a birthday gift of 150 into savings.", "bank.deposit('savings', Decimal('150'), 'gift')"),
    Turn(
        "Apply 31 days of interest to savings at 3.6% a year.",
        "bank.apply_interest('savings', Decimal('3.6'), 31)",
    ),
    Turn(
        "Pay 19.99 for streaming and 8.50 for parking from checking.",
        "bank.withdraw('checking', Decimal('19.99'), 'streaming')\n"
        "bank.withdraw('checking', Decimal('8.50'), 'parking')",
        checks=(_balance("savings", "5492.45"), _balance("checking", "1921.70")),
    ),
    Turn(
        "How much did I spend from checking in total (all withdrawals so far)?",
        "print(bank.total_withdrawn('checking'))",
        checks=(Answer("total withdrawn", Decimal("1778.12")),),
    ),
    Turn(
        "Move everything above 1,500 in checking into savings.",
        "bank.transfer('checking', 'savings', bank.balance('checking') - Decimal('1500'))",
    ),
    Turn("Pay the gym, 45.00, from checking.", "bank.withdraw('checking', Decimal('45.00'), 'gym')"),
    Turn(
        "Deposit 75.25 from selling a chair into checking.",
        "bank.deposit('checking', Decimal('75.25'), 'sale')",
        checks=(_balance("checking", "1530.25"), _balance("savings", "5914.15")),
    ),
    Turn(
        "Apply 30 days of interest to savings at 3.6% a year.",
        "bank.apply_interest('savings', Decimal('3.6'), 30)",
    ),
    Turn(
        "What is the total across both accounts now?",
        "print(sum(bank.balances_now().values()))",
        checks=(_balance("savings", "5931.65"), Answer("total", Decimal("7461.90"))),
    ),
)


def _with_decimal(turns: tuple[Turn, ...]) -> tuple[Turn, ...]:
    """The oracle's cells import what they use, as a model's must."""

    def fix(code: str | None) -> str | None:
        return f"from decimal import Decimal\n{code}" if code and "Decimal" in code else code

    return tuple(Turn(t.user, fix(t.code) or "", fix(t.wrong), t.checks) for t in turns)


LEDGER = _with_decimal(LEDGER)


def tasks() -> list[Task]:
    specs = [
        ("basic_types", _basic, BASIC),
        ("containers", _containers, CONTAINERS),
        ("exact_types", _exact, EXACT),
        ("arrays_frames", _arrays, ARRAYS),
        ("multi_var_5", lambda: _stock(5), _delivery(5)),
        ("multi_var_10", lambda: _stock(10), _delivery(10)),
        ("multi_var_25", lambda: _stock(25), _delivery(25)),
        ("smart_home_day", _day, DAY),
        ("bank_ledger", _bank, LEDGER),
    ]
    return tasks_with_splits(SUITE, specs, "You are a careful assistant working for one user.")
