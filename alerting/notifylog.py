"""The notification log (what each receiver was last told about each group: dedup and repeats) and the delivery log (every send, its attempts and errors)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from alerting.state import AlertDB


@dataclass(slots=True)
class Entry:
    """What one integration was last told about one group."""

    #: fingerprint → severity rank notified as firing
    firing: dict[str, int] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)
    sent_at: float = 0.0


class NotificationLog:
    """Dedup state keyed by `receiver/integration/group key[#escN]`; persisted so restarts do not re-notify."""

    def __init__(self, db: AlertDB) -> None:
        self.db = db
        self.entries: dict[str, Entry] = {}

    def load(self) -> None:
        for key, firing, resolved, sent_at in self.db.conn().execute("SELECT key, firing, resolved, sent_at FROM alerting_nflog"):
            self.entries[key] = Entry(orjson.loads(firing), set(orjson.loads(resolved)), sent_at)

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def set(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry

    def persist(self, key: str) -> None:
        """Write one entry (call from the database thread)."""
        e = self.entries.get(key)
        c = self.db.conn()
        with c:
            if e is None:
                c.execute("DELETE FROM alerting_nflog WHERE key = ?", (key,))
            else:
                c.execute(
                    "INSERT OR REPLACE INTO alerting_nflog (key, firing, resolved, sent_at) VALUES (?,?,?,?)",
                    (key, orjson.dumps(e.firing).decode(), orjson.dumps(sorted(e.resolved)).decode(), e.sent_at),
                )

    def purge(self, older_than: float) -> list[str]:
        """Forget entries with nothing firing not touched since `older_than`."""
        old = [k for k, e in self.entries.items() if not e.firing and e.sent_at < older_than]
        for k in old:
            del self.entries[k]
        if old:
            c = self.db.conn()
            with c:
                c.executemany("DELETE FROM alerting_nflog WHERE key = ?", [(k,) for k in old])
        return old


class DeliveryLog:
    """Every delivery (one message to one integration): attempts, outcome and the last error."""

    def __init__(self, db: AlertDB, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def start(self, receiver: str, integration: str, group_key: str, status: str, alerts: list[dict[str, Any]]) -> int:
        now = self.clock()
        c = self.db.conn()
        with c:
            cur = c.execute(
                "INSERT INTO alerting_notifications (ts, receiver, integration, group_key, status, alerts, outcome, attempts, retryable,"
                " error, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (now, receiver, integration, group_key, status, orjson.dumps(alerts).decode(), "pending", 0, None, "", now),
            )
            return int(cur.lastrowid or 0)

    def update(self, rid: int, *, outcome: str, attempts: int, error: str = "", retryable: bool | None = None) -> None:
        c = self.db.conn()
        with c:
            c.execute(
                "UPDATE alerting_notifications SET outcome = ?, attempts = ?, error = ?, retryable = ?, updated_at = ? WHERE id = ?",
                (outcome, attempts, error[:2000], None if retryable is None else int(retryable), self.clock(), rid),
            )

    def query(self, *, limit: int = 100, receiver: str | None = None, outcome: str | None = None, since: float | None = None,
              alert: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT id, ts, receiver, integration, group_key, status, alerts, outcome, attempts, retryable, error, updated_at"
               " FROM alerting_notifications WHERE 1=1")
        args: list[Any] = []
        if receiver:
            sql += " AND receiver = ?"
            args.append(receiver)
        if outcome:
            sql += " AND outcome = ?"
            args.append(outcome)
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if alert:
            sql += " AND alerts LIKE ?"
            args.append(f'%"{alert}%')
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(1, min(limit, 10_000)))
        out = []
        for r in self.db.conn().execute(sql, args):
            out.append({
                "id": r[0], "ts": r[1], "receiver": r[2], "integration": r[3], "group_key": r[4], "status": r[5],
                "alerts": orjson.loads(r[6]), "outcome": r[7], "attempts": r[8],
                "retryable": None if r[9] is None else bool(r[9]), "error": r[10], "updated_at": r[11],
            })
        return out

    def purge(self, older_than: float) -> None:
        c = self.db.conn()
        with c:
            c.execute("DELETE FROM alerting_notifications WHERE ts < ?", (older_than,))
