"""Elasticsearch probe (aiohttp): cluster health (status, nodes, shards) and an optional search with its latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from checks.base import (
    AUTH_FAILED,
    BAD_STATUS,
    MISMATCH,
    SUCCESS,
    TIMEOUT,
    CheckConfig,
    Probe,
    ProbeResult,
    probe_metrics,
)
from checks.catalogue import MetricSpec
from checks.http import USER_AGENT, SessionHolder, basic_auth, client_error_result, probe_session
from checks.model import Sample
from checks.tcp import ProbeFailure, TlsSettings, failure_result, probe_deadline, url_label

STATUS_CODES = {"green": 0, "yellow": 1, "red": 2}

#: (health field, metric name, unit, description)
HEALTH_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("number_of_nodes", "elasticsearch.nodes", "count", "nodes in the cluster"),
    ("number_of_data_nodes", "elasticsearch.data_nodes", "count", "data nodes in the cluster"),
    ("active_primary_shards", "elasticsearch.active_primary_shards", "count", "active primary shards"),
    ("active_shards", "elasticsearch.active_shards", "count", "active shards (primaries and replicas)"),
    ("relocating_shards", "elasticsearch.relocating_shards", "count", "shards being relocated"),
    ("initializing_shards", "elasticsearch.initializing_shards", "count", "shards being initialized"),
    ("unassigned_shards", "elasticsearch.unassigned_shards", "count", "shards not allocated to any node"),
    ("number_of_pending_tasks", "elasticsearch.pending_tasks", "count", "cluster-level changes not yet executed"),
    ("active_shards_percent_as_number", "elasticsearch.active_shards_percent", "percent", "active shards as a percentage of all shards"),
)


@dataclass(frozen=True, kw_only=True)
class EsQuery:
    #: index, alias or pattern searched (e.g. "logs-*")
    index: str
    #: the search request body (JSON as YAML)
    body: dict[str, Any] = field(default_factory=lambda: {"size": 0, "query": {"match_all": {}}})

    def __post_init__(self) -> None:
        if not self.index.strip() or any(ch in self.index for ch in " /?#"):
            raise ValueError(f"index: {self.index!r} is not an index name or pattern")


@dataclass(frozen=True, kw_only=True)
class ElasticsearchConfig(TlsSettings, CheckConfig):
    #: base URL of the cluster (http:// or https://, may include a path prefix); resolved on every run
    target: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: an API key (the base64 "encoded" form), sent as `Authorization: ApiKey <key>`
    api_key: str | None = field(default=None, repr=False)
    #: the probe fails (result bad_status) when the cluster status is this or worse; null: never
    fail_on_status: Literal["yellow", "red"] | None = "red"
    #: an optional search whose latency is measured
    query: EsQuery | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        u = urlsplit(self.target)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"target: expected an http:// or https:// URL, got {self.target!r}")
        if u.query or u.fragment:
            raise ValueError("target: must not have a query string or fragment")
        if self.api_key and self.username:
            raise ValueError("use either username/password or api_key, not both")
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        self._check_tls_files()


class ElasticsearchCheck(SessionHolder, Probe[ElasticsearchConfig]):
    """GET _cluster/health (status green=0/yellow=1/red=2, nodes, shards); optionally run a search."""

    Config: ClassVar[type[CheckConfig]] = ElasticsearchConfig
    METRICS = (
        probe_metrics("elasticsearch", "Elasticsearch cluster")
        + (
            MetricSpec("elasticsearch.cluster_status", "state", "gauge", "cluster health: 0 green, 1 yellow, 2 red", ("target", "cluster")),
            MetricSpec("elasticsearch.health_seconds", "seconds", "gauge", "latency of GET _cluster/health", ("target",)),
        )
        + tuple(MetricSpec(name, unit, "gauge", desc, ("target", "cluster")) for _f, name, unit, desc in HEALTH_FIELDS)
        + (
            MetricSpec("elasticsearch.query_seconds", "seconds", "gauge", "latency of the configured search, as seen by the probe", ("target", "index")),
            MetricSpec("elasticsearch.query_took_seconds", "seconds", "gauge", "the search's server-side time (`took`)", ("target", "index")),
            MetricSpec("elasticsearch.query_hits", "count", "gauge", "total hits of the configured search (hits.total.value)", ("target", "index")),
        )
    )

    def __init__(self, config: ElasticsearchConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        c = config
        self._base = c.target.rstrip("/")
        self._host = urlsplit(c.target).hostname or ""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if c.api_key:
            headers["Authorization"] = f"ApiKey {c.api_key}"
        elif c.username:
            headers["Authorization"] = basic_auth(c.username, c.password)
        self._headers = headers
        self._query_body = orjson.dumps(c.query.body) if c.query else b""
        self._label = url_label(c.target)

    def target_label(self) -> str:
        return self._label

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(use_dns_cache=False, force_close=True, ssl=self.config.ssl_context())
        return probe_session(connector, headers=self._headers)

    async def probe(self) -> ProbeResult:
        c = self.config
        deadline = probe_deadline(c)
        res = ProbeResult()
        phase = "requesting _cluster/health"
        ts = time.time()
        try:
            async with asyncio.timeout(deadline):
                session = self._get_session()
                t0 = time.perf_counter()
                health = await self._get_json(session, "GET", f"{self._base}/_cluster/health", None, "_cluster/health")
                res.samples.append(Sample("elasticsearch.health_seconds", time.perf_counter() - t0, ts))
                self._health(res, health, ts)
                if c.query is not None:
                    phase = f"searching {c.query.index}"
                    try:
                        await self._search(session, res, ts)
                    except ProbeFailure as f:
                        if res.result == SUCCESS:
                            raise
                        res.reason += f"; {f.reason}"  # keep the cluster status as the result
        except (TimeoutError, ProbeFailure) as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        except aiohttp.ClientError as e:
            res.result, res.reason = client_error_result(e, self._host, phase)
        return res

    async def _get_json(self, session: aiohttp.ClientSession, method: str, url: str, body: bytes | None, what: str) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else None
        async with session.request(
            method, url, data=body, headers=headers, allow_redirects=False, server_hostname=self.config.tls_server_name
        ) as resp:
            raw = await resp.read()
            status = resp.status
        doc: Any = None
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            pass
        if status in (401, 403):
            raise ProbeFailure(AUTH_FAILED, f"{what}: HTTP {status}: {_es_error(doc) or 'not authorized'}")
        if not 200 <= status < 300:
            raise ProbeFailure(BAD_STATUS, f"{what}: HTTP {status}: {_es_error(doc) or raw[:200].decode('utf-8', 'replace')}")
        if not isinstance(doc, dict):
            raise ProbeFailure(MISMATCH, f"{what}: expected a JSON object, got {raw[:120]!r}")
        return doc

    def _health(self, res: ProbeResult, h: dict[str, Any], ts: float) -> None:
        status = h.get("status")
        if status not in STATUS_CODES:
            raise ProbeFailure(MISMATCH, f"_cluster/health: unknown status {status!r}; is this Elasticsearch?")
        tags = {"cluster": str(h.get("cluster_name", ""))}
        res.samples.append(Sample("elasticsearch.cluster_status", float(STATUS_CODES[status]), ts, dict(tags)))
        for key, name, _unit, _desc in HEALTH_FIELDS:
            v = h.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                res.samples.append(Sample(name, float(v), ts, dict(tags)))
        res.data["cluster_status"] = status
        limit = self.config.fail_on_status
        if limit is not None and STATUS_CODES[status] >= STATUS_CODES[limit]:
            res.result = BAD_STATUS
            res.reason = (
                f"cluster {tags['cluster'] or '?'} is {status}: {h.get('unassigned_shards', '?')} unassigned shards, "
                f"{h.get('number_of_nodes', '?')} nodes"
            )

    async def _search(self, session: aiohttp.ClientSession, res: ProbeResult, ts: float) -> None:
        q = self.config.query
        assert q is not None
        url = f"{self._base}/{quote(q.index, safe='*,-_.+')}/_search"
        t0 = time.perf_counter()
        doc = await self._get_json(session, "POST", url, self._query_body, f"search {q.index}")
        elapsed = time.perf_counter() - t0
        tags = {"index": q.index}
        res.samples.append(Sample("elasticsearch.query_seconds", elapsed, ts, dict(tags)))
        took = doc.get("took")
        if isinstance(took, (int, float)):
            res.samples.append(Sample("elasticsearch.query_took_seconds", took / 1000.0, ts, dict(tags)))
        total = (doc.get("hits") or {}).get("total")
        hits = total.get("value") if isinstance(total, dict) else total
        if isinstance(hits, int):
            res.samples.append(Sample("elasticsearch.query_hits", float(hits), ts, dict(tags)))
        if res.result != SUCCESS:
            return  # keep the cluster-status failure as the reason
        if doc.get("timed_out") is True:
            res.result, res.reason = TIMEOUT, f"search {q.index}: timed out on the server"
            return
        shards = doc.get("_shards") or {}
        if isinstance(shards.get("failed"), int) and shards["failed"] > 0:
            res.result = BAD_STATUS
            res.reason = f"search {q.index}: {shards['failed']} of {shards.get('total', '?')} shards failed"


def _es_error(doc: Any) -> str:
    """`type: reason` from an Elasticsearch error body."""
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        return f"{err.get('type', 'error')}: {err.get('reason', '')}".strip()
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"]
    return ""
