"""Data analysis on a 50,000-row DataFrame the model never sees in full.

The orders table lives in the runtime; the model gets its name, shape, columns
and dtypes, writes pandas code against it, and leaves the result in `growth`,
which the host reads back as a real DataFrame.

    python examples/sales_analysis.py          # offline, scripted
    ANTHROPIC_API_KEY=... python examples/sales_analysis.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import pick_model, py, show

from cavelite import CaveLite
from cavelite.models import Model

QUESTION = (
    "Which region grew most in revenue from 2023 to 2024? Store a DataFrame in `growth` "
    "indexed by region with columns rev_2023, rev_2024 and growth_pct, sorted by "
    "growth_pct descending, then answer in one sentence."
)

SCRIPT = [
    "Let me look at the table first.\n" + py("print(orders.shape)\nprint(orders.dtypes)\norders.head(3)"),
    py(
        """
import pandas as pd

orders["year"] = orders["date"].dt.year
revenue = orders.pivot_table(index="region", columns="year", values="amount", aggfunc="sum")
growth = pd.DataFrame({"rev_2023": revenue[2023], "rev_2024": revenue[2024]})
growth["growth_pct"] = (growth["rev_2024"] / growth["rev_2023"] - 1) * 100
growth = growth.sort_values("growth_pct", ascending=False).round(2)
growth
"""
    ),
    "The region at the top of `growth` grew most; the table holds revenue for both years "
    "and the growth in percent.",
]


def make_orders(rows: int = 50_000, seed: int = 7) -> pd.DataFrame:
    """Synthetic orders: region trends differ, so the answer is not a coin flip."""
    rng = np.random.default_rng(seed)
    regions = np.array(["North", "South", "East", "West", "Central"])
    trend = {"North": 1.00, "South": 1.05, "East": 1.22, "West": 0.93, "Central": 1.10}
    region = rng.choice(regions, rows)
    year = rng.choice([2023, 2024], rows)
    base = rng.gamma(2.0, 40.0, rows)
    factor = np.where(year == 2024, np.vectorize(trend.get)(region), 1.0)
    days = rng.integers(0, 365, rows)
    dates = pd.to_datetime(year.astype(str) + "-01-01") + pd.to_timedelta(days, unit="D")
    return pd.DataFrame(
        {
            "order_id": np.arange(rows),
            "date": dates,
            "region": region,
            "product": rng.choice(["basic", "plus", "pro"], rows),
            "amount": (base * factor).round(2),
        }
    )


def main(model: Model | None = None) -> dict[str, object]:
    orders = make_orders()
    with CaveLite(
        model or pick_model(SCRIPT),
        instructions="You are a careful retail analyst. Use pandas.",
        max_steps=10,
    ) as agent:
        agent.inject("orders", orders, description="one row per order, 2023 and 2024")
        reply = agent.chat(QUESTION)
        show("sales analysis", reply)
        growth = agent.retrieve("growth")
    print(growth)
    return {"reply": reply, "growth": growth, "orders": orders}


if __name__ == "__main__":
    main()
