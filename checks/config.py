"""Typed configuration: dataclass schemas validated from YAML with unknown keys rejected and line-precise errors."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_DURATION = _Marker("duration")
_BYTESIZE = _Marker("bytesize")

#: seconds; accepts a number or a string like "500ms", "10s", "5m", "2h", "7d"
Duration = Annotated[float, _DURATION]
#: bytes; accepts an integer or a string like "512KiB", "64MiB", "1GiB", "10MB"
ByteSize = Annotated[int, _BYTESIZE]

_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DUR_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_SIZE_UNITS = {
    "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4,
}


class ConfigError(ValueError):
    """A configuration value is wrong. `path` is dotted (checks[2].interval); `line` is 1-based when known."""

    def __init__(self, path: str, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}"
            if self.line:
                where += f":{self.line}"
            where += ": "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"

    def located(self, file: str | None, lines: Mapping[str, int] | None) -> "ConfigError":
        """Return a copy that names the file and the line of the offending key (or its nearest parent).

        An error that already names another file (an included rule file, say) keeps its own file and line.
        """
        if self.file and file and self.file != file:
            return self
        line = self.line
        if lines is not None and line is None:
            p = self.path
            while p:
                if p in lines:
                    line = lines[p]
                    break
                p = _parent_path(p)
        return ConfigError(self.path, self.message, file=self.file or file, line=line)


def _parent_path(p: str) -> str:
    if p.endswith("]"):
        return p[: p.rindex("[")]
    if "." in p:
        return p[: p.rindex(".")]
    return ""


def parse_duration(v: Any, path: str = "") -> float:
    if isinstance(v, bool):
        raise ConfigError(path, "expected a duration such as 10, 10s, 500ms, 5m, 1h")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ConfigError(path, f"duration must not be negative, got {v}")
        return float(v)
    if isinstance(v, str):
        m = _DUR_RE.match(v)
        if m:
            return float(m.group(1)) * _DUR_UNITS[m.group(2)]
    raise ConfigError(path, f"expected a duration such as 10, 10s, 500ms, 5m, 1h; got {v!r}")


def parse_bytesize(v: Any, path: str = "") -> int:
    if isinstance(v, bool):
        raise ConfigError(path, "expected a size such as 1048576, 512KiB, 64MiB, 1GiB")
    if isinstance(v, int):
        if v < 0:
            raise ConfigError(path, f"size must not be negative, got {v}")
        return v
    if isinstance(v, str):
        m = _SIZE_RE.match(v)
        if m:
            unit = (m.group(2) or "b").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ConfigError(path, f"expected a size such as 1048576, 512KiB, 64MiB, 1GiB; got {v!r}")


def _tname(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "dict": "mapping", "list": "list"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {v}"
    if isinstance(v, (int, float)):
        return f"number {v}"
    if isinstance(v, str):
        return f"string {v[:60]!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def convert(tp: Any, v: Any, path: str) -> Any:
    """Convert/validate a plain YAML value `v` to type `tp`; raises ConfigError naming `path`."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        if _DURATION in meta:
            return parse_duration(v, path)
        if _BYTESIZE in meta:
            return parse_bytesize(v, path)
        return convert(base, v, path)
    if tp is Any:
        return v
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if v is None and type(None) in args:
            return None
        errors: list[ConfigError] = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(a, v, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, f"expected one of {', '.join(_tname(a) for a in args)}; got {_describe(v)}")
    if origin is Literal:
        allowed = get_args(tp)
        if v in allowed and not (isinstance(v, bool) and not any(isinstance(a, bool) for a in allowed)):
            return v
        raise ConfigError(path, f"must be one of {', '.join(repr(a) for a in allowed)}; got {v!r}")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(v, list):
            raise ConfigError(path, f"expected a list; got {_describe(v)}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        out = [convert(item_tp, x, f"{path}[{i}]") for i, x in enumerate(v)]
        return tuple(out) if origin is tuple or tp is tuple else out
    if origin in (dict, typing.Mapping) or tp is dict:
        if not isinstance(v, dict):
            raise ConfigError(path, f"expected a mapping; got {_describe(v)}")
        args = get_args(tp)
        kt, vt = args if args else (Any, Any)
        out_d = {}
        for k, x in v.items():
            kp = f"{path}.{k}" if path else str(k)
            ck = convert(kt, k if not (kt is str and isinstance(k, (int, float)) and not isinstance(k, bool)) else str(k), kp)
            out_d[ck] = convert(vt, x, kp)
        return out_d
    if is_dataclass(tp):
        return from_dict(tp, v, path)
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise ConfigError(path, f"expected true or false; got {_describe(v)}")
    if tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise ConfigError(path, f"expected an integer; got {_describe(v)}")
    if tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise ConfigError(path, f"expected a number; got {_describe(v)}")
    if tp is str:
        if isinstance(v, str):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        raise ConfigError(path, f"expected a string; got {_describe(v)}")
    if isinstance(tp, type):
        if isinstance(v, tp):
            return v
        raise ConfigError(path, f"expected {_tname(tp)}; got {_describe(v)}")
    raise TypeError(f"unsupported config type {tp!r} at {path}")


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _hints_cache.get(cls)
    if h is None:
        h = get_type_hints(cls, include_extras=True)
        _hints_cache[cls] = h
    return h


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys, missing keys and wrong types raise ConfigError.

    A dataclass may define `__post_init__` raising ValueError("message") (or ConfigError with a
    sub-path relative to the dataclass) to validate across fields.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping; got {_describe(data)}")
    hints = _hints(cls)
    flds = {f.name: f for f in fields(cls) if f.init}
    aliases = {f.metadata.get("alias", f.name): f.name for f in flds.values()}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kp = f"{path}.{key}" if path else str(key)
        name = aliases.get(key) if isinstance(key, str) else None
        if name is None:
            known = ", ".join(sorted(aliases))
            raise ConfigError(kp, f"unknown key {key!r} (known keys: {known})")
        kwargs[name] = convert(hints[name], value, kp)
    for f in flds.values():
        if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
            key = f.metadata.get("alias", f.name)
            raise ConfigError(f"{path}.{key}" if path else key, "is required")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        sub = e.path
        full = f"{path}.{sub}" if path and sub else (path or sub)
        raise ConfigError(full, e.message) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(path, str(e)) from None


def to_dict(obj: Any) -> Any:
    """Plain (YAML/JSON-able) form of a config dataclass."""
    if is_dataclass(obj):
        return {f.metadata.get("alias", f.name): to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    pass


def _build(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                merged = _build(vnode, path, lines)
                if isinstance(merged, list):
                    for m in merged:
                        out.update(m)
                else:
                    out.update(merged)
                continue
            key = _LineLoader.construct_object(_loader_singleton(), knode, deep=True)
            kp = f"{path}.{key}" if path else str(key)
            if key in out:
                raise ConfigError(kp, "duplicate key", line=knode.start_mark.line + 1)
            lines[kp] = knode.start_mark.line + 1
            out[key] = _build(vnode, kp, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, f"{path}[{i}]", lines) for i, n in enumerate(node.value)]
    return _LineLoader.construct_object(_loader_singleton(), node, deep=True)


_singleton: _LineLoader | None = None


def _loader_singleton() -> _LineLoader:
    global _singleton
    if _singleton is None:
        _singleton = _LineLoader("")
    return _singleton


def load_yaml_text(text: str, file: str = "<string>") -> tuple[Any, dict[str, int]]:
    """Parse YAML text; return (data, {dotted path: line}). Syntax errors become ConfigError with the line."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        msg = f"YAML syntax error: {e.problem or e}"
        if e.context:
            msg += f" ({e.context})"
        raise ConfigError("", msg, file=file, line=line) from None
    except yaml.YAMLError as e:
        raise ConfigError("", f"YAML error: {e}", file=file) from None
    if node is None:
        return {}, {}
    lines: dict[str, int] = {}
    try:
        data = _build(node, "", lines)
    except ConfigError as e:
        raise e.located(file, lines) from None
    except yaml.YAMLError as e:
        raise ConfigError("", f"YAML error: {e}", file=file) from None
    return data, lines


def load_yaml_file(path: str | Path) -> tuple[Any, dict[str, int]]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file: {e.strerror}", file=str(p)) from None
    except UnicodeDecodeError as e:
        raise ConfigError("", f"config file is not UTF-8: {e}", file=str(p)) from None
    return load_yaml_text(text, str(p))


def load_config_file(cls: type[T], path: str | Path) -> T:
    """Load a YAML file into dataclass `cls`; every error names the file, key and line."""
    data, lines = load_yaml_file(path)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise e.located(str(path), lines) from None


def field_alias(name: str, **kw: Any) -> Any:
    """dataclasses.field whose YAML key differs from the attribute name (e.g. `from` → from_)."""
    md = dict(kw.pop("metadata", {}) or {})
    md["alias"] = name
    return dataclasses.field(metadata=md, **kw)
