"""Suite 2, token efficiency: three domains whose tools are Python objects, 8-10 turns each.

A farm of soil sensors and valves (IoT), a brokerage portfolio (finance) and
an online shop's inventory and orders (e-commerce). Every system gets the
same objects and methods; the checks read the objects' final state, or the
numbers a question's answer must give, never the wording.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from benchmarks.agents.domains import Farm, Portfolio, Shop
from benchmarks.agents.task import Answer, State, Task, Turn, World, reference, tasks_with_splits

SUITE = "tokens"


def _farm_world() -> World:
    return World(tools={"farm": Farm()}, descriptions={"farm": "the farm's soil sensors and irrigation"})


def _farm(world: World) -> Farm:
    return world.tools["farm"]  # type: ignore[no-any-return]


def _avg24(farm: Farm, field: str) -> float:
    return sum(farm.logs[field][-24:]) / 24


def _driest(farm: Farm) -> str:
    return min(farm.FIELDS, key=lambda f: farm.logs[f][-1])


def _same_farm(upto: int) -> State:
    def holds(world: World) -> bool:
        want = _farm(_farm_reference(upto))
        got = _farm(world)
        dropped = [f for f in want.FIELDS if f in " ".join(want.alerts)]
        alerts_ok = len(got.alerts) == len(want.alerts) and all(
            all(f in a for f in dropped) and not any(f in a for f in set(want.FIELDS) - set(dropped))
            for a in got.alerts
        )
        return got.valves == want.valves and got.schedules == want.schedules and alerts_ok

    return State(f"valves, schedules and alerts as after turn {upto}", holds)


FARM = (
    Turn(
        "Which field is the driest right now (lowest current moisture)?",
        "now = {f: farm.current_moisture(f) for f in farm.fields()}\nprint(min(now, key=now.get))",
        checks=(Answer("the driest field", lambda w: _driest(_farm(w))),),
    ),
    Turn(
        "Open the valve for 15 minutes in every field whose current moisture is below 30 percent.",
        "for f in farm.fields():\n    if farm.current_moisture(f) < 30:\n        farm.open_valve(f, 15)",
        wrong="for f in farm.fields():\n"
        "    if farm.current_moisture(f) < 20:\n        farm.open_valve(f, 15)",
        checks=(_same_farm(2),),
    ),
    Turn(
        "What was each field's average moisture over the last 24 hours? Round to one decimal.",
        "print({f: round(sum(farm.moisture_log(f, 24)) / 24, 1) for f in farm.fields()})",
        checks=(Answer("24h averages", lambda w: {f: round(_avg24(_farm(w), f), 1) for f in Farm.FIELDS}),),
    ),
    Turn(
        "Close every valve that is open.",
        "for f in farm.fields():\n    farm.close_valve(f)",
        checks=(_same_farm(4),),
    ),
    Turn(
        "Schedule daily watering at 6:00 for 20 minutes for every field whose 24-hour average moisture "
        "is below 40 percent.",
        "for f in farm.fields():\n    if sum(farm.moisture_log(f, 24)) / 24 < 40:\n"
        "        farm.set_schedule(f, 6, 20)",
        wrong="for f in farm.fields():\n"
        "    if farm.current_moisture(f) < 30:\n        farm.set_schedule(f, 6, 20)",
        checks=(_same_farm(5),),
    ),
    Turn(
        "Change the orchard's schedule to 19:00 for 30 minutes.",
        "farm.set_schedule('orchard', 19, 30)",
        checks=(_same_farm(6),),
    ),
    Turn(
        "Send me one alert naming every field whose moisture fell by more than 5 points over the last "
        "24 hours (the first of those readings against the latest).",
        "log = {f: farm.moisture_log(f, 24) for f in farm.fields()}\n"
        "farm.send_alert('Moisture dropped in: ' + ', '.join(f for f in log if log[f][0] - log[f][-1] > 5))",
        wrong="farm.send_alert('Moisture dropped in: north')",
        checks=(_same_farm(7),),
    ),
    Turn(
        "What is the air temperature now, and the highest moisture reading of the east field over the "
        "last 48 hours?",
        "print(farm.temperature(), max(farm.moisture_log('east', 48)))",
        checks=(Answer("temperature and east maximum", lambda w: {27.4, max(_farm(w).logs["east"])}),),
    ),
    Turn(
        "Open the valve of the driest field for 25 minutes.",
        "now = {f: farm.current_moisture(f) for f in farm.fields()}\n"
        "farm.open_valve(min(now, key=now.get), 25)",
        checks=(_same_farm(9),),
    ),
    Turn(
        "Remove the schedule of the field you just opened, since it is being watered now.",
        "now = {f: farm.current_moisture(f) for f in farm.fields()}\n"
        "farm.clear_schedule(min(now, key=now.get))",
        checks=(_same_farm(10),),
    ),
)


@cache
def _farm_reference(upto: int) -> World:
    return reference(_farm_world, FARM, upto)


def _portfolio_world() -> World:
    return World(tools={"portfolio": Portfolio()}, descriptions={"portfolio": "the user's brokerage account"})


def _pf(world: World) -> Portfolio:
    return world.tools["portfolio"]  # type: ignore[no-any-return]


@cache
def _pf_reference(upto: int) -> World:
    return reference(_portfolio_world, PORTFOLIO, upto)


def _same_portfolio(upto: int) -> State:
    def holds(world: World) -> bool:
        want, got = _pf(_pf_reference(upto)), _pf(world)
        return (got.holdings(), got.cash(), got.stop_losses) == (
            want.holdings(),
            want.cash(),
            want.stop_losses,
        )

    return State(f"holdings, cash and stop-losses as after turn {upto}", holds)


def _change30(p: Portfolio, symbol: str) -> Decimal:
    closes = p.closes[symbol]
    return closes[-1] / closes[-30] - 1


_CHANGES = (
    "change = {s: (lambda h: h[-1]['close'] / h[0]['close'] - 1)(portfolio.price_history(s, 30))\n"
    "          for s in portfolio.holdings()}\n"
)

PORTFOLIO = (
    Turn(
        "How much cash do I have, and how many shares of each stock?",
        "print(portfolio.cash(), portfolio.holdings())",
        checks=(
            Answer("cash", Decimal("10000.00")),
            Answer("holdings", lambda w: dict(Portfolio().positions)),
        ),
    ),
    Turn(
        "Which stock I hold gained the most, in percent, over the last 30 days?",
        _CHANGES + "print(max(change, key=change.get))",
        checks=(Answer("best stock", lambda w: max(Portfolio.SYMBOLS, key=lambda s: _change30(_pf(w), s))),),
    ),
    Turn(
        "Buy 10 shares of it.",
        _CHANGES + "portfolio.buy(max(change, key=change.get), 10)",
        checks=(_same_portfolio(3),),
    ),
    Turn(
        "Sell half (rounded down) of my position in the stock that lost the most over the last 30 days.",
        _CHANGES
        + "worst = min(change, key=change.get)\nportfolio.sell(worst, portfolio.holdings()[worst] // 2)",
        checks=(_same_portfolio(4),),
    ),
    Turn(
        "What is my portfolio worth now: cash plus every holding at its latest close?",
        "print(portfolio.cash() + sum(n * portfolio.last_close(s) for s, n in portfolio.holdings().items()))",
        checks=(Answer("worth", lambda w: _worth(_pf(_pf_reference(4)))),),
    ),
    Turn(
        "Buy as many whole shares of CORE as 2,000 of cash can pay for.",
        "portfolio.buy('CORE', int(2000 // portfolio.last_close('CORE')))",
        checks=(_same_portfolio(6),),
    ),
    Turn(
        "Set a stop-loss for every stock I hold at 90% of its latest close, rounded to the cent.",
        "from decimal import Decimal\nfor s in portfolio.holdings():\n"
        "    price = (portfolio.last_close(s) * Decimal('0.9')).quantize(Decimal('0.01'))\n"
        "    portfolio.set_stop_loss(s, price)",
        wrong="for s in portfolio.holdings():\n    portfolio.set_stop_loss(s, portfolio.last_close(s))",
        checks=(_same_portfolio(7),),
    ),
    Turn(
        "What was ECHO's average close over the last 7 days, to the cent?",
        "h = portfolio.price_history('ECHO', 7)\nprint(round(sum(d['close'] for d in h) / 7, 2))",
        checks=(Answer("ECHO 7-day average", lambda w: round(sum(Portfolio().closes["ECHO"][-7:]) / 7, 2)),),
    ),
    Turn(
        "Sell every share of any stock whose latest close is below its 30-day average close.",
        "for s, n in portfolio.holdings().items():\n    h = portfolio.price_history(s, 30)\n"
        "    if h[-1]['close'] < sum(d['close'] for d in h) / 30:\n        portfolio.sell(s, n)",
        checks=(_same_portfolio(9),),
    ),
    Turn(
        "How much cash do I have now?",
        "print(portfolio.cash())",
        checks=(Answer("cash", lambda w: _pf(_pf_reference(9)).cash()),),
    ),
)


def _worth(p: Portfolio) -> Decimal:
    return p.cash() + sum((n * p.last_close(s) for s, n in p.holdings().items()), Decimal(0))


def _shop_world() -> World:
    return World(tools={"shop": Shop()}, descriptions={"shop": "the online shop's back office"})


def _shop(world: World) -> Shop:
    return world.tools["shop"]  # type: ignore[no-any-return]


@cache
def _shop_reference(upto: int) -> World:
    return reference(_shop_world, SHOP, upto)


def _state(shop: Shop) -> tuple[Any, ...]:
    return (
        {o["id"]: o["status"] for o in shop.order_book},
        {sku: (i["stock"], i["price"]) for sku, i in shop.items.items()},
    )


def _same_shop(upto: int) -> State:
    return State(
        f"orders, stock and prices as after turn {upto}",
        lambda w: _state(_shop(w)) == _state(_shop(_shop_reference(upto))),
    )


_SHIP = (
    "stock = {p['sku']: p['stock'] for p in shop.products()}\nfor o in shop.orders('pending'):\n"
    "    if stock[o['sku']] >= o['quantity']:\n        shop.ship(o['id'])\n"
    "        stock[o['sku']] -= o['quantity']"
)

SHOP = (
    Turn(
        "How many orders are pending?",
        "print(len(shop.orders('pending')))",
        checks=(Answer("pending orders", 22),),
    ),
    Turn(
        "Ship every pending order we have enough stock for, oldest first.",
        _SHIP,
        wrong="for o in shop.orders('pending')[:5]:\n    shop.ship(o['id'])",
        checks=(_same_shop(2),),
    ),
    Turn(
        "Which products are out of stock now?",
        "print([p['name'] for p in shop.products() if p['stock'] == 0])",
        checks=(
            Answer(
                "out-of-stock products",
                lambda w: {i["name"] for i in _shop(_shop_reference(2)).items.values() if i["stock"] == 0},
            ),
        ),
    ),
    Turn(
        "Restock every product that is out of stock with 40 units.",
        "for p in shop.products():\n    if p['stock'] == 0:\n        shop.restock(p['sku'], 40)",
        checks=(_same_shop(4),),
    ),
    Turn("Now ship the pending orders that can be shipped, oldest first.", _SHIP, checks=(_same_shop(5),)),
    Turn(
        "Cancel every order that is still pending.",
        "for o in shop.orders('pending'):\n    shop.cancel(o['id'])",
        checks=(_same_shop(6),),
    ),
    Turn(
        "Raise by 10% (rounded to the cent) the prices of the 3 products with the most units shipped "
        "in total.",
        "from decimal import Decimal\nunits = {}\nfor o in shop.orders('shipped'):\n"
        "    units[o['sku']] = units.get(o['sku'], 0) + o['quantity']\n"
        "prices = {p['sku']: p['price'] for p in shop.products()}\n"
        "for sku in sorted(units, key=units.get, reverse=True)[:3]:\n"
        "    shop.set_price(sku, (prices[sku] * Decimal('1.1')).quantize(Decimal('0.01')))",
        checks=(_same_shop(7),),
    ),
    Turn(
        "What is our stock worth at current prices (the sum of price times stock)?",
        "print(sum(p['price'] * p['stock'] for p in shop.products()))",
        checks=(
            Answer(
                "stock value",
                lambda w: sum(
                    (i["price"] * i["stock"] for i in _shop(_shop_reference(7)).items.values()), Decimal(0)
                ),
            ),
        ),
    ),
)


def tasks() -> list[Task]:
    specs = [
        ("farm_irrigation", _farm_world, FARM),
        ("portfolio", _portfolio_world, PORTFOLIO),
        ("shop_orders", _shop_world, SHOP),
    ]
    return tasks_with_splits(SUITE, specs, "You are an operations assistant. Act on the user's behalf.")
