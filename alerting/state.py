"""Alert records and their persistence: the alerting tables in the store's SQLite database."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"

SCHEMA_VERSION = 1

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS alerting_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alerting_alerts (
        fingerprint TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        state TEXT NOT NULL,
        severity TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        details TEXT NOT NULL,
        value REAL,
        threshold REAL,
        active_since REAL NOT NULL,
        firing_since REAL,
        resolved_at REAL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alerting_silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alerting_acks (
        fingerprint TEXT NOT NULL,
        firing_since REAL NOT NULL,
        by TEXT NOT NULL,
        at REAL NOT NULL,
        comment TEXT NOT NULL,
        PRIMARY KEY (fingerprint, firing_since)
    )""",
    """CREATE TABLE IF NOT EXISTS alerting_nflog (
        key TEXT PRIMARY KEY,
        firing TEXT NOT NULL,
        resolved TEXT NOT NULL,
        sent_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alerting_notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        receiver TEXT NOT NULL,
        integration TEXT NOT NULL,
        group_key TEXT NOT NULL,
        status TEXT NOT NULL,
        alerts TEXT NOT NULL,
        outcome TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        retryable INTEGER,
        error TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS alerting_notifications_ts ON alerting_notifications (ts)""",
    """CREATE TABLE IF NOT EXISTS alerting_seen_exceptions (fingerprint TEXT PRIMARY KEY, first_seen REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alerting_hosts (host TEXT PRIMARY KEY, last_seen REAL NOT NULL)""",
]


def fingerprint(labels: dict[str, str]) -> str:
    """Stable id of an alert: a hash of its labels except `severity` (a level change is the same alert)."""
    h = hashlib.sha256()
    for k in sorted(labels):
        if k == "severity":
            continue
        h.update(k.encode())
        h.update(b"\x00")
        h.update(labels[k].encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def _num(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return v


@dataclass(slots=True)
class Alert:
    """One alert instance, owned by the engine; copies go to the dispatcher and the API."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    state: str
    severity: str
    annotations: dict[str, str] = field(default_factory=dict)
    #: static facts from the rule: type, metric, window, op, unit, ...
    details: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    threshold: float | None = None
    active_since: float = 0.0
    firing_since: float | None = None
    resolved_at: float | None = None
    updated_at: float = 0.0
    #: observation extras (e.g. last probe result, current value of a prediction)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.fingerprint

    def copy(self) -> "Alert":
        return Alert(
            self.fingerprint, self.rule, dict(self.labels), self.state, self.severity, dict(self.annotations), self.details,
            self.value, self.threshold, self.active_since, self.firing_since, self.resolved_at, self.updated_at, dict(self.extra),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fingerprint,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "labels": self.labels,
            "annotations": self.annotations,
            "details": self.details,
            "value": _num(self.value),
            "threshold": _num(self.threshold),
            "active_since": self.active_since,
            "firing_since": self.firing_since,
            "resolved_at": self.resolved_at,
            "updated_at": self.updated_at,
            "extra": self.extra,
        }


class AlertDB:
    """The alerting tables. One sqlite3 connection per thread that uses it (WAL, busy timeout)."""

    def __init__(self, path: str) -> None:
        # no I/O here: the collector builds extensions before its data directory exists
        self.path = path
        self._local = threading.local()
        self._migrated = False

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA busy_timeout=30000")
            try:
                c.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:
                pass
            c.execute("PRAGMA synchronous=NORMAL")
            if not self._migrated:
                migrate(c)  # idempotent; normally the collector already called the extension's migrate()
                self._migrated = True
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # ---- alerts
    def save_alerts(self, alerts: Iterable[Alert]) -> None:
        rows = [
            (
                a.fingerprint, a.rule, a.state, a.severity, orjson.dumps(a.labels).decode(), orjson.dumps(a.annotations).decode(),
                orjson.dumps({**a.details, "_extra": a.extra}, default=str).decode(), _num(a.value), _num(a.threshold),
                a.active_since, a.firing_since, a.resolved_at, a.updated_at,
            )
            for a in alerts
        ]
        if not rows:
            return
        c = self.conn()
        with c:
            c.execute("BEGIN IMMEDIATE")
            c.executemany(
                "INSERT OR REPLACE INTO alerting_alerts (fingerprint, rule, state, severity, labels, annotations, details, value,"
                " threshold, active_since, firing_since, resolved_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    def delete_alerts(self, fps: Iterable[str]) -> None:
        fps = list(fps)
        if fps:
            c = self.conn()
            with c:
                c.execute("BEGIN IMMEDIATE")
                c.executemany("DELETE FROM alerting_alerts WHERE fingerprint = ?", [(f,) for f in fps])

    def load_alerts(self) -> list[Alert]:
        out = []
        for row in self.conn().execute(
            "SELECT fingerprint, rule, state, severity, labels, annotations, details, value, threshold, active_since,"
            " firing_since, resolved_at, updated_at FROM alerting_alerts"
        ):
            details = orjson.loads(row[6])
            extra = details.pop("_extra", {}) or {}
            out.append(Alert(row[0], row[1], orjson.loads(row[4]), row[2], row[3], orjson.loads(row[5]), details, row[7], row[8], row[9],
                             row[10], row[11], row[12], extra))
        return out

    # ---- hosts and seen exception groups
    def save_hosts(self, items: Iterable[tuple[str, float]]) -> None:
        rows = list(items)
        if rows:
            c = self.conn()
            with c:
                c.execute("BEGIN IMMEDIATE")
                c.executemany("INSERT OR REPLACE INTO alerting_hosts (host, last_seen) VALUES (?, ?)", rows)

    def load_hosts(self) -> dict[str, float]:
        return dict(self.conn().execute("SELECT host, last_seen FROM alerting_hosts").fetchall())

    def delete_host(self, host: str) -> None:
        c = self.conn()
        with c:
            c.execute("DELETE FROM alerting_hosts WHERE host = ?", (host,))

    def save_seen(self, items: Iterable[tuple[str, float]]) -> None:
        rows = list(items)
        if rows:
            c = self.conn()
            with c:
                c.execute("BEGIN IMMEDIATE")
                c.executemany("INSERT OR IGNORE INTO alerting_seen_exceptions (fingerprint, first_seen) VALUES (?, ?)", rows)

    def load_seen(self) -> dict[str, float]:
        return dict(self.conn().execute("SELECT fingerprint, first_seen FROM alerting_seen_exceptions").fetchall())

    def meta(self, key: str) -> str | None:
        row = self.conn().execute("SELECT value FROM alerting_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        c = self.conn()
        with c:
            c.execute("INSERT OR REPLACE INTO alerting_meta (key, value) VALUES (?, ?)", (key, value))


def migrate(conn: sqlite3.Connection) -> None:
    """Create the alerting tables (idempotent)."""
    for stmt in SCHEMA:
        conn.execute(stmt)
    conn.execute("INSERT OR IGNORE INTO alerting_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    if conn.in_transaction:
        conn.commit()
