"""Web middleware: WSGI, ASGI, aiohttp and Flask — time every request by route template, capture unhandled exceptions.

Module attribution, first match wins: the middleware's explicit `module=`, a URL prefix rule, the
Python package of the view/endpoint function (package rules), then (for exceptions) the frames.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterable

from infrawatch_sdk import _client as C

_perf = time.perf_counter
_now = time.time
_cur_module = C.current_module
_ID_SEGMENT = re.compile(r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{16,})(?=/|$)")


def normalize_path(path: str) -> str:
    """Fallback route when the framework exposes none: numeric ids / UUIDs / long hex → {id}."""
    return _ID_SEGMENT.sub("/{id}", path)[:200]


def _module_for(client: C.Client | None, path: str, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return client.rules.for_path(path) if client is not None and client.rules.by_url else None


def _module_of_handler(client: C.Client | None, fn: Any) -> str | None:
    """Package rule for the view function (`shop.payment.views.pay` → payment)."""
    if client is None or not client.rules.by_pkg or fn is None:
        return None
    return client.rules.for_package(getattr(fn, "__module__", None) or "")


class WSGIMiddleware:
    """Wrap a WSGI app. The route is environ['infrawatch.route'] if a framework hook set it
    (see instrument_flask, infrawatch_sdk.django), else the path with ids normalised.
    `client` defaults to the process-wide one from `init()`."""

    def __init__(self, app: Callable[..., Iterable[bytes]], module: str | None = None,
                 client: C.Client | None = None) -> None:
        self.app = app
        self.module = module
        self.client = client

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        c = self.client or C._client
        if c is None:
            return self.app(environ, start_response)
        t0 = _perf()
        path = environ.get("PATH_INFO") or "/"
        mod = self.module or (c.rules.for_path(path) if c.rules.by_url else None)
        status_holder = [0]
        environ["infrawatch.client"] = c

        def sr(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            try:
                status_holder[0] = int(status[:3])
            except ValueError:
                pass
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        t_mod = _cur_module.set(mod)
        try:
            try:
                return self.app(environ, sr)
            except Exception as e:
                status_holder[0] = 500
                route = environ.get("infrawatch.route") or path  # raw paths are normalised on the sender thread
                c.capture_exception(e, auto=True, endpoint=f"{environ.get('REQUEST_METHOD', '')} {normalize_path(route)}")
                raise
        finally:
            try:
                method = environ.get("REQUEST_METHOD", "")
                c._put(("request", _now(), _perf() - t0, _cur_module.get(),
                        f"{method} {environ.get('infrawatch.route') or path}", method, status_holder[0], False))
            except Exception:  # noqa: BLE001
                pass
            _cur_module.reset(t_mod)


def instrument_flask(app: Any, module: str | None = None, client: C.Client | None = None) -> Any:
    """Flask: record the route template (url_rule), attribute by view package, capture the errors Flask
    turns into 500 itself (got_request_exception), then wrap wsgi_app."""
    from flask import got_request_exception, request

    def before() -> None:
        try:
            rule = request.url_rule
            if rule is None:
                return
            env = request.environ
            env["infrawatch.route"] = rule.rule
            C.current_endpoint.set(f"{request.method} {rule.rule}")
            if C.current_module.get() is None:
                m = _module_of_handler(env.get("infrawatch.client"), app.view_functions.get(request.endpoint))
                if m:
                    C.current_module.set(m)
        except Exception:  # noqa: BLE001
            pass

    def on_exception(sender: Any, exception: BaseException, **kw: Any) -> None:
        try:
            c = request.environ.get("infrawatch.client") or client or C._client
            if c is not None:
                c.capture_exception(exception, auto=True)
        except Exception:  # noqa: BLE001
            pass

    def teardown(exc: BaseException | None) -> None:
        C.current_endpoint.set(None)

    app.before_request_funcs.setdefault(None, []).insert(0, before)
    app.teardown_request(teardown)
    got_request_exception.connect(on_exception, app, weak=False)
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, module=module, client=client)
    return app


def _asgi_route(scope: dict[str, Any], path: str, root: str) -> str:
    route_obj = scope.get("route")
    tpl = getattr(route_obj, "path", None)
    if isinstance(tpl, str) and tpl:
        # under a Starlette Mount the router grew root_path by the mount prefix: keep it in front
        rp = scope.get("root_path") or ""
        return (rp[len(root):] if rp.startswith(root) else "") + tpl
    return normalize_path(path)


class ASGIMiddleware:
    """Wrap an ASGI app (Starlette, FastAPI, ...): the route template comes from scope['route'] set by
    the router; the module may come from scope['endpoint']'s package; unhandled exceptions are captured
    with that route and re-raised."""

    def __init__(self, app: Callable[..., Any], module: str | None = None, client: C.Client | None = None) -> None:
        self.app = app
        self.module = module
        self.client = client

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        c = self.client or C._client
        if scope.get("type") != "http" or c is None:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "/")
        method = scope.get("method", "")
        root = scope.get("root_path") or ""
        mod = _module_for(c, path, self.module)
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
                m = mod or _module_of_handler(c, scope.get("endpoint"))
                c.capture_exception(e, module=m, auto=True, endpoint=f"{method} {_asgi_route(scope, path, root)}")
                raise
        finally:
            try:
                m = mod or _module_of_handler(c, scope.get("endpoint"))
                c.record_request(time.perf_counter() - t0, f"{method} {_asgi_route(scope, path, root)}", method,
                                 status_holder[0], m)
            except Exception:  # noqa: BLE001
                pass
            C.current_module.reset(t_mod)


def aiohttp_middleware(module: str | None = None, client: C.Client | None = None) -> Any:
    """aiohttp.web middleware: `web.Application(middlewares=[iw.aiohttp_middleware()])`; the route is
    `request.match_info.route.resource.canonical` (`/orders/{id}`)."""
    from aiohttp import web

    @web.middleware
    async def mw(request: Any, handler: Callable[..., Any]) -> Any:
        c = client or C._client
        if c is None:
            return await handler(request)
        t0 = time.perf_counter()
        mod = _module_for(c, request.path, module)
        if mod is None:
            try:
                mod = _module_of_handler(c, request.match_info.handler)
            except Exception:  # noqa: BLE001
                pass
        t_mod = C.current_module.set(mod)
        status = 500
        route = ""
        try:
            try:
                res = request.match_info.route.resource
                route = res.canonical if res is not None else normalize_path(request.path)
            except Exception:  # noqa: BLE001
                route = normalize_path(request.path)
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except Exception as e:
            c.capture_exception(e, module=mod, auto=True, endpoint=f"{request.method} {route}")
            raise
        finally:
            try:
                c.record_request(time.perf_counter() - t0, f"{request.method} {route}", request.method, status, mod)
            except Exception:  # noqa: BLE001
                pass
            C.current_module.reset(t_mod)

    return mw
