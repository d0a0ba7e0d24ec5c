"""The infrawatch agent daemon: runs checks, buffers readings on disk, ships them to the collector.

Modules: config (AgentConfig), scheduler (checks on intervals under timeouts), tagging (host/global
tags, wire validation), buffer (SQLite disk buffer with begin/commit transactions), shipper (gzip
JSON over http.client with retry/backoff/Retry-After), health (self metrics), main (Agent, run_agent,
run_once, main), ingest + otlp + aggregate (local ingest of application exceptions and timings).

Local ingest (issue 4): `agent/ingest.py` provides
  - `Config`: a frozen kw_only dataclass; the `local_ingest:` section is validated with it
    (`checks.config.from_dict`, so errors name file, key and line);
  - `async def serve(config, agent, stop: asyncio.Event) -> None`: started by `Agent.run` when the
    section is present; hands readings to `agent.submit(readings, urgent=...)` (non-blocking, loop
    thread) and returns soon after `stop` is set (before the agent's final flush).
Timings are aggregated per `local_ingest.interval` (10 s); exceptions take a fast lane
(`exception_flush`, 1 s: one event per group with the exact count since the last flush) and are
shipped urgently (within ~0.2 s), so an exception burst reaches alerting in about a second.
"""
