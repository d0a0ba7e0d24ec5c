"""Subprocess driver for tests: builds one check and runs it on request (JSON lines on stdin → stdout).

Used to run a check inside a network namespace and/or as another user, the way the agent would:
one long-lived check object, each run under the check's timeout (asyncio.timeout). Commands:
{"op": "build", "config": {...}}, {"op": "run"}, {"op": "close"}. Replies: {"ok": true, ...} or
{"ok": false, "error": "..."}.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

from checks import build_check
from checks.model import Event, Sample


async def main() -> None:
    loop = asyncio.get_running_loop()
    check: Any = None

    def reply(d: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(d) + "\n")
        sys.stdout.flush()

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        msg = json.loads(line)
        op = msg.get("op")
        try:
            if op == "build":
                check = build_check(msg["config"], "check")
                reply({"ok": True})
            elif op == "run":
                t0 = time.perf_counter()
                async with asyncio.timeout(check.config.effective_timeout):
                    readings = await check.run()
                out = []
                for r in readings:
                    if isinstance(r, Sample):
                        out.append({"name": r.name, "value": r.value, "tags": r.tags})
                    elif isinstance(r, Event):
                        out.append({"kind": r.kind, "message": r.message, "tags": r.tags, "data": r.data})
                engine = getattr(check, "_engine", None)
                modes = {}
                if engine is not None:
                    for fam, key in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
                        m = engine.socket_mode(fam)
                        if m:
                            modes[key] = m
                reply({"ok": True, "readings": out, "modes": modes, "elapsed": time.perf_counter() - t0})
            elif op == "close":
                if check is not None:
                    await check.close()
                reply({"ok": True})
                break
            else:
                reply({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as e:  # reported to the test, like the scheduler turns it into a check.error
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    asyncio.run(main())
