"""Shared by orders and billing: an edit here rebuilds both."""

from decimal import ROUND_HALF_EVEN, Decimal


def cents(amount: str) -> int:
    return int((Decimal(amount) * 100).quantize(Decimal(1), ROUND_HALF_EVEN))
