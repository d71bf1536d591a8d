"""A serverless-style handler: restore the session, answer one request, park it again.

A function-as-a-service host keeps nothing between invocations, so the
session's namespace is parked as bytes (`Runtime.snapshot().to_bytes()`) in a
store (here a dict; in production S3, Redis or a database row) and restored
on the next call (`Runtime.restore(blob, remotes=...)`). Remote functions are
not in the bytes, only their names: each invocation re-binds them to the
host's live objects, so credentials and clients never enter a snapshot.

The conversation is not parked, only the runtime: each request starts a new
chat, and the model learns what earlier requests left from the variable list
it is shown.

    python examples/serverless_handler.py
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from decimal import Decimal
from typing import Any

from _common import pick_model, py

from cavelite import CaveLite, Runtime
from cavelite.models import Message

RATES = {"EUR": Decimal("1"), "USD": Decimal("0.92"), "GBP": Decimal("1.17")}


def eur_rate(currency: str) -> Decimal:
    """EUR per unit of ``currency``. In production this calls a rates API with a key the cave never sees."""
    return RATES[currency.upper()]


REQUESTS = [
    {"session": "team-42", "question": "Start an expense log `expenses` (a list of dicts with item, "
     "amount as Decimal, currency) with: hotel 310.50 EUR, train 89.90 EUR, taxi 42 USD."},
    {"session": "team-42", "question": "Add a team lunch of 120 GBP to `expenses`, then store every "
     "amount converted to EUR with eur_rate() in `in_eur` (a list of Decimals, rounded to cents)."},
    {"session": "team-42", "question": "What is the total in EUR? Store it in `total_eur`."},
]

_CODE = {
    "Start an expense log": """
from decimal import Decimal

expenses = [
    {"item": "hotel", "amount": Decimal("310.50"), "currency": "EUR"},
    {"item": "train", "amount": Decimal("89.90"), "currency": "EUR"},
    {"item": "taxi", "amount": Decimal("42"), "currency": "USD"},
]
print(f"{len(expenses)} expenses recorded")
""",
    "Add a team lunch": """
from decimal import Decimal

expenses.append({"item": "team lunch", "amount": Decimal("120"), "currency": "GBP"})
in_eur = [(e["amount"] * eur_rate(e["currency"])).quantize(Decimal("0.01")) for e in expenses]
print(f"{len(expenses)} expenses; in EUR: {', '.join(str(v) for v in in_eur)}")
""",
    "What is the total": """
total_eur = sum(in_eur)
print(f"The total is {total_eur} EUR over {len(expenses)} expenses.")
""",
}


def offline_reply(messages: Sequence[Message]) -> str:
    """The scripted model: code for the request, then an answer quoting what the code printed."""
    last = messages[-1].content
    if last.startswith("[cell"):
        printed = [line for line in last.splitlines()[1:] if line and not line.startswith(("[", "- "))]
        return " ".join(printed) if last.startswith("[cell ran") else "That failed: " + last
    for key, code in _CODE.items():
        if key in last:
            return py(code)
    return "I can only handle the example's requests offline."


def handler(event: dict[str, str], store: MutableMapping[str, bytes]) -> dict[str, Any]:
    """One invocation: restore (or start) the session, answer, snapshot, and let the process go."""
    started = time.perf_counter()
    blob = store.get(event["session"])
    remotes = {"eur_rate": eur_rate}
    if blob is None:
        runtime = Runtime(cell_timeout=10)
        runtime.inject("eur_rate", eur_rate)
    else:
        runtime = Runtime.restore(blob, remotes=remotes, cell_timeout=10)
    ready_ms = (time.perf_counter() - started) * 1000
    try:
        with CaveLite(pick_model(offline_reply), runtime=runtime, max_steps=6,
                      instructions="You keep a team's expense log. Use Decimal for money.") as agent:
            reply = agent.chat(event["question"])
        parked = runtime.snapshot().to_bytes()
        store[event["session"]] = parked
    finally:
        runtime.close()
    return {
        "answer": reply.text,
        "stop_reason": reply.stop_reason.value,
        "steps": reply.steps,
        "session_ready_ms": round(ready_ms, 2),
        "snapshot_bytes": len(parked),
        "wall_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def main() -> dict[str, Any]:
    store: dict[str, bytes] = {}  # what would live in S3/Redis between invocations
    responses = []
    for number, event in enumerate(REQUESTS, 1):
        response = handler(event, store)
        responses.append(response)
        print(f"invocation {number}: {response['stop_reason']} in {response['wall_ms']} ms "
              f"(session ready {response['session_ready_ms']} ms, parked {response['snapshot_bytes']} bytes)")
        print(f"  {response['answer']}")
    # Read the final state back the way a later invocation (or a report job) would.
    last = Runtime.restore(store["team-42"], remotes={"eur_rate": eur_rate})
    try:
        total = last.retrieve("total_eur")
        expenses = last.retrieve("expenses")
    finally:
        last.close()
    print(f"restored once more: total_eur = {total!r} over {len(expenses)} expenses")
    return {"responses": responses, "total": total, "expenses": expenses, "store": store}


def expected_total() -> Decimal:
    """The same total computed here, in the host, without the cave."""
    items = [("310.50", "EUR"), ("89.90", "EUR"), ("42", "USD"), ("120", "GBP")]
    return sum((Decimal(a) * RATES[c]).quantize(Decimal("0.01")) for a, c in items)


if __name__ == "__main__":
    main()
