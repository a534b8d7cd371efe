# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello live --post URL`: each positive minute POSTed as JSON, never dropped.

A detection is first written to a spool folder (one JSON file each, atomically, named so that they sort in the
order they were made); a background thread POSTs the oldest (`http_orcahello.post`), deletes its file once the
endpoint answers 2xx, and while the endpoint is down tries again with exponential backoff up to 5 minutes, a warning
per failure: an endpoint may be away for hours, longer than any one request's retries should wait. Whatever is still
spooled when the command stops is sent by the next run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from http_orcahello import HTTPFetchError, post

from . import writers

logger = logging.getLogger("orcahello.live")

SPOOL_FOLDER = "webhook_spool"
POST_TIMEOUT_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
USER_AGENT = "orcahello-live/1.0"


class WebhookError(RuntimeError):
    """A POST that did not succeed; the message is one line."""


def post_json(url: str, document: dict, timeout: float = POST_TIMEOUT_SECONDS) -> None:
    """
    POST `document` as JSON through `http_orcahello.post` (once: the spool, not the client, tries again, for as
    long as it takes and across runs); raises `WebhookError` naming what went wrong.
    """
    body = json.dumps(document).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        post(url, body, headers=headers, timeout=timeout, deadline_seconds=timeout)
    except HTTPFetchError as error:
        raise WebhookError(str(error)) from None


class WebhookSpool:
    """
    The spool and its sender.

    Args:
        url (`str`): where to POST.
        folder (`str`): the spool folder (`<output dir>/webhook_spool`).
    """

    def __init__(self, url: str, folder: str) -> None:
        self.url = url
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.sent = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="orcahello-webhook", daemon=True)

    def start(self) -> WebhookSpool:
        self._thread.start()
        return self

    def pending(self) -> list[str]:
        return sorted(name for name in os.listdir(self.folder) if name.endswith(".json"))

    def enqueue(self, detection: dict[str, Any], name: str) -> None:
        """
        Spool one detection (atomically) as `<name>.json`; the sender picks it up. The same name spooled again
        (a minute written again after an interruption) replaces the unsent copy rather than adding one.
        """
        writers.write_json(os.path.join(self.folder, f"{name}.json"), detection)
        self._wake.set()

    def _run(self):
        backoff = FIRST_BACKOFF_SECONDS
        while not self._stop.is_set():
            names = self.pending()
            if not names:
                self._wake.wait(timeout=5.0)
                self._wake.clear()
                continue
            path = os.path.join(self.folder, names[0])
            try:
                with open(path, encoding="utf-8") as handle:
                    document = json.load(handle)
            except ValueError:
                logger.warning("%s: not valid JSON; moved aside as .bad, not sent", path)
                os.replace(path, path + ".bad")
                continue
            try:
                post_json(self.url, document)
            except WebhookError as error:
                self.failures += 1
                logger.warning(
                    "POST %s failed (%s); %d spooled, next try in %.0f s", names[0], error, len(names), backoff
                )
                self._stop.wait(timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            os.remove(path)
            self.sent += 1
            backoff = FIRST_BACKOFF_SECONDS

    def stop(self, drain_seconds: float = 3.0) -> None:
        """Give the sender up to `drain_seconds` to empty the spool, then stop it; what is left waits on disk."""
        deadline = time.monotonic() + drain_seconds
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=POST_TIMEOUT_SECONDS + 1)
