"""Zabbix sink: pushes every sample by the trapper protocol (zabbix_utils AsyncSender), checks each answer,
pinpoints rejected host/keys, holds values for items that do not exist yet, and provisions through the API."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import orjson

from checks import require
from checks.catalogue import MetricSpec, register_metrics
from checks.model import APP_EXCEPTION, Batch
from collector.sinks.base import SinkContext, SinkError
from collector.sinks.zabbix_config import (
    ZabbixApiConfig,
    ZabbixSinkConfig,
    ZabbixTLSConfig,
    fast_sender_class,
    tls_context_factory,
)
from collector.sinks.zabbix_keys import (
    DISCOVERIES,
    HEARTBEAT_KEY,
    KeyMapper,
    Mapped,
    format_value,
    item_key,
    lld_payload,
    split_ts,
    zabbix_host_name,
)

log = logging.getLogger("collector.sinks.zabbix")

register_metrics(
    MetricSpec("collector.sink.zabbix.sent_values_total", "count", "counter",
               "values the Zabbix server accepted (processed) from this sink", ("sink",)),
    MetricSpec("collector.sink.zabbix.failed_values_total", "count", "counter",
               "values Zabbix rejected (unknown host or key, disabled item, ...) per Zabbix host; the log names the keys",
               ("sink", "zabbix_host")),
    MetricSpec("collector.sink.zabbix.held_values", "count", "gauge",
               "values held back until their Zabbix item exists (or in flight from that hold)", ("sink",)),
    MetricSpec("collector.sink.zabbix.dropped_values_total", "count", "counter",
               "values the zabbix sink gave up on (unmappable, hold_full)", ("sink", "reason")),
    MetricSpec("collector.sink.zabbix.unsupported_items", "count", "gauge",
               "infrawatch items Zabbix marked unsupported (e.g. wrong value type); the log names them", ("sink",)),
    MetricSpec("collector.sink.zabbix.send_duration_seconds", "seconds", "gauge", "duration of the last send() to Zabbix", ("sink",)),
)

#: self-metrics are emitted at most this often (they travel back through the sinks themselves)
EMIT_EVERY = 10.0

# ---------------------------------------------------------------- values


@dataclass(slots=True)
class _V:
    host: str
    key: str
    value: str
    clock: int
    ns: int




class ZabbixSink:
    """Sends samples to Zabbix; see docs/zabbix.md for the key mapping and the delivery rules."""

    name = "zabbix"
    Config = ZabbixSinkConfig

    def __init__(self, config: ZabbixSinkConfig, context: SinkContext) -> None:
        require("zabbix_utils", "zabbix", "zabbix sink")
        self.cfg = config
        self.ctx = context
        self.name = config.name
        self.mapper = KeyMapper(config.key_tags)
        self._ssl = tls_context_factory(config.tls, config.server)
        self._sender: Any = None
        self._host_cache: dict[str, str] = {}
        self._first_seen: dict[tuple[str, str], float] = {}
        self._mapped: dict[tuple[str, str], Mapped] = {}
        self._wanted_cache: dict[str, bool] = {}
        # LLD: host → discovery → entries; entries only grow (a payload always lists them all)
        # LLD: host → rule → entry → when a sample last named it (wall clock); a payload lists them all
        self._lld: dict[str, dict[str, dict[tuple[str, ...], float]]] = defaultdict(lambda: defaultdict(dict))
        self._lld_pruned_at = time.monotonic()
        self._lld_dirty: set[tuple[str, str]] = set()
        self._lld_file = Path(context.state_dir) / "zabbix-lld.json" if context.state_dir else None
        self._held: dict[tuple[str, str], list[_V]] = {}
        self._held_count = 0
        self._inflight = 0  # held values released and being delivered right now
        self._held_file = Path(context.state_dir) / "zabbix-held.json" if context.state_dir else None
        self._last_emit = 0.0
        self._send_seconds = 0.0
        self._agents: dict[str, str] = {}  # zabbix host → agent
        self._unprovisioned: set[str] = set()
        self._sem: asyncio.Semaphore | None = None
        self._flusher: asyncio.Task | None = None
        self._send_lock: asyncio.Lock | None = None
        self._last_unsupported_check = 0.0
        self._unsupported_total = 0
        self.sent_total = 0
        self.failed_total = 0
        self.failed_by_host: dict[str, int] = defaultdict(int)
        self._failed_dirty: set[str] = set()
        self.dropped_total: dict[str, int] = defaultdict(int)
        self.prov = None
        if config.api is not None:
            from collector.sinks.zabbix_provision import Provisioner

            host_tls: dict[str, Any] = {}
            if config.tls.connect == "psk":
                host_tls = {"tls_accept": 2, "tls_connect": 1, "tls_psk_identity": config.tls.psk_identity,
                            "tls_psk": Path(config.tls.psk_file).read_text(encoding="ascii").strip()}
            elif config.tls.connect == "cert":
                host_tls = {"tls_accept": 4, "tls_connect": 1}
            self.prov = Provisioner(config.api, host_tls)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._sender = fast_sender_class()(server=self.cfg.server, port=self.cfg.port, timeout=int(max(1, self.cfg.timeout)),
                                            chunk_size=10**9, ssl_context=self._ssl, compression=self.cfg.compression)
        self._sem = asyncio.Semaphore(self.cfg.in_flight)
        self._send_lock = asyncio.Lock()
        self._load_lld()
        self._load_held()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="zabbix-sink-flusher")

    async def close(self) -> None:
        """Stop the background flusher (a delivery in progress is finished or its values kept) and
        save held values and LLD state to the state dir, so the next start continues from there."""
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except (asyncio.CancelledError, Exception):
                pass
            self._flusher = None
        if self._held_count:
            log.warning("zabbix sink closing with values held for items that do not exist yet; kept for the next start",
                        extra={"sink": self.name, "held": self._held_count, "file": str(self._held_file)})
        self._save_held()
        self._save_lld()
        self._emit(force=True)
        if self.prov is not None:
            await self.prov.close()

    # ------------------------------------------------------------------ send

    async def send(self, batches: Sequence[Batch]) -> None:
        if self._sender is None:
            await self.start()
        t0 = time.monotonic()
        values, hosts = self._convert(batches)
        assert self._send_lock is not None
        async with self._send_lock:
            if self.prov is not None and self.cfg.api is not None:
                await self._provision(hosts)
            await self._send_lld()
            ready = self._hold_unknown(values)
            await self._deliver(ready)
        self._send_seconds = time.monotonic() - t0
        self._emit()

    def _wanted(self, name: str) -> bool:
        inc, exc = self.cfg.include, self.cfg.exclude
        if len(self._wanted_cache) > 100_000:
            self._wanted_cache.clear()
        return not ((inc and not any(fnmatch.fnmatchcase(name, p) for p in inc))
                    or (exc and any(fnmatch.fnmatchcase(name, p) for p in exc)))

    def _convert(self, batches: Sequence[Batch]) -> tuple[list[_V], set[str]]:
        cfg = self.cfg
        wanted = self._wanted_cache
        mapper = self.mapper
        host_cache = self._host_cache
        first_seen = self._first_seen
        now = time.monotonic()
        wall = time.time()
        lld = self._lld
        out: list[_V] = []
        hosts: set[str] = set()
        for b in batches:
            last_ts: dict[str, float] = {}
            exc_counts: dict[tuple[str, str], list[float]] = {}
            exc_sampled: set[tuple[str, str]] = set()
            for s in b.samples:
                name = s.name
                ok = wanted.get(name)
                if ok is None:
                    ok = wanted[name] = self._wanted(name)
                if not ok:
                    continue
                src = s.tags.get("host") or b.agent
                host = host_cache.get(src)
                if host is None:
                    host = host_cache[src] = zabbix_host_name(src, cfg.host_prefix, cfg.host_map)
                    self._agents[host] = b.agent
                m = mapper.map(name, s.tags)
                if m is None:
                    self._drop("unmappable", 1, host=host, metric=name, tags=s.tags)
                    continue
                if name == "app.exceptions.count":
                    exc_sampled.add((host, s.tags.get("module", "")))
                hk = (host, m.key)
                if hk not in first_seen:
                    first_seen[hk] = now
                    self._mapped[hk] = m
                disc = m.discovery
                if disc is not None and m.entry is not None:
                    entries = lld[host][disc]
                    if m.entry not in entries:
                        self._lld_dirty.add((host, disc))
                    entries[m.entry] = wall
                clock, ns = split_ts(s.ts)
                out.append(_V(host, m.key, format_value(s.value), clock, ns))
                if s.ts > last_ts.get(host, 0.0):
                    last_ts[host] = s.ts
            if cfg.exception_counts_from_events:
                for e in b.events:
                    if e.kind != APP_EXCEPTION:
                        continue
                    module = e.tags.get("module") or str(e.data.get("module") or "") or "unknown"
                    src = e.tags.get("host") or b.agent
                    host = host_cache.get(src) or host_cache.setdefault(src, zabbix_host_name(src, cfg.host_prefix, cfg.host_map))
                    n = e.data.get("count", 1)
                    acc = exc_counts.setdefault((host, module), [0.0, 0.0])
                    acc[0] += n if isinstance(n, (int, float)) and n > 0 else 1
                    acc[1] = max(acc[1], e.ts)
            if exc_counts:
                for (host, module), (n, ts) in exc_counts.items():
                    if (host, module) in exc_sampled:  # the agent already counted them
                        continue
                    m = self.mapper.map("app.exceptions.count", {"module": module})
                    if m is None:
                        continue
                    hk = (host, m.key)
                    if hk not in first_seen:
                        first_seen[hk] = now
                        self._mapped[hk] = m
                    if m.entry is not None:
                        if m.entry not in lld[host]["modules"]:
                            self._lld_dirty.add((host, "modules"))
                        lld[host]["modules"][m.entry] = wall
                    clock, ns = split_ts(ts)
                    out.append(_V(host, m.key, format_value(n), clock, ns))
            if cfg.heartbeat:
                for host, ts in last_ts.items():
                    hk = (host, HEARTBEAT_KEY)
                    if hk not in first_seen:
                        first_seen[hk] = now
                    clock, ns = split_ts(ts)
                    out.append(_V(host, HEARTBEAT_KEY, "1", clock, ns))
            hosts.update(last_ts)
        return out, hosts

    # ------------------------------------------------------------------ provisioning (API)

    async def _provision(self, hosts: Iterable[str]) -> None:
        from collector.sinks.zabbix_provision import ApiError, ApiUnavailable

        prov = self.prov
        assert prov is not None and self.cfg.api is not None
        new = [h for h in hosts if (st := prov.hosts.get(h)) is None or st.hostid is None]
        self._unprovisioned.update(new)
        if not self._unprovisioned or not prov.available:
            return
        done = []
        for host in sorted(self._unprovisioned):
            st = prov.hosts.get(host)
            if st is not None and st.next_attempt > time.monotonic():
                continue
            try:
                if self.cfg.api.provision:
                    await prov.ensure_host(host, self._agents.get(host, host))
                else:
                    found = await prov.call("host.get", filter={"host": [host]}, output=["hostid"])
                    if found:
                        prov.hosts.setdefault(host, _host_state()).hostid = found[0]["hostid"]
                done.append(host)
            except ApiUnavailable:
                return
            except ApiError as e:
                log.error("zabbix host provisioning failed", extra={"host": host, "error": str(e)[:500]})
                prov.hosts.setdefault(host, _host_state()).next_attempt = time.monotonic() + self.cfg.api.retry_interval
        if done:
            self._unprovisioned.difference_update(done)
            try:
                await prov.refresh_keys(done)
            except (ApiUnavailable, ApiError):
                pass

    # ------------------------------------------------------------------ LLD

    async def _send_lld(self) -> None:
        """Send the full entry set of every discovery rule that grew; failures stay dirty and are retried."""
        if not self._lld_dirty:
            return
        dirty = sorted(self._lld_dirty)
        now = time.time()
        vals = []
        for host, disc in dirty:
            payload = lld_payload(DISCOVERIES[disc], self._lld[host][disc])
            vals.append(_V(host, DISCOVERIES[disc].rule_key, orjson.dumps(payload).decode(), int(now), 0))
        try:
            failed = await self._send_values(vals, isolate=True)
        except SinkError:
            return
        failed_keys = {(v.host, v.key) for v in failed}
        for (host, disc), v in zip(dirty, vals):
            if (v.host, v.key) not in failed_keys:
                self._lld_dirty.discard((host, disc))
        if len(failed_keys) < len(vals):
            self._save_lld()

    def _load_lld(self) -> None:
        if self._lld_file is None or not self._lld_file.is_file():
            return
        try:
            data = orjson.loads(self._lld_file.read_bytes())
            for host, discs in data.items():
                for disc, entries in discs.items():
                    if disc in DISCOVERIES:  # [[value, ..., last_seen], ...]
                        self._lld[host][disc].update((tuple(str(x) for x in e[:-1]), float(e[-1])) for e in entries)
        except (OSError, ValueError, TypeError, AttributeError, IndexError) as e:
            log.warning("zabbix LLD state unreadable; starting empty", extra={"file": str(self._lld_file), "error": str(e)})

    def _save_lld(self) -> None:
        if self._lld_file is None:
            return
        data = {h: {d: sorted([*e, t] for e, t in ents.items()) for d, ents in discs.items() if ents}
                for h, discs in self._lld.items()}
        try:
            self._lld_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._lld_file.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(data))
            os.replace(tmp, self._lld_file)
        except OSError as e:
            log.warning("cannot save zabbix LLD state", extra={"file": str(self._lld_file), "error": str(e)})

    # ------------------------------------------------------------------ hold-back

    def _hold_unknown(self, values: list[_V]) -> list[_V]:
        """With the API: values whose item is not on the host yet are held; returns what to send now."""
        prov = self.prov
        if prov is None or not prov.available:
            return values
        hosts = prov.hosts
        ready: list[_V] = []
        for v in values:
            st = hosts.get(v.host)
            if st is None or st.hostid is None:
                if v.host in self._unprovisioned:
                    self._hold(v)
                else:
                    ready.append(v)
            elif v.key in st.keys or not st.keys_at:
                ready.append(v)
            else:
                self._hold(v)
        return ready

    def _hold(self, v: _V) -> None:
        hk = (v.host, v.key)
        lst = self._held.get(hk)
        if lst is None:
            lst = self._held[hk] = []
        lst.append(v)
        self._held_count += 1
        if self._held_count > self.cfg.hold_max_values:
            # drop the oldest values of the key held longest
            oldest = min(self._held, key=lambda k: self._first_seen.get(k, 0.0))
            dropped = self._held.pop(oldest)
            self._held_count -= len(dropped)
            self._drop("hold_full", len(dropped), host=oldest[0], key=oldest[1])

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.retry_held_every)
            try:
                assert self._send_lock is not None
                async with self._send_lock:
                    await self._flush_once()
                self._emit()
            except asyncio.CancelledError:
                raise
            except SinkError:
                pass
            except Exception:  # noqa: BLE001 - never let the background task die
                log.exception("zabbix sink background flush failed")

    async def _flush_once(self) -> None:
        from collector.sinks.zabbix_provision import ApiError, ApiUnavailable

        prov = self.prov
        if prov is not None and self._unprovisioned:
            await self._provision(())
        self._prune_lld()
        await self._send_lld()
        now = time.monotonic()
        if prov is not None and prov.available and self.cfg.api is not None:
            try:
                held_hosts = {h for h, _ in self._held}
                if held_hosts:
                    await prov.refresh_keys(held_hosts)
                if self.cfg.api.provision and self.cfg.api.create_missing_items:
                    for (host, key) in list(self._held):
                        m = self._mapped.get((host, key))
                        st = prov.hosts.get(host)
                        if m is not None and not m.covered and st is not None and st.hostid and key not in st.keys:
                            await prov.create_item(host, key, m.metric)
                if now - self._last_unsupported_check >= self.cfg.api.check_unsupported_interval:
                    self._last_unsupported_check = now
                    await prov.check_unsupported()
                    self._report_unsupported()
            except (ApiUnavailable, ApiError):
                pass
        if not self._held:
            return
        release: list[_V] = []
        for hk in list(self._held):
            host, key = hk
            st = prov.hosts.get(host) if prov is not None else None
            expired = now - self._first_seen.get(hk, 0.0) >= self.cfg.hold
            known = prov is None or not prov.available or (st is not None and st.hostid is not None and key in st.keys)
            if known or expired:
                vals = self._held.pop(hk)
                self._held_count -= len(vals)
                release.extend(vals)
        if release:
            self._inflight += len(release)
            try:
                await self._deliver(release)
            except BaseException:
                # unreachable, or cancelled by close(): keep them held (bounded); a value delivered
                # twice is harmless (Zabbix drops a second value with the same item, clock and ns)
                for v in release:
                    self._hold(v)
                raise
            finally:
                self._inflight -= len(release)

    def _report_unsupported(self) -> None:
        assert self.prov is not None
        total = 0
        for host, st in self.prov.hosts.items():
            total += len(st.unsupported)
            for key, err in st.unsupported_new.items():
                log.warning("zabbix marked an item unsupported: its values are not stored",
                            extra={"host": host, "key": key, "error": err[:300]})
            st.unsupported_new = {}
        self._unsupported_total = total

    # ------------------------------------------------------------------ delivery

    async def _deliver(self, values: list[_V]) -> None:
        """Send; rejected values of new keys are held, the others reported. Raises SinkError when unreachable."""
        if not values:
            return
        failed = await self._send_values(values, isolate=True)
        if not failed:
            return
        now = time.monotonic()
        report: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for v in failed:
            hk = (v.host, v.key)
            if now - self._first_seen.get(hk, 0.0) < self.cfg.hold:
                self._hold(v)
            else:
                report[v.host][v.key] += 1
        for host, keys in report.items():
            n = sum(keys.values())
            self.failed_total += n
            self.failed_by_host[host] += n
            shown = sorted(keys)[:20]
            log.warning("zabbix rejected values", extra={
                "host": host, "failed": n, "keys": ",".join(shown) + (f",... (+{len(keys) - 20})" if len(keys) > 20 else ""),
                "hint": "the host or item does not exist, is disabled, or is not a trapper item"})
            self._failed_dirty.add(host)

    async def _send_values(self, values: list[_V], isolate: bool) -> list[_V]:
        """Send in chunks, `in_flight` at once; returns the values Zabbix rejected (pinpointed per key)."""
        size = self.cfg.chunk_size
        chunks = [values[i:i + size] for i in range(0, len(values), size)]
        results = await asyncio.gather(*(self._send_chunk(c) for c in chunks), return_exceptions=True)
        failed: list[_V] = []
        error: BaseException | None = None
        for chunk, res in zip(chunks, results):
            if isinstance(res, BaseException):
                error = error or res
                continue
            processed, nfailed = res
            self.sent_total += processed
            if nfailed:
                failed.extend(await self._isolate(chunk, nfailed) if isolate else chunk)
        if error is not None:
            if isinstance(error, SinkError):
                raise error
            raise SinkError(f"zabbix trapper {self.cfg.server}:{self.cfg.port}: {error}", retryable=True) from error
        return failed

    async def _send_chunk(self, chunk: list[_V]) -> tuple[int, int]:
        from zabbix_utils.exceptions import ProcessingError

        payload = {"request": "sender data",
                   "data": [{"host": v.host, "key": v.key, "value": v.value, "clock": v.clock, "ns": v.ns} for v in chunk]}
        assert self._sem is not None
        async with self._sem:
            try:
                async with asyncio.timeout(self.cfg.timeout * 2 + 5):
                    resp = await self._sender.send_payload(payload)
            except ProcessingError as e:
                raise SinkError(f"zabbix trapper {self.cfg.server}:{self.cfg.port}: {e}", retryable=True) from None
            except (OSError, asyncio.TimeoutError, ValueError, EOFError, asyncio.IncompleteReadError) as e:
                raise SinkError(f"zabbix trapper {self.cfg.server}:{self.cfg.port}: {type(e).__name__}: {e}",
                                retryable=True) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("zabbix trapper answer", extra={"sent": len(chunk), "processed": resp.processed,
                                                      "failed": resp.failed, "first_key": chunk[0].key, "host": chunk[0].host})
        return resp.processed, resp.failed

    async def _isolate(self, chunk: list[_V], nfailed: int) -> list[_V]:
        """Find which values of a chunk failed: bisect over its (host, key) groups by re-sending halves.

        Re-sending is harmless: Zabbix drops a value whose item, clock and ns it already stored.
        A half that fails completely needs no further split; the other half's count is inferred.
        """
        groups: dict[tuple[str, str], list[_V]] = {}
        for v in chunk:
            groups.setdefault((v.host, v.key), []).append(v)
        glist = list(groups.values())
        out: list[_V] = []

        async def rec(gs: list[list[_V]], nf: int) -> None:
            total = sum(len(g) for g in gs)
            if nf <= 0:
                return
            if nf >= total or len(gs) == 1:
                for g in gs:
                    out.extend(g)
                return
            half = len(gs) // 2
            a, b = gs[:half], gs[half:]
            _, fa = await self._send_chunk([v for g in a for v in g])
            fb = nf - fa
            if fb < 0 or fb > sum(len(g) for g in b):
                _, fb = await self._send_chunk([v for g in b for v in g])
            await rec(a, fa)
            await rec(b, fb)

        await rec(glist, nfailed)
        return out

    # ------------------------------------------------------------------ accounting

    def _drop(self, reason: str, n: int, **detail: Any) -> None:
        self.dropped_total[reason] += n
        if self.dropped_total[reason] == n or self.dropped_total[reason] % 1000 < n:
            log.warning("zabbix sink dropped values", extra={"sink": self.name, "reason": reason, "count": n,
                                                             "dropped_total": self.dropped_total[reason],
                                                             **{k: str(v)[:200] for k, v in detail.items()}})

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_emit < EMIT_EVERY:
            return
        self._last_emit = now
        em = self.ctx.emit_metric
        t = {"sink": self.name}
        em("collector.sink.zabbix.sent_values_total", float(self.sent_total), t)
        em("collector.sink.zabbix.held_values", float(self.held_count), t)
        em("collector.sink.zabbix.unsupported_items", float(self._unsupported_total), t)
        em("collector.sink.zabbix.send_duration_seconds", self._send_seconds, t)
        # tag zabbix_host, not host: a `host` tag would route the sample to that (possibly missing) Zabbix host
        for reason, n in sorted(self.dropped_total.items()):
            em("collector.sink.zabbix.dropped_values_total", float(n), {**t, "reason": reason})
        for host in sorted(self._failed_dirty):
            em("collector.sink.zabbix.failed_values_total", float(self.failed_by_host[host]), {**t, "zabbix_host": host})
        self._failed_dirty.clear()

    # ------------------------------------------------------------------ held values across restarts

    def _save_held(self) -> None:
        if self._held_file is None:
            return
        rows = [[v.host, v.key, v.value, v.clock, v.ns] for vals in self._held.values() for v in vals]
        mapped = [[h, k, m.metric, m.discovery, list(m.entry) if m.entry is not None else None, m.covered]
                  for (h, k) in self._held if (m := self._mapped.get((h, k))) is not None]
        try:
            if not rows:
                self._held_file.unlink(missing_ok=True)
                return
            self._held_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._held_file.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"values": rows, "mapped": mapped}))
            os.replace(tmp, self._held_file)
        except OSError as e:
            log.error("cannot save held zabbix values; they are lost", extra={"sink": self.name, "file": str(self._held_file),
                                                                              "values": len(rows), "error": str(e)})

    def _load_held(self) -> None:
        if self._held_file is None or not self._held_file.is_file():
            return
        try:
            data = orjson.loads(self._held_file.read_bytes())
            rows = data["values"]
            now = time.monotonic()
            for host, key, metric, disc, entry, covered in data.get("mapped", ()):
                self._mapped[(host, key)] = Mapped(key, metric, disc, tuple(entry) if entry is not None else None, covered)
            for host, key, value, clock, ns in rows:
                self._first_seen.setdefault((host, key), now)
                self._hold(_V(str(host), str(key), str(value), int(clock), int(ns)))
                self._agents.setdefault(str(host), str(host))
                if self.prov is not None:
                    self._unprovisioned.add(str(host))
            self._held_file.unlink(missing_ok=True)
            if rows:
                log.info("zabbix values held before the last stop loaded", extra={"sink": self.name, "values": len(rows)})
        except (OSError, ValueError, TypeError, KeyError) as e:
            log.warning("held zabbix values unreadable; ignored", extra={"sink": self.name, "file": str(self._held_file),
                                                                        "error": str(e)})

    # ------------------------------------------------------------------ introspection (tests, status)

    @property
    def held_count(self) -> int:
        """Values held back for items that do not exist yet, including those being delivered right now."""
        return self._held_count + self._inflight

    @property
    def unsupported_count(self) -> int:
        """Items of this sink's hosts that Zabbix marked unsupported at the last check."""
        return self._unsupported_total

    def lld_entries(self, host: str, discovery: str) -> set[tuple[str, ...]]:
        return set(self._lld.get(host, {}).get(discovery, {}))

    def _prune_lld(self) -> None:
        """Forget LLD entries no sample named for `lld_forget_after`; the next payload leaves them out,
        so Zabbix removes their items after the rule's lifetime (a filesystem unmounted for good)."""
        forget = self.cfg.lld_forget_after
        now = time.monotonic()
        if not forget or now - self._lld_pruned_at < min(60.0, forget / 10):
            return
        self._lld_pruned_at = now
        cutoff = time.time() - forget
        for host, discs in self._lld.items():
            for disc, ents in discs.items():
                stale = [e for e, t in ents.items() if t < cutoff]
                if stale:
                    for e in stale:
                        del ents[e]
                    self._lld_dirty.add((host, disc))
                    log.info("zabbix LLD entries forgotten", extra={"sink": self.name, "host": host, "rule": disc,
                                                                   "entries": ",".join("/".join(e) for e in stale)[:500]})


def _host_state() -> Any:
    from collector.sinks.zabbix_provision import HostState

    return HostState()


__all__ = ["ZabbixSink", "ZabbixSinkConfig", "ZabbixApiConfig", "ZabbixTLSConfig", "item_key"]
