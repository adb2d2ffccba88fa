"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (stdlib only).

Loads a page in headless Chromium, records console messages and exceptions *with their level*
(the stderr log does not say which console lines are errors), evaluates JS and takes a screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Plotly's parallel coordinates use WebGL: opt in to the software renderer explicitly
         # (otherwise Chromium logs a deprecation message for the automatic fallback).
         "--enable-unsafe-swiftshader"]


@dataclass
class PageLoad:
    console: list[dict[str, Any]] = field(default_factory=list)  # {level, text, source}
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    @property
    def errors(self) -> list[str]:
        return self.exceptions + [f"{c['source']}:{c['level']}: {c['text']}" for c in self.console
                                  if c["level"] in ("error", "assert")]


class Browser:
    """``with Browser() as b: load = b.open(url); b.evaluate(js); b.screenshot(path)``."""

    def __init__(self, width: int = 1280, height: int = 2000) -> None:
        self.width, self.height = width, height
        self._id = 0
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        self.profile = tempfile.mkdtemp(prefix="staytuned-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and answers on fd 4. Move the child's ends above 10
        # first, so that putting them on 3 and 4 cannot overwrite one with the other.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def child_fds() -> None:
            os.dup2(child_r, 3)  # dup2 clears close-on-exec on the copies
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=child_fds,  # close_fds would close 3 and 4 again
        )
        os.close(child_r)
        os.close(child_w)
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.call(domain, session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False}, session=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol --------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any] | None, session: bool) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False,
             timeout: float = 120) -> dict[str, Any]:
        want = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 120) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("method") == method:
                return msg
            self.events.append(msg)

    # -- high level ------------------------------------------------------------------------
    def open(self, url: str, settle_s: float = 1.0) -> PageLoad:
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")
        time.sleep(settle_s)  # let plotly finish async drawing (fonts, WebGL)
        self.evaluate("1")  # flush pending events into self.events
        load = PageLoad()
        for ev in self.events:
            p = ev.get("params", {})
            if ev.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                load.console.append({"level": p.get("type"), "text": text, "source": "console"})
            elif ev.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                load.exceptions.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif ev.get("method") == "Log.entryAdded":
                e = p.get("entry", {})
                load.console.append({"level": e.get("level"), "text": e.get("text"), "source": e.get("source")})
            elif ev.get("method") == "Network.requestWillBeSent":
                load.requests.append(p.get("request", {}).get("url", ""))
        return load

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res.get("result", {}).get("value")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
