"""
A headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe` (file descriptors 3 and 4,
NUL-separated JSON messages), so that a page's console errors, failed loads and live DOM can be checked with no
client library and no network port. Used by the `detect --report` tests.
"""

import json
import os
import select
import shutil
import subprocess
import tempfile
import time

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Nothing reaches the network, nothing is installed or synchronised, no sandbox (tests run as root in containers).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
)


def find_chromium():
    """The Chromium executable on PATH (Debian's `chromium` package), or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class HeadlessChromium:
    """
    `with HeadlessChromium() as browser: page = browser.open(url)`: a fresh profile per instance, closed and removed
    on exit. Every DevTools event is kept in `events`.
    """

    def __init__(self, executable=None, timeout_s=60.0):
        self.executable = executable or find_chromium()
        self.timeout_s = timeout_s
        self.events = []
        self._next_id = 0
        self._buffer = b""

    def __enter__(self):
        self._profile = tempfile.mkdtemp(prefix="orcahello-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def map_pipes():  # in the child, before exec: the protocol's descriptors are 3 (commands) and 4 (replies)
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self._process = subprocess.Popen(
            [
                self.executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=map_pipes,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        return self

    def __exit__(self, *exception):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            readable, _, _ = select.select([self._from_browser], [], [], remaining)
            if readable:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session_id=None):
        """Send a command and return its result (events arriving meanwhile go to `events`)."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            command["sessionId"] = session_id
        os.write(self._to_browser, json.dumps(command).encode("utf-8") + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for_event(self, method, session_id):
        deadline = time.monotonic() + self.timeout_s
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session_id:
                return event
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == method and message.get("sessionId") == session_id:
                return message

    def open(self, url):
        """A new tab showing `url`, loaded (its load event fired); returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session_id=session)
        self.send("Page.navigate", {"url": url}, session_id=session)
        self.wait_for_event("Page.loadEventFired", session)
        return session

    def evaluate(self, session, expression):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session_id=session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self, session):
        """Console errors and warnings, uncaught exceptions and failed loads or blocked requests the page logged."""
        found = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                description = details.get("exception", {}).get("description", "")
                found.append(f"exception: {details.get('text')} {description}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                entry = params["entry"]
                found.append(f"log {entry['level']}: {entry.get('text')} {entry.get('url', '')}")
        return found
