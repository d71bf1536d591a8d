"""Suite 3, data-intensive: questions over a 50,000-row order table that end in chart data.

The table comes from one tool, ``orders(region=None, month=None)``, the same
for every system: cavelite and codeact get a DataFrame in their runtime,
json-fc gets JSON records (cut to the output budget, as any tool result).
Answers are series per month and region, top-N tables with shares, per-group
averages; cavelite's are read from the runtime, the others' parsed from the
answer, and both are compared with the true values computed here.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from benchmarks.agents.task import Answer, Task, Turn, Value, World, tasks_with_splits

SUITE = "data"
ROWS = 50_000
REGIONS = ("East", "North", "South", "West")
PRODUCTS = tuple(f"P{i:02d}" for i in range(1, 21))


@cache
def _table() -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
    region = rng.choice(REGIONS, ROWS, p=[0.3, 0.2, 0.25, 0.25])
    # each region has its own seasonality, so the per-region answers differ
    day_index = rng.integers(0, len(days), ROWS)
    product = rng.choice(PRODUCTS, ROWS, p=np.arange(20, 0, -1) / 210)
    base = {p: 5 + 7 * i for i, p in enumerate(PRODUCTS)}
    unit_price = np.round(np.array([base[p] for p in product]) * rng.uniform(0.9, 1.1, ROWS), 2)
    quantity = rng.integers(1, 7, ROWS)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(100_000, 100_000 + ROWS),
            "date": days[np.sort(day_index)],
            "region": region,
            "channel": rng.choice(("web", "store", "app"), ROWS, p=[0.5, 0.3, 0.2]),
            "product": product,
            "quantity": quantity,
            "unit_price": unit_price,
        }
    )
    frame["amount"] = np.round(frame.quantity * frame.unit_price, 2)
    return frame


def orders(region: str | None = None, month: int | None = None) -> pd.DataFrame:
    """The 2024 orders: order_id, date, region, channel, product, quantity, unit_price, amount.

    50,000 rows in all; optionally only one region (East, North, South, West) and/or one month (1-12).
    """
    frame = _table()
    if region is not None:
        frame = frame[frame.region == region]
    if month is not None:
        frame = frame[frame.date.dt.month == int(month)]
    return frame.reset_index(drop=True).copy()


def _world() -> World:
    return World(tools={"orders": orders})


def _monthly() -> pd.DataFrame:
    t = _table()
    return t.groupby([t.date.dt.month, "region"])["amount"].sum().unstack().round(2)


def _top5() -> pd.DataFrame:
    t = _table()
    revenue = t.groupby("product")["amount"].sum().sort_values(ascending=False)
    top = revenue.head(5)
    return pd.DataFrame(
        {
            "product": top.index,
            "revenue": top.round(2).values,
            "share_pct": (top / revenue.sum() * 100).round(2).values,
        }
    )


def _aov() -> pd.Series:
    t = _table()
    return t[t.quantity >= 3].groupby("channel")["amount"].mean().round(2)


def _growth() -> pd.Series:
    t = _table()
    h2 = t[t.date.dt.month >= 7].groupby("region")["amount"].sum()
    h1 = t[t.date.dt.month <= 6].groupby("region")["amount"].sum()
    return ((h2 / h1 - 1) * 100).round(1)


def _weekly() -> pd.Series:
    t = _table()
    march = t[(t.region == "North") & (t.date.dt.month == 3)]
    return march.groupby(march.date.dt.isocalendar().week).size()


def _dec_west() -> pd.Series:
    t = _table()
    west = t[(t.region == "West") & (t.date.dt.month == 12)]
    return west.groupby(west.date.dt.day)["amount"].sum().round(2)


_LOAD = "df = orders()\n"

SPECS = [
    (
        "monthly_by_region",
        Turn(
            "Make the chart data of revenue (the sum of amount) per month and region: a table `monthly` "
            "with one row per month (1-12) and one column per region, rounded to 2 decimals.",
            _LOAD + "monthly = df.groupby([df.date.dt.month, 'region'])['amount'].sum().unstack().round(2)",
            wrong=_LOAD + "monthly = df.groupby([df.date.dt.month, 'region'])['quantity'].sum().unstack()",
            checks=(Value("monthly", lambda w: _monthly(), loose=True),),
        ),
    ),
    (
        "top5_share",
        Turn(
            "Which 5 products earned the most revenue? Put them in `top5`: a table with columns product, "
            "revenue (2 decimals) and share_pct, their share of all revenue in percent (2 decimals).",
            _LOAD + "rev = df.groupby('product')['amount'].sum().sort_values(ascending=False)\n"
            "top5 = rev.head(5).round(2).rename('revenue').reset_index()\n"
            "top5['share_pct'] = (rev.head(5) / rev.sum() * 100).round(2).values",
            wrong=_LOAD + "rev = df.groupby('product')['amount'].sum().sort_values(ascending=False)\n"
            "top5 = rev.head(5).round(2).rename('revenue').reset_index()\n"
            "top5['share_pct'] = (rev.head(5) / rev.head(5).sum() * 100).round(2).values",
            checks=(Value("top5", lambda w: _top5(), loose=True),),
        ),
    ),
    (
        "channel_aov",
        Turn(
            "For orders of 3 or more units, what is the average amount per channel? Keep it in `aov` "
            "(2 decimals).",
            _LOAD + "aov = df[df.quantity >= 3].groupby('channel')['amount'].mean().round(2)",
            wrong=_LOAD + "aov = df.groupby('channel')['amount'].mean().round(2)",
            checks=(Value("aov", lambda w: _aov(), loose=True),),
        ),
    ),
    (
        "half_year_growth",
        Turn(
            "How much did each region's revenue grow from the first half of 2024 to the second, in "
            "percent (1 decimal)? Keep it in `growth`, and tell me which region grew most.",
            _LOAD + "h1 = df[df.date.dt.month <= 6].groupby('region')['amount'].sum()\n"
            "h2 = df[df.date.dt.month >= 7].groupby('region')['amount'].sum()\n"
            "growth = ((h2 / h1 - 1) * 100).round(1)\nprint(growth.idxmax())",
            checks=(
                Value("growth", lambda w: _growth(), loose=True),
                Answer("the region that grew most", lambda w: _growth().idxmax()),
            ),
        ),
    ),
    (
        "north_march_weekly",
        Turn(
            "Count the North region's orders per ISO week in March 2024, as `weekly` (week number to "
            "count of orders).",
            _LOAD + "m = df[(df.region == 'North') & (df.date.dt.month == 3)]\n"
            "weekly = m.groupby(m.date.dt.isocalendar().week).size()",
            wrong=_LOAD
            + "m = df[df.date.dt.month == 3]\nweekly = m.groupby(m.date.dt.isocalendar().week).size()",
            checks=(Value("weekly", lambda w: _weekly(), loose=True),),
        ),
    ),
    (
        "december_west_daily",
        Turn(
            "Give me the daily revenue of the West region in December 2024 as `dec_west`, indexed by day "
            "of the month (2 decimals).",
            _LOAD + "w = df[(df.region == 'West') & (df.date.dt.month == 12)]\n"
            "dec_west = w.groupby(w.date.dt.day)['amount'].sum().round(2)",
            wrong=_LOAD
            + "w = df[df.region == 'West']\ndec_west = w.groupby(w.date.dt.day)['amount'].sum().round(2)",
            checks=(Value("dec_west", lambda w: _dec_west(), loose=True),),
        ),
    ),
]


def tasks() -> list[Task]:
    return tasks_with_splits(
        SUITE, [(name, _world, (turn,)) for name, turn in SPECS], "You are a data analyst. Be exact."
    )
