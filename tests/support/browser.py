"""Headless Chromium driven over the Chrome DevTools Protocol (no extra dependency).

Debian's ``chromium`` package (``apt-get install -y chromium``) runs with a
fresh profile; aiohttp's websocket client speaks CDP. ``chromium_path()`` is
None when it is not installed, so tests can skip saying how to install it.

    async with Chromium.launch(profile_dir) as browser:
        page = await browser.new_page()
        await page.navigate(url)
        await page.wait_for_text("approved")
        png = await page.screenshot()
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

INSTALL_HINT = "headless Chromium is not installed: apt-get install -y chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self.socket.send_json({"id": message_id, "method": method, "params": params})
        async for message in self.socket:
            reply = message.json()
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise ConnectionError("DevTools socket closed")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def text(self) -> str:
        result = await self.send(
            "Runtime.evaluate",
            expression="document.body ? document.body.innerText : ''",
            returnByValue=True,
        )
        return str(result.get("result", {}).get("value", ""))

    async def wait_for_text(self, needle: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            text = await self.text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{needle!r} did not appear within {timeout_s:.0f}s; page shows:\n{text[:2000]}"
                )
            await asyncio.sleep(0.5)

    async def click_text(self, text: str) -> bool:
        """Click the first button or link whose text contains ``text``; False if none."""
        script = (
            "(() => { const el = "
            "[...document.querySelectorAll('button, a, summary, [role=button]')]"
            f".find(e => e.innerText && e.innerText.includes({text!r})); "
            "if (el) el.click(); return !!el; })()"
        )
        result = await self.send("Runtime.evaluate", expression=script, returnByValue=True)
        return bool(result.get("result", {}).get("value"))

    async def screenshot(self) -> bytes:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(result["data"])


class Chromium:
    def __init__(
        self, process: subprocess.Popen[bytes], endpoint: str, session: aiohttp.ClientSession
    ) -> None:
        self.process = process
        self.endpoint = endpoint
        self.session = session

    @classmethod
    @asynccontextmanager
    async def launch(cls, profile_dir: Path, timeout_s: float = 30.0) -> AsyncIterator[Chromium]:
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError(INSTALL_HINT)
        profile_dir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = profile_dir / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not port_file.exists() or not port_file.read_text().strip():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (exit code {process.poll()})")
                await asyncio.sleep(0.1)
            port = port_file.read_text().split()[0]
            async with aiohttp.ClientSession() as session:
                yield cls(process, f"http://127.0.0.1:{port}", session)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @asynccontextmanager
    async def new_page(self) -> AsyncIterator[Page]:
        async with self.session.put(f"{self.endpoint}/json/new?about:blank") as response:
            target = await response.json()
        async with self.session.ws_connect(
            target["webSocketDebuggerUrl"], max_msg_size=0
        ) as socket:
            page = Page(socket)
            await page.send("Page.enable")
            yield page
