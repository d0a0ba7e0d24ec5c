"""Config loading: unknown keys, wrong types, durations/sizes and YAML syntax errors name file, key and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from checks import build_check
from checks.config import ByteSize, ConfigError, Duration, from_dict, load_config_file, parse_bytesize, parse_duration


@dataclass(frozen=True, kw_only=True)
class Inner:
    mode: Literal["fast", "safe"] = "safe"
    size: ByteSize = 1024


@dataclass(frozen=True, kw_only=True)
class Outer:
    url: str
    every: Duration = 10.0
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


def write(tmp_path, text: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_valid(tmp_path) -> None:
    cfg = load_config_file(Outer, write(tmp_path, "url: http://x\nevery: 5m\ninner:\n  size: 64MiB\nitems:\n  - mode: fast\n"))
    assert cfg.every == 300.0 and cfg.inner.size == 64 * 1024 * 1024 and cfg.items[0].mode == "fast"


def test_unknown_key_names_file_key_line(tmp_path) -> None:
    f = write(tmp_path, "url: http://x\nitems:\n  - mode: fast\n  - mod: safe\n")
    with pytest.raises(ConfigError) as ei:
        load_config_file(Outer, f)
    e = ei.value
    assert (e.file, e.line, e.path) == (f, 4, "items[1].mod")
    assert "unknown key 'mod'" in str(e) and f"{f}:4" in str(e)


def test_wrong_type(tmp_path) -> None:
    f = write(tmp_path, "url: http://x\ninner:\n  mode: turbo\n")
    with pytest.raises(ConfigError) as ei:
        load_config_file(Outer, f)
    assert ei.value.path == "inner.mode" and ei.value.line == 3 and "'fast'" in ei.value.message


def test_missing_required(tmp_path) -> None:
    with pytest.raises(ConfigError, match="url: is required"):
        load_config_file(Outer, write(tmp_path, "every: 3\n"))


def test_yaml_syntax_error_has_line(tmp_path) -> None:
    f = write(tmp_path, "url: http://x\nitems: [1, 2\nevery: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config_file(Outer, f)
    assert ei.value.line == 3 and "YAML syntax error" in str(ei.value)


def test_duplicate_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match="duplicate key"):
        load_config_file(Outer, write(tmp_path, "url: a\nurl: b\n"))


def test_durations_and_sizes() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("2h") == 7200 and parse_duration(3) == 3.0
    assert parse_bytesize("1GiB") == 1 << 30 and parse_bytesize("10MB") == 10_000_000
    for bad in ("10 parsecs", -1, True):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    with pytest.raises(ConfigError):
        from_dict(Outer, {"url": "x", "every": "soon"})


def test_unknown_check_type_lists_known() -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "pingg"}, "checks[0]")
    assert ei.value.path == "checks[0].type" and "known types:" in ei.value.message and "ping" in ei.value.message
