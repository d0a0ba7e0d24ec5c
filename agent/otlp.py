"""OpenTelemetry OTLP/HTTP (JSON and protobuf) traces and logs → the aggregator's timings and exceptions."""

from __future__ import annotations

from typing import Any, Callable

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
SEVERITY_ERROR = 17  # ERROR..FATAL are 17..24

_KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
          "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}
PROTO_EXTRA = "otlp"


class OtlpError(ValueError):
    """Malformed OTLP payload; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MissingProto(RuntimeError):
    """opentelemetry-proto is not installed: protobuf bodies cannot be decoded."""


def decode_protobuf(body: bytes, what: str) -> dict[str, Any]:
    """Protobuf ExportTraceServiceRequest / ExportLogsServiceRequest → the OTLP JSON shape (camelCase).

    Only the fields this module reads are converted (much cheaper than json_format.MessageToDict).
    """
    try:
        from google.protobuf.message import DecodeError

        if what == "traces":
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest as Req
        else:
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest as Req
    except ImportError:
        raise MissingProto(
            "OTLP protobuf needs the opentelemetry-proto package on the agent: pip install 'infrawatch[otlp]' "
            "(or pip install opentelemetry-proto), or send OTLP/JSON with Content-Type: application/json"
        ) from None
    msg = Req()
    try:
        msg.ParseFromString(body)
    except (DecodeError, ValueError) as e:
        raise OtlpError("body", f"malformed protobuf: {e}") from None
    if what == "traces":
        return {"resourceSpans": [
            {"resource": {"attributes": _pb_attrs(rs.resource.attributes)},
             "scopeSpans": [{"spans": [_pb_span(sp) for sp in ss.spans]} for ss in rs.scope_spans]}
            for rs in msg.resource_spans]}
    return {"resourceLogs": [
        {"resource": {"attributes": _pb_attrs(rl.resource.attributes)},
         "scopeLogs": [{"scope": {"name": sl.scope.name},
                        "logRecords": [{"timeUnixNano": lr.time_unix_nano, "observedTimeUnixNano": lr.observed_time_unix_nano,
                                        "severityNumber": int(lr.severity_number), "severityText": lr.severity_text,
                                        "body": _pb_any(lr.body), "attributes": _pb_attrs(lr.attributes)}
                                       for lr in sl.log_records]} for sl in rl.scope_logs]}
        for rl in msg.resource_logs]}


_PB_SCALARS = {"string_value": "stringValue", "bool_value": "boolValue", "int_value": "intValue", "double_value": "doubleValue"}


def _pb_any(v: Any) -> dict[str, Any] | None:
    which = v.WhichOneof("value")
    if which is None:
        return None
    key = _PB_SCALARS.get(which)
    if key is not None:
        return {key: getattr(v, which)}
    if which == "array_value":
        return {"arrayValue": {"values": [_pb_any(x) for x in v.array_value.values]}}
    if which == "kvlist_value":
        return {"kvlistValue": {"values": _pb_attrs(v.kvlist_value.values)}}
    return {"bytesValue": v.bytes_value.hex()}


def _pb_attrs(attrs: Any) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": _pb_any(kv.value)} for kv in attrs]


def _pb_span(sp: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": sp.name, "kind": int(sp.kind), "startTimeUnixNano": sp.start_time_unix_nano,
                         "endTimeUnixNano": sp.end_time_unix_nano, "attributes": _pb_attrs(sp.attributes),
                         "status": {"code": int(sp.status.code)}}
    if sp.events:
        d["events"] = [{"name": ev.name, "timeUnixNano": ev.time_unix_nano, "attributes": _pb_attrs(ev.attributes)}
                       for ev in sp.events]
    return d


def _value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return None
    if "arrayValue" in v:
        return [_value(x) for x in (v["arrayValue"] or {}).get("values", []) or []]
    if "kvlistValue" in v:
        return _attrs((v["kvlistValue"] or {}).get("values"))
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return None


def _attrs(lst: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(lst, list):
        return out
    for kv in lst:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _value(kv.get("value"))
    return out


def _nanos(v: Any, field: str) -> int:
    if v is None or v == "":
        return 0
    try:
        return int(v)
    except (TypeError, ValueError):
        raise OtlpError(field, f"must be an integer of nanoseconds, got {v!r}") from None


def _list(d: dict[str, Any], key: str, field: str) -> list[Any]:
    v = d.get(key, [])
    if v is None:
        return []
    if not isinstance(v, list):
        raise OtlpError(f"{field}.{key}" if field else key, "must be an array")
    return v


def _obj(v: Any, field: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise OtlpError(field, "must be an object")
    return v


Sink = Callable[..., Any]


def traces(doc: Any, on_timing: Sink, on_exception: Sink) -> int:
    """Walk an ExportTraceServiceRequest (JSON shape); returns the number of spans seen.

    on_timing(kind, duration, service=, module=, endpoint=, statement=, db=, error=, ts=, path=, attrs=)
    on_exception(type, message, stack=, service=, module=, endpoint=, ts=, logger=, attrs=)
    Validation happens before anything is handed on: a malformed document raises OtlpError and
    nothing of it is kept.
    """
    doc = _obj(doc, "body")
    calls: list[tuple[Sink, tuple[Any, ...], dict[str, Any]]] = []
    n = 0
    for i, rs in enumerate(_list(doc, "resourceSpans", "")):
        f_rs = f"resourceSpans[{i}]"
        rs = _obj(rs, f_rs)
        res = _attrs(_obj(rs.get("resource") or {}, f"{f_rs}.resource").get("attributes"))
        service = str(res.get("service.name") or "")
        for j, ss in enumerate(_list(rs, "scopeSpans", f_rs)):
            f_ss = f"{f_rs}.scopeSpans[{j}]"
            ss = _obj(ss, f_ss)
            for k, sp in enumerate(_list(ss, "spans", f_ss)):
                f = f"{f_ss}.spans[{k}]"
                sp = _obj(sp, f)
                n += 1
                start = _nanos(sp.get("startTimeUnixNano"), f"{f}.startTimeUnixNano")
                end = _nanos(sp.get("endTimeUnixNano"), f"{f}.endTimeUnixNano")
                if end < start:
                    raise OtlpError(f"{f}.endTimeUnixNano", "is before startTimeUnixNano")
                kind = sp.get("kind", 0)
                if isinstance(kind, str):
                    kind = _KINDS.get(kind, 0)
                if not isinstance(kind, int):
                    raise OtlpError(f"{f}.kind", "must be a span kind number")
                a = _attrs(sp.get("attributes"))
                status = sp.get("status") or {}
                code = status.get("code", 0) if isinstance(status, dict) else 0
                err = code in (STATUS_ERROR, "STATUS_CODE_ERROR")
                dur = (end - start) / 1e9
                ts = (end or start) / 1e9 or None
                module = str(a.get("infrawatch.module") or a.get("module") or "")
                stmt = a.get("db.query.text") or a.get("db.statement")
                if isinstance(stmt, str) and stmt:
                    db = str(a.get("db.system.name") or a.get("db.system") or "")
                    calls.append((on_timing, ("sql", dur), dict(service=service, module=module, statement=stmt, db=db,
                                                               error=err, ts=ts, path="", attrs=a)))
                elif kind == SPAN_KIND_SERVER:
                    method = str(a.get("http.request.method") or a.get("http.method") or "")
                    route = a.get("http.route")
                    path = str(a.get("url.path") or a.get("http.target") or "").split("?", 1)[0]
                    endpoint = f"{method} {route}".strip() if route else str(sp.get("name") or "")
                    st = a.get("http.response.status_code", a.get("http.status_code"))
                    try:
                        err = err or (st is not None and int(st) >= 500)
                    except (TypeError, ValueError):
                        pass
                    calls.append((on_timing, ("request", dur), dict(service=service, module=module, endpoint=endpoint[:256],
                                                                   error=err, ts=ts, path=path, attrs=a)))
                for m, ev in enumerate(_list(sp, "events", f)):
                    ev = _obj(ev, f"{f}.events[{m}]")
                    if ev.get("name") != "exception":
                        continue
                    ea = _attrs(ev.get("attributes"))
                    ets = _nanos(ev.get("timeUnixNano"), f"{f}.events[{m}].timeUnixNano") / 1e9 or ts
                    route = a.get("http.route")
                    method = str(a.get("http.request.method") or a.get("http.method") or "")
                    calls.append((on_exception, (str(ea.get("exception.type") or "Exception"), str(ea.get("exception.message") or "")),
                                  dict(stack=str(ea.get("exception.stacktrace") or ""), service=service, module=module,
                                       endpoint=f"{method} {route}".strip() if route else "", ts=ets, logger="",
                                       attrs={**a, **ea})))
    for fn, args, kw in calls:
        fn(*args, **kw)
    return n


def logs(doc: Any, on_exception: Sink, min_severity: int = SEVERITY_ERROR) -> int:
    """Walk an ExportLogsServiceRequest: records at ERROR or above (or with exception.* attributes) → exceptions."""
    doc = _obj(doc, "body")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    n = 0
    for i, rl in enumerate(_list(doc, "resourceLogs", "")):
        f_rl = f"resourceLogs[{i}]"
        rl = _obj(rl, f_rl)
        res = _attrs(_obj(rl.get("resource") or {}, f"{f_rl}.resource").get("attributes"))
        service = str(res.get("service.name") or "")
        for j, sl in enumerate(_list(rl, "scopeLogs", f_rl)):
            f_sl = f"{f_rl}.scopeLogs[{j}]"
            sl = _obj(sl, f_sl)
            scope = (sl.get("scope") or {}).get("name", "") if isinstance(sl.get("scope"), dict) else ""
            for k, lr in enumerate(_list(sl, "logRecords", f_sl)):
                f = f"{f_sl}.logRecords[{k}]"
                lr = _obj(lr, f)
                n += 1
                sev = lr.get("severityNumber", 0)
                if isinstance(sev, str):
                    sev = 17 if sev.startswith(("SEVERITY_NUMBER_ERROR", "SEVERITY_NUMBER_FATAL")) else 0
                if not isinstance(sev, int):
                    raise OtlpError(f"{f}.severityNumber", "must be a number")
                a = _attrs(lr.get("attributes"))
                if sev < min_severity and "exception.type" not in a:
                    continue
                ts = (_nanos(lr.get("timeUnixNano"), f"{f}.timeUnixNano") or _nanos(lr.get("observedTimeUnixNano"), f"{f}.observedTimeUnixNano")) / 1e9 or None
                body = _value(lr.get("body"))
                msg = str(a.get("exception.message") or body or "")
                etype = str(a.get("exception.type") or (lr.get("severityText") or "ERROR") + " log")
                calls.append(((etype, msg), dict(stack=str(a.get("exception.stacktrace") or ""), service=service,
                                                 module=str(a.get("infrawatch.module") or a.get("module") or ""),
                                                 endpoint="", ts=ts, logger=str(scope or a.get("logger.name") or ""), attrs=a)))
    for args, kw in calls:
        on_exception(*args, **kw)
    return n
