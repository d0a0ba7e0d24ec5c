"""The shop as a Starlette (ASGI) app; `/api` is a Mount to check route templates under mounts."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from tests.sdk.shopapp import order, payment


async def get_order(request: Any) -> PlainTextResponse:
    return PlainTextResponse(str(order.load(request.path_params["oid"])))


async def pay(request: Any) -> PlainTextResponse:
    oid = request.path_params["oid"]
    payment.charge(oid, f"4111-1111-1111-{oid:04d}")
    return PlainTextResponse("paid")


async def fee(request: Any) -> PlainTextResponse:
    return PlainTextResponse(str(payment.fee(request.path_params["oid"])))


def create_app() -> Any:
    return Starlette(routes=[
        Route("/orders/{oid:int}", get_order),
        Route("/pay/{oid:int}", pay, methods=["POST"]),
        Route("/pay/{oid:int}/fee", fee),
        Mount("/api", routes=[Route("/orders/{oid:int}", get_order)]),
    ])
