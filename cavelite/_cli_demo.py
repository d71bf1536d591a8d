"""``cavelite demo``: an agent analysing 50,000 generated sales rows.

With a real model configured the demo asks it the questions. Without one it
replays a script: the *replies* are written in advance (code, and answers
that quote what that code printed), but the code runs for real in the
runtime on the freshly generated data, so every number on screen is
computed, and changes with ``--seed`` and ``--rows``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cavelite._cli_model import describe_model, model_failure, pick_model
from cavelite._cli_render import EventRenderer, drive, format_seconds, format_usage
from cavelite.agent import CaveLite
from cavelite.cli import (
    EXIT_INCOMPLETE,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_RUNTIME,
    exit_code_for,
    exit_code_for_signal,
)
from cavelite.errors import CaveliteError
from cavelite.models import Message, Model, ScriptedModel
from cavelite.usage import Usage

REGIONS = ("North", "South", "East", "West", "Central")
PRODUCTS = {"widget": 12.0, "gadget": 25.0, "gizmo": 40.0, "doohickey": 8.5, "sprocket": 15.0,
            "whatsit": 60.0}
CHANNELS = ("online", "store", "partner")

QUESTIONS = (
    "Revenue is units * price * (1 - discount). Which region earned the most revenue? Store a "
    "DataFrame `by_region` indexed by region with columns revenue, orders and avg_order, sorted "
    "by revenue descending.",
    "Store monthly revenue as a pandas Series `monthly` indexed by month ('YYYY-MM'). "
    "Which were the best and the worst months?",
    "Which product has the largest share of revenue in each channel? Store a DataFrame "
    "`top_products` with channel, product, revenue and share_pct.",
)

_CODE = (
    """\
sales["revenue"] = sales["units"] * sales["price"] * (1 - sales["discount"])
by_region = (
    sales.groupby("region")
    .agg(revenue=("revenue", "sum"), orders=("revenue", "size"))
    .assign(avg_order=lambda t: t["revenue"] / t["orders"])
    .sort_values("revenue", ascending=False)
    .round(2)
)
best = by_region.index[0]
share = by_region["revenue"].iloc[0] / by_region["revenue"].sum() * 100
print(f"{best} earned the most: {by_region['revenue'].iloc[0]:,.2f} "
      f"({share:.1f}% of {by_region['revenue'].sum():,.2f}) over {by_region['orders'].iloc[0]:,} orders.")
by_region""",
    """\
monthly = sales.groupby(sales["date"].dt.strftime("%Y-%m"))["revenue"].sum().round(2)
monthly.name = "revenue"
print(f"Best month: {monthly.idxmax()} with {monthly.max():,.2f}; "
      f"worst month: {monthly.idxmin()} with {monthly.min():,.2f}.")
monthly.describe()""",
    """\
import pandas as pd

per = sales.groupby(["channel", "product"])["revenue"].sum()
share = per / per.groupby(level="channel").transform("sum") * 100
top = per.groupby(level="channel").idxmax()
top_products = pd.DataFrame({
    "channel": [c for c, _ in top],
    "product": [p for _, p in top],
    "revenue": [round(per[k], 2) for k in top],
    "share_pct": [round(share[k], 1) for k in top],
})
for row in top_products.itertuples():
    print(f"{row.channel}: {row.product} leads with {row.share_pct}% ({row.revenue:,.2f}).")
top_products""",
)

RETRIEVED = ("by_region", "monthly", "top_products")


def make_sales(rows: int = 50_000, seed: int = 2024) -> pd.DataFrame:
    """Synthetic 2024 sales with regional, product and seasonal structure."""
    rng = np.random.default_rng(seed)
    products = np.array(list(PRODUCTS))
    base_price = np.array(list(PRODUCTS.values()))
    day = rng.integers(0, 366, rows)
    season = 1.0 + 0.35 * np.sin((day - 80) / 366 * 2 * np.pi) + np.where(day > 325, 0.5, 0.0)
    region = rng.choice(np.array(REGIONS), rows, p=[0.22, 0.18, 0.25, 0.2, 0.15])
    channel_ix = rng.choice(len(CHANNELS), rows, p=[0.5, 0.35, 0.15])
    mix = np.array([[0.18, 0.22, 0.12, 0.2, 0.2, 0.08],  # online: gadgets
                    [0.3, 0.1, 0.05, 0.35, 0.15, 0.05],  # store: cheap things, often
                    [0.1, 0.1, 0.3, 0.1, 0.2, 0.2]])     # partner: the expensive end
    product_ix = (rng.random(rows)[:, None] > mix[channel_ix].cumsum(axis=1)).sum(axis=1)
    channel = np.array(CHANNELS)[channel_ix]
    return pd.DataFrame({
        "order_id": np.arange(1, rows + 1),
        "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(day, unit="D"),
        "region": region,
        "product": products[product_ix],
        "channel": channel,
        "units": rng.poisson(3 * season).clip(1, None),
        "price": (base_price[product_ix] * rng.normal(1.0, 0.05, rows)).round(2),
        "discount": rng.choice([0.0, 0.05, 0.1, 0.15], rows, p=[0.55, 0.2, 0.15, 0.1]),
    })


def demo_script(messages: Sequence[Message]) -> str:
    """The offline model: code for the newest question, then an answer quoting what the code printed."""
    last = messages[-1].content
    if last.startswith("[cell"):
        printed = _printed(last)
        if not last.startswith("[cell ran"):
            return "The cell failed, so I have no answer:\n\n" + printed
        bullets = "\n".join(f"- {line}" for line in printed.splitlines() if line.strip())
        return "From the computation in the runtime:\n\n" + bullets
    for question, code in zip(QUESTIONS, _CODE, strict=True):
        if question in last:
            return f"I'll compute this with pandas in the runtime.\n\n```python\n{code}\n```"
    return "I can only answer the demo's scripted questions offline."


def _printed(observation: str) -> str:
    """The stdout part of an observation: after the status line, before the value and variable list."""
    lines = observation.splitlines()[1:]
    kept = []
    for line in lines:
        if line.startswith(("[value]", "[variables")):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def offline_model() -> ScriptedModel:
    return ScriptedModel(demo_script, name="scripted-demo")


def run_demo(args: argparse.Namespace, console: Console) -> int:
    model: Model | None = None
    if not args.offline:
        model = pick_model(args.model, args.base_url, retries=args.retries, required=False,
                           stream=args.stream, timeout=args.call_timeout or None)
    scripted = model is None
    if model is None:
        model = offline_model()
        console.print(Panel(Text(
            "No model configured (ANTHROPIC_API_KEY / CAVELITE_BASE_URL unset), so this demo is "
            "offline: the model's replies are SCRIPTED, written in advance. The runtime's work is "
            "REAL: the code in those replies runs in the cave on data generated just now, and every "
            "number you see is computed by it.",
        ), title="offline demo", title_align="left", border_style="yellow"))
    else:
        console.print(Text(f"model: {describe_model(model)}", style="cyan"))
    sales = make_sales(args.rows, args.seed)
    console.print(Text(f"generated `sales`: {len(sales):,} rows × {sales.shape[1]} columns "
                       f"({', '.join(sales.columns)})", style="dim"))
    code = EXIT_OK
    total = Usage()
    wall = 0.0
    with CaveLite(model, instructions="You are a retail analyst. Use pandas; be concise.",
                  max_steps=12, call_timeout=args.call_timeout or None) as agent:
        agent.inject("sales", sales, description="one row per order line, 2024")
        for number, question in enumerate(QUESTIONS, 1):
            console.rule(Text(f"question {number}", style="bold cyan"))
            console.print(Text(question, style="bold"))
            driven = drive(agent, question, EventRenderer(console, cell_timeout=agent.cell_timeout))
            reply = driven.reply
            total += reply.usage
            wall += reply.wall_s
            if driven.signal is not None:
                return exit_code_for_signal(driven.signal) or EXIT_INCOMPLETE
            code = max(code, exit_code_for(reply))
            if exit_code_for(reply) == EXIT_MODEL:
                console.print(Text(f"model error: {model_failure(reply.detail, reply.error, model)}",
                                   style="bold red"))
                return EXIT_MODEL
        console.rule(Text("retrieved into the host", style="bold cyan"))
        results = {}
        for name in RETRIEVED:
            try:
                results[name] = agent.retrieve(name)
            except CaveliteError as exc:
                console.print(Text(f"{name}: not available ({exc})", style="yellow"))
                code = max(code, EXIT_INCOMPLETE)
    show_results(console, results)
    console.print(Text(f"total: {format_usage(total)} · {format_seconds(wall)}"
                       + (" (scripted model: tokens are estimates)" if scripted else ""), style="dim"))
    return code if code in (EXIT_OK, EXIT_INCOMPLETE, EXIT_RUNTIME) else EXIT_INCOMPLETE


def show_results(console: Console, results: dict[str, object]) -> None:
    """The result table and the chart-ready monthly series, drawn from the retrieved objects."""
    table = results.get("by_region")
    if isinstance(table, pd.DataFrame):
        view = Table(title="by_region (a pandas DataFrame in the host)", title_justify="left")
        view.add_column(str(table.index.name or ""), style="bold")
        for column in table.columns:
            view.add_column(str(column), justify="right")
        for index, row in zip(table.index, table.itertuples(index=False), strict=True):
            view.add_row(str(index), *(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" for v in row))
        console.print(view)
    monthly = results.get("monthly")
    if isinstance(monthly, pd.Series) and len(monthly):
        chart = monthly.to_dict()  # chart-ready: {"2024-01": 123.4, ...}
        top = max(chart.values())
        lines = Text()
        for month, value in chart.items():
            bar = "█" * max(1, round(value / top * 40))
            lines.append(f"{month} ", style="bold")
            lines.append(bar, style="cyan")
            lines.append(f" {value:,.0f}\n")
        lines.rstrip()
        console.print(Panel(lines, title="monthly revenue (a pandas Series in the host)",
                            title_align="left", border_style="cyan"))
    top = results.get("top_products")
    if isinstance(top, pd.DataFrame):
        view = Table(title="top_products", title_justify="left")
        for column in top.columns:
            view.add_column(str(column))
        for row in top.itertuples(index=False):
            view.add_row(*(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row))
        console.print(view)
