# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello live --post URL`: each positive minute POSTed as JSON, never dropped.

A detection is first written to a spool folder (one JSON file each, atomically, named so that they sort in the
order they were made); a background thread POSTs the oldest (`http_orcahello.post`), deletes its file once the
endpoint answers 2xx, and while the endpoint is down tries again with exponential backoff up to 5 minutes, a warning
per failure: an endpoint may be away for hours, longer than any one request's retries should wait. Whatever is still
spooled when the command stops is sent by the next run.

Only a 2xx is a delivery: a redirect (3xx) is not followed for a POST and counts as a failure, as does no answer
within `POST_TIMEOUT_SECONDS` (generous: a slow endpoint that answers late still has the detection, and a try
given up too early sends it again). Every request carries an `Idempotency-Key` header, the detection's spool name,
the same on every try and across runs, so that an endpoint can drop a copy it already has (a try whose answer was
lost). Anything in the spool folder that is not a `.json` file (a stray folder) is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from http_orcahello import HTTPFetchError, post

from . import writers

if TYPE_CHECKING:
    from .live_metrics import LiveMetrics

logger = logging.getLogger("orcahello.live")

SPOOL_FOLDER = "webhook_spool"
# How long one POST may take, its answer included: an endpoint that stores before answering can be slow, and a try
# given up while the endpoint still works on it is a detection sent twice.
POST_TIMEOUT_SECONDS = 120.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
STOP_WAIT_SECONDS = 5.0
USER_AGENT = "orcahello-live/1.0"


class WebhookError(RuntimeError):
    """A POST that did not succeed; the message is one line."""


def check_webhook_url(url: str) -> None:
    """Refuse a `--post` URL that is not http(s) (`file://`, a bare host): `WebhookError`, one line."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"--post {url}: not an http(s) URL")


def post_json(
    url: str, document: dict, timeout: float = POST_TIMEOUT_SECONDS, idempotency_key: str | None = None
) -> None:
    """
    POST `document` as JSON through `http_orcahello.post` (once: the spool, not the client, tries again, for as
    long as it takes and across runs); raises `WebhookError` naming what went wrong (a 3xx included).
    `idempotency_key`: sent as the `Idempotency-Key` header.
    """
    body = json.dumps(document).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    try:
        post(url, body, headers=headers, timeout=timeout, deadline_seconds=timeout)
    except HTTPFetchError as error:
        raise WebhookError(str(error)) from None


class WebhookSpool:
    """
    The spool and its sender.

    Args:
        url (`str`): where to POST (http or https).
        folder (`str`): the spool folder (`<output dir>/webhook_spool`).
        timeout (`float`, *optional*, defaults to `POST_TIMEOUT_SECONDS`): how long one POST may take.
        metrics (`LiveMetrics`, *optional*): where its counts go (`--metrics-port`).
    """

    def __init__(
        self, url: str, folder: str, timeout: float = POST_TIMEOUT_SECONDS, metrics: LiveMetrics | None = None
    ) -> None:
        check_webhook_url(url)
        self.metrics = metrics
        self.url = url
        self.folder = folder
        self.timeout = timeout
        self._strays: set[str] = set()
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
        """The spooled detections' file names, oldest first (anything else in the folder is left alone)."""
        names = []
        for entry in os.scandir(self.folder):
            if not entry.name.endswith(".json"):
                continue
            if entry.is_file(follow_symlinks=False):
                names.append(entry.name)
            elif entry.name not in self._strays:
                self._strays.add(entry.name)
                logger.warning("%s: not a file; left alone, not sent", entry.path)
        return sorted(names)

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
            if self.metrics is not None:
                self.metrics.spooled.set(len(names))
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
                post_json(self.url, document, timeout=self.timeout, idempotency_key=names[0][: -len(".json")])
            except WebhookError as error:
                self.failures += 1
                if self.metrics is not None:
                    self.metrics.post_failures.inc()
                logger.warning(
                    "POST %s failed (%s); %d spooled, next try in %.0f s", names[0], error, len(names), backoff
                )
                self._stop.wait(timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            os.remove(path)
            self.sent += 1
            if self.metrics is not None:
                self.metrics.posted.inc()
                self.metrics.spooled.set(len(names) - 1)
            backoff = FIRST_BACKOFF_SECONDS

    def stop(self, drain_seconds: float = 3.0) -> None:
        """Give the sender up to `drain_seconds` to empty the spool, then stop it; what is left waits on disk."""
        deadline = time.monotonic() + drain_seconds
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._wake.set()
        # A POST in flight is not waited for (stopping takes seconds): its file stays and the next run sends it,
        # with the same idempotency key.
        self._thread.join(timeout=STOP_WAIT_SECONDS)
