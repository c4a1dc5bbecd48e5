"""Headless Chromium (Debian's ``chromium``) for the status page tests.

Two ways in: the command line (``--dump-dom``, ``--screenshot``), each run a
fresh page load; and ``DevTools``, a minimal Chrome DevTools Protocol client
over ``--remote-debugging-pipe`` (NUL-terminated JSON on fds 3 and 4), which
keeps one page open so a test can watch it update itself without a reload,
or load it with JavaScript off (``--dump-dom`` dumps nothing when scripts
are disabled by a flag: it reads the DOM with a script).
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

__all__ = ["DevTools", "binary", "dump_dom", "screenshot"]


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _flags(profile: str) -> list[str]:
    flags = ["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--mute-audio", f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return flags


def _run(args: list[str], timeout: float) -> str:
    # Chromium's helpers may still write to the profile as it is removed.
    with tempfile.TemporaryDirectory(prefix="kglb-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        done = subprocess.run([binary(), *_flags(profile), *args], capture_output=True,
                              text=True, timeout=timeout, check=True)
    return done.stdout


def dump_dom(url: str, *, timeout: float = 60) -> str:
    """The DOM once ``url`` has loaded."""
    return _run(["--dump-dom", url], timeout)


def screenshot(url: str, path: str, *, size: tuple[int, int] = (1000, 640),
               timeout: float = 60) -> None:
    _run([f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", url], timeout)


def _above_4(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class DevTools:
    """One browser with one page, driven over the DevTools pipe. Use as a context manager."""

    def __init__(self, *, size: tuple[int, int] = (1000, 640), scripts: bool = True) -> None:
        self.scripts = scripts
        self._profile = tempfile.TemporaryDirectory(prefix="kglb-chromium-",
                                                    ignore_cleanup_errors=True)
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        # Above 4, so that bash's "3<&N 4>&M" cannot overwrite one with the other.
        to_browser, from_browser = (_above_4(fd) for fd in (to_browser, from_browser))
        # The protocol wants exactly fds 3 (commands in) and 4 (answers out).
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}', binary(),
             *_flags(self._profile.name), "--remote-debugging-pipe",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._id = 0
        self.session = None

    def __enter__(self) -> DevTools:
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget",
                                     targetId=page["targetId"], flatten=True)["sessionId"]
            if not self.scripts:  # the page's own scripts; evaluate() still works
                self.call("Emulation.setScriptExecutionDisabled", value=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:  # a clean exit takes its helper processes along
            self.session = None
            self.call("Browser.close", timeout=5)
            self.proc.wait(timeout=10)
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait()
        os.close(self._in)
        os.close(self._out)
        self._profile.cleanup()

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, *, timeout: float = 30, **params) -> dict:
        """Send one command (to the page once attached); its result, skipping events."""
        self._id += 1
        command = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            command["sessionId"] = self.session
        os.write(self._out, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-able results)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, *, timeout: float = 30) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'",
                      timeout=timeout)

    def wait_for(self, expression: str, *, timeout: float) -> None:
        """Poll ``expression`` in the page until it is true (real time, bounded)."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            time.sleep(0.1)

    def dom(self) -> str:
        """The page's DOM as HTML."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        return self.call("DOM.getOuterHTML", nodeId=root)["outerHTML"]

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
