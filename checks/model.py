"""Wire data model shared by every layer: Sample, Event, Batch and their JSON encoding (version 1)."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

WIRE_VERSION = 1

# Limits enforced on decode; the collector and the agent's local ingest rely on them.
MAX_NAME_LEN = 200
MAX_TAGS = 32
MAX_TAG_KEY_LEN = 64
MAX_TAG_VALUE_LEN = 256
MAX_EVENT_KIND_LEN = 64
MAX_MESSAGE_LEN = 16_384
# A timestamp outside these bounds (2000-01-01 .. 2100-01-01) is a client bug, not data.
MIN_TS = 946_684_800.0
MAX_TS = 4_102_444_800.0

METRIC_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
TAG_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
EVENT_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")

# Event kinds used across the project.  Others are allowed (lower dotted names).
CHECK_ERROR = "check.error"  # a check raised or timed out; message says why
PROBE_FAILURE = "probe.failure"  # a probe reached a non-success result; data.result, data.target
APP_EXCEPTION = "app.exception"  # an application exception (issue 4)
APP_PERF = "app.perf"  # aggregated API/SQL timings of one interval (issue 4)
LOG_LINE = "log"  # a noteworthy log line


class WireError(ValueError):
    """A payload does not match the wire format; `path` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(slots=True)
class Sample:
    """One measurement: a metric name, a float value, a unix timestamp (s) and tags."""

    name: str
    value: float
    ts: float
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "ts": self.ts, "tags": self.tags}


@dataclass(slots=True)
class Event:
    """Something with text: a check error, a probe failure, an exception, a timing summary."""

    kind: str
    ts: float
    message: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "ts": self.ts, "message": self.message, "tags": self.tags, "data": self.data}


Reading = Sample | Event


@dataclass(slots=True)
class Batch:
    """What an agent ships: readings under an idempotent batch id."""

    batch_id: str
    agent: str
    sent_at: float
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    version: int = WIRE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "batch_id": self.batch_id,
            "agent": self.agent,
            "sent_at": self.sent_at,
            "samples": [s.to_json() for s in self.samples],
            "events": [e.to_json() for e in self.events],
        }


def new_batch_id() -> str:
    """A fresh, globally unique batch id."""
    return uuid.uuid4().hex


def encode_batch(batch: Batch) -> bytes:
    return orjson.dumps(batch.to_json())


def encode_readings(readings: list[Reading]) -> bytes:
    """Encode a list of readings as one JSON document (used by the agent buffer)."""
    return orjson.dumps(
        {
            "samples": [r.to_json() for r in readings if isinstance(r, Sample)],
            "events": [r.to_json() for r in readings if isinstance(r, Event)],
        }
    )


# ---------------------------------------------------------------- decoding + validation


def _check_ts(v: Any, path: str) -> float:
    if type(v) is not float and type(v) is not int:
        raise WireError(path, f"must be a number (unix seconds), got {type(v).__name__}")
    if not (MIN_TS <= v <= MAX_TS):
        raise WireError(path, f"timestamp {v!r} out of range (unix seconds between 2000 and 2100 expected)")
    return float(v)


def _check_tags(v: Any, path: str) -> dict[str, str]:
    if v is None:
        return {}
    if type(v) is not dict:
        raise WireError(path, f"must be an object of string values, got {type(v).__name__}")
    if len(v) > MAX_TAGS:
        raise WireError(path, f"too many tags ({len(v)} > {MAX_TAGS})")
    for k, tv in v.items():
        if len(k) > MAX_TAG_KEY_LEN or not TAG_KEY_RE.match(k):
            raise WireError(f"{path}.{k}", "tag key must match [a-z_][a-z0-9_]* and be at most 64 characters")
        if type(tv) is not str:
            raise WireError(f"{path}.{k}", f"tag value must be a string, got {type(tv).__name__}")
        if len(tv) > MAX_TAG_VALUE_LEN:
            raise WireError(f"{path}.{k}", f"tag value longer than {MAX_TAG_VALUE_LEN} characters")
    return v


_name_ok_cache: set[str] = set()


def _check_name(v: Any, path: str) -> str:
    if v in _name_ok_cache:
        return v
    if type(v) is not str:
        raise WireError(path, f"must be a string, got {type(v).__name__}")
    if len(v) > MAX_NAME_LEN or not METRIC_NAME_RE.match(v):
        raise WireError(path, f"metric name {v[:80]!r} must be lower dotted snake case (e.g. system.cpu.usage_percent)")
    if len(_name_ok_cache) < 100_000:
        _name_ok_cache.add(v)
    return v


def decode_sample(d: Any, path: str) -> Sample:
    if type(d) is not dict:
        raise WireError(path, "must be an object")
    try:
        name = d["name"]
        value = d["value"]
        ts = d["ts"]
    except KeyError as e:
        raise WireError(f"{path}.{e.args[0]}", "is required") from None
    name = _check_name(name, f"{path}.name")
    tv = type(value)
    if tv is not float and tv is not int:
        raise WireError(f"{path}.value", f"must be a number, got {tv.__name__}")
    if tv is float and not math.isfinite(value):
        raise WireError(f"{path}.value", "must be finite")
    ts = _check_ts(ts, f"{path}.ts")
    tags = _check_tags(d.get("tags"), f"{path}.tags")
    if len(d) > 4 or (len(d) == 4 and "tags" not in d):
        extra = set(d) - {"name", "value", "ts", "tags"}
        if extra:
            raise WireError(f"{path}.{sorted(extra)[0]}", "unknown field")
    return Sample(name, float(value), ts, tags)


def decode_event(d: Any, path: str) -> Event:
    if type(d) is not dict:
        raise WireError(path, "must be an object")
    extra = set(d) - {"kind", "ts", "message", "tags", "data"}
    if extra:
        raise WireError(f"{path}.{sorted(extra)[0]}", "unknown field")
    kind = d.get("kind")
    if type(kind) is not str or len(kind) > MAX_EVENT_KIND_LEN or not EVENT_KIND_RE.match(kind):
        raise WireError(f"{path}.kind", "must be a lower dotted name such as app.exception")
    if "ts" not in d:
        raise WireError(f"{path}.ts", "is required")
    ts = _check_ts(d["ts"], f"{path}.ts")
    message = d.get("message", "")
    if type(message) is not str:
        raise WireError(f"{path}.message", "must be a string")
    if len(message) > MAX_MESSAGE_LEN:
        message = message[:MAX_MESSAGE_LEN]
    tags = _check_tags(d.get("tags"), f"{path}.tags")
    data = d.get("data", {})
    if data is None:
        data = {}
    if type(data) is not dict:
        raise WireError(f"{path}.data", "must be an object")
    return Event(kind, ts, message, tags, data)


def decode_batch_obj(obj: Any) -> Batch:
    """Validate a parsed JSON object as a Batch; raises WireError naming the bad field."""
    if type(obj) is not dict:
        raise WireError("", "batch must be a JSON object")
    version = obj.get("version", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise WireError("version", f"unsupported wire version {version!r} (this collector speaks {WIRE_VERSION})")
    extra = set(obj) - {"version", "batch_id", "agent", "sent_at", "samples", "events"}
    if extra:
        raise WireError(sorted(extra)[0], "unknown field")
    bid = obj.get("batch_id")
    if type(bid) is not str or not (8 <= len(bid) <= 128) or not bid.isprintable():
        raise WireError("batch_id", "must be a string of 8 to 128 printable characters")
    agent = obj.get("agent")
    if type(agent) is not str or not (1 <= len(agent) <= 255):
        raise WireError("agent", "must be a non-empty string of at most 255 characters")
    sent_at = _check_ts(obj.get("sent_at"), "sent_at")
    raw_samples = obj.get("samples", [])
    if type(raw_samples) is not list:
        raise WireError("samples", "must be an array")
    raw_events = obj.get("events", [])
    if type(raw_events) is not list:
        raise WireError("events", "must be an array")
    samples = [decode_sample(s, f"samples[{i}]") for i, s in enumerate(raw_samples)]
    events = [decode_event(e, f"events[{i}]") for i, e in enumerate(raw_events)]
    return Batch(bid, agent, sent_at, samples, events, version)


def decode_batch(raw: bytes) -> Batch:
    """Parse and validate JSON bytes as a Batch."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise WireError("", f"malformed JSON: {e}") from None
    return decode_batch_obj(obj)
