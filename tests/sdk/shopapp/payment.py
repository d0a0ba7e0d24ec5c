"""Payment business code (module `payment` by package rule)."""

from __future__ import annotations

from typing import Any


class PaymentDeclined(Exception):
    pass


def charge(order_id: int, card: str) -> None:
    _gateway(order_id, card)


def _gateway(order_id: int, card: str) -> None:
    raise PaymentDeclined(f"card {card} declined for order {order_id}")


def fee(order_id: int) -> float:
    return 100 / (order_id - order_id)  # a second, different bug


def checkout_view(oid: int) -> str:
    """A view defined in the payment package but served under /checkout (attributed by package)."""
    charge(oid, "5500-0000-0000-0004")
    return "ok"


def django_checkout(request: Any, oid: int) -> Any:
    from django.http import HttpResponse

    return HttpResponse(checkout_view(oid))
