"""Sink registry: YAML `type:` of a collector sink → sink class, imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

from checks.config import ConfigError

# One line per sink type. Adding one: its module, this line, config/sinks/<type>.yaml, tests/sinks/test_<type>.py.
SINKS: dict[str, str] = {
    "zabbix": "collector.sinks.zabbix:ZabbixSink",
    "influxdb": "collector.sinks.influxdb:InfluxDBSink",
}


def load_sink_class(type_name: str, path: str = "type") -> Any:
    target = SINKS.get(type_name)
    if target is None:
        raise ConfigError(path, f"unknown sink type {type_name!r}; known types: {', '.join(sorted(SINKS))}")
    mod_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(mod_name), cls_name)
