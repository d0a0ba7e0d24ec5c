"""Test session setup: every module in tests/servers/ is a pytest plugin providing real-server fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = sorted(
    f"tests.servers.{p.stem}" for p in (Path(__file__).parent / "servers").glob("*.py") if p.stem != "__init__"
)
