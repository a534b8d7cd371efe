# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
OrcaHello's one HTTP client: every download (HLS playlists and segments, `orcahello batch`'s sound files,
`orcahello live`'s `latest.txt`) goes through `fetch`, and live's webhook through `post`. `fetch`

- waits at most `timeout` seconds for a connection and for each read;
- retries with exponential backoff (urllib3's `Retry`: at once, then after 1 s, 2 s, 4 s) on connection errors,
  timeouts, HTTP 5xx and 429 (honouring `Retry-After`, capped), then gives up with a one-line `HTTPFetchError`
  naming the URL; each caller sets how many retries it wants (`retries`), and a `stop_event` cuts them short;
- stops at a byte cap (`max_bytes`: a server sending an endless body) and an overall deadline (`deadline_seconds`,
  retries and backoff included: a server dripping one byte every few seconds never trips the per-read timeout);
- follows at most `MAX_REDIRECTS` redirects itself, refusing any that leave http(s) (`file://` and the like) and,
  with `allowed_origin`, any to another origin (scheme, host, port), as it refuses such a URL in the first place.

urllib3 is imported when a download starts, so that the model's remote code never needs it for local files.
"""

import threading
import time
import urllib.parse

HTTP_TIMEOUT_SECONDS = 30.0
# Attempts after the first, and the backoff before them: 0, 1, 2, 4 s (urllib3: factor * 2 ** (n - 1), none before
# the first retry).
HTTP_RETRIES = 4
HTTP_BACKOFF_SECONDS = 0.5
HTTP_BACKOFF_MAX_SECONDS = 8.0
# A server's Retry-After is honoured up to this: a hostile or confused one must not park us for hours.
RETRY_AFTER_MAX_SECONDS = 30.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
# An Orcasound 10-s AAC segment is ~100-200 KB and a day's playlist ~600 KB: 64 MiB is generous for either.
HTTP_MAX_BYTES = 64 * 1024 * 1024
# One download, every retry and backoff included.
HTTP_DEADLINE_SECONDS = 300.0
# What a POST's answer may hold: an acknowledgement, not a download.
POST_MAX_RESPONSE_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
READ_CHUNK_BYTES = 64 * 1024
USER_AGENT = "orcahello-hls/1.0"

_pool = None
_pool_lock = threading.Lock()


class HTTPFetchError(ValueError):
    """A download that failed or was refused; the message is one line and starts with the URL."""


def origin(url: str) -> tuple[str, str, int | None]:
    """`(scheme, host, port)` of an http(s) URL, the port made explicit: what "the same host" means here."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def describe_origin(url_origin: tuple[str, str, int | None]) -> str:
    scheme, host, port = url_origin
    return f"{scheme}://{host}:{port}"


def _import_urllib3():
    try:
        import urllib3
    except ImportError:
        raise HTTPFetchError("HTTP input needs urllib3: pip install 'urllib3>=2.3'") from None
    return urllib3


def _pool_manager(urllib3):
    """One connection pool for the process: segments of one playlist reuse their keep-alive connection."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = urllib3.PoolManager(num_pools=8, maxsize=4, headers={"User-Agent": USER_AGENT})
        return _pool


def _retry_policy(urllib3, method, retries, backoff_seconds):
    class BoundedRetry(urllib3.Retry):  # type: ignore[name-defined]  # urllib3 is the module `_import_urllib3` gave
        def get_retry_after(self, response):
            seconds = super().get_retry_after(response)
            return None if seconds is None else min(seconds, RETRY_AFTER_MAX_SECONDS)

    return BoundedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=retries,
        redirect=False,  # redirects are followed (and checked) by `_request`
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({method}),
        backoff_factor=backoff_seconds,
        backoff_max=HTTP_BACKOFF_MAX_SECONDS,
        raise_on_status=False,
        respect_retry_after_header=True,
    )


def fetch(
    url: str,
    timeout: float = HTTP_TIMEOUT_SECONDS,
    max_bytes: int = HTTP_MAX_BYTES,
    deadline_seconds: float = HTTP_DEADLINE_SECONDS,
    retries: int = HTTP_RETRIES,
    backoff_seconds: float = HTTP_BACKOFF_SECONDS,
    allowed_origin: tuple | None = None,
    stop_event: threading.Event | None = None,
) -> bytes:
    """
    The body at `url` (bytes).

    Args:
        url (`str`): an http(s) URL.
        timeout (`float`): seconds to wait for a connection, and for each read.
        max_bytes (`int`): refuse a body longer than this (from `Content-Length` when given, else while reading).
        deadline_seconds (`float`): the whole download, retries and backoff included, never takes longer.
        retries (`int`), backoff_seconds (`float`): attempts after the first on connection errors, timeouts, 5xx
            and 429, waiting `backoff_seconds * 2 ** (n - 1)` (none before the first retry) or the server's
            `Retry-After`.
        allowed_origin (`tuple`, *optional*): `origin(...)` of the only host `url` and its redirects may be on.
        stop_event (`threading.Event`, *optional*): once set (the process is stopping), no further attempt is made.

    Raises:
        `HTTPFetchError` with one line starting with the URL: what failed, after how many attempts.
    """
    return _request(
        "GET", url, None, {}, timeout, max_bytes, deadline_seconds, retries, backoff_seconds, allowed_origin, stop_event
    )


def post(
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_SECONDS,
    max_bytes: int = POST_MAX_RESPONSE_BYTES,
    deadline_seconds: float = HTTP_DEADLINE_SECONDS,
    retries: int = 0,
    backoff_seconds: float = HTTP_BACKOFF_SECONDS,
) -> bytes:
    """
    POST `body` to `url` (with `headers` besides the client's own); returns the answer's body (2xx). A POST is not
    retried unless asked (`retries`: it may not be safe to repeat) and redirects are not followed; the arguments are
    otherwise `fetch`'s.

    Raises:
        `HTTPFetchError` with one line starting with the URL.
    """
    return _request(
        "POST", url, body, headers or {}, timeout, max_bytes, deadline_seconds, retries, backoff_seconds, None, None
    )


def _request(
    method,
    url,
    body,
    headers,
    timeout,
    max_bytes,
    deadline_seconds,
    retries,
    backoff_seconds,
    allowed_origin,
    stop_event,
):
    """`fetch` and `post`: one request, its retries and (GET) redirects, its body read within the bounds."""
    urllib3 = _import_urllib3()
    # Attributes, not `from urllib3... import`: transformers requires every package a remote-code file imports
    # outside try/except, and a model loaded for local files must not need urllib3.
    errors = urllib3.exceptions
    URLLib3Error, NewConnectionError, ProtocolError = errors.HTTPError, errors.NewConnectionError, errors.ProtocolError
    ReadTimeoutError, TimeoutError = errors.ReadTimeoutError, errors.TimeoutError

    deadline = time.monotonic() + deadline_seconds
    pool = _pool_manager(urllib3)
    retry = _retry_policy(urllib3, method, retries, backoff_seconds)
    current, redirects, attempts = url, 0, 0
    headers = {**pool.headers, **headers}

    def fail(message):
        where = url if current == url else f"{url} (redirected to {current})"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return HTTPFetchError(f"{where}: {message}{tries}")

    def check_target(target):
        try:
            scheme = urllib.parse.urlsplit(target).scheme.lower()
        except ValueError as error:
            raise fail(f"not a valid URL ({error})") from None
        if scheme not in ("http", "https"):
            raise fail("not an http(s) URL" if target == url else f"refused: a redirect to {target!r}, not http(s)")
        if allowed_origin is not None and origin(target) != tuple(allowed_origin):
            raise fail(
                f"refused: {describe_origin(origin(target))} is not the playlist's host "
                f"{describe_origin(allowed_origin)} (allow other hosts to fetch it)"
            )

    def back_off(error=None, response=None):
        """Count the failed attempt in `retry` (raises when exhausted), then wait its backoff within the deadline."""
        nonlocal retry
        retry = retry.increment(method, current, response=response, error=error)
        wait = (retry.get_retry_after(response) if response is not None else None) or retry.get_backoff_time()
        if time.monotonic() + wait >= deadline:
            raise fail(f"gave up: the {deadline_seconds:g}-s deadline would pass before the next attempt")
        if stop_event is None:
            time.sleep(wait)
        elif stop_event.wait(wait):
            raise fail("gave up: stopping, no further attempt")

    check_target(current)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise fail(f"did not finish within the {deadline_seconds:g}-s deadline")
        attempt_timeout = min(timeout, remaining)
        attempts += 1
        try:
            response = pool.request(
                method, current, body=body, headers=headers, retries=False, redirect=False, preload_content=False,
                timeout=urllib3.Timeout(connect=attempt_timeout, read=attempt_timeout),
            )  # fmt: skip
        except errors.LocationValueError as error:  # not a URL at all: nothing to retry
            raise fail(f"not a valid URL ({error})") from None
        except URLLib3Error as error:
            try:
                back_off(error=error)
            except urllib3.exceptions.MaxRetryError:
                if isinstance(error, NewConnectionError):  # (a subclass of urllib3's TimeoutError)
                    reason = str(error).rpartition(": ")[2] or type(error).__name__
                    raise fail(f"cannot reach it ({reason})") from None
                if isinstance(error, (TimeoutError, ReadTimeoutError)):
                    raise fail(f"no answer within {attempt_timeout:g} s (timed out)") from None
                raise fail(f"the connection failed ({type(error).__name__}: {error})") from None
            continue

        try:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                response.drain_conn()
                if method != "GET":
                    raise fail(f"HTTP {response.status} redirect: not followed for a {method}")
                if not location:
                    raise fail(f"HTTP {response.status} redirect without a Location")
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise fail(f"more than {MAX_REDIRECTS} redirects")
                target = urllib.parse.urljoin(current, location)
                check_target(target)
                current = target
                attempts = 0
                continue
            if response.status in RETRY_STATUSES:
                response.drain_conn()
                try:
                    back_off(response=response)
                except urllib3.exceptions.MaxRetryError:
                    raise fail(f"HTTP error {response.status} ({response.reason})") from None
                continue
            if response.status >= 400:
                response.drain_conn()
                raise fail(f"HTTP error {response.status} ({response.reason})")
            try:
                return _read_body(response, max_bytes, deadline, fail, deadline_seconds, ProtocolError)
            except (ProtocolError, ReadTimeoutError, TimeoutError) as error:  # the body broke off: try again
                try:
                    back_off(error=error)
                except urllib3.exceptions.MaxRetryError:
                    if isinstance(error, (TimeoutError, ReadTimeoutError)):
                        raise fail(f"no answer within {attempt_timeout:g} s (timed out)") from None
                    raise fail(f"the connection failed ({type(error).__name__}: {error})") from None
        finally:
            response.release_conn()


def _read_body(response, max_bytes, deadline, fail, deadline_seconds, ProtocolError):
    """The body, read in chunks; refused past `max_bytes`; cut off at `deadline` (a watchdog shuts the socket)."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        response.shutdown()  # not drained: that would read the body refused
        raise fail(f"refused: {int(declared)} bytes announced, more than the {max_bytes}-byte cap")
    expired = threading.Event()

    def expire():
        expired.set()
        response.shutdown()  # a read blocked on a dripping server returns at once

    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
    watchdog.daemon = True
    watchdog.start()
    chunks, received = [], 0
    try:
        while True:
            try:
                chunk = response.read1(READ_CHUNK_BYTES)
            except Exception:
                if expired.is_set():
                    raise fail(f"did not finish within the {deadline_seconds:g}-s deadline") from None
                raise
            if expired.is_set():
                raise fail(f"did not finish within the {deadline_seconds:g}-s deadline ({received} bytes received)")
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                response.shutdown()
                raise fail(f"refused: the body passed the {max_bytes}-byte cap")
            chunks.append(chunk)
    finally:
        watchdog.cancel()
    if declared is not None and declared.strip().isdigit() and received < int(declared):
        raise ProtocolError(f"the body ended after {received} of {int(declared)} bytes")
    return b"".join(chunks)
