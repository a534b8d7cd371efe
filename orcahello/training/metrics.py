# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
How fine-tuning scores a model on the evaluation clips: AUPRC (average precision over every threshold), and
precision, recall, F1 and accuracy of `P(call) > 0.5` (the pipeline's strict `>`); [`compute_metrics`] is the
`Trainer`'s hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import evaluate

if TYPE_CHECKING:
    from transformers import EvalPrediction

DECISION_THRESHOLD = 0.5


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """
    Area under the precision-recall curve as average precision (`orcahello.evaluate.average_precision`, which
    `orcahello evaluate` reports), NaN rather than None when there is no positive: the Trainer logs floats.
    """
    value = evaluate.average_precision(np.asarray(labels).reshape(-1), np.asarray(scores).reshape(-1))
    return float("nan") if value is None else value


def positive_probabilities(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """softmax(logits)[:, 1], computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    return probabilities[:, 1]


def classification_metrics(
    labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float = DECISION_THRESHOLD
) -> dict[str, Any]:
    """Precision, recall, F1 and accuracy of `scores > threshold`, and AUPRC, for binary `labels`."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    predicted = scores > threshold
    true_positives = int(np.sum(predicted & labels))
    precision = true_positives / int(predicted.sum()) if predicted.any() else 0.0
    recall = true_positives / int(labels.sum()) if labels.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "auprc": average_precision(labels, scores),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float(np.mean(predicted == labels)),
    }


def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, Any]:
    """`Trainer`'s `compute_metrics`: the model's logits and the labels to `classification_metrics`."""
    logits = eval_prediction.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return classification_metrics(eval_prediction.label_ids, positive_probabilities(logits))
