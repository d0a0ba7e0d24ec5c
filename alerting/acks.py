"""Acknowledgements: who took an alert and when; an acknowledged alert is not repeated nor escalated."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from alerting.state import AlertDB


@dataclass(slots=True)
class Ack:
    fingerprint: str
    #: the firing episode acknowledged (a later firing of the same alert is not acknowledged)
    firing_since: float
    by: str
    at: float
    comment: str

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at, "comment": self.comment, "firing_since": self.firing_since}


class Acks:
    def __init__(self, db: AlertDB, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.items: dict[tuple[str, float], Ack] = {}

    def load(self) -> None:
        for row in self.db.conn().execute("SELECT fingerprint, firing_since, by, at, comment FROM alerting_acks"):
            self.items[(row[0], row[1])] = Ack(*row)

    def get(self, fingerprint: str, firing_since: float | None) -> Ack | None:
        if firing_since is None:
            return None
        return self.items.get((fingerprint, firing_since))

    def ack(self, fingerprint: str, firing_since: float, by: str, comment: str = "") -> Ack:
        existing = self.items.get((fingerprint, firing_since))
        if existing is not None:
            return existing
        a = Ack(fingerprint, firing_since, by[:200] or "unknown", self.clock(), comment[:2000])
        c = self.db.conn()
        with c:
            c.execute(
                "INSERT OR IGNORE INTO alerting_acks (fingerprint, firing_since, by, at, comment) VALUES (?,?,?,?,?)",
                (a.fingerprint, a.firing_since, a.by, a.at, a.comment),
            )
        self.items[(fingerprint, firing_since)] = a
        return a

    def purge(self, keep: set[tuple[str, float]], older_than: float) -> None:
        old = [k for k, a in self.items.items() if k not in keep and a.at < older_than]
        for k in old:
            del self.items[k]
        if old:
            c = self.db.conn()
            with c:
                c.executemany("DELETE FROM alerting_acks WHERE fingerprint = ? AND firing_since = ?", old)
