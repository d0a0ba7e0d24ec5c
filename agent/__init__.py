"""The infrawatch agent daemon: runs checks, buffers readings on disk, ships them to the collector.

Modules: config (AgentConfig), scheduler (checks on intervals under timeouts), tagging (host/global
tags, wire validation), buffer (SQLite disk buffer with begin/commit transactions), shipper (gzip
JSON over http.client with retry/backoff/Retry-After), health (self metrics), main (Agent, run_agent,
run_once, main).

Local ingest hook (issue 4): a module `agent/ingest.py` providing
  - `Config`: a frozen kw_only dataclass; the `local_ingest:` section is validated with it
    (`checks.config.from_dict`, so errors name file, key and line);
  - `async def serve(config, agent, stop: asyncio.Event) -> None`: started by `Agent.run` when the
    section is present; hands readings to `agent.submit(readings)` (non-blocking, loop thread) and
    returns soon after `stop` is set (before the agent's final flush).
Without that module a `local_ingest:` section is a config error.
"""
