# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
One source followed by `orcahello live` (`LiveFollower`): its recording in progress, fed segment by segment as the
playlist grows; every window scored once as soon as its audio is decoded; each minute's file-level result; its
faults (a retried poll, a lost segment) and lag.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from hls_playlist_orcahello import HLSInputError
from hls_timeline_orcahello import iso_utc, listed_segment_seconds, utc_at
from results_orcahello import DecisionParameters

from . import __version__, runs
from .live_stream import SEGMENT_SECONDS_WHEN_UNLISTED, LiveSourceError, is_newer_recording

if TYPE_CHECKING:
    from hls_stream_orcahello import HLSStream

    from .live import WindowScorer
    from .live_metrics import LiveMetrics
    from .live_outputs import SourceOutputs
    from .live_stream import LiveSource
    from .live_webhook import WebhookSpool

logger = logging.getLogger("orcahello.live")

MINUTE_SECONDS = 60.0
# Segments scored per source per turn, so that one source's backlog never starves the others.
SEGMENTS_PER_TURN = 6
# A listed segment that fails this many turns in a row while later ones are listed is declared lost.
LOST_AFTER_FAILURES = 3
MAX_BACKOFF_SECONDS = 300.0


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
        hydrophone_config (`dict`, *optional*): `--hydrophone-config`'s record for this source (the file, its hash,
            the location and the overrides it applied), which every minute's JSON carries.
    """

    parameters: dict[str, Any]
    decision: DecisionParameters
    run_hash: str
    model_info: dict[str, Any]
    backlog_seconds: float
    poll_seconds: float
    hydrophone_config: dict[str, Any] | None = None


class LiveFollower:
    """
    One source followed: its recording in progress, the windows and minutes written, its faults and lag.

    Args:
        source (`LiveSource`): what to follow.
        outputs (`SourceOutputs`): where its results go.
        scorer (`WindowScorer`): the shared model.
        settings (`FollowerSettings`): the scoring, the decision and what identifies the results.
        webhook (`WebhookSpool`, *optional*): where positive minutes are posted.
        metrics (`LiveMetrics`, *optional*): where its counts go (`--metrics-port`).
    """

    def __init__(
        self,
        source: LiveSource,
        outputs: SourceOutputs,
        scorer: WindowScorer,
        settings: FollowerSettings,
        webhook: WebhookSpool | None = None,
        metrics: LiveMetrics | None = None,
    ) -> None:
        self.source, self.outputs, self.scorer, self.webhook = source, outputs, scorer, webhook
        self.metrics = metrics
        if metrics is not None:
            metrics.add_source(source.name)
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
        self.recording: HLSStream | None = None
        self.done = False
        self.next_poll_at = 0.0
        self.failures_in_a_row = 0
        self.last_error: str | None = None
        self.segment_failures: dict[int, int] = {}
        # the last few `[first, last]` runs of segments that left the playlist unfetched
        self.dropped_ranges: list[list[int]] = []
        self.arrivals: dict[int, float] = {}  # segment number -> when it was first listed (Unix time)
        self.lag_seconds: float | None = None
        self.lag_seconds_max = 0.0
        # The start (seconds) of the last gap counted in the metrics: the recording lets go of gaps it has passed
        # (`forget_before`), so they are counted by where they start, never by how many it holds.
        self.gaps_counted_until = -math.inf
        self.windows_written = 0
        self.segments_behind = 0
        self.last_window_utc: str | None = None
        self.last_status = self.status()  # read by the command's thread for status.json: replaced, never changed

    # -- recordings ---------------------------------------------------------------------------------------------

    def _open_recording(self):
        state = self.state
        if state.get("recording") and not state.get("finished"):
            recording_id, playlist = state["recording"], state["playlist"]  # finish what the last run was on
        else:
            recording_id, playlist = self.source.current_playlist()
            if state.get("finished") and not is_newer_recording(recording_id, state["recording"]):
                # The node has not restarted since its last recording ended, or names an older one again: every
                # recording up to the last one finished is done, never scored again.
                return False
        segments, info = self.source.playlist(playlist)
        resumed = state.get("recording") == recording_id
        if resumed:
            first_segment, lost = state["first_segment"], state.get("lost_segments", [])
            next_minute = state.get("next_minute", 0)
        else:
            first_segment, lost, next_minute = segments[0].number, [], 0
            if not state:  # first contact with this source: begin near the live edge
                nominal = listed_segment_seconds(segments) or SEGMENT_SECONDS_WHEN_UNLISTED
                keep = max(1, math.ceil(self.settings.backlog_seconds / nominal))
                if not info.get("ended"):
                    first_segment = segments[max(0, len(segments) - keep)].number
        from_first = [segment for segment in segments if segment.number >= first_segment]
        self.recording = self.source.new_recording(recording_id, playlist, from_first or segments, info)
        self.gaps_counted_until = -math.inf
        self.recording_id = recording_id
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
        assert recording is not None  # finished once opened
        recording.finish()
        self._score_ready(arrival=None)
        if self.pending:
            self._write_minute(final=True)
        logger.info("%s: recording %s ended after %d windows", self.source.name, self.recording_id, self.next_window)
        self._save_state(finished=True)
        self.recording = None
        self.arrivals.clear()

    def _save_state(self, finished):
        self.state = {
            "recording": self.recording_id,
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

    def step(self, stop_event: threading.Event) -> bool:
        """One turn: poll, decode and score up to `SEGMENTS_PER_TURN` new segments. True when more are waiting."""
        if self.done or time.monotonic() < self.next_poll_at:
            return False
        self._count("polls")
        try:
            more = self._step(stop_event)
            self.failures_in_a_row, self.last_error = 0, None
            if not more:
                self.next_poll_at = time.monotonic() + self.settings.poll_seconds
        except (HLSInputError, LiveSourceError) as error:
            self._count("failures", "poll")
            self._back_off(error)
            more = False
        except Exception as error:  # unforeseen: this source starts again from what is on disk, the others go on
            logger.exception("%s: unexpected error; resuming this source from its output folder", self.source.name)
            self.recording = None
            self.state = self.outputs.load_state() or {}
            self._count("failures", "unexpected")
            self._back_off(f"{type(error).__name__}: {error}")
            more = False
        self._write_status()
        return more

    def _count(self, metric, *labels, amount=1):
        """Add `amount` to this source's `metric` (a `LiveMetrics` counter), when metrics are served."""
        if self.metrics is not None:
            getattr(self.metrics, metric).labels(self.source.name, *labels).inc(amount)

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
        assert self.recording is not None  # opened above
        segments, info = self.source.playlist(self.playlist)
        now = time.time()
        for segment in segments:
            assert segment.number is not None  # a playlist numbers its segments (EXT-X-MEDIA-SEQUENCE)
            if segment.number >= self.next_segment:
                self.arrivals.setdefault(segment.number, now)
        assert segments[0].number is not None
        if segments[0].number > self.next_segment:  # a sliding playlist dropped them before they were fetched
            # Only the range is said, never each number: a #EXT-X-MEDIA-SEQUENCE jump of billions is one gap
            # (the decoder's time line puts it where the audio resumes), not billions of lost segments to keep.
            logger.warning(
                "%s: segments %d-%d left the playlist before they were fetched: lost",
                self.source.name,
                self.next_segment,
                segments[0].number - 1,
            )
            self.dropped_ranges = [*self.dropped_ranges[-9:], [self.next_segment, segments[0].number - 1]]
            self.next_segment = segments[0].number
        todo = [segment for segment in segments if segment.number >= self.next_segment]
        scored_segments = 0
        for position, segment in enumerate(todo):
            assert segment.number is not None  # as above
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
                started = time.perf_counter()
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
                    moved_on = position < len(todo) - 1 or self._node_moved_on()
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
                    self._count("failures", "segment_lost")
                    self.next_segment = segment.number + 1
                    self._save_state(finished=False)
                    continue
                finally:
                    self._count("decode_seconds", amount=time.perf_counter() - started)
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
        elif self._node_moved_on():
            self._finish_recording()  # the node restarted: its old folder is complete, a new one has begun
            return True
        return False

    def _node_moved_on(self):
        """Whether the node now streams a newer recording (`latest.txt` naming an older one is not a restart)."""
        if self.source.kind != "node":
            return False
        current = self.source.current_playlist()[0]
        if current != self.recording_id and not is_newer_recording(current, self.recording_id):
            logger.warning(
                "%s: latest.txt names recording %s, older than %s: ignored",
                self.source.name,
                current,
                self.recording_id,
            )
        return is_newer_recording(current, self.recording_id)

    # -- scoring and writing ------------------------------------------------------------------------------------

    def _score_ready(self, arrival):
        """Score every window whose audio is all decoded, write them, and the minutes they complete."""
        recording = self.recording
        assert recording is not None  # scored once opened
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
            started = time.perf_counter()
            scores, silent = self.scorer.score(recording, bounds)
            self._count("score_seconds", amount=time.perf_counter() - started)
            entries = [self._window_entry(index, score, quiet) for index, score, quiet in zip(indices, scores, silent)]
            self.outputs.append_windows(entries)
            self.pending.extend(entries)
            self.next_window += count
            self.windows_written += count
            self.last_window_utc = entries[-1]["end_utc"]
            if arrival is not None:
                self.lag_seconds = time.time() - arrival
                self.lag_seconds_max = max(self.lag_seconds_max, self.lag_seconds)
            if self.metrics is not None:
                positive = sum(score > self.settings.decision.local_threshold for score in scores)
                self.metrics.windows_written(self.source.name, count, positive, self.lag_seconds)
                new_gaps = [gap.start_s for gap in recording.gaps if gap.start_s > self.gaps_counted_until]
                if new_gaps:
                    self._count("gaps", amount=len(new_gaps))
                    self.gaps_counted_until = max(new_gaps)
            self._write_complete_minutes(window_samples, hop_samples)
        if self.next_window > written_before:
            logger.info(
                "%s: %s: windows %d-%d written (to %s), lag %s s",
                self.source.name,
                self.recording_id,
                written_before,
                self.next_window - 1,
                self.last_window_utc,
                "-" if self.lag_seconds is None else f"{self.lag_seconds:.2f}",
            )
        keep_from = min(self.next_window, self.next_minute * self.minute_windows) * hop_samples
        recording.forget_before(keep_from)

    def _write_complete_minutes(self, window_samples, hop_samples):
        """Write each minute whose windows are all scored (after a restart, once its audio is decoded again)."""
        assert self.recording is not None  # written once opened
        while self.next_window >= (self.next_minute + 1) * self.minute_windows and self.pending:
            clip_end = self.pending[min(self.minute_windows, len(self.pending)) - 1]["index"] * hop_samples
            if self.recording.num_samples < clip_end + window_samples:
                return
            self._write_minute()

    def _window_entry(self, index, score, silent):
        assert self.recording is not None  # scored once opened
        start = index * self.hop_seconds
        end = start + self.window_seconds
        anchors, gaps = self.recording.anchors, self.recording.gaps
        return {
            "recording": self.recording_id,
            "index": index,
            "start": start,
            "end": end,
            "start_utc": iso_utc(utc_at(anchors, start)),
            "end_utc": iso_utc(utc_at(anchors, end, before=True)),
            "score": score,
            "spans_gap": any(start < gap.start_s < end for gap in gaps),
            "silent": silent,
        }

    def _write_minute(self, final=False):
        """The file-level result of the minute's windows (`build_file_result`), and its outputs."""
        from results_orcahello import build_file_result

        recording = self.recording
        assert recording is not None  # written once opened
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
            dataclasses.replace(gap, start_s=gap.start_s - offset)
            for gap in recording.gaps
            if offset < gap.start_s < offset + clip_seconds
        ]
        timeline = {
            "start_time_utc": start_utc,
            "anchors": anchors,
            "gaps": gaps,
            "source": {"type": "hls-live", "uri": self.playlist, "recording": self.recording_id},
            "warnings": list(recording.warnings),
        }
        info = {
            "name": f"{self.source.name}/{self.recording_id}/{self.next_minute:05d}",
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
        assert isinstance(result, dict)  # with return_timestamps, the full result
        document = {
            "source": self.source.source,
            "recording": self.recording_id,
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
        if self.settings.hydrophone_config is not None:
            document["hydrophone_config"] = self.settings.hydrophone_config
        stem = self.outputs.minute_stem(self.recording_id, self.next_minute, result["start_time_utc"])
        audio = recording.read(first_sample, last_sample) if result["global_prediction"] else None
        detection = self.outputs.write_minute(stem, document, audio, rate)
        self._count("minutes")
        if detection is not None:
            self._count("positive_minutes")
            logger.info(
                "%s: POSITIVE minute %s (confidence %.3f)",
                self.source.name,
                detection["start_utc"],
                detection["global_confidence"],
            )
            if self.webhook is not None:
                # Recording (an epoch) first: the spool sends the oldest first, across sources too.
                self.webhook.enqueue(detection, f"{self.recording_id}_{self.source.name}_{self.next_minute:05d}")
        self.next_minute += 1
        self._save_state(finished=False)

    def status(self) -> dict[str, Any]:
        return {
            "source": self.source.source,
            "name": self.source.name,
            "recording": self.recording_id if self.recording else self.state.get("recording"),
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
            "dropped_segment_ranges": self.dropped_ranges,
            "held_samples": self.recording.held_samples() if self.recording else 0,
            "updated_at": iso_utc(time.time()),
        }

    def _write_status(self):
        self.last_status = self.status()
        self.outputs.save_status(self.last_status)
