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

Faults: each fetch is retried with backoff and a warning; a source whose server is away is tried again with a
growing delay (up to 5 minutes) while the others go on; a segment the playlist lists but that cannot be fetched
after several tries is declared lost (a warning, and the gap it leaves is reported as `detect` reports it).
SIGTERM or SIGINT finishes the segment at hand, writes everything and exits 0; a new run with the same
`--output-dir` resumes at the first window not yet written.
"""

import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from typing import Any

from hls_orcahello import iso_utc, utc_at
from hls_playlist_orcahello import HLSInputError, epoch_from_folder
from results_orcahello import DecisionParameters

from . import EXIT_CANNOT_RUN, EXIT_OK, __version__, models, provenance, runs
from .live_outputs import SourceOutputs, write_json_atomically
from .live_stream import LiveRecording, LiveSource, LiveSourceError, nominal_segment_seconds
from .live_webhook import SPOOL_FOLDER, WebhookSpool

logger = logging.getLogger("orcahello.live")

DEFAULT_OUTPUT_DIR = "orcahello_live"
DEFAULT_POLL_SECONDS = 10.0  # Orcasound's segment length: a new segment every 10 s
DEFAULT_BACKLOG_SECONDS = 60.0
MINUTE_SECONDS = 60.0
# Segments scored per source per turn, so that one source's backlog never starves the others.
SEGMENTS_PER_TURN = 6
# A listed segment that fails this many turns in a row while later ones are listed is declared lost.
LOST_AFTER_FAILURES = 3
MAX_BACKOFF_SECONDS = 300.0
STATUS_FILE = "status.json"


@dataclasses.dataclass(frozen=True)
class FollowerSettings:
    """
    What every source's `LiveFollower` scores with and records.

    Args:
        parameters (`dict`): every scoring parameter, resolved as `orcahello detect` resolves them.
        decision (`DecisionParameters`): how a minute's window scores become its decision.
        run_hash (`str`): what identifies the results (`provenance.run_hash`): a new run resumes only the same.
        model_info (`dict`): the model's identity (`provenance.describe_model`).
        backlog_seconds (`float`): on first contact with a source, how much of its current recording to score.
        poll_seconds (`float`): how often a source that is caught up is polled.
    """

    parameters: dict[str, Any]
    decision: DecisionParameters
    run_hash: str
    model_info: dict[str, Any]
    backlog_seconds: float
    poll_seconds: float


class WindowScorer:
    """Scores windows of a `LiveRecording` with the pipeline's own frontend and engine (`featurize_windows`,
    `score_input_features`), `batch_size` windows at a time."""

    def __init__(self, pipe, batch_size, engine="auto", precision="float32"):
        self.pipe = pipe
        self.batch_size = batch_size
        self.engine = engine
        self.precision = precision

    def score(self, recording, bounds):
        """`(P(call) per window, digital silence per window)` for the sample `bounds` of `recording`."""
        # Imported here, as orcahello.batch does: building the command line parser never loads torch.
        from audio_orcahello import featurize_windows

        scores, silent = [], []
        for first in range(0, len(bounds), self.batch_size):
            block = bounds[first : first + self.batch_size]
            features, block_silent = featurize_windows(
                recording, block, self.pipe.feature_extractor, dtype=self.pipe.dtype
            )
            probabilities = self.pipe.score_input_features(features, engine=self.engine, precision=self.precision)
            scores.extend(float(value) for value in probabilities[:, 1])
            silent.extend(block_silent)
        return scores, silent


class LiveFollower:
    """
    One source followed: its recording in progress, the windows and minutes written, its faults and lag.

    Args:
        source (`LiveSource`): what to follow.
        outputs (`SourceOutputs`): where its results go.
        scorer (`WindowScorer`): the shared model.
        settings (`FollowerSettings`): the scoring, the decision and what identifies the results.
        webhook (`WebhookSpool`, *optional*): where positive minutes are posted.
    """

    def __init__(self, source, outputs, scorer, settings, webhook=None):
        self.source, self.outputs, self.scorer, self.webhook = source, outputs, scorer, webhook
        self.parameters = settings.parameters
        self.settings = settings
        self.window_seconds = self.parameters["window_seconds"]
        self.hop_seconds = self.parameters["hop_seconds"]
        self.minute_windows = max(1, int(round(MINUTE_SECONDS / self.hop_seconds)))
        self.state = outputs.load_state() or {}
        if self.state and self.state.get("run_hash") != settings.run_hash:
            raise LiveSourceError(
                f"{outputs.folder}: written with another model or other scoring parameters; pass another --output-dir"
            )
        self.recording = None
        self.done = False
        self.next_poll_at = 0.0
        self.failures_in_a_row = 0
        self.last_error = None
        self.segment_failures = {}
        self.arrivals = {}  # segment number -> when it was first listed (Unix time)
        self.lag_seconds, self.lag_seconds_max = None, 0.0
        self.windows_written = 0
        self.segments_behind = 0
        self.last_window_utc = None

    # -- recordings ---------------------------------------------------------------------------------------------

    def _open_recording(self):
        state = self.state
        if state.get("recording") and not state.get("finished"):
            recording_id, playlist = state["recording"], state["playlist"]  # finish what the last run was on
        else:
            recording_id, playlist = self.source.current_playlist()
            if state.get("finished") and recording_id == state.get("recording"):
                return False  # the node has not restarted since its last recording ended
        segments, info = self.source.playlist(playlist)
        resumed = state.get("recording") == recording_id
        if resumed:
            first_segment, lost = state["first_segment"], state.get("lost_segments", [])
            next_minute = state.get("next_minute", 0)
        else:
            first_segment, lost, next_minute = segments[0].number, [], 0
            if not state:  # first contact with this source: begin near the live edge
                nominal = nominal_segment_seconds(segments) or DEFAULT_POLL_SECONDS
                keep = max(1, math.ceil(self.settings.backlog_seconds / nominal))
                if not info.get("ended"):
                    first_segment = segments[max(0, len(segments) - keep)].number
        folder_epoch = int(recording_id) if recording_id.isdigit() else epoch_from_folder(playlist)
        from_first = [segment for segment in segments if segment.number >= first_segment]
        self.recording = LiveRecording(
            self.source.name, recording_id, folder_epoch, nominal_segment_seconds(from_first or segments)
        )
        self.playlist = playlist
        self.first_segment = first_segment
        self.next_segment = first_segment
        self.lost = set(lost)
        self.next_minute = next_minute
        last = self.outputs.last_window() if resumed else None
        self.next_window = last["index"] + 1 if last and last.get("recording") == recording_id else 0
        self.pending = self.outputs.windows_written(recording_id, next_minute * self.minute_windows) if resumed else []
        self.pending = [entry for entry in self.pending if entry["index"] < self.next_window]
        if resumed and self.next_window:
            logger.info(
                "%s: resuming recording %s at window %d (decoding it again from segment %d, without scoring it)",
                self.source.name,
                recording_id,
                self.next_window,
                first_segment,
            )
        else:
            logger.info(
                "%s: following recording %s from segment %d (%s)",
                self.source.name,
                recording_id,
                first_segment,
                playlist,
            )
        self._save_state(finished=False)
        return True

    def _finish_recording(self):
        recording = self.recording
        recording.finish()
        self._score_ready(arrival=None)
        if self.pending:
            self._write_minute(final=True)
        logger.info(
            "%s: recording %s ended after %d windows", self.source.name, recording.recording_id, self.next_window
        )
        self._save_state(finished=True)
        self.recording = None
        self.arrivals.clear()

    def _save_state(self, finished):
        self.state = {
            "recording": self.recording.recording_id,
            "playlist": self.playlist,
            "first_segment": self.first_segment,
            "next_segment": self.next_segment,
            "lost_segments": sorted(self.lost),
            "next_minute": self.next_minute,
            "next_window": self.next_window,
            "finished": finished,
            "run_hash": self.settings.run_hash,
            "source": self.source.source,
        }
        self.outputs.save_state(self.state)

    # -- one turn -----------------------------------------------------------------------------------------------

    def step(self, stop_event):
        """One turn: poll, decode and score up to `SEGMENTS_PER_TURN` new segments. True when more are waiting."""
        if self.done or time.monotonic() < self.next_poll_at:
            return False
        try:
            more = self._step(stop_event)
            self.failures_in_a_row, self.last_error = 0, None
            if not more:
                self.next_poll_at = time.monotonic() + self.settings.poll_seconds
        except (HLSInputError, LiveSourceError) as error:
            self._back_off(error)
            more = False
        except Exception as error:  # unforeseen: this source starts again from what is on disk, the others go on
            logger.exception("%s: unexpected error; resuming this source from its output folder", self.source.name)
            self.recording = None
            self.state = self.outputs.load_state() or {}
            self._back_off(f"{type(error).__name__}: {error}")
            more = False
        self._write_status()
        return more

    def _back_off(self, error):
        """A failed turn: a warning, and the next try after a delay that doubles with each failure in a row."""
        self.failures_in_a_row += 1
        self.last_error = str(error)
        delay = min(self.settings.poll_seconds * 2 ** (self.failures_in_a_row - 1), MAX_BACKOFF_SECONDS)
        logger.warning(
            "%s: %s (failure %d in a row; next try in %.1f s)", self.source.name, error, self.failures_in_a_row, delay
        )
        self.next_poll_at = time.monotonic() + delay

    def _step(self, stop_event):
        if self.recording is None and not self._open_recording():
            return False
        segments, info = self.source.playlist(self.playlist)
        now = time.time()
        for segment in segments:
            if segment.number >= self.next_segment:
                self.arrivals.setdefault(segment.number, now)
        if segments[0].number > self.next_segment:  # a sliding playlist dropped them before they were fetched
            logger.warning(
                "%s: segments %d-%d left the playlist before they were fetched: lost",
                self.source.name,
                self.next_segment,
                segments[0].number - 1,
            )
            self.lost.update(range(self.next_segment, segments[0].number))
            self.next_segment = segments[0].number
        todo = [segment for segment in segments if segment.number >= self.next_segment]
        scored_segments = 0
        for position, segment in enumerate(todo):
            # Segments decoded again after a restart (no window to score) do not count: they take milliseconds.
            if stop_event.is_set() or scored_segments == SEGMENTS_PER_TURN:
                break
            windows_before = self.next_window
            if segment.number in self.lost:
                self.next_segment = segment.number + 1
                continue
            if segment.marked_gap:
                self.recording.add_marked_gap(segment)
            else:
                decoded_before = self.recording.num_samples
                try:
                    self.recording.add_segment(segment, self.source.read(segment.location))
                except HLSInputError as error:
                    if self.recording.num_samples != decoded_before:
                        # It broke off after some of its audio was decoded: that part stays, the rest is lost.
                        logger.warning("%s: %s: kept what decoded before the error", self.source.name, error)
                        self.next_segment = segment.number + 1
                        self._score_ready(arrival=self.arrivals.pop(segment.number, now))
                        continue
                    failures = self.segment_failures.get(segment.number, 0) + 1
                    self.segment_failures[segment.number] = failures
                    if failures < LOST_AFTER_FAILURES:
                        raise
                    # Lost when the stream went on without it: later segments listed, or a new stream folder.
                    moved_on = position < len(todo) - 1 or (
                        self.source.kind == "node" and self.source.current_playlist()[0] != self.recording.recording_id
                    )
                    if not moved_on:
                        raise
                    logger.warning(
                        "%s: segment %s failed %d times and the stream went on without it: lost (%s)",
                        self.source.name,
                        segment.name,
                        failures,
                        error,
                    )
                    self.lost.add(segment.number)
                    self.next_segment = segment.number + 1
                    self._save_state(finished=False)
                    continue
                self.segment_failures.pop(segment.number, None)
            self.next_segment = segment.number + 1
            self._score_ready(arrival=self.arrivals.pop(segment.number, now))
            scored_segments += self.next_window > windows_before
        if stop_event.is_set():
            return False
        self.segments_behind = sum(1 for segment in segments if segment.number >= self.next_segment)
        if self.segments_behind:
            return True
        if info.get("ended"):
            self._finish_recording()
            self.done = self.source.kind == "playlist"
        elif self.source.kind == "node" and self.source.current_playlist()[0] != self.recording.recording_id:
            self._finish_recording()  # the node restarted: its old folder is complete, a new one has begun
            return True
        return False

    # -- scoring and writing ------------------------------------------------------------------------------------

    def _score_ready(self, arrival):
        """Score every window whose audio is all decoded, write them, and the minutes they complete."""
        recording = self.recording
        if recording.sampling_rate is None:
            return
        rate = recording.sampling_rate
        # The same sample bounds as `feature_extraction_orcahello.window_bounds` gives the finished recording.
        window_samples = int(round(self.window_seconds * rate))
        hop_samples = int(round(self.hop_seconds * rate))
        self._write_complete_minutes(window_samples, hop_samples)
        written_before = self.next_window
        while True:
            ready = (recording.num_samples - window_samples) // hop_samples + 1 - self.next_window
            if recording.num_samples < window_samples or ready <= 0:
                break
            # Up to the end of the current minute, so that each batch completes at most one minute.
            end_of_minute = (self.next_minute + 1) * self.minute_windows
            count = min(ready, max(end_of_minute - self.next_window, 1), self.scorer.batch_size * 4)
            indices = range(self.next_window, self.next_window + count)
            bounds = [(index * hop_samples, index * hop_samples + window_samples) for index in indices]
            scores, silent = self.scorer.score(recording, bounds)
            entries = [self._window_entry(index, score, quiet) for index, score, quiet in zip(indices, scores, silent)]
            self.outputs.append_windows(entries)
            self.pending.extend(entries)
            self.next_window += count
            self.windows_written += count
            self.last_window_utc = entries[-1]["end_utc"]
            if arrival is not None:
                self.lag_seconds = time.time() - arrival
                self.lag_seconds_max = max(self.lag_seconds_max, self.lag_seconds)
            self._write_complete_minutes(window_samples, hop_samples)
        if self.next_window > written_before:
            logger.info(
                "%s: %s: windows %d-%d written (to %s), lag %s s",
                self.source.name,
                recording.recording_id,
                written_before,
                self.next_window - 1,
                self.last_window_utc,
                "-" if self.lag_seconds is None else f"{self.lag_seconds:.2f}",
            )
        keep_from = min(self.next_window, self.next_minute * self.minute_windows) * hop_samples
        recording.forget_before(keep_from)

    def _write_complete_minutes(self, window_samples, hop_samples):
        """Write each minute whose windows are all scored (after a restart, once its audio is decoded again)."""
        while self.next_window >= (self.next_minute + 1) * self.minute_windows and self.pending:
            clip_end = self.pending[min(self.minute_windows, len(self.pending)) - 1]["index"] * hop_samples
            if self.recording.num_samples < clip_end + window_samples:
                return
            self._write_minute()

    def _window_entry(self, index, score, silent):
        start = index * self.hop_seconds
        end = start + self.window_seconds
        anchors, gaps = self.recording.anchors, self.recording.gaps
        return {
            "recording": self.recording.recording_id,
            "index": index,
            "start": start,
            "end": end,
            "start_utc": iso_utc(utc_at(anchors, start)),
            "end_utc": iso_utc(utc_at(anchors, end, before=True)),
            "score": score,
            "spans_gap": any(start < gap["start_s"] < end for gap in gaps),
            "silent": silent,
        }

    def _write_minute(self, final=False):
        """The file-level result of the minute's windows (`build_file_result`), and its outputs."""
        from results_orcahello import build_file_result

        recording = self.recording
        first_index = self.next_minute * self.minute_windows
        entries = [entry for entry in self.pending if entry["index"] < first_index + self.minute_windows]
        self.pending = self.pending[len(entries) :]
        if not entries:
            return
        rate = recording.sampling_rate
        hop_samples = int(round(self.hop_seconds * rate))
        first_sample = entries[0]["index"] * hop_samples
        last_sample = entries[-1]["index"] * hop_samples + int(round(self.window_seconds * rate))
        offset = entries[0]["start"]
        clip_seconds = (last_sample - first_sample) / rate
        # The recording's time line seen from the minute's first window, so that the minute's rows and
        # detections carry the recording's UTC times.
        start_utc = utc_at(recording.anchors, offset)
        anchors = [[0.0, start_utc]] + [
            [seconds - offset, utc] for seconds, utc in recording.anchors if offset < seconds < offset + clip_seconds
        ]
        gaps = [
            dict(gap, start_s=gap["start_s"] - offset)
            for gap in recording.gaps
            if offset < gap["start_s"] < offset + clip_seconds
        ]
        timeline = {
            "start_time_utc": start_utc,
            "anchors": anchors,
            "gaps": gaps,
            "source": {"type": "hls-live", "uri": self.playlist, "recording": recording.recording_id},
            "warnings": list(recording.warnings),
        }
        info = {
            "name": f"{self.source.name}/{recording.recording_id}/{self.next_minute:05d}",
            "sampling_rate": rate,
            "num_samples": last_sample - first_sample,
            "num_channels": recording.num_channels,
            "num_windows": len(entries),
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "timeline": timeline,
        }
        result = build_file_result(
            info,
            [entry["score"] for entry in entries],
            sum(entry["silent"] for entry in entries),
            decision=self.settings.decision,
            return_timestamps=True,
        )
        document = {
            "source": self.source.source,
            "recording": recording.recording_id,
            "minute": self.next_minute,
            "first_window": entries[0]["index"],
            "start_time_utc": result["start_time_utc"],
            "end_time_utc": entries[-1]["end_utc"],
            "label": result["label"],
            **{key: result[key] for key in runs.RESULT_KEYS if key != "start_time_utc"},
            "source_stream": result.get("source"),
            "duration_s": result["duration_s"],
            "sampling_rate": rate,
            "num_channels": recording.num_channels,
            "parameters": result["parameters"],
            "model": self.settings.model_info,
            "version": __version__,
            "run_hash": self.settings.run_hash,
            "partial_minute": final and len(entries) < self.minute_windows,
        }
        stem = self.outputs.minute_stem(recording.recording_id, self.next_minute, result["start_time_utc"])
        audio = recording.read(first_sample, last_sample) if result["global_prediction"] else None
        detection = self.outputs.write_minute(stem, document, audio, rate)
        if detection is not None:
            logger.info(
                "%s: POSITIVE minute %s (confidence %.1f)",
                self.source.name,
                detection["start_utc"],
                detection["global_confidence"],
            )
            if self.webhook is not None:
                # Recording (an epoch) first: the spool sends the oldest first, across sources too.
                self.webhook.enqueue(detection, f"{recording.recording_id}_{self.source.name}_{self.next_minute:05d}")
        self.next_minute += 1
        self._save_state(finished=False)

    def status(self):
        return {
            "source": self.source.source,
            "name": self.source.name,
            "recording": self.recording.recording_id if self.recording else self.state.get("recording"),
            "next_segment": getattr(self, "next_segment", None),
            "next_window": getattr(self, "next_window", None),
            "last_window_end_utc": self.last_window_utc,
            "windows_written_this_run": self.windows_written,
            "segments_behind": self.segments_behind,
            "lag_seconds": self.lag_seconds,
            "lag_seconds_max": self.lag_seconds_max,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
            "lost_segments": sorted(getattr(self, "lost", ())),
            "held_samples": self.recording.held_samples() if self.recording else 0,
            "updated_at": iso_utc(time.time()),
        }

    def _write_status(self):
        self.outputs.save_status(self.status())


def run_followers(followers, stop_event, output_dir, stop_after=None, poll_seconds=DEFAULT_POLL_SECONDS):
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
