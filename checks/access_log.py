"""The access_log check: tails a web server access log — requests/s by status class, 5xx ratio, request-time quantiles per URL pattern."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import orjson

from checks.base import Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.config import ByteSize, ConfigError
from checks.model import Event, Reading, Sample
from checks.sketch import Sketch

log = logging.getLogger("infrawatch.checks.access_log")

#: nginx's predefined `combined` format and Apache's "combined" LogFormat (%l, the ident, is "-" in nginx)
COMBINED = '$remote_addr $ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"'
#: Apache's "common" LogFormat (and nginx's combined without referer and user agent)
COMMON = '$remote_addr $ident $remote_user [$time_local] "$request" $status $body_bytes_sent'
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
ALL = "all"
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")
#: bytes hashed at the start of the file to recognise it again (copytruncate, inode reuse, restarts)
FINGERPRINT_BYTES = 256
_STATE_FILE = "access_log.state.json"
_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


@dataclass(frozen=True, kw_only=True)
class UrlPattern:
    #: label of the pattern (the `pattern` tag)
    name: str
    #: regular expression searched in the request path (without the query string)
    match: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,64}", self.name) or self.name == ALL:
            raise ConfigError("name", f"must be 1-64 characters of letters, digits, _ . : / - and not {ALL!r}; got {self.name!r}")
        try:
            re.compile(self.match)
        except re.error as e:
            raise ConfigError("match", f"invalid regular expression {self.match!r}: {e}") from None


@dataclass(frozen=True, kw_only=True)
class JsonFields:
    """Keys of a JSON-lines log (nginx `log_format ... escape=json`); dotted keys reach into objects."""

    status: str = "status"
    #: "GET /path HTTP/1.1"; used for the path when `path` is absent
    request: str = "request"
    path: str = "request_uri"
    request_time: str = "request_time"
    upstream_response_time: str = "upstream_response_time"


@dataclass(frozen=True, kw_only=True)
class AccessLogConfig(CheckConfig):
    #: the access log file (the current one: rotated files are followed by inode)
    path: str
    #: combined (nginx/Apache combined), common (Apache common) — extra trailing fields allowed —,
    #: json (one object per line), or custom: the nginx `log_format` string in `log_format`
    format: Literal["combined", "common", "json", "custom"] = "combined"
    #: nginx-style format with $variables (for format: custom); $status is required, $request or
    #: $request_uri/$uri give the path, $request_time and $upstream_response_time the durations
    log_format: str | None = None
    #: keys of a JSON log (format: json)
    json_fields: JsonFields = field(default_factory=JsonFields)
    #: unit of the request time field: s (nginx $request_time, Apache %T), ms, us (Apache %D)
    request_time_unit: Literal["s", "ms", "us"] = "s"
    #: URL patterns with their own rates and request-time quantiles (first match wins)
    patterns: list[UrlPattern] = field(default_factory=list)
    #: with no saved position: read the existing file from its start (else start at its end, like tail -F)
    from_beginning: bool = False
    #: at most this much of the log is read per run; the rest is read by the next runs
    max_bytes_per_run: ByteSize = 64 * 1024 * 1024
    #: longest line accepted; longer ones are skipped and counted as unparsed
    max_line_bytes: ByteSize = 64 * 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path or not os.path.isabs(self.path):
            raise ConfigError("path", f"must be an absolute file path, got {self.path!r}")
        if self.format == "custom":
            if not self.log_format:
                raise ConfigError("log_format", "is required with format: custom (the nginx log_format string)")
            compile_format(self.log_format)
        elif self.log_format is not None:
            raise ConfigError("log_format", f"is only used with format: custom (format is {self.format!r})")
        names = [p.name for p in self.patterns]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError("patterns", f"duplicate pattern name {sorted(dup)[0]!r}")
        if self.max_bytes_per_run < 4096:
            raise ConfigError("max_bytes_per_run", "must be at least 4096 bytes")
        if self.max_line_bytes < 256:
            raise ConfigError("max_line_bytes", "must be at least 256 bytes")
        if self.max_line_bytes > self.max_bytes_per_run:
            raise ConfigError("max_line_bytes", "must not exceed max_bytes_per_run")


# ---------------------------------------------------------------- parsing

#: one parsed line: (status, path or None, request seconds or None, upstream seconds or None)
Parsed = tuple[int, str | None, float | None, float | None]


def _var_regex(name: str, stop: str | None) -> str:
    if name.startswith("upstream_"):
        # several upstreams: "0.004, 0.010" or "0.004 : 0.010" (internal redirect)
        return rf"(?P<{name}>[^ ,:\"]+(?:(?:, | : )[^ ,:\"]+)*)"
    if stop is None:
        return rf"(?P<{name}>.*)"
    return rf"(?P<{name}>[^{re.escape(stop)}]*)"


def compile_format(fmt: str, *, allow_trailing: bool = False) -> re.Pattern[str]:
    """A regex for an nginx `log_format` string; each $variable becomes a named group."""
    parts: list[str] = []
    seen: set[str] = set()
    pos = 0
    matches = list(_VAR.finditer(fmt))
    if not matches:
        raise ConfigError("log_format", "contains no $variables")
    for i, m in enumerate(matches):
        parts.append(re.escape(fmt[pos : m.start()]))
        name = m.group(1) or m.group(2)
        end = m.end()
        stop = fmt[end] if end < len(fmt) else (" " if allow_trailing else None)
        if stop == "$":
            raise ConfigError("log_format", f"${name} is directly followed by another variable: the two cannot be told apart")
        if name in seen:  # a repeated variable: matched, not captured again
            parts.append(_var_regex(name, stop).replace(f"(?P<{name}>", "(?:", 1))
        else:
            seen.add(name)
            parts.append(_var_regex(name, stop))
        pos = end
    parts.append(re.escape(fmt[pos:]))
    if "status" not in seen:
        raise ConfigError("log_format", "must contain $status")
    rx = "^" + "".join(parts) + (r"(?: .*)?$" if allow_trailing else "$")
    return re.compile(rx)


def _seconds(v: Any, unit: float) -> float | None:
    """A duration field: a number, "-", or a list of upstream times ("0.1, 0.2" / "0.1 : 0.2") summed."""
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) * unit
    s = str(v)
    if not s or s == "-":
        return None
    total = 0.0
    got = False
    for part in re.split(r", | : ", s):
        try:
            total += float(part)
            got = True
        except ValueError:
            continue  # "-" for an upstream that did not answer
    return total * unit if got else None


def _path_of_request(req: str | None) -> str | None:
    if not req:
        return None
    p = req.split(" ")
    return p[1] if len(p) >= 2 else None


def _strip_query(path: str | None) -> str | None:
    if path is None:
        return None
    i = path.find("?")
    return path if i < 0 else path[:i]


def _status(v: Any) -> int | None:
    try:
        s = int(v)
    except (TypeError, ValueError):
        return None
    return s if 100 <= s <= 599 else None


def make_parser(cfg: AccessLogConfig) -> Callable[[str], Parsed | None]:
    unit = _UNIT[cfg.request_time_unit]
    if cfg.format == "json":
        jf = cfg.json_fields

        def getter(key: str) -> Callable[[dict[str, Any]], Any]:
            if "." not in key:
                return lambda d: d.get(key)
            keys = key.split(".")

            def deep(d: dict[str, Any]) -> Any:
                for k in keys:
                    if not isinstance(d, dict):
                        return None
                    d = d.get(k)  # type: ignore[assignment]
                return d

            return deep

        g_status, g_req, g_path = getter(jf.status), getter(jf.request), getter(jf.path)
        g_rt, g_ut = getter(jf.request_time), getter(jf.upstream_response_time)

        def parse_json(line: str) -> Parsed | None:
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError:
                return None
            if not isinstance(d, dict):
                return None
            st = _status(g_status(d))
            if st is None:
                return None
            path = g_path(d)
            if not isinstance(path, str) or not path:
                r = g_req(d)
                path = _path_of_request(r) if isinstance(r, str) else None
            return st, _strip_query(path), _seconds(g_rt(d), unit), _seconds(g_ut(d), 1.0)

        return parse_json

    if cfg.format in ("combined", "common"):
        rx = compile_format(COMBINED if cfg.format == "combined" else COMMON, allow_trailing=True)
    else:
        rx = compile_format(cfg.log_format or "")
    groups = set(rx.groupindex)
    path_group = next((g for g in ("request_uri", "uri") if g in groups), None)
    has_req = "request" in groups
    has_rt = "request_time" in groups
    has_ut = "upstream_response_time" in groups

    def parse_text(line: str) -> Parsed | None:
        m = rx.match(line)
        if m is None:
            return None
        st = _status(m.group("status"))
        if st is None:
            return None
        path = m.group(path_group) if path_group else (_path_of_request(m.group("request")) if has_req else None)
        rt = _seconds(m.group("request_time"), unit) if has_rt else None
        ut = _seconds(m.group("upstream_response_time"), 1.0) if has_ut else None
        return st, _strip_query(path), rt, ut

    return parse_text


# ---------------------------------------------------------------- tailing


def _fingerprint(fd: int, size: int) -> str:
    n = min(size, FINGERPRINT_BYTES)
    return hashlib.sha1(os.pread(fd, n, 0)).hexdigest() if n else ""


def _same_start(fd: int, fp: str, fp_len: int) -> bool:
    """Does the file still start with the bytes fingerprinted earlier (fp over its first fp_len bytes)?"""
    if not fp_len:
        return True
    data = os.pread(fd, fp_len, 0)
    return len(data) == fp_len and hashlib.sha1(data).hexdigest() == fp


class _File:
    """One open log file and our position in it (always at the start of a line)."""

    __slots__ = ("fd", "dev", "ino", "offset", "fp", "fp_len", "rotated", "idle_runs")

    def __init__(self, fd: int, st: os.stat_result, offset: int) -> None:
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.offset = offset
        self.fp = ""
        self.fp_len = 0
        self.rotated = False
        self.idle_runs = 0
        self.refresh_fp(st.st_size)

    def refresh_fp(self, size: int) -> None:
        if self.fp_len < FINGERPRINT_BYTES and size > self.fp_len:
            self.fp_len = min(size, FINGERPRINT_BYTES)
            self.fp = _fingerprint(self.fd, self.fp_len)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


@dataclass(slots=True)
class _Window:
    """What one run read; every complete line goes to `consume` as it is read."""

    consume: Callable[[str], None] = lambda line: None
    unparsed: int = 0
    unparsed_example: str = ""
    rotations: int = 0
    truncations: int = 0
    too_long: int = 0
    more: bool = False  # stopped at max_bytes_per_run


class Tailer:
    """Follows one path across rename rotation (old file drained by its open descriptor until idle),
    copytruncate (the file shrinks or its first bytes change → from its start) and restarts (state)."""

    def __init__(self, path: str, *, from_beginning: bool, max_line: int) -> None:
        self.path = path
        self.from_beginning = from_beginning
        self.max_line = max_line
        self.cur: _File | None = None
        #: rotated files still being drained (the writer may write to them until it reopens its log)
        self.old: list[_File] = []
        #: False until the first read: only then does a missing position mean "start at the end"
        self.started = False

    # -------------------------------------------------------- state across restarts

    def state(self) -> dict[str, Any]:
        files = [f for f in (*self.old, self.cur) if f is not None]
        return {"files": [{"dev": f.dev, "ino": f.ino, "offset": f.offset, "fp": f.fp, "fp_len": f.fp_len, "rotated": f.rotated} for f in files]}

    def restore(self, state: dict[str, Any]) -> None:
        """Reopen the files of a saved state: by path when the inode matches, else a rotated file with
        that inode in the same directory. Files that are gone are forgotten (their unread rest is lost)."""
        saved = [f for f in state.get("files", []) if isinstance(f, dict)]
        try:
            st_path = os.stat(self.path)
        except OSError:
            st_path = None
        candidates: dict[tuple[int, int], str] = {}
        directory = os.path.dirname(self.path) or "."
        base = os.path.basename(self.path)
        if any(st_path is None or (f.get("dev"), f.get("ino")) != (st_path.st_dev, st_path.st_ino) for f in saved):
            try:
                for e in os.scandir(directory):
                    if e.name.startswith(base) and e.is_file(follow_symlinks=False):
                        s = e.stat(follow_symlinks=False)
                        candidates[(s.st_dev, s.st_ino)] = e.path
            except OSError:
                pass
        for f in saved:
            key = (f.get("dev"), f.get("ino"))
            if st_path is not None and key == (st_path.st_dev, st_path.st_ino):
                where = self.path
            else:
                where = candidates.get(key)  # type: ignore[arg-type]
            if where is None:
                log.info("saved log position refers to a file that is gone", extra={"path": self.path, "ino": f.get("ino")})
                continue
            try:
                fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            st = os.fstat(fd)
            off = int(f.get("offset", 0))
            fp, fp_len = str(f.get("fp", "")), int(f.get("fp_len", 0))
            if (st.st_dev, st.st_ino) != key or st.st_size < off or not _same_start(fd, fp, fp_len):
                os.close(fd)  # replaced or truncated while we were away: a different file now
                continue
            lf = _File(fd, st, off)
            if where == self.path:
                self.cur = lf
            else:
                lf.rotated = True
                self.old.append(lf)
        if saved:
            # a current file we do not know is new since our last run: all of it is new
            self.started = True

    # -------------------------------------------------------- reading

    def _open_current(self, *, start_at_end: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        off = 0
        if start_at_end and st.st_size:
            off = _last_line_end(fd, st.st_size)
        self.cur = _File(fd, st, off)
        return True

    def read(self, budget: int, w: _Window) -> None:
        """Read complete new lines of the old (rotated) files, then of the current file, into `w`."""
        if self.cur is None and not self.old:
            first = not self.started
            self.started = True
            if not self._open_current(start_at_end=first and not self.from_beginning):
                raise FileNotFoundError(f"access log {self.path} does not exist")
        # a rename rotation: path now names another file (or none)
        try:
            st_path: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            st_path = None
        cur = self.cur
        if cur is not None and st_path is not None and (st_path.st_dev, st_path.st_ino) != (cur.dev, cur.ino):
            log.info("access log rotated", extra={"path": self.path})
            cur.rotated = True
            self.old.append(cur)
            self.cur = None
            w.rotations += 1
        for f in list(self.old):
            n = self._drain(f, budget, w)
            budget -= n
            if budget <= 0:
                w.more = True
                return
            if n == 0:
                f.idle_runs += 1
                # idle for a whole run after the rotation: the writer has moved to the new file
                if f.idle_runs >= 2:
                    self._finish(f, w)
                    self.old.remove(f)
                    f.close()
            else:
                f.idle_runs = 0
        if self.cur is None and st_path is not None:
            self._open_current(start_at_end=False)  # a file that appeared after a rotation: all of it is new
        if self.cur is not None:
            n = self._drain(self.cur, budget, w)
            if n >= budget:
                w.more = True

    def _drain(self, f: _File, budget: int, w: _Window) -> int:
        """Complete lines from f.offset, up to `budget` bytes; returns bytes consumed."""
        st = os.fstat(f.fd)
        if st.st_size < f.offset or not _same_start(f.fd, f.fp, f.fp_len):
            # copytruncate (or rewritten in place): the file starts over
            log.info("access log truncated", extra={"path": self.path, "offset": f.offset, "size": st.st_size})
            w.truncations += 1
            f.offset = 0
            f.fp, f.fp_len = "", 0
        f.refresh_fp(st.st_size)
        consumed = 0
        chunk = max(1024 * 1024, self.max_line + 1)
        while consumed < budget and f.offset < st.st_size:
            want = min(chunk, budget - consumed, st.st_size - f.offset)
            data = os.pread(f.fd, max(want, 1), f.offset)
            if not data:
                break
            nl = data.rfind(b"\n")
            if nl < 0:
                if len(data) >= self.max_line and f.offset + len(data) <= st.st_size:
                    # a line longer than max_line: skip up to its end (found by a later read)
                    skip = self._skip_long(f, st.st_size)
                    if skip == 0:
                        break
                    w.too_long += 1
                    w.unparsed += 1
                    consumed += skip
                    continue
                break  # a partial last line (wait for its end), or the budget ends inside a line
            block = data[: nl + 1]
            f.offset += len(block)
            consumed += len(block)
            for raw in block.split(b"\n")[:-1]:
                if len(raw) > self.max_line:
                    w.too_long += 1
                    w.unparsed += 1
                    continue
                w.consume(raw.decode("utf-8", "replace").rstrip("\r"))
        return consumed

    def _skip_long(self, f: _File, size: int) -> int:
        pos = f.offset
        while pos < size:
            data = os.pread(f.fd, 1024 * 1024, pos)
            if not data:
                return 0
            nl = data.find(b"\n")
            if nl >= 0:
                n = pos + nl + 1 - f.offset
                f.offset = pos + nl + 1
                return n
            pos += len(data)
        return 0

    def _finish(self, f: _File, w: _Window) -> None:
        """A rotated file nobody writes to any more: its unterminated last line, if any, is final."""
        st = os.fstat(f.fd)
        if st.st_size > f.offset:
            rest = os.pread(f.fd, min(st.st_size - f.offset, self.max_line + 1), f.offset)
            if rest and len(rest) <= self.max_line:
                w.consume(rest.decode("utf-8", "replace").rstrip("\r\n"))
            else:
                w.unparsed += 1
            f.offset = st.st_size

    def close(self) -> None:
        for f in (*self.old, self.cur):
            if f is not None:
                f.close()
        self.old = []
        self.cur = None


def _last_line_end(fd: int, size: int) -> int:
    """Offset just after the last newline of the file (0 if it has none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        data = os.pread(fd, pos - start, start)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


# ---------------------------------------------------------------- the check


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@dataclass(slots=True)
class _Agg:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    rt: Sketch = field(default_factory=Sketch)
    ut: Sketch = field(default_factory=Sketch)


class AccessLogCheck(Check[AccessLogConfig]):
    """Reads the lines appended since the previous run; rates are over the time between runs.

    The position (file identity, offset, first-bytes fingerprint) and the running totals are kept in
    `state_dir` when the agent gives one, so an agent restart neither loses nor re-counts lines.
    """

    Config = AccessLogConfig
    _T = ("file", "pattern", "status_class")
    _P = ("file", "pattern")
    METRICS = (
        MetricSpec("access_log.requests", "count", "gauge", "requests logged since the previous run, by status class", _T),
        MetricSpec("access_log.requests_per_second", "per_second", "rate", "requests per second since the previous run, by status class", _T),
        MetricSpec("access_log.requests_total", "count", "counter", "requests logged since the check first ran (kept across restarts), by status class", _T),
        MetricSpec("access_log.server_error_ratio", "ratio", "gauge", "share of 5xx responses among the requests since the previous run", _P),
        MetricSpec("access_log.request_time_seconds", "seconds", "gauge", "request time quantile since the previous run ($request_time)", ("file", "pattern", "quantile")),
        MetricSpec("access_log.upstream_time_seconds", "seconds", "gauge", "upstream response time quantile since the previous run ($upstream_response_time)", ("file", "pattern", "quantile")),
        MetricSpec("access_log.unparsed_lines", "count", "gauge", "lines since the previous run that did not match the log format", ("file",)),
    )

    def __init__(self, config: AccessLogConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._parse = make_parser(config)
        self._patterns = [(p.name, re.compile(p.match)) for p in config.patterns]
        self._tailer = Tailer(config.path, from_beginning=config.from_beginning, max_line=config.max_line_bytes)
        self._last: float | None = None
        self._totals: dict[str, dict[str, int]] = {}
        self._loaded = False
        # a thread lock, not an asyncio one: a run cancelled by its timeout leaves its thread running,
        # and the next run must wait for it rather than share the file positions
        self._lock = threading.Lock()

    # -------------------------------------------------------- state

    def _state_path(self) -> Path | None:
        return Path(self.state_dir) / _STATE_FILE if self.state_dir else None

    def _load_state(self) -> None:
        self._loaded = True
        p = self._state_path()
        if p is None or not p.exists():
            return
        try:
            st = orjson.loads(p.read_bytes())
            if st.get("path") != self.config.path:
                log.info("saved state is for another file: starting afresh", extra={"path": self.config.path})
                return
            self._tailer.restore(st.get("tail", {}))
            self._last = float(st["last"]) if st.get("last") else None
            self._totals = {k: {c: int(n) for c, n in v.items()} for k, v in st.get("totals", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as e:
            log.warning("cannot read saved log position: starting afresh", extra={"file": str(p), "error": str(e)})

    def _save_state(self) -> None:
        p = self._state_path()
        if p is None:
            return
        data = orjson.dumps({"path": self.config.path, "last": self._last, "tail": self._tailer.state(), "totals": self._totals})
        tmp = p.with_suffix(".tmp")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except OSError as e:
            log.warning("cannot save log position", extra={"file": str(p), "error": str(e)})

    # -------------------------------------------------------- one run

    def _collect(self) -> tuple[_Window, dict[str, _Agg], float]:
        if not self._loaded:
            self._load_state()
        aggs: dict[str, _Agg] = {ALL: _Agg(), **{name: _Agg() for name, _ in self._patterns}}
        parse = self._parse
        patterns = self._patterns
        total = aggs[ALL]
        w = _Window()

        def consume(line: str) -> None:
            if not line:
                return
            p = parse(line)
            if p is None:
                w.unparsed += 1
                if not w.unparsed_example:
                    w.unparsed_example = line[:300]
                return
            st, path, rt, ut = p
            cls = status_class(st)
            hit = None
            if path is not None:
                for name, rx in patterns:
                    if rx.search(path):
                        hit = aggs[name]
                        break
            for a in (total, hit) if hit is not None else (total,):
                a.counts[cls] += 1
                if rt is not None:
                    a.rt.add(rt)
                if ut is not None:
                    a.ut.add(ut)

        w.consume = consume
        self._tailer.read(self.config.max_bytes_per_run, w)
        return w, aggs, time.time()

    async def run(self) -> list[Reading]:
        return await asyncio.to_thread(self._run_locked)

    def _run_locked(self) -> list[Reading]:
        with self._lock:
            return self._run_sync()

    def _run_sync(self) -> list[Reading]:
        cfg = self.config
        w, aggs, now = self._collect()
        prev = self._last
        self._last = now
        window = now - prev if prev is not None else None
        out: list[Reading] = []
        base = {"file": cfg.path}
        for pname, a in aggs.items():
            tot = self._totals.setdefault(pname, dict.fromkeys(STATUS_CLASSES, 0))
            n_all = sum(a.counts.values())
            for cls in STATUS_CLASSES:
                n = a.counts[cls]
                tot[cls] = tot.get(cls, 0) + n
                tags = {**base, "pattern": pname, "status_class": cls}
                out.append(Sample("access_log.requests", float(n), now, tags))
                out.append(Sample("access_log.requests_total", float(tot[cls]), now, dict(tags)))
                if window is not None and window > 0:
                    out.append(Sample("access_log.requests_per_second", n / window, now, dict(tags)))
            if n_all:
                out.append(Sample("access_log.server_error_ratio", a.counts["5xx"] / n_all, now, {**base, "pattern": pname}))
            for metric, sk in (("access_log.request_time_seconds", a.rt), ("access_log.upstream_time_seconds", a.ut)):
                if sk.count:
                    for qname, q in QUANTILES:
                        out.append(Sample(metric, float(sk.quantile(q) or 0.0), now, {**base, "pattern": pname, "quantile": qname}))
        self._totals = {k: v for k, v in self._totals.items() if k in aggs}
        out.append(Sample("access_log.unparsed_lines", float(w.unparsed), now, dict(base)))
        if w.unparsed:
            fmt = cfg.log_format if cfg.format == "custom" else cfg.format
            out.append(
                Event(
                    "access_log.unparsed",
                    now,
                    f"{w.unparsed} line(s) of {cfg.path} do not match the log format {fmt!r}"
                    + (f"; first: {w.unparsed_example!r}" if w.unparsed_example else "")
                    + (f"; {w.too_long} longer than max_line_bytes" if w.too_long else ""),
                    {"file": cfg.path, "check": self.name},
                    {"unparsed": w.unparsed, "example": w.unparsed_example, "too_long": w.too_long},
                )
            )
        if w.more:
            log.warning("access log backlog larger than max_bytes_per_run: continuing next run", extra={"path": cfg.path})
        self._save_state()
        return out

    async def close(self) -> None:
        def close_locked() -> None:
            with self._lock:
                self._tailer.close()

        await asyncio.to_thread(close_locked)
