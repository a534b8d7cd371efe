# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The picture a moderator looks at: a recording's spectrogram with the detector's per-second confidences over it and
the detections shaded. Needs matplotlib (`pip install "orcahello-srkw-detector[plot]"`).
"""

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from hls_orcahello import HLSAudio

# At most this many spectrogram columns per picture: a 60-second clip keeps its full time resolution, an hour-long
# recording is averaged down to what a 1,400-pixel-wide image can show anyway.
MAX_SPECTROGRAM_COLUMNS = 2000
# Frames transformed at once while streaming a long file: bounds memory to a few tens of MB.
FRAMES_PER_BLOCK = 4096
MAX_FREQUENCY_HZ = 10000.0
# Dynamic range shown: from this percentile of the dB values to the loudest 0.2 %. Hydrophone noise floors vary
# by tens of dB between sites, so fixed limits would show some recordings all black and others all yellow.
COLOR_FLOOR_PERCENTILE = 5.0
COLOR_CEILING_PERCENTILE = 99.8

MATPLOTLIB_MISSING = (
    '{option} needs matplotlib, which is not installed: pip install "orcahello-srkw-detector[plot]" '
    '(or pip install "matplotlib>=3.7")'
)


def require_matplotlib(option: str = "--plot") -> None:
    """Raise an `ImportError` with an install hint when matplotlib, which `option` needs, is missing (checked before a
    run starts)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(MATPLOTLIB_MISSING.format(option=option)) from None


class MonoBlocks:
    """
    A recording read as float32 mono blocks: a sound file through soundfile, or HLS (a playlist, a folder of `.ts`
    segments) through the pipeline's own HLS reader, so the picture shows the samples that were scored.
    """

    def __init__(self, path: str | os.PathLike[str], allow_other_hosts: bool = False) -> None:
        path = os.fspath(path)
        from hls_orcahello import open_hls
        from hls_playlist_orcahello import is_hls_input

        if is_hls_input(path):
            self._hls: HLSAudio | None = open_hls(path, allow_other_hosts=allow_other_hosts)
            self.rate, self.total_samples = self._hls.sampling_rate, self._hls.num_samples
        else:
            import soundfile

            self._hls = None
            self._sound_file = soundfile.SoundFile(path)
            self.rate, self.total_samples = self._sound_file.samplerate, self._sound_file.frames

    def read(self, start: int, count: int) -> npt.NDArray[np.float32]:
        if self._hls is not None:
            block = self._hls.read(start, min(start + count, self.total_samples))
            return block.astype(np.float32).mean(axis=0) / 32768.0
        self._sound_file.seek(start)
        return self._sound_file.read(count, dtype="float32", always_2d=True).mean(axis=1)

    def close(self) -> None:
        (self._hls or self._sound_file).close()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()


def spectrogram_db(
    path: str | os.PathLike[str],
    max_frequency: float = MAX_FREQUENCY_HZ,
    max_columns: int = MAX_SPECTROGRAM_COLUMNS,
    allow_other_hosts: bool = False,
) -> tuple[np.ndarray, float, float]:
    """
    Power spectrogram of a sound file (or an HLS input) in dB, at its own sample rate, up to `max_frequency` (or
    Nyquist).

    The file is read block by block (never whole) and channels are averaged. Frames are ~40 ms Hann windows with
    50 % overlap (~25 Hz resolution: call harmonics stay separate); when a file has more frames than `max_columns`,
    consecutive frames' power is averaged into one column.

    Returns `(db, duration_s, top_frequency_hz)` with `db` of shape `(frequencies, columns)`, low frequencies first.
    """
    with MonoBlocks(path, allow_other_hosts=allow_other_hosts) as recording:
        rate, total_samples = recording.rate, recording.total_samples
        n_fft = 2 ** int(math.ceil(math.log2(rate * 0.04)))
        hop = n_fft // 2
        frequencies = np.fft.rfftfreq(n_fft, d=1.0 / rate)
        keep = frequencies <= max_frequency
        window = np.hanning(n_fft).astype(np.float32)
        num_frames = max(1, 1 + (total_samples - n_fft) // hop)
        frames_per_column = max(1, math.ceil(num_frames / max_columns))
        # Whole columns per block, so no column straddles two blocks.
        block_frames = max(1, FRAMES_PER_BLOCK // frames_per_column) * frames_per_column
        columns = []
        for first_frame in range(0, num_frames, block_frames):
            frame_count = min(block_frames, num_frames - first_frame)
            audio = recording.read(first_frame * hop, (frame_count - 1) * hop + n_fft)
            if audio.shape[0] < n_fft:  # a file shorter than one frame
                audio = np.pad(audio, (0, n_fft - audio.shape[0]))
            frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop][:frame_count]
            power = np.abs(np.fft.rfft(frames * window, axis=1)[:, keep]) ** 2
            column_starts = np.arange(0, frame_count, frames_per_column)
            column_sizes = np.diff(np.append(column_starts, frame_count))[:, None]
            columns.append(np.add.reduceat(power, column_starts, axis=0) / column_sizes)
    power = np.concatenate(columns, axis=0).T
    db = 10.0 * np.log10(power + 1e-20)
    return db, total_samples / rate, float(frequencies[keep][-1])


def plot_detections(
    audio_path: str | os.PathLike[str],
    document: dict[str, Any],
    output_path: str,
    title: str | None = None,
    allow_other_hosts: bool = False,
) -> str:
    """
    Save a PNG of `audio_path`'s spectrogram with the detector's results from `document` (the pipeline's
    `return_timestamps=True` result, or the `.orcahello.json` written from it): each row's confidence as a line
    on a 0..1 axis, the local threshold dashed, and the merged detections shaded.
    """
    require_matplotlib()
    # The object-oriented API, without pyplot: no global figure state and no GUI backend, safe in any process.
    from matplotlib.figure import Figure

    # allow_other_hosts: as for the scoring (an HLS playlist's segments on other hosts).
    db, duration_s, top_frequency = spectrogram_db(audio_path, allow_other_hosts=allow_other_hosts)
    floor, ceiling = np.percentile(db, [COLOR_FLOOR_PERCENTILE, COLOR_CEILING_PERCENTILE])

    figure = Figure(figsize=(14, 5), dpi=100, layout="constrained")
    spectrogram_axis = figure.add_subplot()
    image = spectrogram_axis.imshow(
        db,
        origin="lower",
        aspect="auto",
        extent=(0.0, duration_s, 0.0, top_frequency / 1000.0),
        cmap="magma",
        vmin=floor,
        vmax=ceiling,
        interpolation="nearest",
    )
    spectrogram_axis.set_xlabel("time (s)")
    spectrogram_axis.set_ylabel("frequency (kHz)")
    spectrogram_axis.set_xlim(0.0, duration_s)
    colorbar = figure.colorbar(image, ax=spectrogram_axis, pad=0.01, fraction=0.03)
    colorbar.set_label("power (dB, uncalibrated)")

    confidence_axis = spectrogram_axis.twinx()
    # Each row covers [start, start + duration): draw it as a step over that span.
    submission = document["submission"]
    edges = [row["start_time_s"] for row in submission]
    edges.append(submission[-1]["start_time_s"] + submission[-1]["duration_s"])
    values = [row["confidence"] for row in submission]
    # baseline=None: no vertical drop to 0 at the first and last edges, which would read as a zero score.
    confidence_axis.stairs(
        values, edges, baseline=None, color="#7df9ff", linewidth=1.8, zorder=3, label="P(call) per row"
    )
    threshold = document["parameters"]["local_threshold"]
    confidence_axis.axhline(threshold, color="white", linestyle="--", linewidth=1.0, label=f"threshold {threshold:g}")
    for index, detection in enumerate(document["detections"]):
        # A light tint keeps the calls under a detection readable; the solid band along the top marks its extent.
        confidence_axis.axvspan(detection["start"], detection["end"], color="#39ff14", alpha=0.12, linewidth=0)
        confidence_axis.axvspan(
            detection["start"],
            detection["end"],
            ymin=0.965,
            color="#39ff14",
            alpha=0.9,
            linewidth=0,
            label="detection" if index == 0 else None,
        )
    for index, gap in enumerate(document.get("gaps") or []):
        # HLS audio is butted together across a gap: mark where, so a call cut in two is not mistaken for two.
        confidence_axis.axvline(
            gap["start_s"], color="red", linestyle=":", linewidth=1.5, label="gap in the stream" if index == 0 else None
        )
    confidence_axis.set_ylim(0.0, 1.0)
    confidence_axis.set_ylabel("P(call)")
    confidence_axis.legend(loc="upper right", fontsize="small", framealpha=0.6)

    decision = "POSITIVE" if document["global_prediction"] else "negative"
    positive_rows = sum(document["local_predictions"])
    default_title = (
        f"{os.path.basename(os.fspath(audio_path))}: {decision}, global confidence "
        f"{document['global_confidence']:.2f} ({positive_rows} of {len(document['local_predictions'])} rows positive)"
    )
    if (document.get("model") or {}).get("synthetic_weights"):
        default_title = f"SYNTHETIC STAND-IN WEIGHTS (scores mean nothing) - {default_title}"
    spectrogram_axis.set_title(title or default_title, fontsize="medium")
    # Through a temporary file, as the other outputs: a half-written PNG must not count as done on resume.
    from .atomic_files import temporary_file_beside

    with temporary_file_beside(output_path) as temporary_path:
        figure.savefig(temporary_path, format="png")
        os.replace(temporary_path, output_path)
    return output_path
