"""Redis probe (redis-py asyncio): PING latency and health figures from INFO (memory, clients, ops/s, hit ratio, role)."""

from __future__ import annotations

import asyncio
import inspect
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from checks import require
from checks.base import (
    AUTH_FAILED,
    CONNECTION_FAILED,
    ERROR,
    TIMEOUT,
    TLS_ERROR,
    CheckConfig,
    Probe,
    ProbeResult,
    probe_metrics,
)
from checks.catalogue import MetricSpec
from checks.model import Sample
from checks.tcp import ProbeFailure, TlsSettings, failure_result, os_error_text, parse_host_port, probe_deadline, resolve

aioredis = require("redis.asyncio", "redis", "redis")
_exc = require("redis.exceptions", "redis", "redis")
_retry = require("redis.asyncio.retry", "redis", "redis")
_backoff = require("redis.backoff", "redis", "redis")

# skip CLIENT SETINFO on connect (a round trip per probe); the keyword changed in redis-py 7
_NO_SETINFO: dict[str, Any] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(aioredis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)


@dataclass(frozen=True, kw_only=True)
class RedisConfig(TlsSettings, CheckConfig):
    #: host:port (default port 6379); the host is resolved on every run
    target: str
    #: ACL user name (Redis 6+); leave unset for `requirepass` only
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    #: connect with TLS (see the tls_* options)
    tls: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_host_port(self.target, 6379)
        except ValueError as e:
            raise ValueError(f"target: {e}") from None
        if self.username and self.password is None:
            raise ValueError("username needs password")
        if self.db < 0:
            raise ValueError("db must not be negative")
        self._check_tls_files()


class RedisCheck(Probe[RedisConfig]):
    """Connect (AUTH), PING, INFO; keyspace hit ratio from the counters' change since the previous run."""

    Config: ClassVar[type[CheckConfig]] = RedisConfig
    EXTRA = "redis"
    METRICS = probe_metrics("redis", "Redis server") + (
        MetricSpec("redis.connect_seconds", "seconds", "gauge", "time to connect and authenticate", ("target",)),
        MetricSpec("redis.ping_seconds", "seconds", "gauge", "PING round-trip time", ("target",)),
        MetricSpec("redis.used_memory_bytes", "bytes", "gauge", "memory used by Redis (INFO used_memory)", ("target",)),
        MetricSpec("redis.maxmemory_bytes", "bytes", "gauge", "configured memory limit, 0 = none (INFO maxmemory)", ("target",)),
        MetricSpec("redis.connected_clients", "count", "gauge", "client connections (INFO connected_clients)", ("target",)),
        MetricSpec("redis.ops_per_second", "per_second", "gauge", "commands per second (INFO instantaneous_ops_per_sec)", ("target",)),
        MetricSpec(
            "redis.keyspace_hit_ratio", "ratio", "gauge",
            "keyspace hits / (hits + misses) since the previous run; absent on the first run or without lookups",
            ("target",),
        ),
        MetricSpec("redis.evicted_keys_total", "count", "counter", "keys evicted because of maxmemory (INFO evicted_keys)", ("target",)),
        MetricSpec("redis.role", "bool", "gauge", "1 on a master, 0 on a replica", ("target", "role")),
        MetricSpec("redis.replication_link_up", "bool", "gauge", "replicas only: 1 if the link to the master is up", ("target",)),
        MetricSpec("redis.replication_last_io_seconds", "seconds", "gauge", "replicas only: seconds since the last interaction with the master", ("target",)),
        MetricSpec("redis.connected_replicas", "count", "gauge", "masters only: connected replicas", ("target",)),
    )

    def __init__(self, config: RedisConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._host, self._port = parse_host_port(config.target, 6379)
        self._prev: tuple[int, int, int] | None = None  # (run_id hash, hits, misses)

    def target_label(self) -> str:
        return self.config.target

    def _client(self, addr: str) -> Any:
        c = self.config
        kw: dict[str, Any] = dict(
            host=addr,
            port=self._port,
            db=c.db,
            username=c.username,
            password=c.password,
            socket_timeout=c.effective_timeout,
            socket_connect_timeout=c.effective_timeout,
            retry=_retry.Retry(_backoff.NoBackoff(), 0),
            single_connection_client=True,
            protocol=2,
            **_NO_SETINFO,
        )
        if c.tls:
            kw.update(
                host=self._host,  # the name is needed for host name verification
                ssl=True,
                ssl_cert_reqs="required" if c.tls_verify else "none",
                ssl_check_hostname=c.tls_verify,
                ssl_ca_certs=c.tls_ca_file,
                ssl_certfile=c.tls_cert_file,
                ssl_keyfile=c.tls_key_file,
            )
        return aioredis.Redis(**kw)

    async def probe(self) -> ProbeResult:
        c = self.config
        deadline = probe_deadline(c)
        res = ProbeResult()
        phase = "resolving"
        client: Any = None
        try:
            async with asyncio.timeout(deadline):
                addrs = await resolve(self._host, self._port)
                phase = "connecting"
                client = self._client(str(addrs[0][1][0]))
                ts = time.time()
                t0 = time.perf_counter()
                await client.initialize()  # single-connection client: connect + AUTH + SELECT now
                t1 = time.perf_counter()
                phase = "waiting for PING"
                await client.ping()
                t2 = time.perf_counter()
                phase = "waiting for INFO"
                info = await client.info()
                res.samples += [
                    Sample("redis.connect_seconds", t1 - t0, ts),
                    Sample("redis.ping_seconds", t2 - t1, ts),
                ]
                res.samples += self._info_samples(info, ts)
        except (TimeoutError, ProbeFailure) as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        except _exc.AuthenticationError as e:
            res.result, res.reason = AUTH_FAILED, f"authentication failed: {e}"
        except (_exc.NoPermissionError, _exc.AuthorizationError) as e:
            res.result, res.reason = AUTH_FAILED, f"not permitted while {phase}: {e}"
        except _exc.TimeoutError as e:
            res.result, res.reason = TIMEOUT, f"timed out while {phase}: {e}"
        except _exc.ConnectionError as e:
            if _is_tls_error(e):
                res.result, res.reason = TLS_ERROR, f"TLS error while {phase}: {e}"
            else:
                os_err = _os_error(e)
                detail = os_error_text(os_err) if os_err is not None else str(e)
                res.result, res.reason = CONNECTION_FAILED, f"connection to {c.target} failed while {phase}: {detail}"
        except ssl.SSLError as e:
            res.result, res.reason = TLS_ERROR, f"TLS error while {phase}: {e}"
        except _exc.ResponseError as e:
            msg = str(e)
            if msg.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                res.result, res.reason = AUTH_FAILED, f"{phase}: {msg}"
            else:
                res.result, res.reason = ERROR, f"error reply while {phase}: {msg}"
        except _exc.RedisError as e:
            res.result, res.reason = ERROR, f"{type(e).__name__} while {phase}: {e}"
        except OSError as e:
            res.result, res.reason = CONNECTION_FAILED, f"{phase}: {e}"
        finally:
            if client is not None:
                try:
                    await asyncio.wait_for(client.aclose(), 1.0)
                except Exception:  # closing a broken connection must not mask the result
                    pass
        return res

    def _info_samples(self, info: dict[str, Any], ts: float) -> list[Sample]:
        out: list[Sample] = []

        def num(key: str, name: str) -> None:
            v = info.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(Sample(name, float(v), ts))

        num("used_memory", "redis.used_memory_bytes")
        num("maxmemory", "redis.maxmemory_bytes")
        num("connected_clients", "redis.connected_clients")
        num("instantaneous_ops_per_sec", "redis.ops_per_second")
        num("evicted_keys", "redis.evicted_keys_total")
        role = str(info.get("role", ""))
        if role:
            master = role == "master"
            out.append(Sample("redis.role", 1.0 if master else 0.0, ts, {"role": "master" if master else "replica"}))
            if master:
                num("connected_slaves", "redis.connected_replicas")
            else:
                link = str(info.get("master_link_status", ""))
                out.append(Sample("redis.replication_link_up", 1.0 if link == "up" else 0.0, ts))
                num("master_last_io_seconds_ago", "redis.replication_last_io_seconds")
        hits, misses = info.get("keyspace_hits"), info.get("keyspace_misses")
        if isinstance(hits, int) and isinstance(misses, int):
            run = hash(str(info.get("run_id", "")))
            prev, self._prev = self._prev, (run, hits, misses)
            if prev is not None and prev[0] == run and hits >= prev[1] and misses >= prev[2]:
                dh, dm = hits - prev[1], misses - prev[2]
                if dh + dm > 0:
                    out.append(Sample("redis.keyspace_hit_ratio", dh / (dh + dm), ts))
        return out


def _os_error(e: BaseException) -> OSError | None:
    cur: BaseException | None = e
    for _ in range(5):
        if cur is None:
            return None
        if isinstance(cur, OSError) and cur.errno:
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _is_tls_error(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return "SSL" in str(e) or "certificate" in str(e).lower()
