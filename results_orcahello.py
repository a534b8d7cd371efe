# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
A recording's result from its window scores: production's file-level decision and everything around it.

`DecisionParameters` holds the settings that turn per-window probabilities into decisions (smoothing, aggregation,
thresholds, the confidence floor); `aggregate_windows` applies production's rule (or the upstream port's),
`apply_confidence_floor` a site's floor, and `build_file_result` writes the pipeline's answer: the
`[{"label", "score"}]` list, or production's result dict with windows, rows, merged detections, UTC times, gaps and
warnings. `window_table` and `recording_summary` are the parts of it that do not depend on the scores, and
`WindowScores`/`ScoredWindows` what the pipeline's `score_features`/`score_windows` give for blocks of windows. The
pipeline, `orcahello batch`, `orcahello live` and `orcahello embed` all build results here. Torch-free.
"""

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

try:
    from .hls_timeline_orcahello import iso_utc, utc_at
    from .vocabulary_orcahello import (
        AGGREGATION_STRATEGIES,
        DECISION_FIELD_TYPES,
        DECISION_FIELDS,
        DEFAULT_MIN_GLOBAL_CONFIDENCE,
        DEFAULT_MIN_POSITIVE_SECONDS,
        DEFAULT_PRESET,
        FLOAT_SAMPLE_WARNING_PEAK,
        FULL_BAND_SAMPLING_RATE,
        GLOBAL_CONFIDENCE_PERCENT,
        INFERENCE_PRESETS,
        check_setting,
    )
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from hls_timeline_orcahello import iso_utc, utc_at
    from vocabulary_orcahello import (
        AGGREGATION_STRATEGIES,
        DECISION_FIELD_TYPES,
        DECISION_FIELDS,
        DEFAULT_MIN_GLOBAL_CONFIDENCE,
        DEFAULT_MIN_POSITIVE_SECONDS,
        DEFAULT_PRESET,
        FLOAT_SAMPLE_WARNING_PEAK,
        FULL_BAND_SAMPLING_RATE,
        GLOBAL_CONFIDENCE_PERCENT,
        INFERENCE_PRESETS,
        check_setting,
    )


logger = logging.getLogger(__name__)

# The defaults of the decision fields: production's (the default preset), and no confidence floor.
_DEFAULT_DECISION = INFERENCE_PRESETS[DEFAULT_PRESET]


def check_decision_value(field: str, value: Any, name: str | None = None) -> bool | str | float | int:
    """
    `value` for the decision field `field` (`vocabulary_orcahello.DECISION_FIELD_TYPES`), in the field's type; a
    one-line `ValueError` calling it `name` (default: the field) when it is not one the decision can use. The rule
    is `vocabulary_orcahello.check_setting`, the one every source of settings goes through (the command line, a site
    table, a model's config, a hydrophone config, the pipeline's and the endpoint's parameters).
    """
    if field not in DECISION_FIELD_TYPES:
        raise ValueError(f"not a decision field: {field}")
    return check_setting(field, value, name)


@dataclasses.dataclass(frozen=True)
class DecisionParameters:
    """
    How a recording's window probabilities become its decision (`vocabulary_orcahello.DECISION_FIELDS`); the
    defaults are production's (the `"fastai"` preset) with no confidence floor.

    smoothing: production's smoothing of the windows into one-second rows (`"orcahello"` aggregation only).
    aggregation: `"orcahello"` (production), `"mean_thresholded"` or `"mean_top_k"` (the upstream port).
    local_threshold: a row (window) is positive when its confidence is above it.
    global_count_threshold: `"orcahello"`: the file is positive when at least this many rows are.
    global_threshold: the port's aggregations: the file is positive when its global confidence reaches it.
    top_k_windows: `"mean_top_k"`: how many of the highest windows are averaged.
    min_global_confidence: the floor on a positive file's global confidence, 0-1 (see `apply_confidence_floor`).
    min_positive_seconds: the seconds a file's positive rows must cover, merged, for it to be positive, under every
        rule (0: none). Under the count rule it takes the place of `global_count_threshold`: the file is positive
        when its positive rows cover that many seconds, whatever the rows' length (production's one-second rows,
        where it is the same count, or the port's 3-s segments); under the mean rules it is asked on top of the mean.

    The values are kept as given (no conversion), so that a result records them exactly as they were set; each is
    checked by `check_decision_value` (a negative threshold or a NaN one is a one-line `ValueError`, never a detector
    that says yes, or no, to everything).
    """

    smoothing: bool = _DEFAULT_DECISION["smoothing"]
    aggregation: str = _DEFAULT_DECISION["aggregation"]
    local_threshold: float = _DEFAULT_DECISION["local_threshold"]
    global_count_threshold: int = _DEFAULT_DECISION["global_count_threshold"]
    global_threshold: float = _DEFAULT_DECISION["global_threshold"]
    top_k_windows: int = _DEFAULT_DECISION["top_k_windows"]
    min_global_confidence: float = DEFAULT_MIN_GLOBAL_CONFIDENCE
    min_positive_seconds: int = DEFAULT_MIN_POSITIVE_SECONDS

    @classmethod
    def from_mapping(cls, parameters: Mapping[str, Any]) -> "DecisionParameters":
        """
        The decision fields found in `parameters` (a run's or a preset's settings: other keys are ignored), the
        defaults for those it lacks. A field given as None is an error rather than a silent default.
        """
        given = {name: parameters[name] for name in DECISION_FIELDS if name in parameters}
        missing = sorted(name for name, value in given.items() if value is None)
        if missing:
            raise ValueError(f"decision parameters without a value: {', '.join(missing)}")
        return cls(**given)

    def __post_init__(self) -> None:
        for field in DECISION_FIELDS:
            check_decision_value(field, getattr(self, field))


# Production's decision, what every function here uses when it is given none.
DEFAULT_DECISION = DecisionParameters()


@dataclasses.dataclass
class WindowScores:
    """
    What the model gives for a batch of windows (`OrcaHelloAudioClassificationPipeline.score_features`).

    probabilities: `(windows, 2)` float32, `[P(negative), P(positive)]` of each window (the softmax of `logits`).
    logits: `(windows, 2)` float32, the classifier's logits.
    embeddings: `(windows, dimension)` float32, the named layer's output of each window; None when none was asked for.
    """

    probabilities: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray | None = None


@dataclasses.dataclass
class ScoredWindows:
    """
    One block of consecutive windows of a recording, scored (`OrcaHelloAudioClassificationPipeline.score_windows`).

    window_indices: the windows' indices in the recording, in order.
    silent: per window, whether it is digital silence (constant samples).
    probabilities, logits, embeddings: as `WindowScores`.
    windows: the block's rows of the recording's `window_table` (start, end, spans_gap, UTC); None when the windows
        were given as sample bounds (`score_window_bounds`).
    recording: the recording's `recording_summary` (the same dict for every block); None as for `windows`.
    """

    window_indices: list[int]
    silent: list[bool]
    probabilities: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray | None = None
    windows: list[dict] | None = None
    recording: dict | None = None

    @property
    def scores(self) -> np.ndarray:
        """P(call) of each window (float32): `probabilities[:, 1]`, the score results give a window."""
        return self.probabilities[:, 1]


# ----------------------------------------------------------------------------------------------------------------
# File-level aggregation
# ----------------------------------------------------------------------------------------------------------------


def row_spans(
    num_rows: int, decision: DecisionParameters, hop_seconds: float, window_seconds: float
) -> tuple[list[float], list[float]]:
    """
    `(starts, ends)` in seconds of a recording's `num_rows` decision rows: production's smoothed rows cover
    `[t * hop, (t + 1) * hop)` (the seconds production reports), a row that is a window covers the window.
    """
    starts = [t * hop_seconds for t in range(num_rows)]
    length = hop_seconds if decision.aggregation == "orcahello" and decision.smoothing else window_seconds
    return starts, [start + length for start in starts]


def aggregate_windows(
    window_confidences: Sequence[float] | np.ndarray,
    decision: DecisionParameters = DEFAULT_DECISION,
    hop_seconds: float = 1.0,
    window_seconds: float = 2.0,
) -> dict:
    """
    Turn per-window P(call) into production's file-level result, by the rule `decision` sets (production's when
    none is given).

    `"orcahello"` (production, the default): the windows are smoothed into one-second rows (row 0 = c_0, row t =
    mean(c_{t-1}, c_t), last row = c_{N-1}: N + 1 rows); a row is positive when `> local_threshold`; the file is
    positive when at least `global_count_threshold` rows are; `global_confidence` (0..1) is the mean of the positive
    rows (0.0 when none), independent of the decision: production's `global_confidence` / 100 (production reported
    it on a 0-100 scale, which results keep as `global_confidence_percent`).

    `"mean_thresholded"` / `"mean_top_k"` (the upstream port): no smoothing, one row per window; `global_confidence`
    (0..1) is the mean of the windows `> local_threshold` or of the `top_k_windows` highest; the file is positive
    when it is `>= global_threshold`.

    `smoothing=False` (the v1 preset) keeps the `"orcahello"` count rule but applies it to the raw windows, one row
    per window, as the port's `detect_srkw_from_file` does.

    `min_positive_seconds` (when above 0) counts seconds instead: the seconds the positive rows cover, merged
    (`row_spans` of `hop_seconds` and `window_seconds`, production's by default), must reach it; under the count
    rule in place of `global_count_threshold`, under the mean rules as well as the mean.

    Returns a dict with `local_confidences`, `local_predictions`, `global_prediction`, `global_confidence` and
    `positive_seconds` (the confidence floor is not applied here: see `apply_confidence_floor`).
    """
    aggregation, local_threshold = decision.aggregation, decision.local_threshold
    confidences = np.asarray(window_confidences, dtype=np.float64)
    if confidences.ndim != 1 or confidences.size == 0:
        raise ValueError("aggregate_windows needs at least one window confidence")
    if aggregation == "orcahello":
        if decision.smoothing:
            rows = np.empty(confidences.size + 1, dtype=np.float64)
            rows[0] = confidences[0]
            rows[1:-1] = (confidences[:-1] + confidences[1:]) / 2.0
            rows[-1] = confidences[-1]
        else:
            rows = confidences
        predictions = (rows > local_threshold).astype(int)
        enough = predictions.sum() >= decision.global_count_threshold
        global_confidence = float(rows[predictions == 1].mean()) if predictions.any() else 0.0
    elif aggregation in ("mean_thresholded", "mean_top_k"):
        rows = confidences
        predictions = (rows > local_threshold).astype(int)
        if aggregation == "mean_thresholded":
            global_confidence = float(rows[predictions == 1].mean()) if predictions.any() else 0.0
        else:
            global_confidence = float(np.sort(rows)[::-1][: max(1, int(decision.top_k_windows))].mean())
        enough = global_confidence >= decision.global_threshold
    else:
        raise ValueError(f"aggregation must be one of {AGGREGATION_STRATEGIES}, got {aggregation!r}")
    starts, ends = row_spans(rows.size, decision, hop_seconds, window_seconds)
    detections = merge_detections(starts, ends, rows.tolist(), predictions.tolist())
    positive_seconds = float(sum(detection["end"] - detection["start"] for detection in detections))
    if decision.min_positive_seconds > 0:
        # Seconds, not rows: the count rule's count is replaced, the mean rules' mean kept (1e-9: float sums).
        seconds_enough = positive_seconds >= decision.min_positive_seconds - 1e-9
        enough = seconds_enough if aggregation == "orcahello" else enough and seconds_enough
    return {
        "local_confidences": rows.tolist(),
        "local_predictions": predictions.tolist(),
        "global_prediction": int(enough),
        "global_confidence": global_confidence,
        "positive_seconds": positive_seconds,
    }


def legacy_percent(global_confidence: float) -> float:
    """A 0-1 global confidence on production's legacy 0-100 scale (its `whaleFoundConfidence`)."""
    return 100.0 * global_confidence


def merge_detections(
    starts: Sequence[float], ends: Sequence[float], confidences: Sequence[float], predictions: Sequence[int]
) -> list[dict]:
    """Merge consecutive or overlapping positive rows into `[{"start", "end", "max_confidence", "mean_confidence"}]`."""
    detections: list[dict[str, Any]] = []
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


def apply_confidence_floor(
    global_prediction: int, global_confidence: float, decision: DecisionParameters = DEFAULT_DECISION
) -> int:
    """
    The file-level decision with `decision`'s confidence floor (a site's, as `orcahello calibrate` fits it): a
    recording that the aggregation's rule flags stays flagged only when its global confidence (0-1) is
    `>= decision.min_global_confidence`. The default floor, 0, changes nothing.
    """
    return int(bool(global_prediction) and global_confidence >= decision.min_global_confidence)


def decision_label_scores(result: Mapping[str, Any], decision: DecisionParameters = DEFAULT_DECISION) -> list[dict]:
    """
    A file's `[{"label", "score"}]` list from its decided result (`aggregate_windows`'s, with the floor applied):
    the decision first, sorted by score (highest first, as every audio-classification pipeline's), the two scores
    summing to 1, so that `result[0]` (and `top_k=1`) is the decision. The positive score is the evidence the rule
    weighed, on a 0-1 scale with the rule's bar at 0.5:

    - a positive file: its global confidence (0-1: production's `whaleFoundConfidence` / 100 under the count rule;
      the port's mean under `mean_thresholded`/`mean_top_k`), raised to 0.5 where a threshold below
      0.5 made a file positive with less;
    - a negative file: half of how far the file got to the rule's bar, the least of (each at most 1) its positive
      rows / `global_count_threshold` (the count rule), its global confidence / `global_threshold` (the port's mean
      rules) and its global confidence / `min_global_confidence` (a floor, when set). A file with no positive row
      scores 0; one with 2 of the 3 positive seconds production needs scores 1/3 however confident those two
      seconds were: the count decided, not the confidence (which `global_confidence` still gives).
    """
    confidence = result["global_confidence"]
    if result["global_prediction"]:
        positive_score = max(confidence, 0.5)
    else:
        progress = [1.0]
        if decision.min_positive_seconds > 0:
            progress.append(result["positive_seconds"] / decision.min_positive_seconds)
        if decision.aggregation == "orcahello":
            if decision.global_count_threshold > 0 and decision.min_positive_seconds == 0:
                progress.append(sum(result["local_predictions"]) / decision.global_count_threshold)
        elif decision.global_threshold > 0:
            progress.append(confidence / decision.global_threshold)
        if decision.min_global_confidence > 0:
            progress.append(confidence / decision.min_global_confidence)
        positive_score = 0.5 * min(progress)
    positive = {"label": "positive", "score": positive_score}
    negative = {"label": "negative", "score": 1.0 - positive_score}
    return [positive, negative] if result["global_prediction"] else [negative, positive]


def _utc(anchors: Any, seconds: float, before: bool = False) -> str | None:
    return iso_utc(utc_at(anchors, seconds, before=before))


def window_table(info: Mapping[str, Any], num_windows: int | None = None) -> list[dict]:
    """
    A recording's windows as its result lists them, without their scores: `start` and `end` (seconds from the
    start), for HLS inputs `spans_gap` (the window spans a gap in the stream), and `start_utc`/`end_utc` when the
    input says when it started. `info` as `audio_orcahello.recording_info` gives it; `num_windows` defaults to its
    `num_windows`.
    """
    count = info["num_windows"] if num_windows is None else num_windows
    hop, window = info["hop_seconds"], info["window_seconds"]
    timeline: Mapping[str, Any] = info.get("timeline") or {}
    gaps = timeline["gaps"] if timeline else []
    start_known = bool(timeline) and timeline["start_time_utc"] is not None
    rows = []
    for index in range(count):
        start = index * hop
        row = {"start": start, "end": start + window}
        if timeline:
            row["spans_gap"] = any(start < gap.start_s < start + window for gap in gaps)
        if start_known:
            row["start_utc"] = _utc(timeline["anchors"], start)
            row["end_utc"] = _utc(timeline["anchors"], start + window, before=True)
        rows.append(row)
    return rows


def missing_band_warning(sampling_rate: float) -> str | None:
    """
    What a result says of a recording sampled at `sampling_rate` Hz, below `FULL_BAND_SAMPLING_RATE`: the band of
    the model's 0-10 kHz that it cannot carry (nothing above `sampling_rate / 2`). None from 20 kHz up.
    """
    if sampling_rate >= FULL_BAND_SAMPLING_RATE:
        return None
    nyquist_khz = sampling_rate / 2000
    return (
        f"sampled at {sampling_rate:g} Hz, the recording carries nothing above {nyquist_khz:g} kHz: the model hears "
        f"0-10 kHz and the {nyquist_khz:g}-10 kHz band is silent to it (the audio is upsampled, as production did); "
        f"calls with energy there may score lower than in a recording made at {FULL_BAND_SAMPLING_RATE} Hz or more"
    )


def float_scale_warning(largest_float_sample: float) -> str | None:
    """
    What a result says of a recording whose float samples reach `largest_float_sample` (|x|), beyond
    `FLOAT_SAMPLE_WARNING_PEAK` (see there why); None up to it.
    """
    if not largest_float_sample > FLOAT_SAMPLE_WARNING_PEAK:
        return None
    return (
        f"float samples reach {largest_float_sample:.3g}, far outside the [-1, 1] of full scale: production's "
        f"frontend clips them to full scale (a square wave the model may take for a call) and the v1 preset divides "
        f"the whole recording by its peak, so these scores say little about whales; check how the recording was "
        f"written (integer PCM stored as floats?) and scale it to [-1, 1]"
    )


def recording_summary(info: Mapping[str, Any], num_windows: int | None = None) -> dict:
    """
    What a recording's result says about it apart from its scores: `windows` (its `window_table`), `duration_s`,
    `start_time_utc` (ISO 8601, None when the input does not say), `gaps`, `warnings` (the band a recording below
    20 kHz cannot carry, the stream's, and for each gap how many windows span it), `sampling_rate`, `num_channels`, `window_seconds` and `hop_seconds`. `info` and
    `num_windows` as `window_table` takes them.
    """
    windows = window_table(info, num_windows)
    window = info["window_seconds"]
    timeline: Mapping[str, Any] = info.get("timeline") or {}
    gaps = list(timeline["gaps"]) if timeline else []  # `hls_timeline_orcahello.Gap`s
    warnings = list(timeline["warnings"]) if timeline else []
    for gap in gaps:
        spanning = sum(1 for row in windows if row["start"] < gap.start_s < row["start"] + window)
        missing = "an unknown time" if gap.missing_s is None else f"{gap.missing_s:.3f} s"
        warnings.append(
            f"gap after segment {gap.after_segment} at {gap.start_s:.3f} s ({gap.reason}): {missing} "
            f"missing; the audio either side is butted together, as production's concatenation does, and "
            f"{spanning} window(s) spanning it are flagged spans_gap"
        )
    band_warning = missing_band_warning(info["sampling_rate"])
    if band_warning:
        warnings.insert(0, band_warning)
    start_known = bool(timeline) and timeline["start_time_utc"] is not None
    return {
        "windows": windows,
        "duration_s": info["num_samples"] / info["sampling_rate"],
        "start_time_utc": iso_utc(timeline["start_time_utc"]) if start_known else None,
        "gaps": [gap.to_dict() for gap in gaps],
        "warnings": warnings,
        "sampling_rate": info["sampling_rate"],
        "num_channels": info["num_channels"],
        "window_seconds": info["window_seconds"],
        "hop_seconds": info["hop_seconds"],
    }


def build_file_result(
    info: Mapping[str, Any],
    window_confidences: Sequence[float] | np.ndarray,
    silent_windows: int = 0,
    *,
    decision: DecisionParameters = DEFAULT_DECISION,
    return_timestamps: bool = True,
    top_k: int | None = None,
    inference: Mapping[str, Any] | None = None,
    model_warnings: Sequence[str] = (),
    largest_float_sample: float = 0.0,
) -> dict | list[dict]:
    """
    The pipeline's answer for one recording from its window scores: `info` as `audio_orcahello.recording_info`
    gives it, `window_confidences` the P(call) of every window in order, `silent_windows` how many are digital
    silence, `decision` the rule (production's when none is given; `DecisionParameters.from_mapping(settings)`
    from a run's settings). With `return_timestamps`, production's result dict plus windows, detections, warnings
    and parameters; else the `[{"label", "score"}]` list, decision first (`decision_label_scores`). `inference` (`{"preset", "overridden",
    **fields}`, as the pipeline resolves them) is recorded in `parameters` and as `preset`. `model_warnings` are
    what the model itself calls for (its weights are the synthetic stand-in): first in `warnings`, not logged again.
    `largest_float_sample` is the recording's (`audio_orcahello.Recording.largest_float_sample`): beyond
    `FLOAT_SAMPLE_WARNING_PEAK` the result warns (`float_scale_warning`).
    """
    window_confidences = np.asarray(window_confidences, dtype=np.float64)
    aggregation = decision.aggregation
    hop, window = info["hop_seconds"], info["window_seconds"]
    result = aggregate_windows(window_confidences, decision, hop, window)
    result["global_prediction"] = apply_confidence_floor(
        result["global_prediction"], result["global_confidence"], decision
    )
    summary = recording_summary(info, len(window_confidences))
    warnings = []
    if silent_windows:
        warnings.append(
            f"{silent_windows} of {len(window_confidences)} windows are digital silence (constant samples): their "
            f"scores say nothing about whales; check the hydrophone or the recording chain"
        )
    scale_warning = float_scale_warning(largest_float_sample)
    if scale_warning:
        warnings.append(scale_warning)
    warnings.extend(summary["warnings"])
    for message in warnings:
        logger.warning("%s: %s", info["name"], message)
    warnings = list(model_warnings) + warnings
    timeline = info.get("timeline")
    gaps = list(timeline["gaps"]) if timeline else []  # `hls_timeline_orcahello.Gap`s
    label_scores = decision_label_scores(result, decision)
    label = label_scores[0]["label"]
    scores = {entry["label"]: entry["score"] for entry in label_scores}
    if top_k is not None:
        label_scores = label_scores[: max(1, int(top_k))]
    if not return_timestamps:
        return label_scores

    row_starts, row_ends = row_spans(len(result["local_confidences"]), decision, hop, window)
    name = info["name"]
    anchors = timeline["anchors"] if timeline else None
    start_known = summary["start_time_utc"] is not None

    def utc(seconds, before=False):
        return _utc(anchors, seconds, before=before)

    def spans_gap(start, end):
        return any(start < gap.start_s < end for gap in gaps)

    windows = []
    for row, score in zip(summary["windows"], window_confidences):
        # The score right after start and end: the key order results have always had.
        entry = {"start": row["start"], "end": row["end"], "score": float(score)}
        entry.update((key, value) for key, value in row.items() if key not in entry)
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
        "label": label,
        "score": scores[label],
        "labels": label_scores,
        "global_prediction": result["global_prediction"],
        "global_confidence": result["global_confidence"],
        GLOBAL_CONFIDENCE_PERCENT: legacy_percent(result["global_confidence"]),
        "local_predictions": result["local_predictions"],
        "local_confidences": result["local_confidences"],
        "submission": submission,
        "windows": windows,
        "detections": detections,
        "duration_s": summary["duration_s"],
        "start_time_utc": summary["start_time_utc"],
        "gaps": summary["gaps"],
        "sampling_rate": summary["sampling_rate"],
        "num_channels": summary["num_channels"],
        "warnings": warnings,
        "parameters": {
            "aggregation": aggregation,
            "local_threshold": decision.local_threshold,
            "global_count_threshold": decision.global_count_threshold,
            "global_threshold": decision.global_threshold,
            "top_k_windows": decision.top_k_windows,
            "min_global_confidence": decision.min_global_confidence,
            "min_positive_seconds": decision.min_positive_seconds,
            "window_seconds": window,
            "hop_seconds": hop,
            "smoothing": decision.smoothing,
            **(inference or {}),
        },
    }
    if inference:
        output["preset"] = inference.get("preset")
    if timeline:
        output["source"] = timeline["source"]
    return output
