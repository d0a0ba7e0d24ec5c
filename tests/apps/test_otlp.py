"""OTLP/HTTP into the local ingest: the real opentelemetry-sdk exporters (protobuf) and OTLP/JSON documents."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.apps.helpers import CollectorExt, IngestServer, http_post


def _tracer_provider(url: str, service: str = "java-shop", gzip: bool = False):  # noqa: ANN202
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    comp = Compression.Gzip if gzip else Compression.NoCompression
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces", timeout=5, compression=comp)))
    return tp


def test_otel_sdk_spans_and_exception_events_arrive(ingest: IngestServer, collector: CollectorExt) -> None:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tp = _tracer_provider(ingest.url, gzip=True)
    tracer = tp.get_tracer("shop")
    for i in range(5):
        with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER,
                                          attributes={"http.request.method": "GET", "http.route": "/orders/{id}",
                                                      "url.path": f"/orders/{i}", "http.response.status_code": 200}):
            with tracer.start_as_current_span("SELECT shop", kind=SpanKind.CLIENT,
                                              attributes={"db.system.name": "postgresql",
                                                          "db.query.text": f"SELECT * FROM orders WHERE id = {i}"}):
                time.sleep(0.001)
    with pytest.raises(ValueError):
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER,
                                          attributes={"http.method": "POST", "http.route": "/pay", "http.status_code": 500}) as sp:
            sp.set_status(Status(StatusCode.ERROR))
            raise ValueError("card 4111 declined")
    tp.shutdown()
    batch = ingest.flush()
    collector.ingest(batch)
    eps = {i["endpoint"]: i for i in collector.get("/api/v1/perf/endpoints")[1]["items"]}
    assert eps["GET /orders/{id}"]["count"] == 5 and eps["GET /orders/{id}"]["module"] == "order"
    assert eps["POST /pay"]["errors"] == 1 and eps["POST /pay"]["module"] == "payment"
    assert eps["GET /orders/{id}"]["service"] == "java-shop"
    (sql,) = collector.get("/api/v1/perf/sql")[1]["items"]
    assert sql["count"] == 5 and sql["db"] == "postgresql" and sql["statement"] == "select * from orders where id = ?"
    assert sql["p95_seconds"] >= 0.001
    (g,) = collector.get("/api/v1/exceptions")[1]["groups"]
    assert g["type"] == "ValueError" and g["module"] == "payment" and g["endpoint"] == "POST /pay"
    d = collector.get(f"/api/v1/exceptions/{g['id']}")[1]
    assert "card 4111 declined" in d["sample_stack"] and d["sample_frames"]  # frames parsed from the Python stacktrace


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_otel_sdk_error_logs_become_exceptions(ingest: IngestServer, collector: CollectorExt) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    lp = LoggerProvider(resource=Resource.create({"service.name": "shop"}))
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=ingest.url + "/v1/logs", timeout=5)))
    logger = logging.getLogger("shop.payment.gateway")
    logger.propagate = False
    h = LoggingHandler(level=logging.INFO, logger_provider=lp)
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    try:
        logger.info("all good")  # below ERROR: not an exception
        try:
            {}["sku"]
        except KeyError:
            logger.exception("order lookup failed")
        logger.error("gateway answered 502")
    finally:
        logger.removeHandler(h)
        lp.shutdown()
    collector.ingest(ingest.flush())
    groups = collector.get("/api/v1/exceptions")[1]["groups"]
    types = sorted(g["type"] for g in groups)
    assert types == ["ERROR log", "KeyError"]
    assert all(g["module"] == "payment" for g in groups)  # logger rule shop.payment


def _json_traces(spans: list[dict], service: str = "php-billing") -> dict:
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"scope": {"name": "x"}, "spans": spans}]}]}


def test_otlp_json_traces(ingest: IngestServer) -> None:
    t0 = int(time.time() * 1e9)
    spans = [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "GET /pay/{id}", "kind": 2,
         "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + 25_000_000),
         "attributes": [{"key": "http.route", "value": {"stringValue": "/pay/{id}"}},
                        {"key": "http.request.method", "value": {"stringValue": "GET"}},
                        {"key": "http.response.status_code", "value": {"intValue": "503"}}],
         "events": [{"name": "exception", "timeUnixNano": str(t0 + 1000),
                     "attributes": [{"key": "exception.type", "value": {"stringValue": "RuntimeException"}},
                                    {"key": "exception.message", "value": {"stringValue": "gateway timeout"}},
                                    {"key": "exception.stacktrace", "value": {"stringValue":
                                        "PHP Fatal error:  Uncaught RuntimeException: gateway timeout in /var/www/pay.php:12\n"
                                        "Stack trace:\n#0 /var/www/index.php(5): charge()\n#1 {main}\n  thrown in /var/www/pay.php on line 12"}}]}]},
        {"name": "query", "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + 2_000_000),
         "attributes": [{"key": "db.statement", "value": {"stringValue": "UPDATE t SET a = 5 WHERE id IN (1, 2, 3)"}},
                        {"key": "db.system", "value": {"stringValue": "mysql"}}]},
    ]
    st, _ = http_post(ingest.url + "/v1/traces", json.dumps(_json_traces(spans)).encode())
    assert st == 200
    batch = ingest.flush()
    perf = {e.data["kind"]: e for e in batch.events if e.kind == "app.perf"}
    assert perf["request"].data["errors"] == 1 and perf["request"].tags["module"] == "payment"
    assert perf["request"].data["max"] == pytest.approx(0.025)
    assert perf["sql"].data["statement"] == "update t set a = ? where id in (?+)" and perf["sql"].tags["db"] == "mysql"
    (exc,) = [e for e in batch.events if e.kind == "app.exception"]
    assert exc.data["type"] == "RuntimeException" and exc.tags["service"] == "php-billing"
    assert exc.data["frames"][-1]["file"] == "/var/www/pay.php"


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "field"),
    [
        ("/v1/traces", b"{nope", "application/json", 400, "body"),
        ("/v1/traces", b'{"resourceSpans": 5}', "application/json", 400, "resourceSpans"),
        ("/v1/traces", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}', "application/json", 400,
         "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano"),
        ("/v1/traces", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "10", "endTimeUnixNano": "5"}]}]}]}',
         "application/json", 400, "resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano"),
        ("/v1/logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [7]}]}]}', "application/json", 400,
         "resourceLogs[0].scopeLogs[0].logRecords[0]"),
        ("/v1/traces", b"\xff\xff\xff garbage", "application/x-protobuf", 400, "body"),
        ("/v1/logs", b"\x0a\x05\xff", "application/x-protobuf", 400, "body"),
        ("/v1/traces", b"<xml/>", "text/xml", 415, None),
    ],
)
def test_bad_otlp_input_4xx_with_reason(ingest: IngestServer, path: str, body: bytes, ctype: str, status: int, field: str | None) -> None:
    st, resp = http_post(ingest.url + path, body, {"Content-Type": ctype})
    assert st == status, resp
    assert resp["error"]
    if field:
        assert resp["field"] == field
    assert len(ingest.ingest.agg) == 0
    assert http_post(ingest.url + "/v1/traces", b"{}")[0] == 200


def test_missing_protobuf_support_is_415_naming_the_package(ingest: IngestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry.proto.collector.trace.v1.trace_service_pb2", None)
    st, resp = http_post(ingest.url + "/v1/traces", b"", {"Content-Type": "application/x-protobuf"})
    assert st == 415 and "opentelemetry-proto" in resp["error"]
