"""Fixtures for the application-exceptions tests: a loop thread, the real local ingest, the real collector extension."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.apps.helpers import CollectorExt, IngestServer, LoopThread


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def ingest(loop_thread: LoopThread) -> Iterator[IngestServer]:
    srv = IngestServer(loop_thread, "host-a", module_rules={
        "payment": {"url_prefixes": ["/pay"], "packages": ["shop.payment"], "loggers": ["shop.payment"]},
        "order": {"url_prefixes": ["/orders"], "packages": ["shop.order", "com.shop.order"]},
    })
    yield srv
    srv.close()


@pytest.fixture
def collector(loop_thread: LoopThread, tmp_path: Path) -> Iterator[CollectorExt]:
    c = CollectorExt(loop_thread, tmp_path)
    yield c
    c.close()
