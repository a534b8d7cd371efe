# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello live --metrics-port N`: Prometheus metrics and health checks over HTTP, with `prometheus_client`.

    /metrics   the metrics below, in Prometheus' text format (a `CollectorRegistry` of this run, not the global one)
    /healthz   liveness: 200 while the command's loop is turning (it went round within `LIVENESS_SECONDS`), else 503
    /readyz    readiness: 200 while every source is ready, else 503; the body (JSON) says which source is not

A source is ready while it has written a window within `ready_seconds` and the lag of its last windows (from its
segment being listed to its windows being written) is under `ready_seconds`. Orcasound nodes list a 10-second
segment every 10 s, so a source with nothing new for `ready_seconds` (default 120 s: 12 segments) has a stalled
stream, a server away, or a follower that has fallen behind. The default leaves room over the lags measured with
the production-size model on a shared 2-core machine (a median of 10 s, a maximum of 52 s with 4 nodes on one core:
`benchmarks/results_live_1core.json`; the soak's in `docs/live.md`), so that a loaded machine is not called
unready while it keeps up.

Metrics (every per-source one is labelled `source`, the source's folder name):

- `orcahello_live_lag_seconds`: the lag of the source's last windows written;
- `orcahello_live_last_window_timestamp_seconds`: when the source last wrote a window (Unix time);
- `orcahello_live_windows_scored_total`, `orcahello_live_positive_windows_total` (score above the decision's
  `local_threshold`), `orcahello_live_minutes_total`, `orcahello_live_positive_minutes_total` (detections);
- `orcahello_live_polls_total`, `orcahello_live_failures_total{kind}`: turns, and failed ones by kind (`poll`: a
  playlist or segment that could not be fetched or read, tried again later; `segment_lost`: a segment given up;
  `unexpected`: any other error, the source started again from its folder);
- `orcahello_live_gaps_total`: gaps in the audio (lost or missing segments, time jumps) as `detect` reports them;
- `orcahello_live_decode_seconds_total`, `orcahello_live_score_seconds_total`: time spent fetching and decoding
  segments, and scoring windows;
- `orcahello_live_webhook_posted_total`, `orcahello_live_webhook_failures_total`, `orcahello_live_webhook_spooled`:
  detections POSTed, failed tries, detections waiting in the spool;
- `orcahello_live_loop_timestamp_seconds`: when the loop last went round;
- `orcahello_live_model_info`: the model and its configuration as labels (`model`, `weights_sha256`,
  `model_config_sha256`, `parameters_sha256`, `run_hash`, `version`).
"""

import hashlib
import http.server
import json
import logging
import threading
import time
from typing import Any

logger = logging.getLogger("orcahello.live")

DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_READY_SECONDS = 120.0
# The loop waits at most `--poll-seconds` between turns and a turn scores a few segments: a minute without one is
# a stuck process.
LIVENESS_SECONDS = 60.0
FAILURE_KINDS = ("poll", "segment_lost", "unexpected")


def sha256_of_json(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class LiveMetrics:
    """
    The metrics of one `orcahello live` run, in their own `CollectorRegistry`.

    Args:
        ready_seconds (`float`, *optional*, defaults to `DEFAULT_READY_SECONDS`):
            A source is ready while it wrote a window within this many seconds and its lag is under it.
    """

    def __init__(self, ready_seconds: float = DEFAULT_READY_SECONDS) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Info

        self.ready_seconds = ready_seconds
        self.registry = CollectorRegistry()
        registry = self.registry

        def per_source(kind, name, description, labels=("source",)):
            return kind(f"orcahello_live_{name}", description, list(labels), registry=registry)

        self.lag = per_source(Gauge, "lag_seconds", "Lag of the last windows written behind their segment's listing")
        self.last_window = per_source(Gauge, "last_window_timestamp_seconds", "When a window was last written")
        self.windows = per_source(Counter, "windows_scored", "Windows scored and written")
        self.positive_windows = per_source(Counter, "positive_windows", "Windows scored above local_threshold")
        self.minutes = per_source(Counter, "minutes", "Minutes written (file-level results)")
        self.positive_minutes = per_source(Counter, "positive_minutes", "Positive minutes (detections)")
        self.polls = per_source(Counter, "polls", "Turns (polls) of the source")
        self.failures = per_source(Counter, "failures", "Failed turns and lost segments", ("source", "kind"))
        self.gaps = per_source(Counter, "gaps", "Gaps in the audio, as detect reports them")
        self.decode_seconds = per_source(Counter, "decode_seconds", "Seconds spent fetching and decoding segments")
        self.score_seconds = per_source(Counter, "score_seconds", "Seconds spent scoring windows")
        self.posted = Counter("orcahello_live_webhook_posted", "Detections POSTed (2xx)", registry=registry)
        self.post_failures = Counter("orcahello_live_webhook_failures", "Failed POST tries", registry=registry)
        self.spooled = Gauge("orcahello_live_webhook_spooled", "Detections waiting in the spool", registry=registry)
        self.loop = Gauge("orcahello_live_loop_timestamp_seconds", "When the loop last went round", registry=registry)
        self.model_info = Info("orcahello_live_model", "The model and its configuration", registry=registry)
        self._last_window_at: dict[str, float | None] = {}
        self._lag_now: dict[str, float | None] = {}
        self._turned_at = time.time()
        self._lock = threading.Lock()

    def describe(
        self,
        model_name: str,
        model_info: dict[str, Any],
        model_config: dict[str, Any],
        parameters: dict[str, Any],
        run_hash: str,
        version: str,
    ) -> None:
        """The model and configuration identity: `orcahello_live_model_info`'s labels."""
        self.model_info.info(
            {
                "model": str(model_name),
                "weights_sha256": str(model_info.get("weights_sha256", "")),
                "model_config_sha256": sha256_of_json(model_config),
                "parameters_sha256": sha256_of_json(parameters),
                "run_hash": str(run_hash),
                "version": str(version),
            }
        )

    def add_source(self, name: str) -> None:
        """Every metric of a source at 0 from the start (a counter that never moved is still scraped)."""
        for metric in (self.windows, self.positive_windows, self.minutes, self.positive_minutes, self.polls):
            metric.labels(name)
        for metric in (self.gaps, self.decode_seconds, self.score_seconds):
            metric.labels(name)
        for kind in FAILURE_KINDS:
            self.failures.labels(name, kind)
        with self._lock:
            self._last_window_at.setdefault(name, None)

    def windows_written(self, name: str, count: int, positive: int, lag_seconds: float | None) -> None:
        now = time.time()
        self.windows.labels(name).inc(count)
        self.positive_windows.labels(name).inc(positive)
        self.last_window.labels(name).set(now)
        if lag_seconds is not None:
            self.lag.labels(name).set(lag_seconds)
        with self._lock:
            self._last_window_at[name] = now
            self._lag_now[name] = lag_seconds

    def turned(self) -> None:
        self._turned_at = time.time()
        self.loop.set(self._turned_at)

    # -- health ---------------------------------------------------------------------------------------------------

    def live(self) -> bool:
        return time.time() - self._turned_at < LIVENESS_SECONDS

    def readiness(self) -> dict:
        """`{source: why it is not ready, or None}`."""
        now = time.time()
        verdicts: dict[str, str | None] = {}
        with self._lock:
            for name, written_at in self._last_window_at.items():
                lag = self._lag_now.get(name)
                if written_at is None:
                    verdicts[name] = "no window written yet"
                elif now - written_at >= self.ready_seconds:
                    verdicts[name] = f"no window written for {now - written_at:.0f} s"
                elif lag is not None and lag >= self.ready_seconds:
                    verdicts[name] = f"lag {lag:.0f} s"
                else:
                    verdicts[name] = None
        return verdicts


class MetricsServer:
    """
    `/metrics`, `/healthz` and `/readyz` of `metrics` on `host:port`, from a background thread.

    Args:
        metrics (`LiveMetrics`): what to serve.
        port (`int`): the port (0: any free one, then `self.port`).
        host (`str`, *optional*, defaults to `"127.0.0.1"`): the address to listen on (`0.0.0.0` in a container).
    """

    def __init__(self, metrics: LiveMetrics, port: int, host: str = DEFAULT_METRICS_HOST) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self.answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    alive = metrics.live()
                    self.answer(200 if alive else 503, b"ok\n" if alive else b"the loop is not turning\n")
                elif path == "/readyz":
                    verdicts = metrics.readiness()
                    ready = all(why is None for why in verdicts.values())
                    body = json.dumps({"ready": ready, "sources": verdicts}, sort_keys=True).encode() + b"\n"
                    self.answer(200 if ready else 503, body, "application/json")
                else:
                    self.answer(404, b"not found: /metrics, /healthz, /readyz\n")

            def answer(self, status, body, content_type="text/plain; charset=utf-8"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *arguments):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="orcahello-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", self.host, self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
