"""Web middleware: WSGI, ASGI, aiohttp and Flask — time every request by route template, capture unhandled exceptions."""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterable

from infrawatch_sdk import _client as C

_ID_SEGMENT = re.compile(r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{16,})(?=/|$)")


def normalize_path(path: str) -> str:
    """Fallback route when the framework exposes none: numeric ids / UUIDs / long hex → {id}."""
    return _ID_SEGMENT.sub("/{id}", path)[:200]


def _module_for(path: str, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    c = C._client
    return c.rules.for_path(path) if c is not None else None


class WSGIMiddleware:
    """Wrap a WSGI app. The route is environ['infrawatch.route'] if a framework hook set it
    (see instrument_flask), else the path with ids normalised."""

    def __init__(self, app: Callable[..., Iterable[bytes]], module: str | None = None) -> None:
        self.app = app
        self.module = module

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        t0 = time.perf_counter()
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "")
        mod = _module_for(path, self.module)
        status_holder = [0]

        def sr(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            try:
                status_holder[0] = int(status.split(" ", 1)[0])
            except ValueError:
                pass
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        t_mod = C.current_module.set(mod)
        t_ep = C.current_endpoint.set(None)
        try:
            try:
                result = self.app(environ, sr)
            except Exception as e:
                status_holder[0] = 500
                C.capture_exception(e, module=mod)
                raise
            return result
        finally:
            try:
                route = environ.get("infrawatch.route") or normalize_path(path)
                c = C._client
                if c is not None:
                    c.record_request(time.perf_counter() - t0, f"{method} {route}", method, status_holder[0], mod)
            except Exception:  # noqa: BLE001
                pass
            C.current_module.reset(t_mod)
            C.current_endpoint.reset(t_ep)


def instrument_flask(app: Any, module: str | None = None) -> Any:
    """Flask: record the route template (url_rule) and errors Flask handles itself, then wrap wsgi_app."""

    def before() -> None:
        try:
            from flask import request

            rule = request.url_rule
            if rule is not None:
                request.environ["infrawatch.route"] = rule.rule
                C.current_endpoint.set(f"{request.method} {rule.rule}")
        except Exception:  # noqa: BLE001
            pass

    def on_exception(sender: Any, exception: BaseException, **kw: Any) -> None:
        C.capture_exception(exception)

    app.before_request(before)
    try:
        from flask import got_request_exception

        got_request_exception.connect(on_exception, app, weak=False)
    except Exception:  # noqa: BLE001
        pass
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, module=module)
    return app


class ASGIMiddleware:
    """Wrap an ASGI app (Starlette, FastAPI, ...): the route template comes from scope['route'] when the
    router set it; unhandled exceptions are captured and re-raised."""

    def __init__(self, app: Callable[..., Any], module: str | None = None) -> None:
        self.app = app
        self.module = module

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "/")
        method = scope.get("method", "")
        mod = _module_for(path, self.module)
        status_holder = [0]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status_holder[0] = int(message.get("status", 0))
            await send(message)

        t_mod = C.current_module.set(mod)
        try:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as e:
                status_holder[0] = 500
                C.capture_exception(e, module=mod)
                raise
        finally:
            try:
                route_obj = scope.get("route")
                route = getattr(route_obj, "path", None) or normalize_path(path)
                c = C._client
                if c is not None:
                    c.record_request(time.perf_counter() - t0, f"{method} {route}", method, status_holder[0], mod)
            except Exception:  # noqa: BLE001
                pass
            C.current_module.reset(t_mod)


def aiohttp_middleware(module: str | None = None) -> Any:
    """aiohttp.web middleware: `web.Application(middlewares=[iw.aiohttp_middleware()])`."""
    from aiohttp import web

    @web.middleware
    async def mw(request: Any, handler: Callable[..., Any]) -> Any:
        t0 = time.perf_counter()
        mod = _module_for(request.path, module)
        t_mod = C.current_module.set(mod)
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except Exception as e:
            C.capture_exception(e, module=mod)
            raise
        finally:
            try:
                res = request.match_info.route.resource
                route = res.canonical if res is not None else normalize_path(request.path)
                c = C._client
                if c is not None:
                    c.record_request(time.perf_counter() - t0, f"{request.method} {route}", request.method, status, mod)
            except Exception:  # noqa: BLE001
                pass
            C.current_module.reset(t_mod)

    return mw
