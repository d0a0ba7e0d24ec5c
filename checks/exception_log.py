"""Exceptions from log files: multi-line grouping, Python/Java/PHP trace parsing, module rules, rotation-safe tailing."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from checks.base import Check
from checks.catalogue import MetricSpec
from checks.config import ByteSize
from checks.model import APP_EXCEPTION, Event, Reading, Sample
from checks.normalize import exception_fingerprint, normalize_message
from checks.tailing import LineGrouper, TailedFilesConfig, TailingCheck
from checks.tailing import Tailer as Tailer  # noqa: F401 - moved to checks.tailing, still importable from here

# ---------------------------------------------------------------- module rules


@dataclass(frozen=True, kw_only=True)
class ModuleRule:
    """How to recognise one business module (payment, order, ...). Any match wins; longest prefix first."""

    #: URL path prefixes (`/pay`, `/api/orders`)
    url_prefixes: list[str] = field(default_factory=list)
    #: Python packages / Java packages / PHP namespaces (`shop.payment`, `com.shop.order`)
    packages: list[str] = field(default_factory=list)
    #: logger names (`shop.payment`; a dotted prefix matches its children)
    loggers: list[str] = field(default_factory=list)
    #: source file path prefixes or substrings (`/var/www/pay/`)
    files: list[str] = field(default_factory=list)
    #: service names reported by applications (`billing-php`)
    services: list[str] = field(default_factory=list)


class ModuleMapper:
    """Applies `ModuleRule`s: URL path, frames (package or file), logger, service → module name."""

    def __init__(self, rules: dict[str, ModuleRule] | None = None) -> None:
        self.url: list[tuple[str, str]] = []
        self.pkg: list[tuple[str, str]] = []
        self.logger: list[tuple[str, str]] = []
        self.files: list[tuple[str, str]] = []
        self.services: dict[str, str] = {}
        for mod, r in (rules or {}).items():
            self.url += [(p, mod) for p in r.url_prefixes]
            self.pkg += [(p.replace("\\", "."), mod) for p in r.packages]
            self.logger += [(p, mod) for p in r.loggers]
            self.files += [(p, mod) for p in r.files]
            self.services.update({s: mod for s in r.services})
        for lst in (self.url, self.pkg, self.logger, self.files):
            lst.sort(key=lambda x: -len(x[0]))

    def __bool__(self) -> bool:
        return bool(self.url or self.pkg or self.logger or self.files or self.services)

    def for_path(self, path: str) -> str | None:
        for p, m in self.url:
            if path.startswith(p):
                return m
        return None

    def for_endpoint(self, endpoint: str) -> str | None:
        """`GET /pay/{id}` or `/pay/{id}` → module by URL prefix."""
        if not self.url or not endpoint:
            return None
        path = endpoint.split(" ", 1)[1] if " " in endpoint and not endpoint.startswith("/") else endpoint
        return self.for_path(path)

    def for_logger(self, name: str) -> str | None:
        for p, m in self.logger:
            if name == p or name.startswith(p + "."):
                return m
        return None

    def for_package(self, name: str) -> str | None:
        name = name.replace("\\", ".")
        for p, m in self.pkg:
            if name == p or name.startswith(p + ".") or f".{p}." in f".{name}.":
                return m
        return None

    def for_frames(self, frames: list[dict[str, Any]]) -> str | None:
        """Innermost in-app frame first."""
        if not (self.pkg or self.files):
            return None
        for f in reversed(frames):
            m = self.for_package(str(f.get("module") or "")) if self.pkg else None
            if m is None and self.files:
                fn = str(f.get("file") or "")
                for p, mod in self.files:
                    if fn.startswith(p) or p in fn:
                        m = mod
                        break
            if m:
                return m
        return None

    def resolve(self, *, module: str | None = None, endpoint: str = "", frames: list[dict[str, Any]] | None = None,
                logger: str = "", service: str = "") -> str:
        if module:
            return module
        return (
            self.for_endpoint(endpoint)
            or (self.for_frames(frames) if frames else None)
            or (self.for_logger(logger) if logger else None)
            or self.services.get(service)
            or ""
        )


# ---------------------------------------------------------------- stack trace parsing

_PY_TB = "Traceback (most recent call last):"
_PY_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_PY_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?:: ?(?P<msg>.*))?$")
_PY_CHAIN = ("The above exception was the direct cause", "During handling of the above exception")
_JAVA_FRAME = re.compile(r"^\s+at (?P<cls>[\w$.<>/\-]+)\.(?P<func>[\w$<>\-]+)\((?P<file>[^:)]*)(?::(?P<line>\d+))?\)")
_JAVA_HEADER = re.compile(r"^(?:Caused by: |\s*Suppressed: )?(?P<type>(?:[a-zA-Z_$][\w$]*\.)+[A-Z][\w$]*)(?::\s?(?P<msg>.*))?$")
_JAVA_MORE = re.compile(r"^\s*\.\.\. \d+ (?:more|common frames omitted)")
_PHP_UNCAUGHT = re.compile(r"PHP (?:Fatal error|Catchable fatal error):\s+Uncaught (?P<type>[\w\\]+)(?::\s?(?P<msg>.*?))? in (?P<file>\S+?):(?P<line>\d+)\s*$")
_PHP_FATAL = re.compile(r"PHP (?P<type>Fatal error|Parse error|Catchable fatal error|Warning|Error):\s+(?P<msg>.*?) in (?P<file>\S+?) on line (?P<line>\d+)")
_PHP_FRAME = re.compile(r"^#\d+ (?P<file>[^(]+?)\((?P<line>\d+)\): (?P<func>[\w\\:>\-]+)\(")
_JAVA_LIBS = ("java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "scala.", "org.springframework.", "org.apache.",
              "org.hibernate.", "io.netty.", "org.eclipse.jetty.", "com.zaxxer.", "reactor.", "io.grpc.", "okhttp3.")
_LOGGER_RX = re.compile(r"\b(?:ERROR|CRITICAL|FATAL|SEVERE|WARN(?:ING)?)\b[\s:\]\-]+(?:\[[^\]]*\]\s*)?(?P<logger>[A-Za-z_][\w$]*(?:\.[A-Za-z_$][\w$]*)+)")


def _py_module(path: str) -> str:
    p = path.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in p:
            p = p.rsplit(marker, 1)[1]
            break
    if p.endswith(".py"):
        p = p[:-3]
    parts = [x for x in p.strip("/").split("/") if x]
    if parts and parts[-1] == "__init__":
        parts.pop()
    # the last three components: stable across hosts and deploy directories (/srv/releases/<date>/shop/...)
    return ".".join(parts[-3:])


def _php_module(path: str) -> str:
    """Deploy-directory independent identity of a PHP file: its last two path components."""
    parts = [x for x in path.replace("\\", "/").split("/") if x]
    return "/".join(parts[-2:])


def _py_in_app(path: str) -> bool:
    return not ("site-packages" in path or "dist-packages" in path or "/lib/python" in path or path.startswith("<"))


@dataclass(slots=True)
class ParsedException:
    type: str
    message: str
    frames: list[dict[str, Any]]
    stack: str
    language: str
    logger: str = ""


def parse_python(text: str) -> ParsedException | None:
    """The outermost exception of a (possibly chained) Python traceback; frames outermost first."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip() == _PY_TB or ln.endswith(_PY_TB)]
    if not starts:
        return None
    last = starts[-1]
    frames: list[dict[str, Any]] = []
    etype, msg = "", ""
    i = last + 1
    while i < len(lines):
        ln = lines[i]
        m = _PY_FRAME.match(ln)
        if m:
            f = m.group("file")
            frames.append({"file": f, "line": int(m.group("line")), "function": (m.group("func") or "?").strip(),
                           "module": _py_module(f), "in_app": _py_in_app(f)})
        elif ln and not ln[0].isspace():
            em = _PY_EXC.match(ln.strip())
            if em:
                etype, msg = em.group("type"), (em.group("msg") or "")
            else:
                etype, msg = ln.split(":", 1)[0][:200], ln.split(":", 1)[1].strip() if ":" in ln else ""
            # a multi-line message continues until a blank line
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(" "):
                msg += "\n" + lines[j]
                j += 1
            break
        i += 1
    if not etype:
        return None
    head = lines[: starts[0]]
    logger = ""
    for h in head[-3:]:
        lm = _LOGGER_RX.search(h) or re.search(r"(?:ERROR|CRITICAL):(?P<logger>[\w.]+):", h)
        if lm:
            logger = lm.group("logger")
    return ParsedException(etype, msg.strip(), frames, text.strip("\n"), "python", logger)


def parse_java(text: str) -> ParsedException | None:
    """The top-level exception of a Java stack trace (Caused by / ... N more understood); frames outermost first."""
    lines = text.splitlines()
    etype = msg = ""
    frames_inner_first: list[dict[str, Any]] = []
    header_idx = -1
    for i, ln in enumerate(lines):
        if not etype:
            m = _JAVA_HEADER.match(ln) if ln[:1] not in ("\t", " ") else None
            if m and i + 1 < len(lines) and _JAVA_FRAME.match(lines[i + 1]):
                etype, msg, header_idx = m.group("type"), m.group("msg") or "", i
            continue
        fm = _JAVA_FRAME.match(ln)
        if fm:
            cls = fm.group("cls")
            frames_inner_first.append({"file": fm.group("file"), "line": int(fm.group("line")) if fm.group("line") else None,
                                       "function": fm.group("func"), "module": cls, "in_app": not cls.startswith(_JAVA_LIBS)})
            continue
        if _JAVA_MORE.match(ln) or ln.startswith(("Caused by:", "\tSuppressed:", "    Suppressed:")) or ln.strip().startswith("Suppressed:"):
            break  # the top-level exception's own frames end here
    if not etype or not frames_inner_first:
        return None
    logger = ""
    for h in lines[:header_idx][-2:]:
        lm = _LOGGER_RX.search(h)
        if lm:
            logger = lm.group("logger")
    frames = [{k: v for k, v in f.items() if v is not None} for f in reversed(frames_inner_first)]
    return ParsedException(etype, msg.strip(), frames, "\n".join(lines[header_idx:]).strip("\n") if header_idx >= 0 else text, "java", logger)


def parse_php(text: str) -> ParsedException | None:
    """PHP fatal errors (uncaught exceptions with their `Stack trace:` or plain fatal errors)."""
    first = text.splitlines()[0] if text else ""
    m = _PHP_UNCAUGHT.search(first)
    frames: list[dict[str, Any]] = []
    if m:
        etype, msg = m.group("type"), m.group("msg") or ""
        throw = {"file": m.group("file"), "line": int(m.group("line")), "function": "{throw}",
                 "module": _php_module(m.group("file")), "in_app": "/vendor/" not in m.group("file")}
    else:
        m = _PHP_FATAL.search(first)
        if not m:
            return None
        etype, msg = "PHP " + m.group("type"), m.group("msg")
        throw = {"file": m.group("file"), "line": int(m.group("line")), "function": "{main}",
                 "module": _php_module(m.group("file")), "in_app": "/vendor/" not in m.group("file")}
    for ln in text.splitlines()[1:]:
        fm = _PHP_FRAME.match(ln.strip())
        if fm:
            f = fm.group("file")
            frames.append({"file": f, "line": int(fm.group("line")), "function": fm.group("func"),
                           "module": fm.group("func").rsplit("->", 1)[0].rsplit("::", 1)[0] if ("->" in fm.group("func") or "::" in fm.group("func")) else _php_module(f),
                           "in_app": "/vendor/" not in f})
    frames.reverse()  # outermost first
    frames.append(throw)
    return ParsedException(etype, msg.strip(), frames, text.strip("\n"), "php")


def parse_stack(text: str, fmt: str = "auto") -> ParsedException | None:
    """Parse one multi-line record (or an OTLP `exception.stacktrace`) in any supported language."""
    if fmt in ("auto", "python") and _PY_TB in text:
        r = parse_python(text)
        if r:
            return r
    if fmt in ("auto", "php") and "PHP " in text:
        r = parse_php(text)
        if r:
            return r
    if fmt in ("auto", "java") and ("\tat " in text or "    at " in text):
        return parse_java(text)
    return None


# ---------------------------------------------------------------- multi-line grouping


class Grouper(LineGrouper):
    """Splits a line stream into records: a head line plus continuation lines (traces)."""

    def __init__(self, max_lines: int = 500) -> None:
        super().__init__()
        self.max_lines = max_lines
        self._py_wait_exc = False  # inside a Python traceback, its exception line not seen yet
        self._java_pending = False  # last line looked like a Java exception header with no frames yet

    def _continues(self, ln: str) -> bool:
        if not self.lines:
            return False
        if self._py_wait_exc:
            return True  # frames, code lines, and finally the exception line
        if not ln.strip():
            return True
        if ln[0] in " \t":
            return True
        s = ln
        if s.startswith((_PY_TB, "Caused by:", "Stack trace:", "The above exception", "During handling of the above")) or s.endswith(_PY_TB):
            return True
        if s.startswith("#") and s[1:2].isdigit():
            return True
        prev = self.lines[-1]
        if not prev.strip() and any(x.startswith(_PY_CHAIN) for x in self.lines[-3:]):
            return True
        if _JAVA_HEADER.match(s) and "." in s.split(":", 1)[0] and not any(_JAVA_FRAME.match(x) for x in self.lines[-3:]):
            # `com.shop.OrderException: ...` right under a log line, before any `at` frame
            return len(self.lines) <= 3
        return False

    def feed(self, ln: str) -> str | None:
        """Add a line; returns a finished record when `ln` starts a new one."""
        done: str | None = None
        if self._continues(ln) and len(self.lines) < self.max_lines:
            self.lines.append(ln)
        else:
            done = self.take()
            self.lines = [ln]
        if ln.strip() == _PY_TB or ln.endswith(_PY_TB):
            self._py_wait_exc = True
        elif self._py_wait_exc and ln and ln[0] not in " \t":
            self._py_wait_exc = False
        return done

    def _join(self) -> str:
        return "\n".join(self.lines).rstrip("\n")

    def _reset(self) -> None:
        self._py_wait_exc = False


# ---------------------------------------------------------------- the check


def exception_event(p: ParsedException, *, count: int, ts: float, module: str, service: str = "", source: str = "",
                    endpoint: str = "", tags: dict[str, str] | None = None) -> Event:
    """The `app.exception` Event the agent ships (same shape as the local ingest's)."""
    fp = exception_fingerprint(p.type, p.message, p.frames)
    t = dict(tags or {})
    t["module"] = module or "unknown"
    if service:
        t["service"] = service
    data = {
        "fingerprint": fp, "count": count, "first_ts": ts, "last_ts": ts, "type": p.type[:300], "message": p.message[:2000],
        "normalized_message": normalize_message(p.message), "frames": p.frames[-50:], "stack": p.stack[-16000:],
        "endpoint": endpoint, "logger": p.logger, "source": source, "language": p.language,
    }
    return Event(APP_EXCEPTION, ts, f"{p.type}: {p.message}"[:2000], t, data)


@dataclass(frozen=True, kw_only=True)
class ExceptionLogConfig(TailedFilesConfig):
    format: Literal["auto", "python", "java", "php"] = "auto"
    #: service name reported with every exception (tag `service`)
    service: str = ""
    #: module for every exception of these files (otherwise `module_rules`, otherwise "unknown")
    module: str | None = None
    module_rules: dict[str, ModuleRule] = field(default_factory=dict)
    max_record_lines: int = 500
    max_line_bytes: ByteSize = 65536

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_record_lines < 2:
            raise ValueError("max_record_lines must be at least 2")


class ExceptionLogCheck(TailingCheck, Check[ExceptionLogConfig]):
    """Follows log files and reports each exception trace found as an `app.exception` Event (identical ones merged)."""

    Config = ExceptionLogConfig
    METRICS = (
        MetricSpec("exception_log.exceptions", "count", "gauge", "exception traces found in the files during the run", ("module",)),
    )

    def __init__(self, config: ExceptionLogConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self.mapper = ModuleMapper(config.module_rules)
        self.tailer = self._tailer(config, state_dir, max_lines=config.max_record_lines)

    def _collect(self) -> list[Reading]:
        now = time.time()
        merged: dict[str, tuple[ParsedException, int, str, str]] = {}
        for path, rec in self.tailer.poll():
            p = parse_stack(rec, self.config.format)
            if p is None:
                continue
            fp = exception_fingerprint(p.type, p.message, p.frames)
            cur = merged.get(fp)
            if cur is not None:
                merged[fp] = (cur[0], cur[1] + 1, cur[2], cur[3])
                continue
            module = self.mapper.resolve(module=self.config.module, frames=p.frames, logger=p.logger, service=self.config.service)
            merged[fp] = (p, 1, module, path)
        self.tailer.save()
        out: list[Reading] = []
        per_module: dict[str, int] = {}
        for p, n, module, path in merged.values():
            out.append(exception_event(p, count=n, ts=now, module=module, service=self.config.service, source=f"file:{path}"))
            per_module[module or "unknown"] = per_module.get(module or "unknown", 0) + n
        for m, n in per_module.items():
            out.append(Sample("exception_log.exceptions", float(n), now, {"module": m}))
        return out
