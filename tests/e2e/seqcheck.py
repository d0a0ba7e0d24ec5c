"""Test-only check: emits a strictly increasing sequence number (persisted in its state dir) as a Sample
and an Event per run, so end-to-end tests can count deliveries exactly (no loss, no duplicates)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from checks.base import Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.model import Event, Sample


@dataclass(frozen=True, kw_only=True)
class SeqConfig(CheckConfig):
    pass


class SeqCheck(Check[SeqConfig]):
    Config = SeqConfig
    METRICS = (MetricSpec("test.seq", "count", "counter", "test-only sequence number"),)

    def _path(self) -> str:
        assert self.state_dir, "seq check needs a state dir"
        return os.path.join(self.state_dir, f"seq-{self.name}")

    async def run(self) -> list:
        p = self._path()
        try:
            n = int(open(p).read()) + 1
        except FileNotFoundError:
            n = 1
        with open(p + ".tmp", "w") as f:
            f.write(str(n))
            f.flush()
            os.fsync(f.fileno())
        os.replace(p + ".tmp", p)
        now = time.time()
        return [Sample("test.seq", float(n), now), Event("test.seq", now, f"seq {n}", {}, {"seq": n})]
