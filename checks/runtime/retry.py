"""HTTP `Retry-After` parsing, shared by the agent's shipper, the collector's sinks and the notifiers."""

from __future__ import annotations

import email.utils
import re
import time

_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds (`7`, `1.5`) or an HTTP date (in the past → 0).

    None when absent or unparsable (negative, `inf`, `nan` and other text included).
    """
    if not value:
        return None
    v = value.strip()
    if _SECONDS.fullmatch(v):
        return float(v)
    try:
        dt = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - (time.time() if now is None else now))
