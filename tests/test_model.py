"""Wire format: encode/decode round trip and validation errors that name the bad field."""

from __future__ import annotations

import time

import orjson
import pytest

from checks.model import Batch, Event, Sample, WireError, decode_batch, encode_batch, new_batch_id


def _batch(**over) -> dict:
    now = time.time()
    b = Batch(new_batch_id(), "web-1", now, [Sample("system.load.1m", 0.5, now, {"host": "web-1"})], [Event("check.error", now, "boom", {"check": "x"})])
    d = b.to_json()
    d.update(over)
    return d


def test_round_trip() -> None:
    now = time.time()
    b = Batch(new_batch_id(), "web-1", now, [Sample("a.b_c", 1, now, {"k": "v"})], [Event("app.exception", now, "m", {}, {"x": [1, 2]})])
    got = decode_batch(encode_batch(b))
    assert got == Batch(b.batch_id, "web-1", now, [Sample("a.b_c", 1.0, now, {"k": "v"})], b.events)
    assert isinstance(got.samples[0].value, float)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["samples"][0].update(value="x"), "samples[0].value"),
        (lambda d: d["samples"][0].pop("ts"), "samples[0].ts"),
        (lambda d: d["samples"][0].update(ts=12), "samples[0].ts"),
        (lambda d: d["samples"][0].update(name="CPU Usage"), "samples[0].name"),
        (lambda d: d["samples"][0]["tags"].update(bad=1), "samples[0].tags.bad"),
        (lambda d: d["samples"][0]["tags"].update({"Bad-Key": "v"}), "samples[0].tags.Bad-Key"),
        (lambda d: d["samples"][0].update(extra=1), "samples[0].extra"),
        (lambda d: d["events"][0].update(kind="Not A Kind"), "events[0].kind"),
        (lambda d: d.update(batch_id=""), "batch_id"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(samples={}), "samples"),
        (lambda d: d.update(agent=None), "agent"),
    ],
)
def test_validation_names_field(mutate, field) -> None:
    d = _batch()
    mutate(d)
    with pytest.raises(WireError) as ei:
        decode_batch(orjson.dumps(d))
    assert ei.value.path == field


def test_malformed_json() -> None:
    with pytest.raises(WireError, match="malformed JSON"):
        decode_batch(b'{"batch_id": ')


def test_non_finite_rejected() -> None:
    raw = encode_batch(Batch(new_batch_id(), "a", time.time())).replace(b'"samples":[]', b'"samples":[{"name":"a","value":1e999,"ts":1700000000}]')
    with pytest.raises(WireError):
        decode_batch(raw)
