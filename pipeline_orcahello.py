# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
File-level OrcaHello detection as a transformers audio-classification pipeline.

A recording (path, bytes, array, `datasets` row, or an HLS stream: `.m3u8` playlist or folder of `.ts` segments) is
cut into 2-second windows every second, exactly as production OrcaHello does; the windows are featurized in blocks,
scored in batches (across files too), and the per-window probabilities are aggregated into production's file-level
decision.
"""

import ctypes
import io
import logging
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline

try:
    from .configuration_orcahello import config_inference_settings, resolve_inference_settings
    from .feature_extraction_orcahello import (
        OrcaHelloFeatureExtractor,
        channels_first,
        port_segment_bounds,
        window_bounds,
    )
    from .hls_orcahello import HLSInputError, is_hls_input, iso_utc, open_hls, utc_at
    from .scoring_orcahello import (
        build_scorer,
        padded_frames,
        rescore_until_exact,
        resolve_engine,
        weights_version,
    )
    from .vocabulary_orcahello import (
        AGGREGATION_STRATEGIES,
        DEFAULT_BATCH_SIZE,
        ENGINES,
        MIN_SAMPLING_RATE,
        PRECISIONS,
        is_url,
    )
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from configuration_orcahello import config_inference_settings, resolve_inference_settings
    from feature_extraction_orcahello import (
        OrcaHelloFeatureExtractor,
        channels_first,
        port_segment_bounds,
        window_bounds,
    )
    from hls_orcahello import HLSInputError, is_hls_input, iso_utc, open_hls, utc_at
    from scoring_orcahello import build_scorer, padded_frames, rescore_until_exact, resolve_engine, weights_version
    from vocabulary_orcahello import (
        AGGREGATION_STRATEGIES,
        DEFAULT_BATCH_SIZE,
        ENGINES,
        MIN_SAMPLING_RATE,
        PRECISIONS,
        is_url,
    )


logger = logging.getLogger(__name__)

# Windows featurized together: enough to vectorize resampling, few enough that the model starts soon and that a
# day-long file never holds more than a few MB of audio and spectrograms at once (8 was the fastest of 4 to 32).
FRONTEND_BLOCK_WINDOWS = 8
MMAP_THRESHOLD_BYTES = 1 << 20


class AudioInputError(ValueError):
    """
    Raised for audio the detector cannot score: unreadable, truncated, too short, non-finite, wrong type, a sample
    rate below `MIN_SAMPLING_RATE`; for HLS, a bad or empty playlist, a missing or undecodable segment, an
    unreachable URL.
    """


def check_sampling_rate(sampling_rate, name):
    """Refuse a rate below `MIN_SAMPLING_RATE` (see there why) with a one-line `AudioInputError`."""
    if sampling_rate < MIN_SAMPLING_RATE:
        raise AudioInputError(
            f"{name}: sampled at {sampling_rate:g} Hz, below the {MIN_SAMPLING_RATE} Hz the model's 0-10 kHz band "
            f"needs; score recordings made at {MIN_SAMPLING_RATE} Hz or more"
        )


# ----------------------------------------------------------------------------------------------------------------
# Reading recordings
# ----------------------------------------------------------------------------------------------------------------

# Sample types production's readers kept: integer PCM as integers (exact), anything else as float.
_SOUNDFILE_READ_DTYPE = {"PCM_16": "int16", "PCM_S8": "int16", "PCM_U8": "int16", "PCM_24": "int32", "PCM_32": "int32"}


def wav_declared_frames(header, bytes_per_frame):
    """
    Frames a RIFF/WAVE header announces in its data chunk, or None when it announces nothing usable (not a WAV,
    or a streamed WAV whose size fields hold a placeholder). libsndfile quietly shortens a truncated WAV to what
    is present, so this is how truncation is noticed.
    """
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE" or bytes_per_frame <= 0:
        return None
    position = 12
    while position + 8 <= len(header):
        chunk_id, chunk_size = header[position : position + 4], int.from_bytes(header[position + 4 : position + 8], "little")
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF, 0x7FFFFFFF) or chunk_size % bytes_per_frame:
                return None
            return chunk_size // bytes_per_frame
        position += 8 + chunk_size + (chunk_size & 1)
    return None


class Recording:
    """
    A recording the pipeline reads window by window: a sound file (read in blocks, never whole), an in-memory array,
    or an HLS stream (decoded forward as it is read, see `hls_orcahello`). `read(start, stop)` returns samples
    `[start, stop)` as `(channels, samples)` in the source's own sample type (int16/int32 PCM stay integers; HLS
    gives int16, as the WAV production converts it to), which is what production's frontend saw.

    `timeline` is None except for HLS: then a plain dict with `start_time_utc` (Unix time or None), `anchors` (the
    UTC time line), `gaps`, `source` and `warnings` (see `hls_orcahello.HLSAudio.timeline`).
    """

    def __init__(
        self,
        name,
        sampling_rate,
        num_samples,
        num_channels,
        array=None,
        sound_file=None,
        read_dtype=None,
        hls_audio=None,
    ):
        self.name = name
        self.sampling_rate = int(sampling_rate)
        self.num_samples = int(num_samples)
        self.num_channels = int(num_channels)
        self._array = array
        self._sound_file = sound_file
        self._read_dtype = read_dtype
        self._hls_audio = hls_audio
        self.timeline = hls_audio.timeline() if hls_audio is not None else None

    @property
    def duration_seconds(self):
        return self.num_samples / self.sampling_rate

    @classmethod
    def from_file(cls, source, name=None, allow_other_hosts=False):
        """
        Open a path or the bytes of a sound file (WAV, FLAC, OGG, MP3: whatever libsndfile decodes), or an HLS input
        (`allow_other_hosts`: see `from_hls`).
        """
        import soundfile

        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if is_hls_input(path):
                return cls.from_hls(path, name=name, allow_other_hosts=allow_other_hosts)
            if is_url(path):
                raise AudioInputError(
                    f"{path}: URLs are not fetched except HLS playlists (.m3u8); download the file first"
                )
            if not os.path.exists(path):
                raise AudioInputError(f"{path}: no such file")
            if os.path.isdir(path):
                raise AudioInputError(
                    f"{path}: is a directory without .ts segments, not a sound file, an .m3u8 playlist or an HLS "
                    f"segment folder"
                )
            name = name or path
            opener = path
        else:
            name = name or "<bytes>"
            if len(source) == 0:
                raise AudioInputError(f"{name}: empty input, no audio bytes")
            opener = io.BytesIO(bytes(source))
        try:
            sound_file = soundfile.SoundFile(opener)
        except Exception as error:  # libsndfile reports every format problem as a RuntimeError/LibsndfileError
            raise AudioInputError(f"{name}: cannot decode audio ({error})") from None
        try:
            check_sampling_rate(sound_file.samplerate, name)
        except AudioInputError:
            sound_file.close()
            raise
        read_dtype = _SOUNDFILE_READ_DTYPE.get(sound_file.subtype, "float32")
        if sound_file.format == "WAV":
            bits = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}
            bytes_per_frame = bits.get(sound_file.subtype, 0) // 8 * sound_file.channels
            if isinstance(opener, io.BytesIO):
                header = opener.getvalue()[:65536]
            else:
                with open(opener, "rb") as handle:
                    header = handle.read(65536)
            declared = wav_declared_frames(header, bytes_per_frame)
            if declared is not None and declared > sound_file.frames:
                sound_file.close()
                raise AudioInputError(
                    f"{name}: truncated WAV: its header announces {declared} samples "
                    f"({declared / sound_file.samplerate:.3f} s) but the file holds {sound_file.frames}"
                )
        return cls(
            name,
            sound_file.samplerate,
            sound_file.frames,
            sound_file.channels,
            sound_file=sound_file,
            read_dtype=read_dtype,
        )

    @classmethod
    def from_hls(cls, source, name=None, allow_other_hosts=False):
        """
        Open an HLS playlist (path or http(s) URL), a folder of `.ts` segments or one `.ts` segment. Segments and
        redirects on hosts other than the playlist's are refused unless `allow_other_hosts`.
        """
        try:
            audio = open_hls(source, name=name, allow_other_hosts=allow_other_hosts)
        except HLSInputError as error:
            raise AudioInputError(str(error)) from None
        try:
            check_sampling_rate(audio.sampling_rate, audio.name)
        except AudioInputError:
            audio.close()
            raise
        return cls(audio.name, audio.sampling_rate, audio.num_samples, audio.num_channels, hls_audio=audio)

    @classmethod
    def from_array(cls, array, sampling_rate, name="<array>"):
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        if array.dtype == object or array.dtype.kind not in "iuf":
            raise AudioInputError(f"{name}: unsupported sample type {array.dtype}")
        if array.ndim not in (1, 2):
            raise AudioInputError(f"{name}: expected audio of shape (samples,) or (channels, samples), got {array.shape}")
        if array.size == 0:
            raise AudioInputError(f"{name}: empty audio, no samples")
        if sampling_rate is None:
            raise AudioInputError(
                f"{name}: an array needs its sampling_rate (e.g. pipe(audio, sampling_rate=48000) or "
                f"{{'array': audio, 'sampling_rate': 48000}}); OrcaHello accepts rates from 20 kHz up"
            )
        if not float(sampling_rate).is_integer() or sampling_rate <= 0:
            raise AudioInputError(f"{name}: sampling_rate must be a positive whole number of Hz, got {sampling_rate!r}")
        check_sampling_rate(sampling_rate, name)
        array = channels_first(array) if array.ndim == 2 else array[None, :]
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise AudioInputError(f"{name}: audio contains NaN or infinite samples")
        return cls(name, int(sampling_rate), array.shape[-1], array.shape[0], array=array)

    def read(self, start, stop):
        if self._array is not None:
            return self._array[:, start:stop]
        if self._hls_audio is not None:
            try:
                return self._hls_audio.read(start, stop)
            except HLSInputError as error:
                raise AudioInputError(str(error)) from None
        try:
            self._sound_file.seek(start)
            block = self._sound_file.read(stop - start, dtype=self._read_dtype, always_2d=True).T
        except Exception as error:  # a decoder error in the middle of a compressed stream
            raise AudioInputError(f"{self.name}: cannot decode audio at sample {start} ({error})") from None
        if block.shape[-1] != stop - start:
            raise AudioInputError(
                f"{self.name}: truncated: its header announces {self.num_samples} samples but reading stopped at "
                f"{start + block.shape[-1]}"
            )
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise AudioInputError(f"{self.name}: audio contains NaN or infinite samples")
        return block

    def close(self):
        if self._sound_file is not None:
            self._sound_file.close()
        if self._hls_audio is not None:
            self._hls_audio.close()


def open_recording(inputs, sampling_rate=None, allow_other_hosts=False):
    """
    Turn any input the pipeline accepts into a `Recording`. `allow_other_hosts`: an HLS playlist's segments (and
    redirects) may be on other hosts than the playlist's.
    """
    if isinstance(inputs, Recording):
        return inputs
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)):
        return Recording.from_file(inputs, allow_other_hosts=allow_other_hosts)
    if isinstance(inputs, dict):
        if "array" in inputs or "raw" in inputs:
            array = inputs["array"] if "array" in inputs else inputs["raw"]
            rate = inputs.get("sampling_rate", sampling_rate)
            name = inputs.get("path") or "<array>"
            return Recording.from_array(array, rate, name=name)
        if inputs.get("bytes") is not None:  # datasets Audio(decode=False) row
            return Recording.from_file(inputs["bytes"], name=inputs.get("path"))
        if inputs.get("path"):
            return Recording.from_file(inputs["path"], allow_other_hosts=allow_other_hosts)
        raise AudioInputError(
            f"A dict input needs 'array' (or 'raw') and 'sampling_rate', or 'path'/'bytes'; got keys {sorted(inputs)}"
        )
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return Recording.from_array(inputs, sampling_rate)
    if hasattr(inputs, "get_all_samples"):  # a torchcodec AudioDecoder, as datasets >= 4 returns for Audio columns
        samples = inputs.get_all_samples()
        return Recording.from_array(samples.data, samples.sample_rate, name="<decoded audio>")
    raise AudioInputError(
        f"Unsupported input of type {type(inputs).__name__}: pass a file path, the bytes of a sound file, a numpy "
        f"array or torch tensor with sampling_rate, or a dict {{'array', 'sampling_rate'}}"
    )


# ----------------------------------------------------------------------------------------------------------------
# Windows and their features (shared by the pipeline and `orcahello batch`)
# ----------------------------------------------------------------------------------------------------------------


def scoring_windows(
    recording, window_seconds=2.0, hop_seconds=1.0, whole_recording_frontend=False, strict_segments=True,
    model_sampling_rate=20000,
):
    """
    The `(start, stop)` sample bounds of every window of `recording` the detector scores; `AudioInputError` when the
    recording is shorter than one window (production crashes there).

    With `whole_recording_frontend` (the v1 port), the bounds are the port's millisecond segments of the recording
    once resampled to `model_sampling_rate` (`resample_poly` gives `ceil(samples * up / down)` samples), in samples
    of that audio: the recording `whole_recording_audio` makes.
    """
    if whole_recording_frontend:
        divisor = math.gcd(model_sampling_rate, recording.sampling_rate)
        up, down = model_sampling_rate // divisor, recording.sampling_rate // divisor
        resampled = -(-recording.num_samples * up // down)
        bounds = port_segment_bounds(resampled, model_sampling_rate, window_seconds, hop_seconds, strict_segments)
        rule = "the v1 port's segments"
    else:
        bounds = window_bounds(recording.num_samples, recording.sampling_rate, window_seconds, hop_seconds)
        rule = "production OrcaHello crashes on such files"
    if not bounds:
        raise AudioInputError(
            f"{recording.name}: {recording.duration_seconds:.3f} s of audio is shorter than one "
            f"{window_seconds:g}-second window; nothing to score ({rule})"
        )
    return bounds


def whole_recording_audio(recording, feature_extractor, peak_normalize=True):
    """
    The v1 port's whole-recording frontend: `recording` read whole, downmixed, resampled to the model's rate,
    optionally peak-normalised and quantised to int16 (`OrcaHelloFeatureExtractor.prepare_whole_recording`),
    as an in-memory `Recording` that `scoring_windows(..., whole_recording_frontend=True)` bounds index. Closes
    `recording`. The whole recording is held in memory (about 40 KB a second at 20 kHz), as the port holds it.
    """
    try:
        audio = feature_extractor.prepare_whole_recording(
            recording.read(0, recording.num_samples), recording.sampling_rate, peak_normalize=peak_normalize
        )
    finally:
        recording.close()
    prepared = Recording.from_array(audio, feature_extractor.sampling_rate, name=recording.name)
    prepared.timeline = recording.timeline  # HLS anchors are in seconds: they hold for the resampled audio too
    prepared.num_channels = recording.num_channels  # reported as the source's
    prepared.source_sampling_rate = recording.sampling_rate
    prepared.source_num_samples = recording.num_samples
    return prepared


def recording_info(recording, num_windows, window_seconds=2.0, hop_seconds=1.0):
    """What `build_file_result` needs to know about a recording besides its window scores."""
    return {
        "name": recording.name,
        "sampling_rate": getattr(recording, "source_sampling_rate", recording.sampling_rate),
        "num_samples": getattr(recording, "source_num_samples", recording.num_samples),
        "num_channels": recording.num_channels,
        "num_windows": num_windows,
        "window_seconds": window_seconds,
        "hop_seconds": hop_seconds,
        # HLS inputs: UTC anchors, gaps and their warnings (None for files and arrays).
        "timeline": getattr(recording, "timeline", None),
    }


def featurize_windows(recording, block_bounds, feature_extractor, dtype=None, device=None):
    """
    Read one block of consecutive windows (`block_bounds`, a slice of `scoring_windows`) from `recording` in a single
    read and featurize them. Returns `(input_features, silent)`: a `(windows, 1, 256, 312)` tensor and, per window,
    whether it is digital silence (constant samples). With `device` (a GPU), the spectrograms are computed there and
    stay there.
    """
    first_sample, last_sample = block_bounds[0][0], block_bounds[-1][1]
    audio = recording.read(first_sample, last_sample)
    windows = [audio[:, start - first_sample : stop - first_sample] for start, stop in block_bounds]
    features = feature_extractor(windows, sampling_rate=recording.sampling_rate, return_tensors="pt", device=device)
    features = features["input_features"]
    if dtype is not None:
        features = features.to(dtype)
    # Digital silence is scored as production would (a flat -100 dB image), but flagged.
    silent = [bool(np.all(window == window.flat[0])) for window in windows]
    return features, silent


# ----------------------------------------------------------------------------------------------------------------
# File-level aggregation
# ----------------------------------------------------------------------------------------------------------------


def aggregate_windows(
    window_confidences,
    aggregation="orcahello",
    local_threshold=0.5,
    global_count_threshold=3,
    global_threshold=0.6,
    top_k_windows=3,
    smoothing=True,
):
    """
    Turn per-window P(call) into production's file-level result.

    `"orcahello"` (production, the default): the windows are smoothed into one-second rows (row 0 = c_0, row t =
    mean(c_{t-1}, c_t), last row = c_{N-1}: N + 1 rows); a row is positive when `> local_threshold`; the file is
    positive when at least `global_count_threshold` rows are; `global_confidence` is 100 x the mean of the positive
    rows (0.0 when none), independent of the decision.

    `"mean_thresholded"` / `"mean_top_k"` (the upstream port): no smoothing, one row per window; `global_confidence`
    (0..1) is the mean of the windows `> local_threshold` or of the `top_k_windows` highest; the file is positive
    when it is `>= global_threshold`.

    `smoothing=False` (the v1 preset) keeps the `"orcahello"` count rule but applies it to the raw windows, one row
    per window, as the port's `detect_srkw_from_file` does.

    Returns a dict with `local_confidences`, `local_predictions`, `global_prediction` and `global_confidence`.
    """
    confidences = np.asarray(window_confidences, dtype=np.float64)
    if confidences.ndim != 1 or confidences.size == 0:
        raise ValueError("aggregate_windows needs at least one window confidence")
    if aggregation == "orcahello":
        if smoothing:
            rows = np.empty(confidences.size + 1, dtype=np.float64)
            rows[0] = confidences[0]
            rows[1:-1] = (confidences[:-1] + confidences[1:]) / 2.0
            rows[-1] = confidences[-1]
        else:
            rows = confidences
        predictions = (rows > local_threshold).astype(int)
        global_prediction = int(predictions.sum() >= global_count_threshold)
        global_confidence = float(100.0 * rows[predictions == 1].mean()) if predictions.any() else 0.0
    elif aggregation in ("mean_thresholded", "mean_top_k"):
        rows = confidences
        predictions = (rows > local_threshold).astype(int)
        if aggregation == "mean_thresholded":
            global_confidence = float(rows[predictions == 1].mean()) if predictions.any() else 0.0
        else:
            global_confidence = float(np.sort(rows)[::-1][: max(1, int(top_k_windows))].mean())
        global_prediction = int(global_confidence >= global_threshold)
    else:
        raise ValueError(f"aggregation must be one of {AGGREGATION_STRATEGIES}, got {aggregation!r}")
    return {
        "local_confidences": rows.tolist(),
        "local_predictions": predictions.tolist(),
        "global_prediction": global_prediction,
        "global_confidence": global_confidence,
    }


def merge_detections(starts, ends, confidences, predictions):
    """Merge consecutive or overlapping positive rows into `[{"start", "end", "max_confidence", "mean_confidence"}]`."""
    detections = []
    for start, end, confidence, positive in zip(starts, ends, confidences, predictions):
        if not positive:
            continue
        if detections and start <= detections[-1]["end"] + 1e-9:
            current = detections[-1]
            current["end"] = max(current["end"], end)
            current["_confidences"].append(confidence)
        else:
            detections.append({"start": start, "end": end, "_confidences": [confidence]})
    for detection in detections:
        values = detection.pop("_confidences")
        detection["max_confidence"] = float(max(values))
        detection["mean_confidence"] = float(sum(values) / len(values))
    return detections


def apply_confidence_floor(global_prediction, global_confidence, aggregation, min_global_confidence):
    """
    The file-level decision with a confidence floor (a site's, as `orcahello calibrate` fits it): a recording that
    the aggregation's rule flags stays flagged only when its global confidence, on a 0-1 scale (production's 0-100
    `global_confidence` / 100), is `>= min_global_confidence`. The default floor, 0, changes nothing.
    """
    score = global_confidence / 100.0 if aggregation == "orcahello" else global_confidence
    return int(bool(global_prediction) and score >= min_global_confidence)


def build_file_result(
    info,
    window_confidences,
    silent_windows=0,
    aggregation="orcahello",
    local_threshold=0.5,
    global_count_threshold=3,
    global_threshold=0.6,
    top_k_windows=3,
    return_timestamps=True,
    top_k=None,
    smoothing=True,
    inference=None,
    min_global_confidence=0.0,
):
    """
    The pipeline's answer for one recording from its window scores: `info` as `recording_info` gives it,
    `window_confidences` the P(call) of every window in order, `silent_windows` how many are digital silence.
    With `return_timestamps`, production's result dict plus windows, detections, warnings and parameters; else the
    `[{"label", "score"}]` list, decision first. `inference` (`{"preset", "overridden", **fields}`, as the pipeline
    resolves them) is recorded in `parameters` and as `preset`.
    """
    window_confidences = np.asarray(window_confidences, dtype=np.float64)
    result = aggregate_windows(
        window_confidences,
        aggregation=aggregation,
        local_threshold=local_threshold,
        global_count_threshold=global_count_threshold,
        global_threshold=global_threshold,
        top_k_windows=top_k_windows,
        smoothing=smoothing,
    )
    result["global_prediction"] = apply_confidence_floor(
        result["global_prediction"], result["global_confidence"], aggregation, min_global_confidence
    )
    warnings = []
    if silent_windows:
        warnings.append(
            f"{silent_windows} of {len(window_confidences)} windows are digital silence (constant samples): their "
            f"scores say nothing about whales; check the hydrophone or the recording chain"
        )
        logger.warning("%s: %s", info["name"], warnings[-1])
    hop, window = info["hop_seconds"], info["window_seconds"]
    window_starts = [k * hop for k in range(len(window_confidences))]
    timeline = info.get("timeline")
    gaps = [dict(gap) for gap in timeline["gaps"]] if timeline else []
    if timeline:
        for message in timeline["warnings"]:
            warnings.append(message)
            logger.warning("%s: %s", info["name"], message)
        for gap in gaps:
            spanning = sum(1 for start in window_starts if start < gap["start_s"] < start + window)
            missing = "an unknown time" if gap["missing_s"] is None else f"{gap['missing_s']:.3f} s"
            warnings.append(
                f"gap after segment {gap['after_segment']} at {gap['start_s']:.3f} s ({gap['reason']}): {missing} "
                f"missing; the audio either side is butted together, as production's concatenation does, and "
                f"{spanning} window(s) spanning it are flagged spans_gap"
            )
            logger.warning("%s: %s", info["name"], warnings[-1])
    positive_score = result["global_confidence"] / 100.0 if aggregation == "orcahello" else result["global_confidence"]
    decision = "positive" if result["global_prediction"] else "negative"
    scores = {"positive": positive_score, "negative": 1.0 - positive_score}
    labels = [decision, "negative" if decision == "positive" else "positive"]
    label_scores = [{"label": label, "score": scores[label]} for label in labels]
    if top_k is not None:
        label_scores = label_scores[: max(1, int(top_k))]
    if not return_timestamps:
        return label_scores

    if aggregation == "orcahello" and smoothing:
        # Row t covers [t * hop, (t + 1) * hop): the seconds production reports.
        row_starts = [t * hop for t in range(len(result["local_confidences"]))]
        row_ends = [start + hop for start in row_starts]
    else:
        row_starts = window_starts
        row_ends = [start + window for start in window_starts]
    name = info["name"]
    anchors = timeline["anchors"] if timeline else None
    start_known = bool(timeline) and timeline["start_time_utc"] is not None

    def utc(seconds, before=False):
        return iso_utc(utc_at(anchors, seconds, before=before))

    def spans_gap(start, end):
        return any(start < gap["start_s"] < end for gap in gaps)

    windows = []
    for start, score in zip(window_starts, window_confidences):
        entry = {"start": start, "end": start + window, "score": float(score)}
        if timeline:
            entry["spans_gap"] = spans_gap(start, start + window)
        if start_known:
            entry["start_utc"], entry["end_utc"] = utc(start), utc(start + window, before=True)
        windows.append(entry)
    submission = []
    for start, end, confidence in zip(row_starts, row_ends, result["local_confidences"]):
        row = {
            "wav_filename": os.path.basename(os.path.normpath(name)) if not name.startswith("<") else name,
            "start_time_s": start,
            "duration_s": end - start,
            "confidence": confidence,
        }
        if start_known:
            row["start_time_utc"] = utc(start)
        submission.append(row)
    detections = merge_detections(row_starts, row_ends, result["local_confidences"], result["local_predictions"])
    for detection in detections:
        if timeline:
            detection["spans_gap"] = spans_gap(detection["start"], detection["end"])
        if start_known:
            detection["start_utc"] = utc(detection["start"])
            detection["end_utc"] = utc(detection["end"], before=True)
    output = {
        "label": decision,
        "score": scores[decision],
        "labels": label_scores,
        "global_prediction": result["global_prediction"],
        "global_confidence": result["global_confidence"],
        "local_predictions": result["local_predictions"],
        "local_confidences": result["local_confidences"],
        "submission": submission,
        "windows": windows,
        "detections": detections,
        "duration_s": info["num_samples"] / info["sampling_rate"],
        "start_time_utc": iso_utc(timeline["start_time_utc"]) if start_known else None,
        "gaps": gaps,
        "sampling_rate": info["sampling_rate"],
        "num_channels": info["num_channels"],
        "warnings": warnings,
        "parameters": {
            "aggregation": aggregation,
            "local_threshold": local_threshold,
            "global_count_threshold": global_count_threshold,
            "global_threshold": global_threshold,
            "top_k_windows": top_k_windows,
            "min_global_confidence": min_global_confidence,
            "window_seconds": window,
            "hop_seconds": hop,
            "smoothing": smoothing,
            **(inference or {}),
        },
    }
    if inference:
        output["preset"] = inference.get("preset")
    if timeline:
        output["source"] = timeline["source"]
    return output


# ----------------------------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------------------------


def return_large_buffers_to_the_system():
    """
    Make glibc hand buffers of `MMAP_THRESHOLD_BYTES` and more straight back to the system when they are freed.

    Scoring allocates and frees buffers of tens of MB for every block of windows. glibc's default raises its mmap
    threshold after each such free, so later buffers come from the heap and fragment it: a process scoring a
    60-minute file ended 330 MB above one scoring a 10-minute file, and a live process scoring one minute after
    another would keep growing. With the threshold fixed at 1 MB, peak memory is the same for 5 and 20 minutes of
    audio (at 4 or 16 MB it still grew, by 230 MB from 5 to 20 minutes: the per-window results kept until the end
    of a file sit between the freed buffers). The frontend keeps its per-window buffers under 1 MB, so that they are
    reused rather than mapped and page-faulted in again for every window. This is a process-wide setting
    (`mallopt`); it is a no-op where glibc is not the C library.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold = -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # musl or another C library: nothing to tune
        pass


# ----------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------


class OrcaHelloAudioClassificationPipeline(ChunkPipeline):
    """
    Killer-whale call detection over whole recordings, as production OrcaHello does it.

    ```python
    >>> from transformers import pipeline
    >>> detector = pipeline("audio-classification", model="orcasound/orcahello-srkw-detector-v1", trust_remote_code=True)
    >>> detector("hydrophone_minute.wav")                       # [{'label': 'positive', 'score': 0.87}, ...]
    >>> detector("hydrophone_minute.wav", return_timestamps=True)["local_predictions"]
    ```

    Inputs: a file path (WAV, FLAC, OGG, MP3), the bytes of such a file, a numpy array or torch tensor with
    `sampling_rate=`, a dict `{"array" or "raw", "sampling_rate"}` (a `datasets` Audio row), or a list of any of
    these. Any sample rate from 20 kHz up (`MIN_SAMPLING_RATE`), mono or multichannel, integer or float samples.

    HLS (what Orcasound hydrophones stream; needs `pip install av`): an `.m3u8` playlist (a path or an http(s) URL),
    a folder of `.ts` segments (ordered by the number in their names) or one `.ts` segment. The segments are decoded
    as one continuous AAC stream and converted to 16-bit PCM exactly as production's `ffmpeg -i clip.ts clip.wav`
    does, then scored as one recording. The start is absolute UTC from `#EXT-X-PROGRAM-DATE-TIME`, else from a
    folder named by a Unix epoch (Orcasound's `<node>/hls/<epoch>/`); otherwise no UTC is given. Gaps between or
    inside segments (missing segment numbers, `#EXT-X-DISCONTINUITY`, `#EXT-X-GAP`, program-date-time or timestamp
    jumps) are reported in `gaps` and `warnings`: the audio either side is butted together, as production's
    concatenation of the segments it has does, and windows that span a gap are flagged `spans_gap`; UTC times after a
    gap include what is missing (null where that is unknown).

    Call parameters (defaults from the model config: its preset, `"fastai"` = production's settings, or `"v1"`):
        preset (`str`):
            `"fastai"` (production 2020-2026) or `"v1"` (upstream's PyTorch port with its shipped config.yaml): sets
            every field below at once, from `configuration_orcahello.INFERENCE_PRESETS`; fields given with the same
            call override it. The result's `preset` and `parameters` record what was used.
        window_seconds (`float`, 2.0 / 3.0 for v1), hop_seconds (`float`, 1.0 / 2.0 for v1):
            How the recording is cut. Only whole windows are scored (production's `floor(duration) - 1` windows).
        whole_recording_frontend, peak_normalize, strict_segments, smoothing (`bool`):
            The port's whole-recording resampling, peak normalisation and millisecond segment cutting, its
            partial last segment (`strict_segments=False`), and production's smoothing into one-second rows; see
            `OrcaHelloConfig`.
        aggregation (`str`, `"orcahello"`):
            `"orcahello"` (production), `"mean_thresholded"` or `"mean_top_k"` (the upstream port); see
            `aggregate_windows`.
        local_threshold (`float`, 0.5), global_count_threshold (`int`, 3), global_threshold (`float`, 0.6),
        top_k_windows (`int`, 3):
            Decision thresholds, see `aggregate_windows`.
        min_global_confidence (`float`, 0.0):
            A floor on the file's global confidence (0-1 scale, i.e. production's 0-100 value / 100): a recording
            is positive when the aggregation's rule says so **and** its global confidence reaches the floor (see
            `apply_confidence_floor`; `orcahello calibrate` fits one per hydrophone). 0 keeps production's decision.
        return_timestamps (`bool`, False):
            Return the full result dict (production's keys, windows, rows and merged detections) instead of the
            `[{"label", "score"}]` list. It always has `start_time_utc` (ISO 8601 `...Z`, or None when the input
            does not say when it started) and `gaps` (empty but for HLS); when the start is known, windows,
            submission rows and detections carry UTC times too (`start_utc`/`end_utc`, `start_time_utc`).
        top_k (`int`, *optional*):
            Keep only the first `top_k` entries of the label list.
        sampling_rate (`int`):
            Sample rate of array inputs. Every input must be sampled at `MIN_SAMPLING_RATE` (20 kHz) or more.
        allow_other_hosts (`bool`, False):
            HLS over HTTP: fetch segments, and follow redirects, on hosts other than the playlist's (refused by
            default: a playlist must not make us fetch from anywhere it likes).
        batch_size (`int`, 8 on CPU, 32 on GPUs):
            Windows per forward pass, across files when a list is given.
        engine (`str`, `"auto"`):
            `"openvino"`, `"onnxruntime"`, `"torch"`, or `"auto"`: on CPU with a float32 model, OpenVINO when it is
            installed (the fastest faithful engine; probabilities within ~1e-5 of PyTorch), else ONNX Runtime, else
            PyTorch; PyTorch on GPUs. Every engine skips the work that the spectrogram's padding alone determines
            (see `scoring_orcahello.PaddingSkippingClassifier`).
        precision (`str`, `"float32"`):
            `"bfloat16"` (CPUs with native bfloat16, avx512_bf16 or AMX, else refused; GPUs): the fast mode, with
            float32's decisions: every window is scored in bfloat16, then every window whose score could change a
            local or global decision, given a proven bound on bfloat16's error
            (`scoring_orcahello.BFLOAT16_LOGIT_MARGIN`), is scored again in float32
            (`scoring_orcahello.windows_to_rescore`). The confidences of the windows not re-scored stay
            bfloat16-valued (within the margin of float32's), and each window's spectrogram is kept until its
            file's end (about 160 kB a window). `"float16"` (GPUs): reduced precision without that guarantee.
            Production's numbers are float32.

    Default output: `[{"label": decision, "score": s}, {"label": other, "score": 1 - s}]`, the file-level decision
    first. The positive score is the file's global confidence on a 0..1 scale (production's `whaleFoundConfidence` /
    100 for `"orcahello"`), which can be high on a negative file whose positive seconds are fewer than
    `global_count_threshold`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            # transformers 4.51 does not hand a remote-code feature extractor to the pipeline.
            try:
                self.feature_extractor = OrcaHelloFeatureExtractor.from_pretrained(self.model.name_or_path)
            except Exception:
                self.feature_extractor = OrcaHelloFeatureExtractor()
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE["cpu" if self.device.type == "cpu" else "other"]
        self._scorers = {}
        return_large_buffers_to_the_system()
        # Convolutions run markedly faster on channels-last tensors on CUDA; the weights keep their values, and
        # save_pretrained still writes them normally. (On CPU the exported engines choose their own layouts.)
        self._channels_last = self.device.type == "cuda"
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _sanitize_parameters(
        self,
        sampling_rate=None,
        preset=None,
        window_seconds=None,
        hop_seconds=None,
        whole_recording_frontend=None,
        peak_normalize=None,
        strict_segments=None,
        smoothing=None,
        aggregation=None,
        local_threshold=None,
        global_count_threshold=None,
        global_threshold=None,
        top_k_windows=None,
        min_global_confidence=None,
        return_timestamps=None,
        top_k=None,
        function_to_apply=None,
        engine=None,
        precision=None,
        allow_other_hosts=None,
        progress_callback=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"Unknown argument(s) for the OrcaHello pipeline: {sorted(kwargs)}")
        if function_to_apply not in (None, "softmax"):
            raise ValueError("The OrcaHello pipeline scores windows with softmax; function_to_apply must be 'softmax'")
        config = self.model.config
        # The inference fields: the model folder's config (its preset, as saved), replaced whole by a `preset` given
        # with the call, then each field given with the call (see `configuration_orcahello.INFERENCE_PRESETS`).
        preset_name, settings, overridden = resolve_inference_settings(
            config_inference_settings(config),
            preset=preset,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            whole_recording_frontend=whole_recording_frontend,
            peak_normalize=peak_normalize,
            strict_segments=strict_segments,
            smoothing=smoothing,
            aggregation=aggregation,
            local_threshold=local_threshold,
            global_count_threshold=global_count_threshold,
            global_threshold=global_threshold,
            top_k_windows=top_k_windows,
        )
        preprocess_params = {
            name: settings[name]
            for name in (
                "window_seconds", "hop_seconds", "whole_recording_frontend", "peak_normalize", "strict_segments"
            )
        }
        if sampling_rate is not None:
            preprocess_params["sampling_rate"] = sampling_rate
        if allow_other_hosts is not None:
            preprocess_params["allow_other_hosts"] = bool(allow_other_hosts)

        postprocess_params = {
            name: settings[name]
            for name in ("aggregation", "local_threshold", "global_count_threshold", "global_threshold",
                         "top_k_windows", "smoothing")
        }
        postprocess_params.update(
            return_timestamps=False,
            top_k=None,
            inference={"preset": preset_name, "overridden": overridden, **settings},
        )
        for name, value in (("return_timestamps", return_timestamps), ("top_k", top_k)):
            if value is not None:
                postprocess_params[name] = value
        floor = getattr(config, "min_global_confidence", 0.0) if min_global_confidence is None else min_global_confidence
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
            raise ValueError(
                f"min_global_confidence must be a number from 0 to 1 (global confidence / 100), got {floor!r}"
            )
        postprocess_params["min_global_confidence"] = float(floor)
        forward_params = {}
        if engine is not None:
            if engine not in ENGINES:
                raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
            forward_params["engine"] = engine
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
            forward_params["precision"] = precision
        if progress_callback is not None:  # called with (windows just scored, the recording's windows)
            forward_params["progress_callback"] = progress_callback
        return preprocess_params, forward_params, postprocess_params

    def get_inference_context(self):
        return torch.inference_mode

    def score_input_features(self, input_features, engine=None, precision=None):
        """
        Per-window `[P(negative), P(positive)]` of a batch of model inputs (`(windows, 1, 256, 312)`, as
        `featurize_windows` makes them), as a float32 `(windows, 2)` CPU tensor, scored in one forward pass by the
        engine the pipeline itself uses (`engine`, `precision` as the call parameters; the pipeline's own settings
        when None). `orcahello batch` scores through this, so that it always runs whatever engine a pipeline call
        would.
        """
        input_features = torch.as_tensor(input_features)
        if self.dtype is not None:
            input_features = input_features.to(self.dtype)
        count = input_features.shape[0]
        forward_params = dict(self._forward_params)
        forward_params.update(self._sanitize_parameters(engine=engine, precision=precision)[1])
        # `forward` places the inputs on the device under the inference context, then `_forward` scores them; the
        # per-window bookkeeping it carries through for `postprocess` is not needed here, so it gets placeholders.
        model_inputs = {
            "input_features": input_features,
            "window_index": torch.arange(count),
            "window_is_silent": torch.zeros(count, dtype=torch.bool),
            "recording": None,
            "is_last": False,
        }
        return self.forward(model_inputs, **forward_params)["probabilities"]

    def preprocess(
        self,
        inputs,
        sampling_rate=None,
        window_seconds=2.0,
        hop_seconds=1.0,
        whole_recording_frontend=False,
        peak_normalize=False,
        strict_segments=True,
        allow_other_hosts=False,
    ):
        recording = open_recording(inputs, sampling_rate=sampling_rate, allow_other_hosts=allow_other_hosts)
        try:
            bounds = scoring_windows(
                recording,
                window_seconds,
                hop_seconds,
                whole_recording_frontend=whole_recording_frontend,
                strict_segments=strict_segments,
                model_sampling_rate=self.feature_extractor.sampling_rate,
            )
        except AudioInputError:
            recording.close()
            raise
        if whole_recording_frontend:
            recording = whole_recording_audio(recording, self.feature_extractor, peak_normalize=peak_normalize)
        info = recording_info(recording, len(bounds), window_seconds, hop_seconds)

        # On a GPU the STFT and the mel filterbank run there too (resampling stays with scipy, as production's).
        frontend_device = self.device if self.device.type != "cpu" else None

        def featurize(position):
            block = bounds[block_starts[position] : block_starts[position + 1]]
            return featurize_windows(recording, block, self.feature_extractor, dtype=self.dtype, device=frontend_device)

        # Small blocks: the model starts on its first batch soon, and every buffer stays small (see
        # `return_large_buffers_to_the_system`). Each window is featurized on its own: how windows are grouped does
        # not change a single value.
        block_starts = list(range(0, len(bounds), FRONTEND_BLOCK_WINDOWS)) + [len(bounds)]
        # The next block is featurized in a background thread while the model scores this one: resampling, the
        # STFT and the engines all release the GIL, so the frontend mostly hides behind the model.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orcahello-frontend")
        try:
            pending = executor.submit(featurize, 0)
            for position, block_start in enumerate(block_starts[:-1]):
                features, silent = pending.result()
                if position + 2 < len(block_starts):
                    pending = executor.submit(featurize, position + 1)
                for offset in range(features.shape[0]):
                    window_index = block_start + offset
                    yield {
                        "input_features": features[offset : offset + 1],
                        "window_index": torch.tensor([window_index]),
                        "window_is_silent": torch.tensor([silent[offset]]),
                        "recording": info,
                        "is_last": window_index == len(bounds) - 1,
                    }
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            recording.close()

    def _forward(self, model_inputs, engine="auto", precision="float32", progress_callback=None):
        logits = self.window_logits(model_inputs["input_features"], engine=engine, precision=precision)
        if progress_callback is not None:
            info = model_inputs["recording"]
            info = info[0] if isinstance(info, (list, tuple)) else info
            progress_callback(int(logits.shape[0]), info["num_windows"] if isinstance(info, dict) else None)
        outputs = {
            "probabilities": torch.softmax(logits.float(), dim=-1),
            "window_index": model_inputs["window_index"],
            "window_is_silent": model_inputs["window_is_silent"],
            "recording": model_inputs["recording"],
            "is_last": model_inputs["is_last"],
        }
        if precision == "bfloat16":
            # The fast mode keeps each window's spectrogram up to its padding (about 160 kB) until the file's
            # decisions are known: postprocess scores again in float32 those that could change one.
            features = model_inputs["input_features"]
            content = max(1, padded_frames(features, float(self.feature_extractor.padding_value)))
            outputs["rescoring_features"] = features[..., :content].to("cpu", torch.float32).clone()
            outputs["rescoring_engine"] = torch.full((features.shape[0],), ENGINES.index(engine))
        return outputs

    def window_logits(self, input_features, engine="auto", precision="float32"):
        """Logits `(batch, 2)` of a batch of spectrograms `(batch, 1, 256, 312)`, from the engine's scorer."""
        return self.scorer(input_features, engine=engine, precision=precision)(input_features)

    def scorer(self, input_features, engine="auto", precision="float32"):
        """
        The scorer for batches shaped like `input_features`: built on first use (an ONNX export for OpenVINO and
        ONNX Runtime takes a few seconds for ResNet50), kept per engine, precision, thread count and padding
        geometry, and built again when the weights have changed in place since (e.g. fine-tuning).
        """
        model_dtype = getattr(self.model, "dtype", torch.float32)
        engine = resolve_engine(engine, self.device, model_dtype, precision)
        content_frames = None
        if not self.model.training:
            # Padding is skipped when the batch has some: always, for 2-second windows from the feature extractor.
            frames = padded_frames(input_features, float(self.feature_extractor.padding_value))
            if frames < input_features.shape[-1]:
                content_frames = frames
        threads = torch.get_num_threads()
        key = (engine, precision, tuple(input_features.shape[1:]), threads, content_frames is not None)
        scorer = self._scorers.get(key)
        version = weights_version(self.model)
        # A scorer that skips the padding after frame n serves any batch whose padding starts at n or earlier.
        covers = scorer is not None and (content_frames is None or content_frames <= scorer.content_frames)
        if not covers or scorer.weights_version != version:
            scorer = build_scorer(
                self.model,
                engine,
                tuple(input_features.shape),
                threads,
                precision=precision,
                content_frames=content_frames,
                padding_value=float(self.feature_extractor.padding_value),
                channels_last=self._channels_last,
                process_mmap_threshold=MMAP_THRESHOLD_BYTES,
            )
            scorer.weights_version = version
            scorer.content_frames = content_frames
            self._scorers[key] = scorer
        return scorer

    def _rescored_in_float32(self, ordered_outputs, window_confidences, **decision_parameters):
        """The fast mode's window probabilities, float32 wherever bfloat16 could change a decision (see
        `scoring_orcahello.windows_to_rescore`); the others stay bfloat16-valued."""
        engine = ENGINES[int(ordered_outputs[0]["rescoring_engine"].reshape(-1)[0])]
        extractor = self.feature_extractor

        def score_in_float32(indices):
            probabilities = []
            for start in range(0, len(indices), self._batch_size):
                chosen = [ordered_outputs[i]["rescoring_features"] for i in indices[start : start + self._batch_size]]
                features = torch.full((len(chosen), 1, extractor.feature_size, extractor.num_frames),
                                      float(extractor.padding_value), dtype=self.dtype or torch.float32)
                for row, content in enumerate(chosen):
                    features[row, ..., : content.shape[-1]] = content.reshape(features.shape[1:-1] + (-1,))
                logits = self.window_logits(features.to(self.device), engine=engine, precision="float32")
                probabilities.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu())
            return torch.cat(probabilities).double().numpy()

        probabilities, rescored = rescore_until_exact(window_confidences, score_in_float32, **decision_parameters)
        self.last_rescored_fraction = float(rescored.mean())
        return probabilities

    def postprocess(
        self,
        model_outputs,
        aggregation="orcahello",
        local_threshold=0.5,
        global_count_threshold=3,
        global_threshold=0.6,
        top_k_windows=3,
        return_timestamps=False,
        top_k=None,
        smoothing=True,
        inference=None,
        min_global_confidence=0.0,
    ):
        info = model_outputs[0]["recording"]
        order = np.argsort([int(output["window_index"]) for output in model_outputs])
        window_confidences = np.array(
            [float(model_outputs[i]["probabilities"].reshape(-1, 2)[0, 1]) for i in order], dtype=np.float64
        )
        silent_windows = sum(bool(output["window_is_silent"].reshape(-1)[0]) for output in model_outputs)
        if "rescoring_features" in model_outputs[0]:
            window_confidences = self._rescored_in_float32(
                [model_outputs[i] for i in order], window_confidences, aggregation=aggregation,
                local_threshold=local_threshold, global_count_threshold=global_count_threshold,
                global_threshold=global_threshold, top_k_windows=top_k_windows, smoothing=smoothing,
                min_global_confidence=min_global_confidence,
            )
        return build_file_result(
            info,
            window_confidences,
            silent_windows,
            aggregation=aggregation,
            local_threshold=local_threshold,
            global_count_threshold=global_count_threshold,
            global_threshold=global_threshold,
            top_k_windows=top_k_windows,
            return_timestamps=return_timestamps,
            top_k=top_k,
            smoothing=smoothing,
            inference=inference,
            min_global_confidence=min_global_confidence,
        )
