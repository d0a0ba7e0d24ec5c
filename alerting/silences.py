"""Silences: matchers with a start and an end that mute matching alerts; created, listed and expired through the API."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from alerting.matchers import Matcher, make_matcher, matches_all, parse_matchers
from alerting.state import AlertDB


@dataclass(slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def status(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "status": self.status(now),
        }


class Silences:
    """In-memory set of silences backed by the alerting_silences table."""

    def __init__(self, db: AlertDB, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.items: dict[str, Silence] = {}

    def load(self) -> None:
        for row in self.db.conn().execute(
            "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at FROM alerting_silences"
        ):
            ms = tuple(make_matcher(m["name"], m["op"], m["value"]) for m in orjson.loads(row[1]))
            self.items[row[0]] = Silence(row[0], ms, row[2], row[3], row[4], row[5], row[6])

    def add(self, matchers: Any, *, ends_at: float | None = None, duration: float | None = None, starts_at: float | None = None,
            created_by: str = "", comment: str = "") -> Silence:
        """Create a silence; raises ValueError with a clear reason on bad input."""
        ms = parse_matchers(matchers)
        if not ms:
            raise ValueError("a silence needs at least one matcher")
        if all(m.op in ("=~", "!~") and m.regex is not None and m.regex.fullmatch("") for m in ms) or all(
            m.op == "!=" or (m.op == "=" and m.value == "") for m in ms
        ):
            raise ValueError("these matchers would silence every alert; name at least one label value")
        now = self.clock()
        start = starts_at if starts_at is not None else now
        if ends_at is None:
            if duration is None or duration <= 0:
                raise ValueError("give ends_at or a positive duration")
            ends_at = start + duration
        if ends_at <= start:
            raise ValueError("ends_at must be after starts_at")
        s = Silence(uuid.uuid4().hex[:12], ms, start, ends_at, created_by[:200], comment[:2000], now)
        c = self.db.conn()
        with c:
            c.execute(
                "INSERT INTO alerting_silences (id, matchers, starts_at, ends_at, created_by, comment, created_at) VALUES (?,?,?,?,?,?,?)",
                (s.id, orjson.dumps([m.to_json() for m in ms]).decode(), s.starts_at, s.ends_at, s.created_by, s.comment, s.created_at),
            )
        self.items[s.id] = s
        return s

    def expire(self, sid: str) -> Silence | None:
        s = self.items.get(sid)
        if s is None:
            return None
        now = self.clock()
        if s.ends_at > now:
            s.ends_at = now
            if s.starts_at > now:
                s.starts_at = now
            c = self.db.conn()
            with c:
                c.execute("UPDATE alerting_silences SET ends_at = ?, starts_at = ? WHERE id = ?", (s.ends_at, s.starts_at, sid))
        return s

    def muted_by(self, labels: dict[str, str], now: float | None = None) -> str | None:
        now = self.clock() if now is None else now
        for s in self.items.values():
            if s.active(now) and matches_all(s.matchers, labels):
                return s.id
        return None

    def list(self) -> list[Silence]:
        return sorted(self.items.values(), key=lambda s: s.created_at, reverse=True)

    def purge(self, older_than: float) -> None:
        old = [sid for sid, s in self.items.items() if s.ends_at < older_than]
        for sid in old:
            del self.items[sid]
        if old:
            c = self.db.conn()
            with c:
                c.executemany("DELETE FROM alerting_silences WHERE id = ?", [(x,) for x in old])
