"""Agent config: defaults, validation errors naming file, key and line, check naming, derived configs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import agent.config as agent_config
from agent.config import AgentConfig, load_agent_config, parse_agent_config
from checks.config import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


def load_error(tmp_path: Path, text: str) -> ConfigError:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_agent_config(p)
    e = ei.value
    assert e.file == str(p)
    assert str(p) in str(e)
    return e


def test_defaults_and_units(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "collector:\n  url: https://collector.example:9443/base\n  token: abc\n  timeout: 2s\n"
        "state_dir: /tmp/x\nbuffer:\n  max_bytes: 64MiB\nship:\n  flush_interval: 500ms\n  max_bytes: 512KiB\n"
        "tags:\n  env: prod\nchecks:\n  - type: test_tick\n    interval: 1m\n",
    )
    cfg = load_agent_config(p)
    assert cfg.source == str(p)
    assert cfg.host == socket.gethostname()
    assert cfg.collector.timeout == 2.0 and cfg.collector.tls_verify is True
    assert cfg.buffer.max_bytes == 64 * 2**20
    assert cfg.ship.flush_interval == 0.5 and cfg.ship.max_bytes == 512 * 1024 and cfg.ship.max_samples == 5000
    assert cfg.ship.backoff_initial == 1.0 and cfg.ship.backoff_max == 300.0 and cfg.ship.shutdown_timeout == 10.0
    assert cfg.self_metrics_interval == 30.0 and cfg.log.level == "info" and cfg.log.format == "auto"
    assert cfg.tags == {"env": "prod"}
    (c,) = cfg.checks
    assert c.name == "test_tick" and c.interval == 60.0
    assert cfg.local_ingest is None
    bare = parse_agent_config({"checks": [{"type": "test_tick"}]})
    assert bare.collector.url == "http://127.0.0.1:9310" and bare.state_dir == "/var/lib/infrawatch/agent"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    e = load_error(tmp_path, "host: a\nstate_dir: /tmp/x\nbogus: 1\n")
    assert e.path == "bogus" and e.line == 3
    assert "unknown key 'bogus'" in str(e) and ":3:" in str(e)


def test_unknown_nested_key(tmp_path: Path) -> None:
    e = load_error(tmp_path, "collector:\n  url: http://x:1\n  tokn: abc\n")
    assert e.path == "collector.tokn" and e.line == 3


def test_unknown_check_option(tmp_path: Path) -> None:
    e = load_error(tmp_path, "checks:\n  - type: test_tick\n  - type: test_tick\n    name: t2\n    colour: red\n")
    assert e.path == "checks[1].colour" and e.line == 5


def test_wrong_type(tmp_path: Path) -> None:
    e = load_error(tmp_path, "ship:\n  max_samples: many\n")
    assert e.path == "ship.max_samples" and e.line == 2 and "integer" in e.message
    e = load_error(tmp_path, "checks:\n  - type: test_tick\n    interval: soon\n")
    assert e.path == "checks[0].interval" and e.line == 3 and "duration" in e.message


def test_yaml_syntax_error(tmp_path: Path) -> None:
    e = load_error(tmp_path, "collector:\n  url: http://x:1\n  token: [unclosed\nhost: a\n")
    assert "YAML syntax error" in e.message and e.line is not None and e.line >= 3


def test_unknown_check_type(tmp_path: Path) -> None:
    e = load_error(tmp_path, "checks:\n  - type: test_tick\n  - type: nosuchcheck\n    interval: 5\n")
    assert e.path == "checks[1].type" and e.line == 3
    assert "nosuchcheck" in e.message and "test_tick" in e.message  # lists the known types


def test_check_names_unique_and_defaulted(tmp_path: Path) -> None:
    cfg = parse_agent_config(
        {
            "checks": [
                {"type": "test_tick"},
                {"type": "test_tick"},
                {"type": "test_fail", "name": "test_tick-3"},
                {"type": "test_tick"},
            ]
        }
    )
    assert [c.name for c in cfg.checks] == ["test_tick", "test_tick-2", "test_tick-3", "test_tick-4"]
    e = load_error(tmp_path, "checks:\n  - type: test_tick\n    name: a\n  - type: test_fail\n    name: a\n")
    assert e.path == "checks[1].name" and e.line == 5 and "duplicate" in e.message


def test_empty_checks_mean_default_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_config, "DEFAULT_CHECKS", ({"type": "test_tick"}, {"type": "test_fail"}))
    assert [c.type for c in parse_agent_config({"checks": []}).checks] == ["test_tick", "test_fail"]
    assert [c.type for c in parse_agent_config({}).checks] == ["test_tick", "test_fail"]
    d = AgentConfig.default(collector_url="http://127.0.0.1:1234", token="t", state_dir="/tmp/s", interval=3)
    assert d.collector.url == "http://127.0.0.1:1234" and d.collector.token == "t" and d.state_dir == "/tmp/s"
    assert [(c.type, c.interval) for c in d.checks] == [("test_tick", 3.0), ("test_fail", 3.0)]


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        ("collector:\n  url: ftp://x\n", "collector.url", 2),
        ("collector:\n  token: a\n  token_file: /x\n", "collector.token_file", 3),
        ("tags:\n  Bad-Key: x\n", "tags.Bad-Key", 2),
        ("tags:\n  host: x\n", "tags.host", 2),
        ("host: ''\n", "host", 1),
        ("ship:\n  backoff_initial: 10s\n  backoff_max: 1s\n", "ship.backoff_max", 3),
        ("buffer:\n  max_bytes: 10\n", "buffer.max_bytes", 2),
        ("buffer:\n  max_bytes: lots\n", "buffer.max_bytes", 2),
        ("log:\n  level: loud\n", "log.level", 2),
        ("local_ingest: 5\n", "local_ingest", 1),
        ("checks:\n  - type: test_tick\n    tags:\n      Bad Key: x\n", "checks[0].tags.Bad Key", 4),
        ("checks:\n  - type: test_tick\n    interval: 0\n", "checks[0]", 2),
        ("checks:\n  - interval: 5\n", "checks[0].type", 2),
        ("checks:\n  - type: test_tick\n    name: ..\n", "checks[0].name", 3),
        ("checks: {type: cpu}\n", "checks", 1),
    ],
)
def test_invalid_values(tmp_path: Path, text: str, path: str, line: int) -> None:
    if not text.startswith("checks"):
        text += "checks:\n  - type: test_tick\n"  # not the default (system) checks
    e = load_error(tmp_path, text)
    assert e.path == path, e
    assert e.line == line, e


def test_token_file(tmp_path: Path) -> None:
    tf = tmp_path / "token"
    tf.write_text("s3cret\n")
    cfg = parse_agent_config({"collector": {"token_file": str(tf)}, "checks": [{"type": "test_tick"}]})
    assert cfg.collector.resolve_token() == "s3cret"
    missing = parse_agent_config({"collector": {"token_file": str(tmp_path / "nope")}, "checks": [{"type": "test_tick"}]})
    with pytest.raises(ConfigError) as ei:
        missing.collector.resolve_token()
    assert ei.value.path == "collector.token_file" and "nope" in ei.value.message


def test_derived_configs(tmp_path: Path) -> None:
    cfg = parse_agent_config(
        {"collector": {"token_file": "/nonexistent"}, "checks": [{"type": "test_tick"}, {"type": "test_fail", "name": "f"}, {"type": "test_tick"}]}
    )
    only = cfg.only_checks({"f"})
    assert [c.name for c in only.checks] == ["f"]
    assert [c.name for c in cfg.only_checks({"test_tick"}).checks] == ["test_tick", "test_tick-2"]
    assert cfg.only_checks({"zzz"}).checks == ()
    up = cfg.for_up(collector_url="http://127.0.0.1:5", token="tok", state_dir=str(tmp_path))
    assert up.collector.url == "http://127.0.0.1:5" and up.collector.resolve_token() == "tok" and up.state_dir == str(tmp_path)
    assert [c.name for c in up.checks] == ["test_tick", "f", "test_tick-2"]


def test_shipped_agent_yaml_is_valid_and_documents_every_option_with_its_default() -> None:
    """config/agent.yaml validates, and every option of the agent's config (nested ones too) appears in it
    (as a key, possibly commented out) with a `(default ...)` note, and the values set equal the defaults."""
    import dataclasses
    import re

    from agent.config import BufferConfig, CollectorTarget, LogConfig, ShipConfig
    from checks.config import to_dict

    path = Path(__file__).resolve().parents[2] / "config" / "agent.yaml"
    text = path.read_text()
    cfg = load_agent_config(path)
    assert [c.type for c in cfg.checks] == ["cpu", "memory", "disk", "network", "system"]
    for section, cls in (("", AgentConfig), ("collector", CollectorTarget), ("buffer", BufferConfig), ("ship", ShipConfig), ("log", LogConfig)):
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            m = re.search(rf"^\s*#?\s*{f.name}:.*$", text, re.M)
            assert m, f"config/agent.yaml does not mention {section + '.' if section else ''}{f.name}"
            if f.name not in ("checks", "collector", "buffer", "ship", "log", "local_ingest", "tags"):
                assert "default" in m.group(0), f"no default documented for {f.name}: {m.group(0)!r}"
    # the values the file sets are the defaults (except the token and the explicit checks list)
    default = to_dict(parse_agent_config({"host": cfg.host}))
    shipped = to_dict(cfg)
    for key in ("buffer", "ship", "log", "self_metrics_interval", "state_dir", "tags"):
        assert shipped[key] == default[key], key
    assert {k: v for k, v in shipped["collector"].items() if k != "token"} == {k: v for k, v in default["collector"].items() if k != "token"}
