# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
How fine-tuning scores a model on the evaluation clips: AUPRC (average precision over every threshold), and
precision, recall, F1 and accuracy of `P(call) > 0.5` (the pipeline's strict `>`); [`compute_metrics`] is the
`Trainer`'s hook.
"""

import numpy as np

DECISION_THRESHOLD = 0.5


def average_precision(labels, scores):
    """
    Area under the precision-recall curve as average precision, `sum_n (R_n - R_{n-1}) P_n` over the distinct
    score thresholds (scikit-learn's `average_precision_score`, without interpolation; tied scores form one
    threshold). NaN when there is no positive.
    """
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.size == 0 or labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    threshold_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), labels.size - 1]
    true_positives = np.cumsum(sorted_labels)[threshold_ends]
    precision = true_positives / (threshold_ends + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def positive_probabilities(logits):
    """softmax(logits)[:, 1], computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    return probabilities[:, 1]


def classification_metrics(labels, scores, threshold=DECISION_THRESHOLD):
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


def compute_metrics(eval_prediction):
    """`Trainer`'s `compute_metrics`: the model's logits and the labels to `classification_metrics`."""
    logits = eval_prediction.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return classification_metrics(eval_prediction.label_ids, positive_probabilities(logits))
