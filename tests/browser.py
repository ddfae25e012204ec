"""A page in a real headless browser (Debian's chromium), driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in a NUL byte on
file descriptors 3 and 4), so no browser-automation package is needed.

Typical use::

    with Browser() as browser:
        errors = browser.open("file:///.../report.html")   # console errors, exceptions
        value = browser.evaluate("document.title")
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"


def chromium() -> str | None:
    """The chromium binary, or None when it is not installed."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


class Browser:
    """A headless chromium with one page (tab); collects the page's console errors,
    uncaught exceptions and failed loads (Log entries of level error)."""

    def __init__(self, binary: str | None = None, timeout_s: float = 60.0):
        self.binary = binary or chromium()
        if self.binary is None:
            raise FileNotFoundError("chromium not found (apt-get install chromium)")
        self.timeout_s = timeout_s
        self.errors: list[str] = []
        self._id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def __enter__(self) -> "Browser":
        self._profile = tempfile.mkdtemp(prefix="equivox-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire():  # in the child: the protocol pipe on fds 3 (commands) and 4 (replies)
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._process = subprocess.Popen(
            [self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4))
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=True)
        except BaseException:  # a slow start must not leave chromium and its profile behind
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    # --- protocol ------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _note(self, event: dict) -> None:
        """Keep an event; record it in ``errors`` if it is one."""
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append("console." + params["type"] + ": " + " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry['source']}): {entry['text']} {entry.get('url', '')}".strip())
        self._events.append(event)

    def send(self, method: str, session: bool = False, **params) -> dict:
        """Send one command (to the page when ``session``), return its result."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._note(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds`` (late scripts, renders, loads)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._note(self._read_message(deadline))
        except TimeoutError:
            pass

    # --- page ------------------------------------------------------------------------

    def open(self, url: str, settle_s: float = 2.0) -> list[str]:
        """Load ``url``, wait for its load event and ``settle_s`` more; return the errors so far."""
        self._events.clear()
        self.send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + self.timeout_s
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._note(self._read_message(deadline))
        self.pump(settle_s)
        return list(self.errors)

    def evaluate(self, expression: str, settle_s: float = 0.0):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        if settle_s:
            self.pump(settle_s)
        return result["result"].get("value")
