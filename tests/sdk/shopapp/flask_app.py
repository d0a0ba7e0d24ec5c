"""The shop as a Flask (WSGI) app."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.sdk.shopapp import order, payment


def create_app() -> Any:
    app = Flask("shop")

    @app.get("/orders/<int:oid>")
    def get_order(oid: int) -> str:
        return str(order.load(oid))

    @app.post("/pay/<int:oid>")
    def pay(oid: int) -> str:
        payment.charge(oid, f"4111-1111-1111-{oid:04d}")
        return "paid"

    @app.get("/pay/<int:oid>/fee")
    def fee(oid: int) -> str:
        return str(payment.fee(oid))

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.add_url_rule("/checkout/<int:oid>", "checkout", payment.checkout_view)
    return app
