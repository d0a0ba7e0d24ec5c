"""The check contract: a frozen config dataclass validated once, and `async run() -> list[Sample | Event]`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from checks.catalogue import MetricSpec
from checks.config import Duration
from checks.model import PROBE_FAILURE, Event, Reading, Sample

# Low-cardinality probe outcomes (the `result` tag). Never free text in a metric.
SUCCESS = "success"
TIMEOUT = "timeout"
CONNECTION_FAILED = "connection_failed"
DNS_ERROR = "dns_error"
TLS_ERROR = "tls_error"
BAD_STATUS = "bad_status"
MISMATCH = "mismatch"
AUTH_FAILED = "auth_failed"
ERROR = "error"
RESULTS = (SUCCESS, TIMEOUT, CONNECTION_FAILED, DNS_ERROR, TLS_ERROR, BAD_STATUS, MISMATCH, AUTH_FAILED, ERROR)


@dataclass(frozen=True, kw_only=True)
class CheckConfig:
    """Options every check takes. Subclasses add their own fields (frozen, kw_only dataclasses)."""

    type: str
    #: instance name, unique within the agent; defaults to the type (plus an index when repeated)
    name: str | None = None
    interval: Duration = 10.0
    #: defaults to min(interval * 0.8, 30s)
    timeout: Duration | None = None
    #: random delay before the first run, up to this (spreads checks and agents apart; later runs keep the
    #: interval cadence); defaults to 10% of the interval (max 5s)
    jitter: Duration | None = None
    #: extra tags added to every reading of this check
    tags: dict[str, str] = field(default_factory=dict)
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be greater than 0")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be greater than 0")

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else min(self.interval * 0.8, 30.0)

    @property
    def effective_jitter(self) -> float:
        return self.jitter if self.jitter is not None else min(self.interval * 0.1, 5.0)


C = TypeVar("C", bound=CheckConfig)


class Check(Generic[C]):
    """Base of every check. Subclasses set `Config` and `METRICS` and implement `run`.

    - Config is validated once (by the registry) before the check is constructed.
    - `run` raises on failure; the agent's scheduler turns the exception into a `check.error` Event.
    - Blocking library calls go through `asyncio.to_thread`.
    - A check never renders, never applies thresholds: alerting owns thresholds.
    """

    Config: ClassVar[type[CheckConfig]] = CheckConfig
    METRICS: ClassVar[tuple[MetricSpec, ...]] = ()
    #: name of the pip extra that provides this check's optional library, if any
    EXTRA: ClassVar[str | None] = None

    def __init__(self, config: C, *, state_dir: str | None = None) -> None:
        self.config = config
        #: a private directory for state kept across runs and restarts (file positions, ...);
        #: None when run without one (`infrawatch check`): keep state in memory then.
        self.state_dir = state_dir

    @property
    def name(self) -> str:
        return self.config.name or self.config.type

    async def run(self) -> list[Reading]:
        raise NotImplementedError

    async def close(self) -> None:
        """Release sockets, connections, file handles. Called once at shutdown."""


@dataclass(slots=True)
class ProbeResult:
    """What one probe attempt found: an outcome, an optional reason, and prober-specific samples."""

    result: str = SUCCESS
    reason: str = ""
    samples: list[Sample] = field(default_factory=list)
    #: extra tags for the up/duration samples (e.g. status code class) — keep them low-cardinality
    tags: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


class Probe(Check[C]):
    """A single-target service probe (blackbox_exporter style).

    The base emits `<type>.up` and `<type>.duration_seconds` tagged `target` and `result`, and a
    `probe.failure` Event with the reason when the result is not success. Subclasses implement
    `probe()` and emit only their specifics. The caller (scheduler) owns the deadline: `probe()`
    may be cancelled by the timeout, which the base reports as result=timeout.
    """

    def target_label(self) -> str:
        return str(getattr(self.config, "target", self.name))

    async def probe(self) -> ProbeResult:
        raise NotImplementedError

    async def run(self) -> list[Reading]:
        import asyncio

        started = time.time()
        t0 = time.perf_counter()
        try:
            res = await self.probe()
        except asyncio.TimeoutError:
            res = ProbeResult(TIMEOUT, f"no answer within {self.config.effective_timeout:g}s")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or an unclassified failure is still a result, never a crash
            res = ProbeResult(ERROR, f"{type(e).__name__}: {e}")
        duration = time.perf_counter() - t0
        return self.readings(res, started, duration)

    def readings(self, res: ProbeResult, ts: float, duration: float) -> list[Reading]:
        t = self.config.type
        target = self.target_label()
        tags = {"target": target, "result": res.result, **res.tags}
        out: list[Reading] = [
            Sample(f"{t}.up", 1.0 if res.result == SUCCESS else 0.0, ts, dict(tags)),
            Sample(f"{t}.duration_seconds", duration, ts, dict(tags)),
        ]
        for s in res.samples:
            s.tags.setdefault("target", target)
            out.append(s)
        if res.result != SUCCESS:
            out.append(
                Event(
                    PROBE_FAILURE,
                    ts,
                    f"{t} probe of {target} failed: {res.result}: {res.reason}" if res.reason else f"{t} probe of {target} failed: {res.result}",
                    {"target": target, "probe": t, "check": self.name, "result": res.result},
                    {"result": res.result, "reason": res.reason, **res.data},
                )
            )
        return out


def probe_metrics(type_name: str, target_desc: str) -> tuple[MetricSpec, ...]:
    """The two metrics every probe emits, for a probe's METRICS tuple."""
    return (
        MetricSpec(f"{type_name}.up", "bool", "gauge", f"1 if the {target_desc} answered as expected, else 0", ("target", "result")),
        MetricSpec(f"{type_name}.duration_seconds", "seconds", "gauge", f"total time of the {target_desc} probe", ("target", "result")),
    )
