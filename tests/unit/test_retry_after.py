"""The one Retry-After parser used by the shipper, the sinks and the notifiers."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from checks.runtime.retry import parse_retry_after


def test_delta_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    now = time.time()
    assert parse_retry_after(formatdate(now + 120, usegmt=True), now=now) == pytest.approx(120, abs=1)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "inf", "nan", "1e9"])
def test_unusable_values_are_none(value: str | None) -> None:
    assert parse_retry_after(value) is None
