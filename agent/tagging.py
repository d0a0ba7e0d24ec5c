"""Reading preparation before buffering: merge host/global/check tags, drop readings that break the wire format.

Tag precedence (lowest → highest): global `tags:` → the check's `tags:` → the reading's own tags → `host`.
A reading's own tags are dimensions (`cpu`, `mountpoint`, `target`); a config label must not merge two
series into one, so they win over configured labels. `host` is always the configured host name.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Mapping

import orjson

from checks.model import CHECK_ERROR, Event, Reading, Sample, WireError, decode_event, decode_sample

log = logging.getLogger("infrawatch.agent")

_warned: set[tuple[str, str]] = set()


def _warn_once(source: str, err: str) -> None:
    key = (source, err[:120])
    if key in _warned or len(_warned) > 1000:
        return
    _warned.add(key)
    log.warning("dropped a reading that breaks the wire format", extra={"source": source, "error": err})


def prepare(
    readings: list[Reading],
    base_tags: Mapping[str, str],
    host: str,
    *,
    source: str,
    invalid: Counter[str] | None = None,
    check_type: str | None = None,
) -> list[Reading]:
    """Tagged, validated copies of `readings`. Invalid ones are dropped, counted under `source` and
    logged once; when `check_type` is given (a check's run) one `check.error` Event reports them."""
    out: list[Reading] = []
    first_err: str | None = None
    bad = 0
    for i, r in enumerate(readings):
        try:
            if isinstance(r, Sample):
                tags = {**base_tags, **r.tags, "host": host} if r.tags else {**base_tags, "host": host}
                out.append(decode_sample({"name": r.name, "value": r.value, "ts": r.ts, "tags": tags}, f"readings[{i}]"))
            elif isinstance(r, Event):
                tags = {**base_tags, **r.tags, "host": host} if r.tags else {**base_tags, "host": host}
                ev = decode_event({"kind": r.kind, "ts": r.ts, "message": r.message, "tags": tags, "data": r.data}, f"readings[{i}]")
                if ev.data:
                    orjson.dumps(ev.data)  # must be JSON-encodable
                out.append(ev)
            else:
                raise WireError(f"readings[{i}]", f"not a Sample or Event but {type(r).__name__}")
        except (WireError, TypeError, orjson.JSONEncodeError) as e:
            bad += 1
            err = f"{getattr(r, 'name', None) or getattr(r, 'kind', '?')}: {e}"
            first_err = first_err or err
            _warn_once(source, err)
    if bad:
        if invalid is not None:
            invalid[source] += bad
        if check_type is not None and first_err is not None:
            ts = next((r.ts for r in out), None)
            msg = f"check {source} (type {check_type}) emitted {bad} invalid reading(s): {first_err}"
            out.append(
                Event(
                    CHECK_ERROR,
                    ts if ts is not None else time.time(),
                    msg,
                    {**base_tags, "check": source, "type": check_type, "host": host},
                    {"reason": "invalid_reading", "error": first_err, "count": bad},
                )
            )
    return out
