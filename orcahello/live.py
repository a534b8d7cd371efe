# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello live`: follow Orcasound hydrophone streams continuously and score them as they grow.

    orcahello live https://<bucket>/rpi_orcasound_lab https://<bucket>/rpi_bush_point --output-dir live_results
    orcahello live archive/rpi_port_townsend --model models/orcahello-srkw-detector-v1 --stop-after 3600
    orcahello live https://<bucket>/rpi_sunset_bay/hls/1700000000/live.m3u8 --post http://127.0.0.1:8080/detections

A SOURCE is a node (`http(s)://host/<node>`, or a local folder, holding `latest.txt` that names the current stream
folder `hls/<epoch>/live.m3u8`) or one live `.m3u8` playlist. All sources share one model in one process; each is
followed on its own thread, and its new segments are decoded onto one continuous recording per stream folder (a
newer folder in `latest.txt`, a node restart, starts a new recording; an older one is never followed again). Every 2-second window is scored once as soon as its audio is
there, windows spanning segment boundaries included, with the UTC and the gaps `orcahello detect` gives for the
finished playlist; each minute gets production's file-level result, and a positive minute its WAV clip, its
spectrogram picture, a line in `detections.jsonl` and (`--post URL`) a POST. See `orcahello.live_outputs` for the
files.

Faults: each fetch is retried with backoff and has a deadline; a source whose server is away, stalls or trickles is
tried again with a growing delay (up to 5 minutes) and a warning while the others go on; a segment the playlist
lists but that cannot be fetched after several tries is declared lost (a warning, and the gap it leaves is
reported as `detect` reports it). Only each source's own host is ever asked (segments and redirects elsewhere are
refused unless `--allow-other-hosts`). SIGTERM or SIGINT finishes the segment at hand, writes everything and exits
0 within seconds; a new run with the same `--output-dir` resumes at the first window not yet written, and a second
run into a folder in use is refused. `--metrics-port`: Prometheus metrics and health checks
(`orcahello.live_metrics`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from hls_timeline_orcahello import iso_utc
from results_orcahello import DecisionParameters

from . import EXIT_CANNOT_RUN, EXIT_OK, __version__, models, provenance, runs, site_thresholds, upstream_config
from .live_follower import FollowerSettings, LiveFollower
from .live_metrics import DEFAULT_METRICS_HOST, DEFAULT_READY_SECONDS
from .live_outputs import STATUS_FILE, SourceOutputs, write_json_atomically
from .live_stream import LiveSource, LiveSourceError
from .live_webhook import SPOOL_FOLDER, WebhookError, WebhookSpool, check_webhook_url
from .run_lock import OutputFolderBusy, OutputFolderLock

if TYPE_CHECKING:
    from hls_stream_orcahello import HLSStream
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

    from .live_metrics import LiveMetrics

logger = logging.getLogger("orcahello.live")

DEFAULT_OUTPUT_DIR = "orcahello_live"
# Where upstream's orchestrator finds a hydrophone's stream: its public bucket `audio-orcasound-net`, at the URL
# InferenceSystem/src/LiveInferenceOrchestratorV1.py (orcasound/orcahello at 1cff7a68) builds; a node's stream is
# <URL>/<node>/hls/<epoch>/live.m3u8 with <URL>/<node>/latest.txt naming the epoch.
ORCASOUND_BUCKET_URL = "https://s3-us-west-2.amazonaws.com/audio-orcasound-net"
DEFAULT_POLL_SECONDS = 10.0  # Orcasound's segment length: a new segment every 10 s
DEFAULT_BACKLOG_SECONDS = 60.0
# How often the command's own thread writes status.json and checks for a stop.
STATUS_SECONDS = 1.0
# On a stop, how long the sources' threads get to finish the segment at hand.
STOP_GRACE_SECONDS = 10.0


class WindowScorer:
    """Scores windows of a recording (an `HLSStream`) as the pipeline scores a recording's windows (its
    `score_window_bounds`: the same frontend and engine), `batch_size` windows at a time."""

    def __init__(
        self,
        pipe: OrcaHelloAudioClassificationPipeline,
        batch_size: int,
        engine: str = "auto",
        precision: str = "float32",
    ) -> None:
        self.pipe = pipe
        self.batch_size = batch_size
        self.engine = engine
        self.precision = precision
        # The sources' threads share the model: one batch at a time (the engine uses every core for it).
        self._lock = threading.Lock()

    def score(self, recording: HLSStream, bounds: list[tuple[int, int]]) -> tuple[list[float], list[bool]]:
        """`(P(call) per window, digital silence per window)` for the sample `bounds` of `recording`."""
        scores: list[float] = []
        silent: list[bool] = []
        with self._lock:
            blocks = self.pipe.score_window_bounds(
                recording, bounds, batch_size=self.batch_size, engine=self.engine, precision=self.precision
            )
            for block in blocks:
                scores.extend(float(value) for value in block.scores)
                silent.extend(block.silent)
        return scores, silent


def follow_one(follower: LiveFollower, stop_event: threading.Event) -> None:
    """One source's thread: its turns, each when it is due, until the command stops or its playlist has ended."""
    while not stop_event.is_set() and not follower.done:
        if not follower.step(stop_event):
            stop_event.wait(timeout=max(0.05, follower.next_poll_at - time.monotonic()))


def run_followers(
    followers: Sequence[LiveFollower],
    stop_event: threading.Event,
    output_dir: str,
    stop_after: float | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    metrics: LiveMetrics | None = None,
) -> None:
    """
    Follow every source, each on its own thread, until `stop_event` (a signal), `stop_after` or every playlist
    has ended. A source whose server stalls or trickles holds up only its own thread (each fetch has its own
    deadline); the model is shared (`WindowScorer` scores one batch at a time). This thread writes `status.json`
    every `STATUS_SECONDS` and tells `metrics` (`LiveMetrics`) that the command is alive. On a stop, each source
    finishes the segment at hand; one still blocked on a fetch after `STOP_GRACE_SECONDS` is left behind (what
    it wrote is whole, and the next run resumes it), so that stopping takes seconds.
    """
    threads = [
        threading.Thread(
            target=follow_one, args=(follower, stop_event), name=f"orcahello-live-{follower.source.name}", daemon=True
        )
        for follower in followers
    ]
    for thread in threads:
        thread.start()
    deadline = None if stop_after is None else time.monotonic() + stop_after
    try:
        while True:
            if metrics is not None:
                metrics.turned()
            write_status(followers, output_dir)
            if not any(thread.is_alive() for thread in threads):
                break
            wait = STATUS_SECONDS if deadline is None else min(STATUS_SECONDS, deadline - time.monotonic())
            if wait <= 0 or stop_event.wait(timeout=wait):
                break
    finally:
        stop_event.set()
        grace_ends = time.monotonic() + STOP_GRACE_SECONDS
        for thread in threads:
            thread.join(timeout=max(grace_ends - time.monotonic(), 0.0))
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            logger.warning("%s: still busy after %g s; stopping without them", ", ".join(stuck), STOP_GRACE_SECONDS)
        write_status(followers, output_dir)


def write_status(followers: Sequence[LiveFollower], output_dir: str) -> None:
    """`<output dir>/status.json`: every source's last status (each source's own thread updates it)."""
    write_json_atomically(
        os.path.join(output_dir, STATUS_FILE),
        {"updated_at": iso_utc(time.time()), "sources": [follower.last_status for follower in followers]},
    )


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LiveOptions:
    """
    What `orcahello live` can be told (its command-line options; see `live_command`).

    Args:
        sources (`tuple[str, ...]`):
            Nodes (`http(s)://host/<node>`, or a local folder holding `latest.txt`) or live `.m3u8` playlists.
        output_dir (`str`, *optional*, defaults to `"orcahello_live"`):
            Where each source's folder of results goes.
        model (`str`, *optional*):
            A model folder or Hub id; None: `models.default_model()`.
        device (`str`, *optional*, defaults to `"auto"`):
            `models.DEVICES`.
        batch_size (`int`, *optional*):
            Windows per forward pass; None: `models.default_batch_size` of the device.
        engine (`str`, *optional*, defaults to `"auto"`):
            What computes the model (`vocabulary_orcahello.ENGINES`).
        scoring (`provenance.ScoringOptions`, *optional*):
            The decision fields set for every source; by default the model's.
        stop_after (`float`, *optional*):
            Stop (as on SIGTERM) after this many seconds; None: run until stopped.
        post (`str`, *optional*):
            A URL to POST each positive minute to, as JSON (spooled on disk while it is down).
        poll_seconds (`float`, *optional*, defaults to 10):
            How often a source that is caught up is polled.
        backlog_seconds (`float`, *optional*, defaults to 60):
            On first contact with a source, how much of its current recording to score.
        plot (`bool`, *optional*, defaults to `True`):
            A spectrogram picture for each positive minute.
        hydrophone_config (`upstream_config.HydrophoneConfig`, *optional*):
            Upstream's hydrophone config: each source takes the decision of its location (matched by node name, as
            a site table is), and without `sources` its locations' nodes are followed under `node_base_url`.
        node_base_url (`str`, *optional*):
            Where the nodes of `hydrophone_config` are: `<node_base_url>/<node>/hls/<epoch>/live.m3u8`.
        allow_other_hosts (`bool`, *optional*, defaults to `False`):
            Fetch segments and follow redirects on hosts other than each source's (refused by default).
        metrics_port (`int`, *optional*):
            Serve `/metrics`, `/healthz` and `/readyz` on this port (`orcahello.live_metrics`); None: no server.
        metrics_host (`str`, *optional*, defaults to `"127.0.0.1"`):
            The address the metrics server listens on (`0.0.0.0` in a container).
        ready_seconds (`float`, *optional*, defaults to 120):
            `/readyz`: a source is ready while it wrote a window within this many seconds and its lag is under it.
    """

    sources: tuple[str, ...]
    output_dir: str = DEFAULT_OUTPUT_DIR
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    engine: str = "auto"
    scoring: provenance.ScoringOptions = dataclasses.field(default_factory=provenance.ScoringOptions)
    stop_after: float | None = None
    post: str | None = None
    poll_seconds: float | None = None
    backlog_seconds: float = DEFAULT_BACKLOG_SECONDS
    plot: bool = True
    hydrophone_config: upstream_config.HydrophoneConfig | None = None
    node_base_url: str = ORCASOUND_BUCKET_URL
    allow_other_hosts: bool = False
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_METRICS_HOST
    ready_seconds: float = DEFAULT_READY_SECONDS


def hydrophone_sources(options: LiveOptions) -> tuple[str, ...]:
    """
    The sources to follow: `options.sources`, else the node of each location of `options.hydrophone_config` under
    `options.node_base_url`. Raises `ValueError` (one line) when there are none, or for a location live cannot run
    as upstream's orchestrator does.
    """
    config = options.hydrophone_config
    if config is not None:
        for location in config.locations:
            if location.stream_type != "LiveHLS":
                raise ValueError(
                    f"{config.path}: location {location.location_id}: hls_stream_type {location.stream_type} is an "
                    f"archive's time range: score it with orcahello detect or batch"
                )
            if location.segment_seconds != upstream_config.LIVE_SEGMENT_SECONDS:
                raise ValueError(
                    f"{config.path}: location {location.location_id}: inference_segment_size "
                    f"{location.segment_seconds:g}: orcahello live decides each minute (60)"
                )
    if options.sources:
        return tuple(options.sources)
    if config is None:
        raise ValueError("no SOURCE to follow: name nodes or playlists, or give --hydrophone-config")
    missing = [location.location_id for location in config.locations if not location.hydrophone_id]
    if missing:
        raise ValueError(f"{config.path}: no hls_hydrophone_id for location(s) {', '.join(missing)}: name SOURCEs")
    base = options.node_base_url.rstrip("/")
    return tuple(f"{base}/{location.hydrophone_id}" for location in config.locations)


def follower_settings(
    options: LiveOptions, source: LiveSource, config: Any, model_info: dict, site_table: dict | None
) -> FollowerSettings:
    """
    What `source` is scored and decided with: the run's options over its location's decision (`--hydrophone-config`,
    matched by node as `orcahello detect` matches a site) over the model's, and its poll interval.
    """
    overrides, location, poll_seconds = {}, None, options.poll_seconds
    if site_table is not None:
        assert options.hydrophone_config is not None  # the table is the hydrophone config's (`live_command`)
        overrides = site_thresholds.parameters_for(source.source, site_table)
        location = site_thresholds.match_site(source.source, site_table)
        located = [
            entry
            for entry in options.hydrophone_config.locations
            if location in (entry.hydrophone_id, entry.location_id)
        ] or list(options.hydrophone_config.locations[:1])
        if poll_seconds is None:
            poll_seconds = located[0].poll_seconds
    parameters = provenance.scoring_parameters(options.scoring, config, overrides)
    # The decision as detect makes it: the preset's smoothing and the floor on the confidence included.
    inference = provenance.inference_record(parameters, config)
    record = None
    if options.hydrophone_config is not None:
        record = {**options.hydrophone_config.record(), "location": location, "overrides": overrides}
    return FollowerSettings(
        parameters=parameters,
        decision=DecisionParameters.from_mapping({**inference, **parameters}),
        run_hash=provenance.run_hash(parameters, model_info),
        model_info=model_info,
        backlog_seconds=options.backlog_seconds,
        poll_seconds=poll_seconds or DEFAULT_POLL_SECONDS,
        hydrophone_config=record,
    )


def live_command(options: LiveOptions, command: list[str] | None = None) -> int:
    """Run `orcahello live` with `options`; returns the exit status (0 after a signal or --stop-after)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop_event = threading.Event()
    try:
        if options.post:
            check_webhook_url(options.post)
        sources = [
            LiveSource(source, stop_event=stop_event, allow_other_hosts=options.allow_other_hosts)
            for source in hydrophone_sources(options)
        ]
    except (LiveSourceError, WebhookError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        print(f"ERROR: two sources would write to the same folder: {', '.join(duplicates)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    model = options.model or models.default_model()
    try:
        device = models.resolve_device(options.device)
        pipe = models.load_pipeline(model, device)
    except Exception as error:  # a missing folder, no Hub access, a broken config: nothing can be scored
        print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    runs.quiet_pipeline_warnings()  # each minute's warnings are in its outputs
    model_info = provenance.describe_model(pipe, model)
    if runs.standin_note(model, model_info):
        print(runs.standin_note(model, model_info), file=sys.stderr)
    site_table = None if options.hydrophone_config is None else options.hydrophone_config.site_table()
    settings = {
        source.name: follower_settings(options, source, pipe.model.config, model_info, site_table) for source in sources
    }
    # One run per output folder: a second would write every window and POST every detection twice.
    lock = OutputFolderLock(options.output_dir, "orcahello live")
    try:
        lock.acquire()
    except OutputFolderBusy as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    metrics = server = None
    try:
        if options.metrics_port is not None:
            from .live_metrics import LiveMetrics, MetricsServer

            metrics = LiveMetrics(ready_seconds=options.ready_seconds)
            # Each source's parameters and run hash (a hydrophone config gives each location its own decision).
            parameters = {name: source_settings.parameters for name, source_settings in settings.items()}
            run_hashes = sorted({source_settings.run_hash for source_settings in settings.values()})
            run_hash = run_hashes[0] if len(run_hashes) == 1 else ",".join(run_hashes)
            metrics.describe(model, model_info, pipe.model.config.to_dict(), parameters, run_hash, __version__)
            try:
                server = MetricsServer(metrics, options.metrics_port, options.metrics_host).start()
            except OSError as error:
                where = f"{options.metrics_host}:{options.metrics_port}"
                print(f"ERROR: --metrics-port: cannot listen on {where} ({error.strerror})", file=sys.stderr)
                return EXIT_CANNOT_RUN
        return follow(options, sources, pipe, settings, model, device, stop_event, metrics)
    finally:
        if server is not None:
            server.stop()
        lock.release()


def follow(
    options: LiveOptions,
    sources: Sequence[LiveSource],
    pipe: OrcaHelloAudioClassificationPipeline,
    settings: dict[str, FollowerSettings],
    model: str,
    device: str,
    stop_event: threading.Event,
    metrics: LiveMetrics | None = None,
) -> int:
    """`live_command` once its output folder is locked: follow `sources` (each with its `settings[name]`) until
    stopped; the exit status."""
    spool_folder = os.path.join(options.output_dir, SPOOL_FOLDER)
    webhook = WebhookSpool(options.post, spool_folder, metrics=metrics).start() if options.post else None
    batch_size = options.batch_size or models.default_batch_size(pipe.device.type)
    scorer = WindowScorer(pipe, batch_size, engine=options.engine, precision=options.scoring.precision)
    try:
        followers = [
            LiveFollower(
                source,
                SourceOutputs(os.path.join(options.output_dir, source.name), plot=options.plot),
                scorer,
                settings[source.name],
                webhook,
                metrics,
            )
            for source in sources
        ]
    except (LiveSourceError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        logger.info("%s: finishing the segment at hand, then stopping", signal.Signals(signal_number).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logger.info("following %d source(s) into %s with %s (%s)", len(sources), options.output_dir, model, device)
    try:
        poll_seconds = min(follower_settings.poll_seconds for follower_settings in settings.values())
        run_followers(followers, stop_event, options.output_dir, options.stop_after, poll_seconds, metrics)
    finally:
        if webhook is not None:
            webhook.stop()
    logger.info("stopped: %s", ", ".join(f"{f.source.name} {f.windows_written} windows" for f in followers))
    return EXIT_OK
