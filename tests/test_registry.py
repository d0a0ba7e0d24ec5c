"""Each registered check, sink and notifier has its module, its example config and its test file."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from checks import CHECKS, load_check_class
from checks.base import Check
from checks.config import load_yaml_file
from collector.sinks import SINKS, load_sink_class

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("type_name", sorted(CHECKS))
def test_check_type_complete(type_name: str) -> None:
    cls = load_check_class(type_name)
    assert issubclass(cls, Check), f"{CHECKS[type_name]} is not a Check"
    assert cls.METRICS or type_name in ("exception_log",), f"{type_name}: declares no METRICS"
    example = ROOT / "config" / "checks" / f"{type_name}.yaml"
    assert example.is_file(), f"missing example config {example.relative_to(ROOT)}"
    data, _ = load_yaml_file(example)
    assert any(c.get("type") == type_name for c in data.get("checks", [])), f"{example.name} has no check of type {type_name}"
    # one test file per check type: tests/checks/test_<type>.py, or for a check living in a package
    # (checks.system.cpu), one per package module: tests/checks/test_system_<module>.py
    module = CHECKS[type_name].split(":")[0]
    candidates = [ROOT / "tests" / "checks" / f"test_{type_name}.py", ROOT / "tests" / "checks" / f"test_system_{type_name}.py"]
    if module.count(".") == 2:
        _, pkg, leaf = module.split(".")
        candidates.append(ROOT / "tests" / "checks" / f"test_{pkg}_{leaf}.py")
    assert any(c.is_file() for c in candidates), f"missing test file, one of: {[str(c.relative_to(ROOT)) for c in candidates]}"


@pytest.mark.parametrize("type_name", sorted(SINKS))
def test_sink_type_complete(type_name: str) -> None:
    cls = load_sink_class(type_name)
    assert hasattr(cls, "Config")
    assert (ROOT / "config" / "sinks" / f"{type_name}.yaml").is_file()
    assert list((ROOT / "tests" / "sinks").glob(f"test_{type_name}*.py")), f"no tests/sinks/test_{type_name}*.py"


def test_notifier_types_complete() -> None:
    notifiers = importlib.import_module("alerting.notifiers").NOTIFIERS
    assert {"email", "webhook", "dingtalk", "wecom", "feishu"} <= set(notifiers)
    for type_name in notifiers:
        assert (ROOT / "config" / "notifiers" / f"{type_name}.yaml").is_file(), f"missing config/notifiers/{type_name}.yaml"
        # its own test file, or its own tests (test_<type>_...) in the shared notifier test file
        files = list((ROOT / "tests" / "alerting").glob("test_*.py"))
        assert any(type_name in f.name or re.search(rf"def test_{type_name}_", f.read_text()) for f in files), f"no tests for notifier {type_name}"


def test_registries_are_the_only_lists() -> None:
    """Every check module under checks/ that defines a Check subclass is registered (no orphan modules)."""
    registered = {v.split(":")[0] for v in CHECKS.values()}
    for path in (ROOT / "checks").rglob("*.py"):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if mod.endswith("__init__") or mod.startswith(("checks.runtime", "checks.base", "checks.model", "checks.config", "checks.catalogue")):
            continue
        text = path.read_text()
        if "(Check[" in text or "(Probe[" in text or "(Check)" in text or "(Probe)" in text:
            assert mod in registered, f"{mod} defines a check but is not in checks.CHECKS"
