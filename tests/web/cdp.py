"""A headless Chromium driven over its DevTools protocol (websocket, aiohttp): start, open a tab, evaluate, screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--no-default-browser-check", "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0", "--window-size=1440,900", "--force-device-scale-factor=1", "--lang=zh-CN",
]


class Browser:
    """One Chromium process with remote debugging on a loopback port it picks itself."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="iw-chromium-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "HOME": self.tmp, "LANG": "zh_CN.UTF-8"}
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.tmp}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(Path(self.tmp) / "stderr.log", "wb"), env=env,
        )
        active = Path(self.tmp) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.stderr()[-2000:]}")
            if active.exists():
                lines = active.read_text().splitlines()
                if lines and lines[0].isdigit():
                    self.port = int(lines[0])
                    return
            time.sleep(0.05)
        raise TimeoutError(f"chromium did not open its DevTools port within {timeout}s: {self.stderr()[-2000:]}")

    def stderr(self) -> str:
        try:
            return (Path(self.tmp) / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def new_tab(self, session: aiohttp.ClientSession) -> "Tab":
        async with session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as r:
            info = await r.json()
        ws = await session.ws_connect(info["webSocketDebuggerUrl"], max_msg_size=64 * 2**20)
        tab = Tab(ws, info["id"], self.port, session)
        tab.start()
        await tab.send("Page.enable")
        await tab.send("Runtime.enable")
        await tab.send("Log.enable")
        await tab.send("Emulation.setDeviceMetricsOverride", width=1440, height=900, deviceScaleFactor=1, mobile=False)
        return tab


class Tab:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, target_id: str, port: int, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.target_id = target_id
        self.port = port
        self.session = session
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                self.events.append(data)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("DevTools websocket closed"))

    async def send(self, method: str, **params: Any) -> Any:
        i = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        async with asyncio.timeout(30):
            return await fut

    async def eval(self, expr: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def wait_for(self, expr: str, timeout: float = 15.0) -> Any:
        """Poll a JS expression until it is truthy (the page renders asynchronously)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = await self.eval(expr)
            except RuntimeError:
                last = None
            if last:
                return last
            await asyncio.sleep(0.05)
        body = await self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise AssertionError(f"timed out waiting for {expr!r}; page text: {body!r}")

    async def screenshot(self, path: Path, full: bool = False) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full:
            h = await self.eval("Math.min(2400, Math.ceil(document.documentElement.scrollHeight))")
            params["clip"] = {"x": 0, "y": 0, "width": 1440, "height": h, "scale": 1}
            params["captureBeyondViewport"] = True
        res = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(res["data"]))

    def exceptions(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"]

    def csp_violations(self) -> list[str]:
        """Messages of blocked loads/scripts/styles (Chromium logs Content Security Policy refusals)."""
        out = []
        for e in self.events:
            if e.get("method") == "Log.entryAdded":
                text = e["params"]["entry"].get("text", "")
                if "Content Security Policy" in text:
                    out.append(text)
        return out

    async def close(self) -> None:
        try:
            await self.ws.close()
        finally:
            if self.reader is not None:
                self.reader.cancel()
            async with self.session.get(f"http://127.0.0.1:{self.port}/json/close/{self.target_id}"):
                pass
