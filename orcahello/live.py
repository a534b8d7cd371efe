# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello live`: follow Orcasound hydrophone streams continuously and score them as they grow.

    orcahello live https://<bucket>/rpi_orcasound_lab https://<bucket>/rpi_bush_point --output-dir live_results
    orcahello live archive/rpi_port_townsend --model models/orcahello-srkw-detector-v1 --stop-after 3600
    orcahello live https://<bucket>/rpi_sunset_bay/hls/1700000000/live.m3u8 --post http://127.0.0.1:8080/detections

A SOURCE is a node (`http(s)://host/<node>`, or a local folder, holding `latest.txt` that names the current stream
folder `hls/<epoch>/live.m3u8`) or one live `.m3u8` playlist. All sources share one model in one process; each is
polled in turn, and its new segments are decoded onto one continuous recording per stream folder (a node restart,
a new folder in `latest.txt`, starts a new recording). Every 2-second window is scored once as soon as its audio is
there, windows spanning segment boundaries included, with the UTC and the gaps `orcahello detect` gives for the
finished playlist; each minute gets production's file-level result, and a positive minute its WAV clip, its
spectrogram picture, a line in `detections.jsonl` and (`--post URL`) a POST. See `orcahello.live_outputs` for the
files.

Faults: each fetch is retried with backoff; a source whose server is away is tried again with a growing delay (up
to 5 minutes) and a warning while the others go on; a segment the playlist lists but that cannot be fetched
after several tries is declared lost (a warning, and the gap it leaves is reported as `detect` reports it).
SIGTERM or SIGINT finishes the segment at hand, writes everything and exits 0; a new run with the same
`--output-dir` resumes at the first window not yet written.
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
from typing import TYPE_CHECKING

from hls_timeline_orcahello import iso_utc
from results_orcahello import DecisionParameters

from . import EXIT_CANNOT_RUN, EXIT_OK, models, provenance, runs
from .live_follower import FollowerSettings, LiveFollower
from .live_outputs import SourceOutputs, write_json_atomically
from .live_stream import LiveSource, LiveSourceError
from .live_webhook import SPOOL_FOLDER, WebhookSpool

if TYPE_CHECKING:
    from hls_stream_orcahello import HLSStream
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

logger = logging.getLogger("orcahello.live")

DEFAULT_OUTPUT_DIR = "orcahello_live"
DEFAULT_POLL_SECONDS = 10.0  # Orcasound's segment length: a new segment every 10 s
DEFAULT_BACKLOG_SECONDS = 60.0
STATUS_FILE = "status.json"


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

    def score(self, recording: HLSStream, bounds: list[tuple[int, int]]) -> tuple[list[float], list[bool]]:
        """`(P(call) per window, digital silence per window)` for the sample `bounds` of `recording`."""
        scores: list[float] = []
        silent: list[bool] = []
        blocks = self.pipe.score_window_bounds(
            recording, bounds, batch_size=self.batch_size, engine=self.engine, precision=self.precision
        )
        for block in blocks:
            scores.extend(float(value) for value in block.scores)
            silent.extend(block.silent)
        return scores, silent


def run_followers(
    followers: Sequence[LiveFollower],
    stop_event: threading.Event,
    output_dir: str,
    stop_after: float | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> None:
    """Turn by turn over the sources until `stop_event` (a signal, `stop_after`) or every playlist has ended."""
    deadline = None if stop_after is None else time.monotonic() + stop_after
    while not stop_event.is_set():
        more = False
        for follower in followers:
            more = follower.step(stop_event) or more
            if stop_event.is_set():
                break
        write_json_atomically(
            os.path.join(output_dir, STATUS_FILE),
            {"updated_at": iso_utc(time.time()), "sources": [follower.status() for follower in followers]},
        )
        if all(follower.done for follower in followers):
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        if not more:
            next_poll = min(follower.next_poll_at for follower in followers if not follower.done)
            wait = max(0.05, min(next_poll - time.monotonic(), poll_seconds))
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            stop_event.wait(timeout=wait)


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
    poll_seconds: float = DEFAULT_POLL_SECONDS
    backlog_seconds: float = DEFAULT_BACKLOG_SECONDS
    plot: bool = True


def live_command(options: LiveOptions, command: list[str] | None = None) -> int:
    """Run `orcahello live` with `options`; returns the exit status (0 after a signal or --stop-after)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop_event = threading.Event()
    try:
        sources = [LiveSource(source, stop_event=stop_event) for source in options.sources]
    except LiveSourceError as error:
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
    parameters = provenance.scoring_parameters(options.scoring, pipe.model.config)
    model_info = provenance.describe_model(pipe, model)
    # The decision as detect makes it: the preset's smoothing and the floor on the confidence included.
    inference = provenance.inference_record(parameters, pipe.model.config)
    settings = FollowerSettings(
        parameters=parameters,
        decision=DecisionParameters.from_mapping({**inference, **parameters}),
        run_hash=provenance.run_hash(parameters, model_info),
        model_info=model_info,
        backlog_seconds=options.backlog_seconds,
        poll_seconds=options.poll_seconds,
    )
    os.makedirs(options.output_dir, exist_ok=True)
    webhook = (
        WebhookSpool(options.post, os.path.join(options.output_dir, SPOOL_FOLDER)).start() if options.post else None
    )
    batch_size = options.batch_size or models.default_batch_size(pipe.device.type)
    scorer = WindowScorer(pipe, batch_size, engine=options.engine, precision=options.scoring.precision)
    try:
        followers = [
            LiveFollower(
                source,
                SourceOutputs(os.path.join(options.output_dir, source.name), plot=options.plot),
                scorer,
                settings,
                webhook,
            )
            for source in sources
        ]
    except (LiveSourceError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN

    def request_stop(signal_number, frame):
        logger.info("%s: finishing the segment at hand, then stopping", signal.Signals(signal_number).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logger.info("following %d source(s) into %s with %s (%s)", len(sources), options.output_dir, model, device)
    try:
        run_followers(followers, stop_event, options.output_dir, options.stop_after, options.poll_seconds)
    finally:
        if webhook is not None:
            webhook.stop()
    logger.info("stopped: %s", ", ".join(f"{f.source.name} {f.windows_written} windows" for f in followers))
    return EXIT_OK
