# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The exact fast mode: bfloat16 (or int8) scores, float32 wherever they could change a decision.

Every window is scored in bfloat16 (or by the int8 model, with `INT8_LOGIT_MARGINS`); `windows_to_rescore` says which windows' bfloat16 scores could change one of
the file's decisions, given the engine's `BFLOAT16_LOGIT_MARGINS` (a measured bound on bfloat16's error), and
`rescore_until_exact` scores those again in float32, round after round, until the decisions are float32's.
`largest_logit_deviation` is how the pipeline checks the bound on every window it re-scores. Numpy only: the
scoring itself is the caller's (the pipeline's engines).
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Per engine, the largest |bfloat16 - float32| deviation of a window's logit difference that the fast mode allows
# for: at least twice the largest `benchmarks/fast_mode_margin.py` measured with it on every fixture and real
# recording, both presets (OpenVINO 1.58, PyTorch 1.85; see `windows_to_rescore`). The pipeline checks this on every
# window it re-scores (`largest_logit_deviation`) and stops using bfloat16 past half the margin.
BFLOAT16_LOGIT_MARGINS = {"openvino": 3.2, "torch": 3.8}
BFLOAT16_LOGIT_MARGIN = max(BFLOAT16_LOGIT_MARGINS.values())  # the default of the functions below
# OpenVINO's int8 model (NNCF post-training quantization of the whole network, `orcahello quantize`): at least twice
# the largest deviation `benchmarks/fast_mode_margin.py --precisions int8` measured on all 710 windows of every
# fixture and real recording, both presets, with the stand-in weights (6.38 logits) and with a head adapted from the
# real recordings' labels (9.96, a v1 window of a boat; its fastai windows' 4.60), each int8 model calibrated on
# those recordings (`benchmarks/results_fast_mode_margin_int8*_xeon_amx.json`).
INT8_LOGIT_MARGINS = {"openvino": 20.0}
# The precisions scored fast with float32's decisions, and each engine's margin for them.
LOGIT_MARGINS = {"bfloat16": BFLOAT16_LOGIT_MARGINS, "int8": INT8_LOGIT_MARGINS}


def _probability_bounds(probabilities, exact, margin):
    """Per window, the interval holding its float32 P(call), bfloat16 logit ± margin (a point where `exact`)."""
    clipped = np.clip(probabilities, 1e-300, 1.0 - 1e-16)
    logit = np.log(clipped) - np.log1p(-clipped)
    # 1e-6 more on each side: the pipeline's probabilities are float32 softmaxes, not exact sigmoids.
    low = np.clip(1.0 / (1.0 + np.exp(-(logit - margin))) - 1e-6, 0.0, 1.0)
    high = np.clip(1.0 / (1.0 + np.exp(-(logit + margin))) + 1e-6, 0.0, 1.0)
    return np.where(exact, probabilities, low), np.where(exact, probabilities, high)


def windows_to_rescore(
    window_probabilities: Sequence[float] | np.ndarray,
    exact: Sequence[bool] | np.ndarray | None = None,
    margin: float = BFLOAT16_LOGIT_MARGIN,
    aggregation: str = "orcahello",
    local_threshold: float = 0.5,
    global_count_threshold: int = 3,
    global_threshold: float = 0.6,
    top_k_windows: int = 3,
    smoothing: bool = True,
    min_global_confidence: float = 0.0,
    min_positive_seconds: int = 0,
) -> np.ndarray:
    """
    Which windows to score again in float32 so that every decision of the file equals float32's, when the windows
    not in `exact` were scored in reduced precision, with a logit difference within `margin` of float32's.

    The decisions are those of `aggregate_windows` and `apply_confidence_floor` (pipeline): a row (a window, or with
    `"orcahello"` smoothing the mean of two neighbouring windows) is positive when `> local_threshold`; the file is
    positive when at least `global_count_threshold` rows are (`"orcahello"`), or when the mean of the positive rows
    (`"mean_thresholded"`) or of the `top_k_windows` highest (`"mean_top_k"`) is `>= global_threshold`; and a
    positive file stays positive when its confidence is `>= min_global_confidence`. Every window's float32
    probability lies in an interval around its reduced-precision one; every row's, and the confidence's, in the
    interval these give (means are monotone in each term). A decision whose interval straddles its threshold is
    uncertain: first the windows of every uncertain row are returned; once no row is uncertain, the windows of the
    confidence, when it is uncertain. Call again with the re-scored windows added to `exact` until nothing is
    returned: decisions are then float32's (windows in `exact` count as points).

    Args:
        window_probabilities (`np.ndarray`): P(call) of every window of one file, in order.
        exact (`np.ndarray` of bool, *optional*): the windows already scored in float32 (none by default).
        margin (`float`): the bound on |reduced - float32| of a window's logit difference.
        The others: the aggregation's parameters, as `aggregate_windows` and `build_file_result` take them.

    Returns:
        `np.ndarray` of bool: the windows to score in float32 now (none of them already in `exact`).
    """
    probabilities = np.asarray(window_probabilities, dtype=np.float64)
    exact = np.zeros(probabilities.shape, dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
    low, high = _probability_bounds(probabilities, exact, margin)
    count = probabilities.size
    # The windows each row is made of (the first and last rows of a smoothed file are a single window).
    if aggregation == "orcahello" and smoothing:
        first = np.concatenate([[0], np.arange(count)])
        second = np.concatenate([np.arange(count), [count - 1]])
        row_low, row_high = (low[first] + low[second]) / 2.0, (high[first] + high[second]) / 2.0
    else:
        first = second = np.arange(count)
        row_low, row_high = low, high
    rescore = np.zeros(count, dtype=bool)
    uncertain_rows = (row_low <= local_threshold) & (row_high > local_threshold)
    if uncertain_rows.any():
        rescore[first[uncertain_rows]] = rescore[second[uncertain_rows]] = True
        return rescore & ~exact
    positive = row_low > local_threshold  # every row is now certain

    if aggregation == "orcahello":
        # The positive seconds (`min_positive_seconds`) are exact once every row is: only the count's shortcut
        # does not hold when seconds replace it.
        counted_short = min_positive_seconds == 0 and positive.sum() < global_count_threshold
        if counted_short or min_global_confidence <= 0.0:
            return rescore  # the count (or the seconds) decides, and it is exact
        # The confidence floor compares the mean of the positive rows (0..1) with min_global_confidence.
        thresholds, confidence_rows = [min_global_confidence], positive
        confidence_low, confidence_high = row_low[positive].mean(), row_high[positive].mean()
    elif aggregation == "mean_thresholded":
        thresholds, confidence_rows = [global_threshold, min_global_confidence], positive
        confidence_low = row_low[positive].mean() if positive.any() else 0.0
        confidence_high = row_high[positive].mean() if positive.any() else 0.0
    elif aggregation == "mean_top_k":
        k = min(max(1, int(top_k_windows)), count)
        kth_low = np.sort(row_low)[::-1][k - 1]
        thresholds = [global_threshold, min_global_confidence]
        # Only a row that can reach the k-th highest lower bound can be among the top k.
        confidence_rows = row_high >= kth_low
        confidence_low = np.sort(row_low)[::-1][:k].mean()
        confidence_high = np.sort(row_high)[::-1][:k].mean()
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    if any(confidence_low < threshold <= confidence_high for threshold in thresholds):
        rescore[first[confidence_rows]] = rescore[second[confidence_rows]] = True
    return rescore & ~exact


def rescore_until_exact(
    window_probabilities: Sequence[float] | np.ndarray,
    score_in_float32: Callable[[np.ndarray], Sequence[float] | np.ndarray],
    margin: float = BFLOAT16_LOGIT_MARGIN,
    exact: Sequence[bool] | np.ndarray | None = None,
    **decision_parameters: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """
    The probabilities of a file's windows after scoring again in float32, with `score_in_float32(indices) ->
    probabilities`, every window that `windows_to_rescore` asks for, round after round until it asks for none: the
    file's decisions are then float32's. Windows not re-scored keep their reduced-precision probabilities; windows
    in `exact` (a boolean mask, optional) were scored in float32 already. `decision_parameters`: those of
    `windows_to_rescore`.

    Returns `(probabilities, rescored)`: float64 probabilities and the boolean mask of the windows re-scored.
    """
    probabilities = np.array(window_probabilities, dtype=np.float64)
    already = np.zeros(probabilities.shape, dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
    rescored = np.zeros(probabilities.shape, dtype=bool)
    while True:
        wanted = windows_to_rescore(probabilities, rescored | already, margin, **decision_parameters)
        if not wanted.any():
            return probabilities, rescored
        indices = np.flatnonzero(wanted)
        probabilities[indices] = np.asarray(score_in_float32(indices), dtype=np.float64)
        rescored[indices] = True


def largest_logit_deviation(
    reduced_probabilities: Sequence[float] | np.ndarray, float32_probabilities: Sequence[float] | np.ndarray
) -> float:
    """
    The largest |difference| between the logits of windows scored both ways, from their P(call): what the fast
    mode's margin must bound. The windows it re-scores are those nearest a threshold, where it matters most.
    """

    def logit(probabilities):
        clipped = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0 - 1e-7)  # float32 softmaxes
        return np.log(clipped) - np.log1p(-clipped)

    if len(reduced_probabilities) == 0:
        return 0.0
    return float(np.abs(logit(reduced_probabilities) - logit(float32_probabilities)).max())
