"""The shop as a Django URLconf (settings configured by the test)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import include, path

from tests.sdk.shopapp import order, payment


def get_order(request: Any, oid: int) -> HttpResponse:
    return HttpResponse(str(order.load(oid)))


def pay(request: Any, oid: int) -> HttpResponse:
    payment.charge(oid, f"4111-1111-1111-{oid:04d}")
    return HttpResponse("paid")


urlpatterns = [
    path("orders/<int:oid>", get_order),
    path("pay/", include([path("<int:oid>", pay)])),
    path("checkout/<int:oid>", payment.django_checkout),  # no URL rule: module by the view's package
]
