# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The journal of a recording's scored windows, so that an interrupted `orcahello detect` (Ctrl-C, a kill, a power
loss) resumes a long recording where it stopped instead of from its start, with the very results an uninterrupted
run gives.

While a recording is scored, each batch of windows the pipeline's `score_windows` yields is appended to
`<output folder>/<its folder>/.journal/<stem>.<key>.jsonl` as one JSON line (the batch's first window, every
window's P(call) as the float32 value the result takes, the silent windows), written whole and flushed to disk
(`live_outputs.append_lines`, as `orcahello live`'s `windows.jsonl`). The key is the hash of everything that
decides a window's score: the run's hash (the model and every scoring parameter), the batch size, the engine and
device, and the recording's identity (its path, size and modification time; an HLS folder's segments too), so that
any change starts afresh. A resumed run drops a last line cut short by the interruption, skips the journalled
windows (`score_windows(first_window=...)`: a batch boundary of the same batch size, so every later window is
scored exactly as it would have been) and scores the rest. The journal goes once the recording's JSON is written.

Not journalled (scored from their start again after an interruption): HLS playlists fetched over http(s) (no
identity to check them against), and the fast modes `bfloat16` and `int8`, whose float32 decisions re-score windows
at the file's end, from spectrograms a killed run no longer has.
"""

import glob
import hashlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from audio_orcahello import open_recording, recording_info, scoring_windows
from fast_mode_orcahello import LOGIT_MARGINS
from hls_playlist_orcahello import is_hls_input
from results_orcahello import ScoredWindows, build_file_result
from vocabulary_orcahello import is_url

from . import inputs
from .live_outputs import append_lines, drop_partial_last_line

if TYPE_CHECKING:
    from .runs import RunSettings

JOURNAL_FOLDER = ".journal"
JOURNAL_FORMAT = "orcahello-window-journal-1"
# The hexadecimal characters of the key in a journal's name.
KEY_LENGTH = 16


def is_journalled(job: inputs.AudioJob, settings: "RunSettings") -> bool:
    """Whether `job` is scored through a journal (not an http(s) playlist, not a fast mode: see the module)."""
    return not is_url(job.path) and settings.parameters.get("precision") not in LOGIT_MARGINS


def source_identity(path: str) -> dict[str, Any]:
    """What changes when the recording at `path` changes: its size and modification time, and for HLS those of
    every file of its segments' folder."""
    status = os.stat(path)
    identity: dict[str, Any] = {"path": os.path.abspath(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns}
    if is_hls_input(path):
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        with os.scandir(folder) as entries:
            files = sorted((entry.name, entry.stat()) for entry in entries if entry.is_file())
        identity["folder"] = [[name, stat.st_size, stat.st_mtime_ns] for name, stat in files]
    return identity


def journal_key(job: inputs.AudioJob, settings: "RunSettings") -> str:
    """The hash of everything a window's score depends on (see the module)."""
    identity = {
        "run_hash": settings.run_hash,
        "parameters": settings.parameters,
        "batch_size": settings.batch_size,
        "engine": settings.engine,
        "device": settings.device,
        "recording": source_identity(job.path),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class WindowJournal:
    """
    One recording's journal of scored windows (see the module).

    Args:
        job (`inputs.AudioJob`): the recording and where its outputs go.
        settings (`RunSettings`): how it is scored (with the recording's own parameters under a site table).
    """

    def __init__(self, job: inputs.AudioJob, settings: "RunSettings") -> None:
        folder, stem = os.path.split(job.output_stem)
        self.folder = os.path.join(folder, JOURNAL_FOLDER)
        self.stem = stem
        self.key = journal_key(job, settings)
        self.path = os.path.join(self.folder, f"{stem}.{self.key[:KEY_LENGTH]}.jsonl")
        self.batch_size = int(settings.batch_size or 0)
        self.file = job.path

    def _other_journals(self) -> list[str]:
        """This recording's journals of other runs (another model, parameter, batch size or recording)."""
        pattern = os.path.join(glob.escape(self.folder), f"{glob.escape(self.stem)}.{'[0-9a-f]' * KEY_LENGTH}.jsonl")
        return [path for path in glob.glob(pattern) if path != self.path]

    def load(self) -> tuple[list[float], list[int], float]:
        """
        The windows journalled so far, `(scores, silent window indices, the largest float sample read)`, from window
        0 on. Journals of this
        recording made with anything else are removed, as is this one if it does not read as one (a line cut short
        at its end is dropped: that batch is scored again).
        """
        for path in self._other_journals():
            os.remove(path)
        if not os.path.exists(self.path):
            return [], [], 0.0
        drop_partial_last_line(self.path)
        scores: list[float] = []
        silent: list[int] = []
        largest_float_sample = 0.0
        try:
            with open(self.path, encoding="utf-8") as handle:
                header = json.loads(handle.readline() or "null")
                if header != {"format": JOURNAL_FORMAT, "key": self.key, "file": self.file}:
                    raise ValueError("another run's journal")
                for line in handle:
                    batch = json.loads(line)
                    batch_scores = [float(score) for score in batch["scores"]]
                    # Consecutive batches of the batch size from window 0, the last one possibly shorter.
                    if batch["first_window"] != len(scores) or len(scores) % self.batch_size or not batch_scores:
                        raise ValueError("batches out of order")
                    silent.extend(int(index) for index in batch["silent"])
                    scores.extend(batch_scores)
                    largest_float_sample = max(largest_float_sample, float(batch["largest_float_sample"]))
        except (ValueError, KeyError, TypeError):
            os.remove(self.path)
            return [], [], 0.0
        return scores, silent, largest_float_sample

    def append(self, block: ScoredWindows, largest_float_sample: float) -> None:
        """
        Journal one scored batch, flushed to disk before returning (the header first, for a new journal), with the
        largest |x| of the recording's float samples read so far (`Recording.largest_float_sample`): a resumed run
        does not read the journalled windows again, and its result must warn as an uninterrupted run's does.
        """
        lines: list[dict[str, Any]] = []
        if not os.path.exists(self.path):
            os.makedirs(self.folder, exist_ok=True)
            lines.append({"format": JOURNAL_FORMAT, "key": self.key, "file": self.file})
        silent = [index for index, quiet in zip(block.window_indices, block.silent) if quiet]
        scores = [float(score) for score in block.scores]  # float32 values, exactly as JSON numbers
        lines.append(
            {
                "first_window": block.window_indices[0],
                "scores": scores,
                "silent": silent,
                "largest_float_sample": largest_float_sample,
            }
        )
        append_lines(self.path, lines)

    def remove(self) -> None:
        """Remove the journal (the recording's results are written), and its folder once empty."""
        if os.path.exists(self.path):
            os.remove(self.path)
        try:
            os.rmdir(self.folder)
        except OSError:  # other recordings' journals, or already gone
            pass


def score_with_journal(
    job: inputs.AudioJob,
    pipe: Any,
    settings: "RunSettings",
    progress_callback: Callable[[int, int | None], None] | None = None,
) -> tuple[dict[str, Any], WindowJournal]:
    """
    The pipeline's result for `job` (as a call with the run's parameters and `return_timestamps=True` gives it),
    its windows scored by `pipe.score_windows` from where the journal stops, each batch journalled, then the
    pipeline's own postprocessing (`build_file_result`). Returns the result and the journal, which the caller
    removes once the result is safely written. `progress_callback(windows, total)` is called with the journalled
    windows first, then after each batch.
    """
    journal = WindowJournal(job, settings)
    scores, silent, journalled_largest_sample = journal.load()
    call_parameters = {"engine": settings.engine, "allow_other_hosts": settings.allow_other_hosts}
    call_parameters.update(settings.parameters)
    resolved = pipe.resolve_parameters(return_timestamps=True, **call_parameters)
    preprocess = resolved.preprocess
    # Opened once here, for what the result says of the recording, and scored from this same object (an HLS input is
    # decoded once); `score_windows` closes it, and so does this function if it fails first.
    recording = open_recording(job.path, allow_other_hosts=preprocess.get("allow_other_hosts", False))
    try:
        num_windows = len(
            scoring_windows(
                recording,
                preprocess["window_seconds"],
                preprocess["hop_seconds"],
                whole_recording_frontend=preprocess["whole_recording_frontend"],
                strict_segments=preprocess["strict_segments"],
                model_sampling_rate=pipe.feature_extractor.sampling_rate,
            )
        )
        # As the call's: the v1 frontend's resampled audio reports its source's rate and length, the ones here.
        info = recording_info(recording, num_windows, preprocess["window_seconds"], preprocess["hop_seconds"])
        if len(scores) > num_windows:
            raise ValueError(f"{job.path}: its journal holds {len(scores)} windows of {num_windows}")
        if progress_callback is not None and scores:
            progress_callback(len(scores), num_windows)
        blocks = pipe.score_windows(
            recording, batch_size=settings.batch_size, first_window=len(scores), **call_parameters
        )
        for block in blocks:
            journal.append(block, recording.largest_float_sample)
            scores.extend(float(score) for score in block.scores)
            silent.extend(index for index, quiet in zip(block.window_indices, block.silent) if quiet)
            if progress_callback is not None:
                progress_callback(len(block.window_indices), num_windows)
    finally:
        recording.close()
    confidences = np.array(scores, dtype=np.float64)
    # The samples the killed run read and the ones this run read: together every sample an uninterrupted run reads.
    largest_float_sample = max(journalled_largest_sample, recording.largest_float_sample)
    result = build_file_result(
        info,
        confidences,
        len(silent),
        **resolved.postprocess,
        model_warnings=pipe.model_warnings,
        largest_float_sample=largest_float_sample,
    )
    assert isinstance(result, dict)  # with return_timestamps
    return result, journal
