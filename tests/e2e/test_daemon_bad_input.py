"""The collector daemon (a real subprocess) answers bad batches with a clear 4xx JSON message and keeps serving."""

from __future__ import annotations

import gzip
import http.client
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from checks.model import Batch, Sample, encode_batch, new_batch_id
from tests.e2e.procs import Proc
from tests.servers.net import free_port

TOKEN = "bad-input-agent-token"
WEB1_TOKEN = "token-only-for-web1"
READ_TOKEN = "bad-input-read-token"
MAX_BODY = 4096
AGENT = "bad-input-host"


class Daemon:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        (tmp / "collector.yaml").write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"data_dir: {tmp}/collector\n"
            f"max_body_bytes: {MAX_BODY}\n"
            f"agents:\n  - name: '*'\n    token: {TOKEN}\n  - name: web1\n    token: {WEB1_TOKEN}\n"
            f"read_tokens: [{READ_TOKEN}]\n"
        )
        self.proc = Proc("collector", ["collector", "-c", str(tmp / "collector.yaml")], tmp / "collector.log")
        self.good = 0

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                chunked: bool = False) -> tuple[int, Any]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if chunked:
                c.putrequest(method, path)
                for k, v in (headers or {}).items():
                    c.putheader(k, v)
                c.putheader("Transfer-Encoding", "chunked")
                c.endheaders()
                assert body is not None
                for i in range(0, len(body), 1000):
                    part = body[i:i + 1000]
                    c.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                c.send(b"0\r\n\r\n")
            else:
                c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw.decode(errors="replace")
        finally:
            c.close()

    def post(self, body: bytes, *, token: str | None = TOKEN, gz: bool = False, headers: dict[str, str] | None = None,
             chunked: bool = False) -> tuple[int, Any]:
        h = {"Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if gz:
            h["Content-Encoding"] = "gzip"
        h.update(headers or {})
        return self.request("POST", "/api/v1/batches", body, h, chunked)

    def still_serving(self) -> None:
        assert self.proc.alive(), self.proc.output()
        st, out = self.request("GET", "/healthz")
        assert st == 200, (st, out)
        self.good += 1
        st, out = self.post(gzip.compress(good_batch(float(self.good))), gz=True)
        assert st == 200 and out["status"] == "stored", (st, out)

    def wait_healthy(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.alive(), f"collector exited:\n{self.proc.output()}"
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"collector not healthy:\n{self.proc.output()}")


def batch_obj(value: float = 1.0, agent: str = AGENT) -> dict[str, Any]:
    b = Batch(new_batch_id(), agent, time.time(), [Sample("test.value", value, time.time(), {"host": agent})], [])
    return json.loads(encode_batch(b))


def good_batch(value: float = 1.0, agent: str = AGENT) -> bytes:
    return json.dumps(batch_obj(value, agent)).encode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("bad-input"))
    d.proc.start()
    try:
        d.wait_healthy()
        yield d
    finally:
        d.proc.stop()


def _error(out: Any) -> str:
    assert isinstance(out, dict) and isinstance(out.get("error"), str) and out["error"], out
    return out["error"]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_malformed_json(daemon: Daemon, gz: bool) -> None:
    body = b'{"batch_id": "abc", "agent": '
    st, out = daemon.post(gzip.compress(body) if gz else body, gz=gz)
    assert st == 400, (st, out)
    assert "json" in _error(out).lower(), out
    daemon.still_serving()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda o: o["samples"][0].__setitem__("value", "abc"), "samples[0].value"),
        (lambda o: o.pop("batch_id"), "batch_id"),
        (lambda o: o["samples"][0].__setitem__("name", "Not A Metric"), "samples[0].name"),
        (lambda o: o.__setitem__("unexpected", 1), "unexpected"),
    ],
    ids=["value-type", "missing-batch-id", "bad-metric-name", "unknown-key"],
)
def test_wrong_schema_names_the_field(daemon: Daemon, mutate: Any, field: str) -> None:
    o = batch_obj()
    mutate(o)
    st, out = daemon.post(gzip.compress(json.dumps(o).encode()), gz=True)
    assert st == 400, (st, out)
    msg = _error(out)
    assert field in msg or out.get("field") == field, out
    daemon.still_serving()


@pytest.mark.parametrize("how", ["content-length", "chunked", "gzip-expands"])
def test_body_over_max_body_bytes_is_413(daemon: Daemon, how: str) -> None:
    o = batch_obj()
    o["samples"] = o["samples"] * 200  # ~15 KiB of JSON, over the 4 KiB limit
    raw = json.dumps(o).encode()
    assert len(raw) > MAX_BODY
    if how == "gzip-expands":
        body = gzip.compress(raw)
        assert len(body) < MAX_BODY  # small on the wire, too large once inflated
        st, out = daemon.post(body, gz=True)
    else:
        st, out = daemon.post(raw, chunked=how == "chunked")
    assert st == 413, (st, out)
    assert "max_body_bytes" in _error(out) or str(MAX_BODY) in _error(out), out
    daemon.still_serving()


def test_missing_token_is_401(daemon: Daemon) -> None:
    st, out = daemon.post(gzip.compress(good_batch()), token=None, gz=True)
    assert st == 401, (st, out)
    assert "token" in _error(out).lower(), out
    daemon.still_serving()


def test_wrong_token_is_401(daemon: Daemon) -> None:
    st, out = daemon.post(gzip.compress(good_batch()), token="not-a-token-we-know", gz=True)
    assert st == 401, (st, out)
    assert "token" in _error(out).lower(), out
    daemon.still_serving()


def test_malformed_authorization_header_is_401(daemon: Daemon) -> None:
    st, out = daemon.post(gzip.compress(good_batch()), token=None, gz=True, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert st == 401, (st, out)
    _error(out)
    daemon.still_serving()


def test_token_of_another_agent_is_403(daemon: Daemon) -> None:
    st, out = daemon.post(gzip.compress(good_batch(agent="db1")), token=WEB1_TOKEN, gz=True)
    assert st == 403, (st, out)
    assert "db1" in _error(out), out
    st, out = daemon.post(gzip.compress(good_batch(agent="web1")), token=WEB1_TOKEN, gz=True)
    assert st == 200, (st, out)  # the same token for its own agent is fine
    daemon.still_serving()


def test_gzip_header_with_a_non_gzip_body(daemon: Daemon) -> None:
    st, out = daemon.post(good_batch(), gz=True)  # plain JSON labelled gzip
    assert 400 <= st < 500, (st, out)
    assert "gzip" in _error(out).lower(), out
    st, out = daemon.post(b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic", gz=True)  # looks like gzip, is not
    assert 400 <= st < 500, (st, out)
    assert "gzip" in _error(out).lower(), out
    st, out = daemon.post(gzip.compress(good_batch())[:-12], gz=True)  # a truncated gzip stream
    assert 400 <= st < 500, (st, out)
    _error(out)
    daemon.still_serving()


def test_only_the_good_batches_were_stored(daemon: Daemon) -> None:
    daemon.still_serving()
    q = f"/api/v1/query?metric=test.value&host={AGENT}&start={time.time() - 3600}&end={time.time() + 60}"
    st, out = daemon.request("GET", q, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert st == 200, (st, out)
    series = out["series"] if isinstance(out, dict) else out
    values = sorted(v for s in series for _, v in s["points"])
    # every still_serving() call stored one sample valued 1..good; bad batches (value 1.0 too) stored nothing extra
    assert values == [float(i) for i in range(1, daemon.good + 1)], values
