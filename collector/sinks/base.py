"""The sink contract: a destination that receives committed batches; it formats, sends and classifies failures."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

from checks.model import Batch


class SinkError(Exception):
    """A send failed. `retryable` says whether the same batches may succeed later.

    `retry_after` (seconds) is a hint from the destination (e.g. HTTP Retry-After).
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@runtime_checkable
class Sink(Protocol):
    """A destination for committed batches (Zabbix, InfluxDB, ...).

    The collector's sink runner owns the durable queue, ordering, retry with backoff and drop
    accounting around a sink; the sink itself only:
      - `start()`: open connections (may be called again after `close()`),
      - `send(batches)`: deliver them or raise SinkError(retryable=...),
      - `close()`: release resources.
    A sink must not block the event loop: blocking libraries go through asyncio.to_thread.
    `send` must be idempotent enough that a retried delivery of the same batch is harmless.
    """

    name: str

    async def start(self) -> None: ...

    async def send(self, batches: Sequence[Batch]) -> None: ...

    async def close(self) -> None: ...


class SinkFactory(Protocol):
    """What a sink module exposes: a config dataclass and a constructor taking (config, context)."""

    Config: ClassVar[type[Any]]

    def __call__(self, config: Any, context: "SinkContext") -> Sink: ...


class SinkContext:
    """What the collector hands a sink at construction: its state dir and a metrics callback."""

    def __init__(self, state_dir: str, emit_metric: Any = None) -> None:
        self.state_dir = state_dir
        # emit_metric(name: str, value: float, tags: dict[str, str]) records a collector self-metric
        self.emit_metric = emit_metric or (lambda name, value, tags=None: None)
