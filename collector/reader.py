"""Read side of the embedded store: series lookup, point queries at raw/1m/1h resolution, hosts, events."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import orjson

from collector import schema
from collector.config import HostsConfig, StoreConfig

AGGS = ("avg", "min", "max", "last", "sum", "count")
RESOLUTIONS = ("raw", "1m", "1h")


class QueryError(ValueError):
    """A query parameter is wrong; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class Reader:
    """Thread-safe reader (one read-only connection per thread). Implements collector.extension.StoreReader."""

    def __init__(self, path: str, store_cfg: StoreConfig | None = None, hosts_cfg: HostsConfig | None = None) -> None:
        self.path = path
        self.cfg = store_cfg or StoreConfig()
        self.hosts_cfg = hosts_cfg or HostsConfig()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = schema.connect(self.path, readonly=True)
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # ------------------------------------------------------------ series

    def find_series(self, metric: str | None, host: str | None, tags: dict[str, str]) -> list[tuple[int, str, str, dict[str, str]]]:
        sql = "SELECT id, metric, host, tags_json FROM series WHERE 1=1"
        args: list[Any] = []
        if metric:
            sql += " AND metric = ?"
            args.append(metric)
        if host:
            sql += " AND host = ?"
            args.append(host)
        for k, v in tags.items():
            sql += " AND json_extract(tags_json, ?) = ?"
            args += [f'$."{k}"', v]
        sql += " ORDER BY metric, tags_json"
        return [(sid, m, h, orjson.loads(tj)) for sid, m, h, tj in self.conn().execute(sql, args)]

    def series(self, metric: str | None = None, host: str | None = None, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [{"metric": m, "host": h, "tags": t} for _, m, h, t in self.find_series(metric, host, tags or {})]

    # ------------------------------------------------------------ points

    def choose_resolution(self, start: float, end: float, step: float | None, now: float | None = None) -> str:
        now = time.time() if now is None else now
        ret = self.cfg.retention
        rng = end - start
        if rng <= self.cfg.raw_max_range and start >= now - ret.raw and (step is None or step < 3600 or rng <= 3 * step):
            return "raw"
        if (step is not None and step >= 3600) or rng > self.cfg.rollup_1m_max_range or start < now - ret.m1:
            return "1h"
        return "1m"

    def query_ex(
        self,
        metric: str,
        tags: dict[str, str],
        start: float,
        end: float,
        step: float | None = None,
        agg: str | None = None,
        host: str | None = None,
        resolution: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        if agg is not None and agg not in AGGS:
            raise QueryError("agg", f"must be one of {', '.join(AGGS)}; got {agg!r}")
        if step is not None and step <= 0:
            raise QueryError("step", "must be greater than 0")
        if end < start:
            raise QueryError("end", "must not be before start")
        if resolution is None:
            resolution = self.choose_resolution(start, end, step)
        elif resolution not in RESOLUTIONS:
            raise QueryError("resolution", f"must be one of {', '.join(RESOLUTIONS)}; got {resolution!r}")
        if step is not None and end - start > step * 100_000:
            raise QueryError("step", "too small for this range (more than 100000 points per series)")
        agg = agg or "avg"
        conn = self.conn()
        out = []
        for sid, m, h, t in self.find_series(metric, host, tags):
            if resolution == "raw":
                pts = self._raw(conn, sid, start, end, step, agg)
            else:
                pts = self._rollup(conn, resolution, sid, start, end, step, agg)
            if pts:
                out.append({"metric": m, "host": h, "tags": t, "points": pts})
        return out, resolution

    def query(
        self, metric: str, tags: dict[str, str], start: float, end: float, step: float | None = None, agg: str | None = None,
        host: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.query_ex(metric, tags, start, end, step, agg, host)[0]

    @staticmethod
    def _raw(conn: sqlite3.Connection, sid: int, start: float, end: float, step: float | None, agg: str) -> list[list[float]]:
        lo, hi = int(start * 1000), int(end * 1000)
        if step is None:
            return [[ts / 1000, v] for ts, v in conn.execute(
                "SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts", (sid, lo, hi))]
        sm = max(1, int(step * 1000))
        if agg == "last":
            sql = "SELECT ts / ?1 AS b, value, max(ts) FROM points WHERE series_id = ?2 AND ts >= ?3 AND ts <= ?4 GROUP BY b ORDER BY b"
        else:
            fn = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)", "sum": "sum(value)", "count": "count(*)"}[agg]
            sql = f"SELECT ts / ?1 AS b, {fn} FROM points WHERE series_id = ?2 AND ts >= ?3 AND ts <= ?4 GROUP BY b ORDER BY b"
        return [[b * sm / 1000, float(v)] for b, v, *_ in conn.execute(sql, (sm, sid, lo, hi))]

    @staticmethod
    def _rollup(conn: sqlite3.Connection, res: str, sid: int, start: float, end: float, step: float | None, agg: str) -> list[list[float]]:
        table, width = schema.ROLLUPS[res]
        lo = int(start) // width * width
        hi = int(end)
        if step is None or step <= width:
            fn = {"avg": "sum / cnt", "min": "min", "max": "max", "sum": "sum", "count": "cnt", "last": "last"}[agg]
            sql = f"SELECT ts, {fn} FROM {table} WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts"
            return [[float(ts), float(v)] for ts, v in conn.execute(sql, (sid, lo, hi))]
        st = int(step)
        if agg == "last":
            sql = f"SELECT ts / ?1 AS b, last, max(last_ts) FROM {table} WHERE series_id = ?2 AND ts >= ?3 AND ts <= ?4 GROUP BY b ORDER BY b"
        else:
            fn = {"avg": "sum(sum) / sum(cnt)", "min": "min(min)", "max": "max(max)", "sum": "sum(sum)", "count": "sum(cnt)"}[agg]
            sql = f"SELECT ts / ?1 AS b, {fn} FROM {table} WHERE series_id = ?2 AND ts >= ?3 AND ts <= ?4 GROUP BY b ORDER BY b"
        return [[float(b * st), float(v)] for b, v, *_ in conn.execute(sql, (st, sid, lo, hi))]

    # ------------------------------------------------------------ hosts, events

    def hosts(self) -> list[dict[str, Any]]:
        now = time.time()
        hc = self.hosts_cfg
        out = []
        for host, first, last, version, batches in self.conn().execute(
            "SELECT host, first_seen, last_seen, version, batches FROM hosts ORDER BY host"
        ):
            age = now - last
            status = "up" if age <= hc.stale_after else ("stale" if age <= hc.down_after else "down")
            d: dict[str, Any] = {"host": host, "last_seen": last, "first_seen": first, "status": status, "batches": batches}
            if version:
                d["agent_version"] = version
            out.append(d)
        return out

    def events(self, kind: str | None, start: float, end: float, host: str | None, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT ts, kind, host, message, tags_json, data_json FROM events WHERE ts >= ? AND ts <= ?"
        args: list[Any] = [start, end]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if host:
            sql += " AND host = ?"
            args.append(host)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(int(limit))
        return [
            {"kind": k, "ts": ts, "host": h, "message": msg, "tags": orjson.loads(tj), "data": orjson.loads(dj)}
            for ts, k, h, msg, tj, dj in self.conn().execute(sql, args)
        ]
