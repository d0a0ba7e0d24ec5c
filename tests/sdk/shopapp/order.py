"""Order business code (module `order` by URL prefix)."""

from __future__ import annotations

ORDERS = {1: 10.0, 2: 25.5}


class OrderNotFound(LookupError):
    pass


def load(oid: int) -> float:
    try:
        return ORDERS[oid]
    except KeyError:
        raise OrderNotFound(f"order {oid} not found") from None
