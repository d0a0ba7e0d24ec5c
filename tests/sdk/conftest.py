"""Fixtures for the SDK tests."""

from __future__ import annotations

from typing import Iterator

import pytest

import infrawatch_sdk as iw
from infrawatch_sdk import _client as C
from tests.sdk.helpers import MODULES, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client(receiver: Receiver) -> Iterator[iw.Client]:
    """The process-wide client (iw.init) sending to `receiver`; closed and unset afterwards."""
    c = iw.init(receiver.url, service="shop", flush_interval=0.05, modules=MODULES)
    assert c.config_error is None
    yield c
    c.close(0)
    C._client = None
