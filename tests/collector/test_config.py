"""Collector config: the shipped file, defaults, `up` variants, and errors naming file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.config import ConfigError
from collector.config import CollectorConfig, load_collector_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_documents_every_option() -> None:
    cfg = load_collector_config(ROOT / "config" / "collector.yaml")
    assert cfg.listen == "127.0.0.1:9310" and cfg.config_file and cfg.config_file.endswith("collector.yaml")
    text = (ROOT / "config" / "collector.yaml").read_text()
    from dataclasses import fields

    from collector.config import HostsConfig, LogConfig, Retention, StoreConfig, _RunnerOpts

    for cls in (CollectorConfig, StoreConfig, Retention, HostsConfig, LogConfig, _RunnerOpts):
        for f in fields(cls):
            if f.init:
                key = f.metadata.get("alias", f.name)
                assert f"{key}:" in text, f"{cls.__name__}.{key} is not documented in config/collector.yaml"


def test_defaults_and_up_mode(tmp_path: Path) -> None:
    cfg = CollectorConfig.default(data_dir=str(tmp_path), listen="127.0.0.1:9999", local_token="local-token-123")
    assert cfg.agent_tokens() == {"local-token-123": {"*"}} and cfg.listen_port == 9999
    assert cfg.store.retention.raw == 7 * 86400 and cfg.log.format == "auto"
    f = tmp_path / "c.yaml"
    f.write_text("agents:\n  - {name: web1, token: web1-token-xyz}\nread_tokens: [r-token-123]\n")
    up = load_collector_config(f).for_up(data_dir=str(tmp_path / "d"), listen="127.0.0.1:1", local_token="local-token-123")
    assert up.agent_tokens() == {"web1-token-xyz": {"web1"}, "local-token-123": {"*"}} and up.data_dir == str(tmp_path / "d")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("listen: 127.0.0.1:9310\nstore:\n  retention_raw: forever\n", ["c.yaml:3", "store.retention_raw", "unknown key"]),
        ("store:\n  retention:\n    raw: forever\n", ["c.yaml:3", "store.retention.raw", "duration"]),
        ("listen: nowhere\n", ["c.yaml:1", "listen", "HOST:PORT"]),
        ("agents:\n  - name: a\n    token: short\n", ["c.yaml:3", "agents[0].token", "8 characters"]),
        ("sinks:\n  - type: carrier_pigeon\n", ["c.yaml:2", "sinks[0].type", "unknown sink type", "influxdb"]),
        ("sinks:\n  - type: influxdb\n    url: http://127.0.0.1:8428\n    queue_max_bytes: lots\n", ["c.yaml:4", "sinks[0].queue_max_bytes"]),
        ("sinks:\n  - type: influxdb\n    url: ftp://x\n", ["c.yaml:2", "sinks[0]", "url"]),
        ("sinks:\n  - type: influxdb\n    url: http://a:1\n  - type: influxdb\n    url: http://b:1\n", ["sinks[1].name", "duplicate"]),
        ("log:\n  format: xml\n", ["c.yaml:2", "log.format"]),
        ("listen: [1\n", ["c.yaml", "YAML syntax error"]),
    ],
)
def test_errors_name_file_key_and_line(tmp_path: Path, text: str, needles: list[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_collector_config(f)
    for n in needles:
        assert n in str(e.value), (n, str(e.value))
