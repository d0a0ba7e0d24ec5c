"""Django middleware: time every request by URL pattern (resolver_match.route), attribute the module,
capture view exceptions (Django turns them into 500 responses before any WSGI middleware sees them).

    MIDDLEWARE = ["infrawatch_sdk.django.InfrawatchMiddleware", ...]   # first in the list
"""

from __future__ import annotations

import time
from typing import Any, Callable

from infrawatch_sdk import _client as C
from infrawatch_sdk.web import _module_of_handler, normalize_path


def _route(request: Any) -> str:
    rm = getattr(request, "resolver_match", None)
    route = getattr(rm, "route", None) if rm is not None else None
    if route:
        return f"{request.method} /{route.lstrip('^')}"
    return f"{request.method} {normalize_path(request.path_info)}"


class InfrawatchMiddleware:
    """New-style Django middleware (sync); uses the process-wide client from `infrawatch_sdk.init()`."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        c = C._client
        if c is None:
            return self.get_response(request)
        t0 = time.perf_counter()
        mod = c.rules.for_path(request.path_info) if c.rules.by_url else None
        t_mod = C.current_module.set(mod)
        t_ep = C.current_endpoint.set(None)
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            try:
                c.record_request(time.perf_counter() - t0, _route(request), request.method, status, C.current_module.get())
            except Exception:  # noqa: BLE001
                pass
            C.current_module.reset(t_mod)
            C.current_endpoint.reset(t_ep)

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        try:
            c = C._client
            C.current_endpoint.set(_route(request))
            if c is not None and C.current_module.get() is None:
                m = _module_of_handler(c, getattr(view_func, "view_class", None) or view_func)
                if m:
                    C.current_module.set(m)
        except Exception:  # noqa: BLE001
            pass
        return None

    def process_exception(self, request: Any, exception: BaseException) -> None:
        c = C._client
        if c is not None:
            c.capture_exception(exception, auto=True, endpoint=_route(request))
        return None
