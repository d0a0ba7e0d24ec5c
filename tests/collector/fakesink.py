"""A scriptable in-process sink for the sink-runner tests.

It stands in for a destination at the Sink protocol seam (the real Zabbix and InfluxDB sinks have their own
tests against real servers); here the point is the runner's queueing, ordering, retry and drop accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from checks.model import Batch
from collector.sinks.base import SinkContext, SinkError


@dataclass(frozen=True)
class RecordingSinkConfig:
    type: Literal["recording"] = "recording"
    name: str = "recording"
    fail_first: int = 0


class RecordingSink:
    Config = RecordingSinkConfig
    instances: list["RecordingSink"] = []

    def __init__(self, config: RecordingSinkConfig | None = None, context: SinkContext | None = None) -> None:
        self.config = config or RecordingSinkConfig()
        self.name = self.config.name
        self.received: list[str] = []  # batch ids in delivery order
        self.attempts = 0
        self.fail_next = self.config.fail_first  # raise retryable this many times
        self.reject_ids: set[str] = set()  # batches refused for good
        self.started = 0
        self.closed = 0
        self.retry_after: float | None = None
        RecordingSink.instances.append(self)

    async def start(self) -> None:
        self.started += 1

    async def send(self, batches: Sequence[Batch]) -> None:
        self.attempts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise SinkError("destination down", retryable=True, retry_after=self.retry_after)
        if any(b.batch_id in self.reject_ids for b in batches):
            raise SinkError("destination refuses these", retryable=False)
        self.received.extend(b.batch_id for b in batches)

    async def close(self) -> None:
        self.closed += 1
