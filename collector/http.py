"""Small HTTP helpers shared by the collector's handlers: JSON answers and errors."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json", headers=headers)


def json_error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status, headers)
