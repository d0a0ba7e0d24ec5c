"""Message rendering: Jinja2 templates (zh-CN, en) over display-ready alert views, fitted to each channel's length limit."""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import jinja2

from alerting.levels import RANK

if TYPE_CHECKING:
    from alerting.notifiers.base import Notification
    from alerting.state import Alert

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("zh-CN", "en")

WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "critical": "严重", "warning": "警告", "info": "提示", "firing": "告警", "resolved": "已恢复",
        "host": "主机", "module": "模块", "service": "服务", "target": "目标", "mountpoint": "挂载点", "device": "设备",
        "interface": "网卡", "endpoint": "接口", "probe": "探测", "metric": "指标", "fingerprint": "异常指纹",
        "sec": "秒", "min": "分钟", "hour": "小时", "day": "天", "never": "不会",
    },
    "en": {
        "critical": "CRITICAL", "warning": "WARNING", "info": "INFO", "firing": "FIRING", "resolved": "RESOLVED",
        "host": "host", "module": "module", "service": "service", "target": "target", "mountpoint": "mount", "device": "device",
        "interface": "interface", "endpoint": "endpoint", "probe": "probe", "metric": "metric", "fingerprint": "fingerprint",
        "sec": "s", "min": "min", "hour": "h", "day": "d", "never": "never",
    },
}

WHERE_LABELS = ("host", "module", "service", "endpoint", "target", "probe", "mountpoint", "device", "interface")


def fmt_duration(seconds: float | None, lang: str) -> str:
    w = WORDS[lang]
    if seconds is None or not math.isfinite(seconds):
        return w["never"]
    s = max(0.0, seconds)
    sp = "" if lang == "zh-CN" else " "
    if s < 60:
        return f"{s:.0f}{sp}{w['sec']}"
    if s < 3600:
        return f"{s / 60:.0f}{sp}{w['min']}"
    if s < 86400 * 2:
        h = s / 3600
        return f"{h:.1f}{sp}{w['hour']}".replace(".0" + sp + w["hour"], sp + w["hour"])
    return f"{s / 86400:.1f}{sp}{w['day']}".replace(".0" + sp + w["day"], sp + w["day"])


def fmt_bytes(v: float) -> str:
    n = abs(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            s = f"{n:.0f}" if unit == "B" else f"{n:.1f}"
            return ("-" if v < 0 else "") + f"{s} {unit}"
        n /= 1024
    return f"{v:g} B"


def fmt_number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def fmt_value(v: float | None, unit: str, lang: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if unit == "percent":
        return f"{v:.1f}%"
    if unit == "ratio":
        return f"{v * 100:.1f}%"
    if unit == "bytes":
        return fmt_bytes(v)
    if unit == "bytes_per_second":
        return fmt_bytes(v) + "/s"
    if unit == "seconds":
        if abs(v) < 1:
            return f"{v * 1000:.0f} ms"
        if abs(v) < 120:
            return f"{v:.2f} s".replace(".00 s", " s")
        return fmt_duration(v, lang)
    if unit == "days":
        return f"{v:.1f} " + ("天" if lang == "zh-CN" else "days")
    return fmt_number(v)


class Renderer:
    """Renders notifications with the shipped (or overriding) templates of a language."""

    def __init__(self, language: str = "zh-CN", *, timezone: str | None = None, public_url: str | None = None, templates_dir: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.language = language
        self.public_url = (public_url or "").rstrip("/")
        self.clock = clock
        self.tz: dt.tzinfo | None = None
        if timezone:
            from zoneinfo import ZoneInfo

            self.tz = ZoneInfo(timezone)
        self._envs: dict[str, jinja2.Environment] = {}
        self.templates_dir = templates_dir

    def env(self, lang: str) -> jinja2.Environment:
        e = self._envs.get(lang)
        if e is None:
            paths = []
            if self.templates_dir:
                paths.append(str(Path(self.templates_dir) / lang))
            paths.append(str(TEMPLATES_DIR / lang))
            e = jinja2.Environment(
                loader=jinja2.FileSystemLoader(paths),
                autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=False,
                undefined=jinja2.ChainableUndefined,
            )
            e.filters["duration"] = lambda s: fmt_duration(s, lang)
            e.filters["value"] = lambda v, unit="": fmt_value(v, unit, lang)
            e.filters["time"] = self.fmt_time
            self._envs[lang] = e
        return e

    def fmt_time(self, ts: float | None) -> str:
        if ts is None:
            return "-"
        d = dt.datetime.fromtimestamp(ts, tz=self.tz) if self.tz else dt.datetime.fromtimestamp(ts).astimezone()
        return d.strftime("%Y-%m-%d %H:%M:%S")

    # ------------------------------------------------------------ views
    def alert_view(self, a: "Alert", lang: str, now: float) -> dict[str, Any]:
        w = WORDS[lang]
        d = a.details or {}
        unit = d.get("unit") or ""
        typ = d.get("type", "")
        since = a.firing_since or a.active_since
        where_parts = []
        for k in WHERE_LABELS:
            v = a.labels.get(k)
            if v:
                where_parts.append(f"{w.get(k, k)} {v}")
        value_text = fmt_value(a.value, unit, lang)
        threshold_text = fmt_value(a.threshold, unit, lang)
        if typ == "prediction":
            value_text = fmt_duration(a.value, lang)
            threshold_text = fmt_duration(a.threshold, lang)
        elif typ in ("host_down", "absent"):
            value_text = fmt_duration(a.value, lang)
            threshold_text = fmt_duration(a.threshold, lang)
        elif typ == "probe":
            value_text = fmt_number(max(0.0, a.value or 0.0))
            threshold_text = fmt_number(a.threshold or 0.0)
        elif typ in ("exceptions",):
            value_text = fmt_number(a.value or 0.0)
            threshold_text = fmt_number(a.threshold or 0.0)
        link = f"{self.public_url}/api/v1/alerts/{a.fingerprint}" if self.public_url else ""
        return {
            "id": a.fingerprint,
            "name": a.labels.get("alertname", a.rule),
            "rule": a.rule,
            "type": typ,
            "state": a.state,
            "resolved": a.state == "resolved",
            "severity": a.severity,
            "severity_text": w.get(a.severity, a.severity),
            "labels": a.labels,
            "annotations": a.annotations,
            "summary": a.annotations.get("summary", ""),
            "description": a.annotations.get("description", "") or d.get("description", ""),
            "where": " · ".join(where_parts) if where_parts else "-",
            "host": a.labels.get("host", ""),
            "module": a.labels.get("module", ""),
            "target": a.labels.get("target", ""),
            "value": a.value,
            "threshold": a.threshold,
            "value_text": value_text,
            "threshold_text": threshold_text,
            "op": d.get("op", ""),
            "metric": d.get("metric", ""),
            "agg": d.get("agg", ""),
            "window_text": fmt_duration(d["window"], lang) if d.get("window") else "",
            "details": d,
            "extra": a.extra or {},
            "since": self.fmt_time(since),
            "duration_text": fmt_duration((a.resolved_at or now) - since, lang),
            "resolved_at": self.fmt_time(a.resolved_at) if a.resolved_at else "",
            "link": link,
        }

    def context(self, n: "Notification", lang: str, alerts: list["Alert"] | None = None, truncated: int = 0, **extra: Any) -> dict[str, Any]:
        now = self.clock()
        shown = alerts if alerts is not None else sort_alerts(n.alerts)
        views = [self.alert_view(a, lang, now) for a in shown]
        firing = [v for v in views if not v["resolved"]]
        resolved = [v for v in views if v["resolved"]]
        n_firing = len(n.firing)
        n_resolved = len(n.resolved)
        top = max((RANK.get(a.severity, 0) for a in n.firing), default=0)
        top_sev = {3: "critical", 2: "warning", 1: "info"}.get(top, "info")
        return {
            "n": n,
            "lang": lang,
            "words": WORDS[lang],
            "status": n.status,
            "receiver": n.receiver,
            "alerts": views,
            "firing": firing,
            "resolved": resolved,
            "n_firing": n_firing,
            "n_resolved": n_resolved,
            "truncated": truncated,
            "top_severity": top_sev,
            "top_severity_text": WORDS[lang].get(top_sev, top_sev),
            "group_labels": n.group_labels,
            "common_labels": n.common_labels(),
            "public_url": self.public_url,
            "merged": n.merged,
            "test": n.test,
            "now": self.fmt_time(now),
            **extra,
        }

    def render(self, name: str, n: "Notification", lang: str | None = None, *, alerts: list["Alert"] | None = None, truncated: int = 0, **extra: Any) -> str:
        lang = lang or self.language
        tpl = self.env(lang).get_template(name)
        return tpl.render(self.context(n, lang, alerts, truncated, **extra)).strip()

    def render_fit(self, name: str, n: "Notification", lang: str | None, limit: int, measure: Callable[[str], int] = lambda s: len(s.encode("utf-8")), **extra: Any) -> str:
        """Render within `limit` (bytes by default): drop whole alerts from the end (saying how many were
        left out) and, if even one alert is too long, cut the text cleanly at a character boundary."""
        ordered = sort_alerts(n.alerts)
        text = self.render(name, n, lang, alerts=ordered, **extra)
        if measure(text) <= limit:
            return text
        lo, hi = 1, len(ordered) - 1
        best: str | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            t = self.render(name, n, lang, alerts=ordered[:mid], truncated=len(ordered) - mid, **extra)
            if measure(t) <= limit:
                best = t
                lo = mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best
        t = self.render(name, n, lang, alerts=ordered[:1], truncated=len(ordered) - 1, **extra)
        return truncate_text(t, limit, measure)


def truncate_text(text: str, limit: int, measure: Callable[[str], int] = lambda s: len(s.encode("utf-8"))) -> str:
    """Cut `text` to at most `limit` (measured), preferring a line break, ending with an ellipsis."""
    if measure(text) <= limit:
        return text
    ell = "\n…"
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(text[:mid] + ell) <= limit:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    nl = cut.rfind("\n")
    if nl > len(cut) * 0.6:
        cut = cut[:nl]
    return cut + ell


def sort_alerts(alerts: list["Alert"]) -> list["Alert"]:
    """Firing before resolved, most severe first, oldest first."""
    return sorted(alerts, key=lambda a: (a.state != "firing", -RANK.get(a.severity, 0), a.firing_since or a.active_since))
