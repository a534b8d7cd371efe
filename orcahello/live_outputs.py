# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
What `orcahello live` writes for one source, under `<output dir>/<source name>/`:

- `windows.jsonl`: every scored window, once, as soon as it is scored (`recording`, `index`, `start`, `end`,
  `start_utc`, `end_utc`, `score`, `spans_gap`, `silent`); the last line is the resume point;
- `minutes/<recording>/<minute>.orcahello.json`: each minute's file-level result, built by the pipeline's
  `build_file_result` (production's keys, rows, detections, UTC, gaps) from the windows starting in that minute;
- for a positive minute, `<minute>.wav` (the minute's audio, 16-bit as production's clip) and `<minute>.orcahello.png`
  (the spectrogram with the scores, as `orcahello detect --plot` draws it), and one line in `detections.jsonl`;
- `state.json` (where to resume) and `status.json` (lag, failures, progress), rewritten atomically.

Every file is replaced through a temporary file and a rename; appended lines are written whole and flushed to disk
before the state that counts them, and a line cut short by a crash is dropped on the next start.
"""

from __future__ import annotations

import json
import logging
import os
import wave
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import writers
from .atomic_files import temporary_file_beside
from .run_lock import open_output

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("orcahello.live")

WINDOWS_FILE = "windows.jsonl"
DETECTIONS_FILE = "detections.jsonl"
STATE_FILE = "state.json"
STATUS_FILE = "status.json"
MINUTES_FOLDER = "minutes"
# How much of windows.jsonl's end is read first when resuming: thousands of lines, far more than a minute's windows.
TAIL_BYTES = 1 << 20


def write_json_atomically(path: str, document: Any) -> None:
    writers.write_json(path, document)


def read_json(path: str, default: Any = None) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); move it away to start this source afresh") from None


def drop_partial_last_line(path: str) -> None:
    """A line cut short by a crash (no final newline) is removed: the window it held is scored again."""
    if not os.path.exists(path):
        return
    with os.fdopen(open_output(path, os.O_RDWR), "rb+") as handle:  # never through a planted symbolic link
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        position = size
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            block = handle.read(step)
            newline = block.rfind(b"\n")
            if newline >= 0:
                position = position - step + newline + 1
                break
            position -= step
        logger.warning("%s: dropping a line cut short by an interruption (%d bytes)", path, size - position)
        handle.truncate(position)


def append_lines(path: str, entries: Iterable[dict[str, Any]]) -> None:
    """Append one JSON line per entry in a single write, flushed to disk before returning."""
    if not entries:
        return
    text = "".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in entries)
    with os.fdopen(open_output(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_tail_lines(path: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """
    The JSON objects at the end of a `.jsonl` file, from the last line backwards while `keep(entry)` holds (in file
    order). Reads the end of the file first and all of it only when needed.
    """
    if not os.path.exists(path):
        return []
    size = os.path.getsize(path)
    read_bytes = TAIL_BYTES
    while True:
        with open(path, "rb") as handle:
            handle.seek(max(0, size - read_bytes))
            block = handle.read()
        lines = block.split(b"\n")
        if size > read_bytes:
            lines = lines[1:]  # the first may be a partial line
        kept, complete = [], False
        for line in reversed(lines):
            if not line.strip():
                continue
            entry = json.loads(line)
            if not keep(entry):
                complete = True
                break
            kept.append(entry)
        if complete or read_bytes >= size:
            return kept[::-1]
        read_bytes *= 4


def write_wav(path: str, audio: np.ndarray, sampling_rate: int) -> None:
    """16-bit PCM WAV of int16 `(channels, samples)` audio, written atomically."""
    with temporary_file_beside(path) as temporary_path:
        with wave.open(temporary_path, "wb") as handle:
            handle.setnchannels(audio.shape[0])
            handle.setsampwidth(2)
            handle.setframerate(int(sampling_rate))
            handle.writeframes(audio.T.astype("<i2").tobytes())
        os.replace(temporary_path, path)


def utc_file_name(iso_utc_text: str) -> str:
    """`2020-09-13T12:26:40.000Z` -> `20200913T122640Z` (safe in every file system)."""
    return iso_utc_text[:19].replace("-", "").replace(":", "") + "Z"


class SourceOutputs:
    """
    The output folder of one source.

    Args:
        folder (`str`): `<output dir>/<source name>`.
        plot (`bool`): draw a spectrogram picture for each positive minute (needs matplotlib).
    """

    def __init__(self, folder: str, plot: bool = True) -> None:
        self.folder = folder
        self.plot = plot
        os.makedirs(folder, exist_ok=True)
        self.windows_path = os.path.join(folder, WINDOWS_FILE)
        self.detections_path = os.path.join(folder, DETECTIONS_FILE)
        self.state_path = os.path.join(folder, STATE_FILE)
        self.status_path = os.path.join(folder, STATUS_FILE)
        drop_partial_last_line(self.windows_path)
        drop_partial_last_line(self.detections_path)

    # -- resume -------------------------------------------------------------------------------------------------

    def load_state(self) -> dict[str, Any] | None:
        return read_json(self.state_path, default=None)

    def save_state(self, state: dict[str, Any]) -> None:
        write_json_atomically(self.state_path, state)

    def save_status(self, status: dict[str, Any]) -> None:
        write_json_atomically(self.status_path, status)

    def windows_written(self, recording_id: str, from_index: int) -> list[dict[str, Any]]:
        """The windows of `recording_id` already in windows.jsonl with `index >= from_index` (file order)."""
        return read_tail_lines(
            self.windows_path,
            lambda entry: entry.get("recording") == recording_id and entry.get("index", -1) >= from_index,
        )

    def last_window(self) -> dict[str, Any] | None:
        """The last line of windows.jsonl, or None."""
        found = []

        def only_the_last(entry):
            found.append(entry)
            return len(found) == 1

        lines = read_tail_lines(self.windows_path, only_the_last)
        return lines[-1] if lines else None

    # -- writing ------------------------------------------------------------------------------------------------

    def append_windows(self, entries: Iterable[dict[str, Any]]) -> None:
        append_lines(self.windows_path, entries)

    def minute_stem(self, recording_id: str, minute_index: int, start_utc: str | None) -> str:
        name = f"{minute_index:05d}" + (f"_{utc_file_name(start_utc)}" if start_utc else "")
        return os.path.join(self.folder, MINUTES_FOLDER, recording_id, name)

    def write_minute(
        self,
        stem: str,
        document: dict[str, Any],
        audio: np.ndarray | None = None,
        sampling_rate: int | None = None,
    ) -> dict[str, Any] | None:
        """
        A minute's outputs: for a positive one its WAV clip and picture first, then the JSON (so that a JSON means
        everything beside it is there), then its line in detections.jsonl (once, even when written again after an
        interruption). Returns the detection line (None for a negative minute).
        """
        json_path = writers.output_path(stem, "json")
        detection = None
        if document["global_prediction"]:
            assert audio is not None and sampling_rate is not None  # a positive minute comes with its audio
            wav_path = f"{stem}.wav"
            write_wav(wav_path, audio, sampling_rate)
            document["clip"] = os.path.relpath(wav_path, self.folder)
            png_path = writers.output_path(stem, "png")
            if self.plot:
                try:
                    from .plot import plot_detections

                    # plot_detections writes the picture through a temporary file itself.
                    plot_detections(wav_path, document, png_path, title=os.path.basename(stem))
                    document["spectrogram"] = os.path.relpath(png_path, self.folder)
                except ImportError as error:
                    logger.warning("%s: no spectrogram picture (%s)", stem, error)
            detection = {
                "source": os.path.basename(self.folder),
                "recording": document["recording"],
                "minute": document["minute"],
                "start_utc": document["start_time_utc"],
                "end_utc": document["end_time_utc"],
                "global_confidence": document["global_confidence"],
                "positive_seconds": writers.positive_seconds(document["detections"]),
                "detections": document["detections"],
                "result": os.path.relpath(json_path, self.folder),
                "clip": document.get("clip"),
                "spectrogram": document.get("spectrogram"),
            }
        write_json_atomically(json_path, document)
        if detection is not None:
            already = read_tail_lines(
                self.detections_path,
                lambda entry: (
                    entry.get("recording") == detection["recording"] and entry.get("minute", -1) >= detection["minute"]
                ),
            )
            if not any(entry.get("minute") == detection["minute"] for entry in already):
                append_lines(self.detections_path, [detection])
        return detection
