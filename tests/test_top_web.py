"""`pglab top --web` in a real headless browser (Debian's chromium): the page must show the
dashboard, and after a fault and a failover the changed roles; a screenshot is kept.

The browser is driven over the DevTools protocol (aiohttp, which textual-serve brings). The page
draws the terminal on a canvas, so the text is read where it arrives: a hook wraps the page's
WebSocket and keeps what the app sent. Every host but 127.0.0.1 is unresolvable for the browser
(the page links a web font): nothing leaves this machine."""
from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

try:
    import textual_serve  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise           # in CI the ui extra is installed (.ci/run): the dashboard tests must run
    pytest.skip("pglab top --web needs the ui extra: pip install 'pglab[ui]'", allow_module_level=True)
import aiohttp  # noqa: E402  (a dependency of textual-serve)

from tests.conftest import IN_CI  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("PGLAB_SCREENSHOTS", tempfile.gettempdir()))
HOOK = """
(() => {
  window.__pglab = '';
  const Real = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Real(...args);
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('message', (e) => {
      window.__pglab += typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data);
    });
    return ws;
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=1600,1000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


class Page:
    """One browser tab over the DevTools protocol."""

    def __init__(self, ws):
        self.ws, self.ids = ws, itertools.count(1)

    async def call(self, method: str, **params):
        i = next(self.ids)
        await self.ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == i:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def text(self) -> str:
        r = await self.call("Runtime.evaluate", expression="window.__pglab || ''", returnByValue=True)
        return r["result"].get("value", "")

    async def until(self, cond, timeout: float, what: str) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            t = await self.text()
            if cond(t):
                return t
            await asyncio.sleep(0.3)
        raise AssertionError(f"the page did not show {what} within {timeout:.0f}s")


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is missing; in CI .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="pglab-chromium-")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(port, 30)
        yield port
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(make_lab):
    lab = make_lab(standbys=1)           # p1 primary, s1 its synchronous standby
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "lab", "top", "--web", "--port", str(port), "--name", lab.name],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, 30)
        yield lab, port
    finally:
        # the server and the `pglab top` it started for the tab: our own process group
        os.killpg(proc.pid, 2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


@pytest.mark.parametrize("runtime", ["local"], indirect=True)
def test_browser_shows_the_new_primary_after_a_fault(browser, served):
    lab, port = served

    async def drive() -> Path:
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"http://127.0.0.1:{browser}/json/list")).json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(url, max_msg_size=64 * 2**20) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Page.addScriptToEvaluateOnNewDocument", source=HOOK)
                await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
                await page.until(lambda t: f"lab {lab.name}" in t and "PRIMARY" in t and "STANDBY" in t, 60,
                                 "the dashboard with p1 primary")
                before = len(await page.text())
                lab.fault("p1", "kill")
                lab.failover()                    # s1 is synchronous: it has every acknowledged write
                await page.until(lambda t: "FAILOVER detected: primary p1 -> s1" in t[before:]
                                 and "DOWN" in t[before:] and "faults: kill" in t[before:], 30,
                                 "the failover, p1 down and its fault (made by another process)")
                await asyncio.sleep(1.0)          # let the canvas draw the last frame
                shot = await page.call("Page.captureScreenshot", format="png")

                out = SHOTS / f"pglab-top-web-{lab.name}.png"
                out.write_bytes(base64.b64decode(shot["data"]))
                return out

    png = asyncio.run(drive())
    assert png.stat().st_size > 20_000, f"{png} looks empty"
    print(f"screenshot: {png}")
