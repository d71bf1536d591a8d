"""Two cooperating agents sharing one runtime.

A "collector" cleans raw sensor readings into `clean`; a "reporter", working
in the same runtime, sees `clean` in its variable list and builds `report`
from it. Neither copies data through the conversation: they hand it over by
name, and the host reads the final report back as a native dict.

    python examples/two_agents.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import pick_model, py, show

from cavelite import CaveLite, Runtime
from cavelite.models import Model

COLLECT = (
    "`raw` holds sensor readings. Build `clean`: drop rows with a missing or negative "
    "temperature, and readings above 60 °C (sensor glitches), keeping the columns as they are."
)
REPORT = (
    "Using `clean`, build `report`: a dict mapping each sensor to a dict with the keys "
    "mean_c, max_c and n (mean and max rounded to 2 decimals, n an int). Then summarise it."
)

COLLECTOR_SCRIPT = [
    py("raw.describe()"),
    py(
        """
ok = raw["temp_c"].notna() & (raw["temp_c"] >= 0) & (raw["temp_c"] <= 60)
clean = raw[ok].reset_index(drop=True)
len(raw), len(clean)
"""
    ),
    "`clean` holds the valid readings.",
]

REPORTER_SCRIPT = [
    py(
        """
stats = clean.groupby("sensor")["temp_c"].agg(["mean", "max", "count"])
report = {
    sensor: {"mean_c": round(float(row["mean"]), 2), "max_c": round(float(row["max"]), 2),
             "n": int(row["count"])}
    for sensor, row in stats.iterrows()
}
report
"""
    ),
    "`report` has the mean, the maximum and the number of valid readings per sensor.",
]


def make_readings(rows: int = 5_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    temps = rng.normal(22, 4, rows)
    temps[rng.choice(rows, 60, replace=False)] = np.nan
    temps[rng.choice(rows, 25, replace=False)] = -999.0
    temps[rng.choice(rows, 25, replace=False)] = 850.0
    return pd.DataFrame(
        {
            "sensor": rng.choice(["attic", "cellar", "kitchen"], rows),
            "minute": np.arange(rows),
            "temp_c": temps.round(2),
        }
    )


def main(collector: Model | None = None, reporter: Model | None = None) -> dict[str, object]:
    raw = make_readings()
    with Runtime() as runtime:
        runtime.inject("raw", raw, description="raw readings, with glitches")
        collecting = CaveLite(
            collector or pick_model(COLLECTOR_SCRIPT),
            instructions="You clean sensor data.",
            runtime=runtime,
        )
        reporting = CaveLite(
            reporter or pick_model(REPORTER_SCRIPT),
            instructions="You write short reports from clean data.",
            runtime=runtime,
        )
        first = collecting.chat(COLLECT)
        show("collector", first)
        second = reporting.chat(REPORT)
        show("reporter", second)
        report = runtime.retrieve("report")
        collecting.close()
        reporting.close()
    print(report)
    return {"raw": raw, "report": report, "replies": (first, second)}


if __name__ == "__main__":
    main()
