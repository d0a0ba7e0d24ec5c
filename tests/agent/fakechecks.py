"""Test-only checks (tick, fail, hang, block, bad, burst) registered into checks.CHECKS by the agent tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from checks import CHECKS
from checks.base import Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.model import Reading, Sample

TEST_CHECKS = {
    "test_tick": "tests.agent.fakechecks:TickCheck",
    "test_fail": "tests.agent.fakechecks:FailCheck",
    "test_hang": "tests.agent.fakechecks:HangCheck",
    "test_block": "tests.agent.fakechecks:BlockCheck",
    "test_bad": "tests.agent.fakechecks:BadCheck",
    "test_burst": "tests.agent.fakechecks:BurstCheck",
    "test_slow": "tests.agent.fakechecks:SlowCheck",
}


def register() -> None:
    CHECKS.update(TEST_CHECKS)


@dataclass(frozen=True, kw_only=True)
class TickConfig(CheckConfig):
    #: added to the emitted sample's tags as `label` when set
    label: str = ""


class TickCheck(Check[TickConfig]):
    """Emits test.tick = run number; remembers the loop time of every run."""

    Config = TickConfig
    METRICS: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("test.tick", "count", "counter", "run number"),)

    def __init__(self, config: TickConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self.runs: list[float] = []

    async def run(self) -> list[Reading]:
        self.runs.append(asyncio.get_running_loop().time())
        tags = {"label": self.config.label} if self.config.label else {}
        return [Sample("test.tick", float(len(self.runs)), time.time(), tags)]


class FailCheck(Check[CheckConfig]):
    async def run(self) -> list[Reading]:
        raise RuntimeError("boom: the test check failed")


class HangCheck(Check[CheckConfig]):
    def __init__(self, config: CheckConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self.started: list[float] = []
        self.cancelled: list[float] = []

    async def run(self) -> list[Reading]:
        loop = asyncio.get_running_loop()
        self.started.append(loop.time())
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.append(loop.time())
            raise
        return []


class BlockCheck(Check[CheckConfig]):
    """Wrongly blocks the event loop with time.sleep (what a check must never do)."""

    async def run(self) -> list[Reading]:
        time.sleep(0.4)
        return [Sample("test.tick", 1.0, time.time(), {})]


class BadCheck(Check[CheckConfig]):
    """One valid sample and one whose metric name breaks the wire format."""

    async def run(self) -> list[Reading]:
        now = time.time()
        return [Sample("test.tick", 1.0, now, {}), Sample("Not A Metric", 2.0, now, {})]


@dataclass(frozen=True, kw_only=True)
class BurstConfig(CheckConfig):
    count: int = 10


class BurstCheck(Check[BurstConfig]):
    """Emits `count` samples per run."""

    Config = BurstConfig

    async def run(self) -> list[Reading]:
        now = time.time()
        return [Sample("test.tick", float(i), now, {"i": str(i)}) for i in range(self.config.count)]


@dataclass(frozen=True, kw_only=True)
class SlowConfig(CheckConfig):
    seconds: float = 0.3


class SlowCheck(Check[SlowConfig]):
    """Sleeps (asynchronously) longer than its interval; tracks overlapping runs."""

    Config = SlowConfig

    def __init__(self, config: SlowConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self.active = 0
        self.max_active = 0
        self.runs = 0

    async def run(self) -> list[Reading]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.config.seconds)
        finally:
            self.active -= 1
        self.runs += 1
        return [Sample("test.tick", float(self.runs), time.time(), {})]
