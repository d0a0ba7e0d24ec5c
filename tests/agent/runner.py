"""Run the agent daemon with the test-only checks registered: `python3 -m tests.agent.runner agent.yaml`."""

from __future__ import annotations

import sys

from tests.agent.fakechecks import register


def run() -> int:
    register()
    from agent.config import load_agent_config
    from agent.main import main

    return main(load_agent_config(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(run())
