"""Host-side objects the tasks act on: a smart home, a bank, a farm, a portfolio, a shop.

They stand for real controllers and clients: every system reaches them only
through their public methods (remote objects in cavelite and codeact, JSON
tools in json-fc), and the checks read their attributes afterwards. Data is
generated from fixed seeds so every run and every system sees the same world.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

CENT = Decimal("0.01")


class Light:
    def __init__(self, on: bool, brightness: int) -> None:
        self.on, self.brightness = on, brightness


class SmartHome:
    """A house: lights, blinds, door locks, a thermostat and appliances."""

    _ENERGY = {"espresso": 0.1, "eco": 0.8, "intensive": 1.4, "bake": 2.0, "grill": 2.4}

    def __init__(self) -> None:
        self.lights = {
            "kitchen": Light(False, 100),
            "living": Light(True, 100),
            "bedroom": Light(False, 60),
            "hall": Light(True, 50),
        }
        self.blinds = {"bedroom": 0, "living": 100, "kitchen": 100}
        self.locks = {"front": False, "back": False}
        self.thermostat_c = 20.0
        self.appliances: dict[str, str | None] = {"coffee": None, "washer": None, "oven": None}
        self.kwh = 2.0

    def rooms(self) -> list[str]:
        """Rooms that have a light."""
        return sorted(self.lights)

    def status(self) -> dict[str, Any]:
        """Everything at once: lights, blinds, locks, thermostat_c, appliances (program or None)."""
        return {
            "lights": {r: {"on": x.on, "brightness": x.brightness} for r, x in self.lights.items()},
            "blinds": dict(self.blinds),
            "locks": dict(self.locks),
            "thermostat_c": self.thermostat_c,
            "appliances": dict(self.appliances),
        }

    def set_light(self, room: str, on: bool, brightness: int | None = None) -> str:
        """Switch a room's light on or off; brightness 0-100 (None keeps the current one)."""
        light = self.lights[_known(room, self.lights)]
        if brightness is not None:
            if not 0 <= brightness <= 100:
                raise ValueError("brightness is 0-100")
            light.brightness = int(brightness)
        light.on = bool(on)
        return f"{room}: {'on' if on else 'off'} at {light.brightness}%"

    def set_blinds(self, room: str, percent_open: int) -> str:
        """Open a room's blinds to a percentage (0 closed, 100 fully open)."""
        self.blinds[_known(room, self.blinds)] = max(0, min(100, int(percent_open)))
        return f"{room} blinds {self.blinds[room]}% open"

    def set_thermostat(self, celsius: float) -> float:
        """Set the target temperature in degrees Celsius; returns it."""
        self.thermostat_c = round(float(celsius), 1)
        return self.thermostat_c

    def lock(self, door: str) -> str:
        """Lock a door ('front' or 'back')."""
        self.locks[_known(door, self.locks)] = True
        return f"{door} locked"

    def unlock(self, door: str) -> str:
        """Unlock a door ('front' or 'back')."""
        self.locks[_known(door, self.locks)] = False
        return f"{door} unlocked"

    def start_appliance(self, name: str, program: str) -> str:
        """Start an appliance (coffee, washer, oven) on a program (espresso, eco, intensive, bake, grill)."""
        _known(name, self.appliances)
        if program not in self._ENERGY:
            raise ValueError(f"unknown program {program!r}; programs: {', '.join(self._ENERGY)}")
        self.appliances[name] = program
        self.kwh = round(self.kwh + self._ENERGY[program], 3)
        return f"{name} running {program}"

    def stop_appliance(self, name: str) -> str:
        """Stop an appliance."""
        self.appliances[_known(name, self.appliances)] = None
        return f"{name} stopped"

    def energy_used(self) -> float:
        """kWh used by the house today so far."""
        return self.kwh


class Bank:
    """A customer's two accounts, 'checking' and 'savings'; amounts are Decimal, to the cent."""

    def __init__(self) -> None:
        self.balances = {"checking": Decimal("1250.00"), "savings": Decimal("5400.00")}
        self.ledger: list[dict[str, Any]] = []

    def balances_now(self) -> dict[str, Decimal]:
        """Balance of every account."""
        return dict(self.balances)

    def balance(self, account: str) -> Decimal:
        """One account's balance."""
        return self.balances[_known(account, self.balances)]

    def deposit(self, account: str, amount: Decimal, memo: str = "") -> Decimal:
        """Add money to an account; returns the new balance."""
        return self._move(account, _amount(amount), "deposit", memo)

    def withdraw(self, account: str, amount: Decimal, memo: str = "") -> Decimal:
        """Take money out of an account (refused if it would go negative); returns the new balance."""
        return self._move(account, -_amount(amount), "withdrawal", memo)

    def transfer(self, source: str, target: str, amount: Decimal) -> dict[str, Decimal]:
        """Move money between the two accounts; returns both balances."""
        value = _amount(amount)
        _known(target, self.balances)
        self._move(source, -value, "transfer out", target)
        self._move(target, value, "transfer in", source)
        return dict(self.balances)

    def apply_interest(self, account: str, annual_rate_percent: Decimal, days: int) -> Decimal:
        """Credit simple interest for ``days`` days at an annual rate (percent), rounded to the cent."""
        balance = self.balance(account)
        interest = (balance * Decimal(str(annual_rate_percent)) / 100 * int(days) / 365).quantize(
            CENT, ROUND_HALF_EVEN
        )
        return self._move(account, interest, "interest", f"{days} days")

    def total_withdrawn(self, account: str) -> Decimal:
        """Sum of all withdrawals (not transfers) from an account."""
        return sum(
            (-e["amount"] for e in self.ledger if e["account"] == account and e["kind"] == "withdrawal"),
            Decimal("0"),
        )

    def history(self, account: str) -> list[dict[str, Any]]:
        """Every booking on an account, oldest first."""
        return [e for e in self.ledger if e["account"] == _known(account, self.balances)]

    def _move(self, account: str, amount: Decimal, kind: str, memo: str) -> Decimal:
        new = self.balance(account) + amount
        if new < 0:
            raise ValueError(f"insufficient funds in {account}: balance {self.balances[account]}")
        self.balances[account] = new
        self.ledger.append({"account": account, "kind": kind, "amount": amount, "memo": memo})
        return new


def _amount(value: Any) -> Decimal:
    amount = Decimal(str(value)).quantize(CENT, ROUND_HALF_EVEN)
    if amount <= 0:
        raise ValueError("amount must be positive")
    return amount


def _known(name: str, options: dict[str, Any]) -> str:
    if name not in options:
        raise KeyError(f"unknown {name!r}; known: {', '.join(sorted(options))}")
    return name


class Farm:
    """Five fields with soil-moisture sensors (percent, hourly), valves and watering schedules."""

    FIELDS = ("east", "north", "orchard", "south", "west")

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.logs: dict[str, list[float]] = {}
        for i, name in enumerate(self.FIELDS):
            level, drift = 22.0 + 9 * i, rng.uniform(-0.45, 0.25)
            log = []
            for _ in range(48):
                level = max(5.0, min(95.0, level + drift + rng.uniform(-1.5, 1.5)))
                log.append(round(level, 1))
            self.logs[name] = log
        self.valves = dict.fromkeys(self.FIELDS, 0)
        self.schedules: dict[str, tuple[int, int]] = {}
        self.alerts: list[str] = []
        self.air_c = 27.4

    def fields(self) -> list[str]:
        """The field names."""
        return list(self.FIELDS)

    def moisture_log(self, field: str, hours: int = 24) -> list[float]:
        """Hourly soil moisture (percent) of a field over the last ``hours`` hours (max 48), oldest first."""
        return list(self.logs[_known(field, self.logs)][-max(1, min(48, int(hours))) :])

    def current_moisture(self, field: str) -> float:
        """The latest soil moisture reading of a field, in percent."""
        return self.logs[_known(field, self.logs)][-1]

    def temperature(self) -> float:
        """Air temperature now, in degrees Celsius."""
        return self.air_c

    def open_valve(self, field: str, minutes: int) -> str:
        """Water a field for ``minutes`` minutes."""
        self.valves[_known(field, self.valves)] = int(minutes)
        return f"{field} watering for {minutes} min"

    def close_valve(self, field: str) -> str:
        """Stop watering a field."""
        self.valves[_known(field, self.valves)] = 0
        return f"{field} closed"

    def valve_state(self) -> dict[str, int]:
        """Minutes of watering set per field (0: closed)."""
        return dict(self.valves)

    def set_schedule(self, field: str, hour: int, minutes: int) -> str:
        """Water a field every day at ``hour`` (0-23) for ``minutes`` minutes; replaces its schedule."""
        self.schedules[_known(field, self.logs)] = (int(hour), int(minutes))
        return f"{field}: daily at {hour}:00 for {minutes} min"

    def clear_schedule(self, field: str) -> str:
        """Remove a field's watering schedule."""
        self.schedules.pop(_known(field, self.logs), None)
        return f"{field}: no schedule"

    def send_alert(self, message: str) -> str:
        """Send a text alert to the farmer."""
        self.alerts.append(str(message))
        return "sent"


class Portfolio:
    """A brokerage account: cash (Decimal), share positions, 60 days of closing prices."""

    SYMBOLS = ("ACME", "BOLT", "CORE", "DYNA", "ECHO")

    def __init__(self, seed: int = 11) -> None:
        rng = random.Random(seed)
        start = dt.date(2024, 3, 1)
        self.days = [start + dt.timedelta(days=i) for i in range(60)]
        self.closes: dict[str, list[Decimal]] = {}
        trends = (0.004, -0.006, 0.001, 0.009, -0.002)
        for symbol, base, trend in zip(self.SYMBOLS, (42, 118, 63, 210, 17), trends, strict=True):
            price, closes = float(base), []
            for _ in self.days:
                price *= 1 + trend + rng.uniform(-0.02, 0.02)
                closes.append(Decimal(str(round(price, 2))))
            self.closes[symbol] = closes
        self.cash_balance = Decimal("10000.00")
        self.positions = {"ACME": 40, "BOLT": 25, "CORE": 60, "DYNA": 5, "ECHO": 200}
        self.stop_losses: dict[str, Decimal] = {}
        self.trades: list[dict[str, Any]] = []

    def holdings(self) -> dict[str, int]:
        """Shares held per symbol."""
        return {s: n for s, n in self.positions.items() if n}

    def cash(self) -> Decimal:
        """Cash available."""
        return self.cash_balance

    def price_history(self, symbol: str, days: int = 30) -> list[dict[str, Any]]:
        """Daily closes of a symbol over the last ``days`` days (max 60), oldest first: date and close."""
        closes = self.closes[_known(symbol, self.closes)]
        n = max(1, min(60, int(days)))
        return [{"date": d.isoformat(), "close": c} for d, c in zip(self.days[-n:], closes[-n:], strict=True)]

    def last_close(self, symbol: str) -> Decimal:
        """The latest closing price of a symbol."""
        return self.closes[_known(symbol, self.closes)][-1]

    def buy(self, symbol: str, shares: int) -> Decimal:
        """Buy whole shares at the latest close; returns the cash left."""
        cost = self.last_close(symbol) * int(shares)
        if int(shares) <= 0 or cost > self.cash_balance:
            raise ValueError(f"cannot buy {shares} {symbol}: costs {cost}, cash {self.cash_balance}")
        self.cash_balance -= cost
        self.positions[symbol] = self.positions.get(symbol, 0) + int(shares)
        self.trades.append({"side": "buy", "symbol": symbol, "shares": int(shares)})
        return self.cash_balance

    def sell(self, symbol: str, shares: int) -> Decimal:
        """Sell whole shares at the latest close; returns the cash afterwards."""
        if not 0 < int(shares) <= self.positions.get(symbol, 0):
            raise ValueError(f"cannot sell {shares} {symbol}: holding {self.positions.get(symbol, 0)}")
        self.positions[symbol] -= int(shares)
        self.cash_balance += self.last_close(symbol) * int(shares)
        self.trades.append({"side": "sell", "symbol": symbol, "shares": int(shares)})
        return self.cash_balance

    def set_stop_loss(self, symbol: str, price: Decimal) -> str:
        """Sell automatically if the price falls below ``price``."""
        self.stop_losses[_known(symbol, self.closes)] = Decimal(str(price)).quantize(CENT)
        return f"stop-loss {symbol} at {self.stop_losses[symbol]}"


class Shop:
    """An online shop: products (price, stock) and customer orders (pending, shipped, cancelled)."""

    def __init__(self, seed: int = 5) -> None:
        rng = random.Random(seed)
        names = ["lamp", "mug", "kettle", "rug", "vase", "clock", "pillow", "frame"]
        self.items = {
            f"SKU-{i + 1:02d}": {
                "name": name,
                "price": Decimal(f"{rng.randint(8, 90)}.{rng.choice([0, 49, 99]):02d}"),
                "stock": rng.randint(0, 25),
            }
            for i, name in enumerate(names)
        }
        start = dt.date(2024, 2, 1)
        self.order_book = []
        for i in range(36):
            self.order_book.append(
                {
                    "id": 1001 + i,
                    "sku": rng.choice(list(self.items)),
                    "quantity": rng.choice([1, 1, 2, 3, 4, 12]),
                    "date": (start + dt.timedelta(days=i)).isoformat(),
                    "status": "pending" if i >= 14 else "shipped",
                }
            )

    def products(self) -> list[dict[str, Any]]:
        """Every product: sku, name, price, stock."""
        return [{"sku": sku, **item} for sku, item in self.items.items()]

    def orders(self, status: str | None = None) -> list[dict[str, Any]]:
        """Orders, oldest first, optionally only one status (pending, shipped, cancelled)."""
        return [dict(o) for o in self.order_book if status is None or o["status"] == status]

    def ship(self, order_id: int) -> str:
        """Ship a pending order, taking its quantity from stock (refused if stock is short)."""
        order = self._order(order_id)
        item = self.items[order["sku"]]
        if order["status"] != "pending":
            raise ValueError(f"order {order_id} is {order['status']}")
        if item["stock"] < order["quantity"]:
            raise ValueError(
                f"not enough {order['sku']}: {item['stock']} in stock, {order['quantity']} ordered"
            )
        item["stock"] -= order["quantity"]
        order["status"] = "shipped"
        return f"order {order_id} shipped"

    def cancel(self, order_id: int) -> str:
        """Cancel a pending order."""
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ValueError(f"order {order_id} is {order['status']}")
        order["status"] = "cancelled"
        return f"order {order_id} cancelled"

    def restock(self, sku: str, quantity: int) -> int:
        """Add units to a product's stock; returns the new stock."""
        self.items[_known(sku, self.items)]["stock"] += int(quantity)
        return int(self.items[sku]["stock"])

    def set_price(self, sku: str, price: Decimal) -> Decimal:
        """Change a product's price."""
        self.items[_known(sku, self.items)]["price"] = Decimal(str(price)).quantize(CENT)
        return Decimal(self.items[sku]["price"])

    def _order(self, order_id: int) -> dict[str, Any]:
        for order in self.order_book:
            if order["id"] == int(order_id):
                return order
        raise KeyError(f"no order {order_id}")
