"""A bank account kept with exact decimal arithmetic over many turns.

State persists between chats: the ledger the model builds in the first turn is
still there in the fifth. Money is `Decimal`, never float, so 0.10 + 0.20 is
0.30 exactly, and the host reads the entries back as real `Entry` objects.

    python examples/ledger.py
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from _common import pick_model, py, show

from cavelite import CaveLite
from cavelite.models import Model


@dataclass(frozen=True)
class Entry:
    """One ledger line: positive amounts are credits, negative ones debits."""

    day: str
    text: str
    amount: Decimal


TURNS = [
    "Open a ledger: a list `ledger` of Entry, starting with an opening balance of 1000.00 "
    "on 2024-01-01. Keep a helper `balance()` that sums it.",
    "On 2024-01-03 I bought three coffees at 3.10 each (three entries) and got a refund "
    "of 0.30 for one of them.",
    "On 2024-01-31 apply 1.25% monthly interest on the current balance, rounded half-even to the cent.",
    "On 2024-02-01 the rent of 1234.57 is split three ways. Record my share, rounding down to "
    "the cent; I pay the leftover cents too, so the three shares add up to the rent exactly.",
    "What is my balance now? Answer with the exact figure.",
]

SCRIPT = [
    py(
        """
from decimal import Decimal, ROUND_HALF_EVEN, ROUND_DOWN
ledger = [Entry("2024-01-01", "opening balance", Decimal("1000.00"))]
def balance():
    return sum((e.amount for e in ledger), Decimal("0.00"))
balance()
"""
    ),
    "The ledger is open with 1000.00.",
    py(
        """
for _ in range(3):
    ledger.append(Entry("2024-01-03", "coffee", Decimal("-3.10")))
ledger.append(Entry("2024-01-03", "coffee refund", Decimal("0.30")))
balance()
"""
    ),
    "Recorded: three coffees and the refund.",
    py(
        """
interest = (balance() * Decimal("0.0125")).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
ledger.append(Entry("2024-01-31", "interest 1.25%", interest))
interest, balance()
"""
    ),
    "Interest credited.",
    py(
        """
rent = Decimal("1234.57")
share = (rent / 3).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
mine = rent - 2 * share
ledger.append(Entry("2024-02-01", "rent share", -mine))
mine, share * 2 + mine == rent, balance()
"""
    ),
    "Recorded my share of the rent.",
    py("balance()"),
    "Your balance is exactly the figure above.",
]


def expected_balance() -> Decimal:
    """The same bookkeeping done in the host, to check the cave's result."""
    total = Decimal("1000.00") + 3 * Decimal("-3.10") + Decimal("0.30")
    total += (total * Decimal("0.0125")).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    rent = Decimal("1234.57")
    share = (rent / 3).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    return total - (rent - 2 * share)


def main(model: Model | None = None) -> dict[str, object]:
    replies = []
    with CaveLite(
        model or pick_model(SCRIPT),
        instructions="You keep a personal ledger. Money is always decimal.Decimal, never float.",
        max_steps=8,
    ) as agent:
        agent.inject_type(Entry, description="a ledger line (day, text, amount: Decimal)")
        for turn in TURNS:
            reply = agent.chat(turn)
            show(turn[:60], reply)
            replies.append(reply)
        ledger = agent.retrieve("ledger")
    balance = sum((entry.amount for entry in ledger), Decimal("0.00"))
    print(f"\n{len(ledger)} entries, balance {balance} (expected {expected_balance()})")
    return {"replies": replies, "ledger": ledger, "balance": balance}


if __name__ == "__main__":
    main()
