# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello evaluate`: measure `orcahello detect`'s results against annotations, at one-second resolution as upstream's
`ModelEvaluation/score.py` (orcasound/aifororcas-livesystem) scores its test sets, and at file level.

    orcahello evaluate results/ --annotations annotations.csv --output metrics.json

DETECTIONS is a folder of `detect` results (every `*.orcahello.json` under it) or such files. The annotations are a
CSV `file,start_s,end_s,label` (label optional) or Raven selection tables (tab-separated, `Begin Time (s)`,
`End Time (s)`, the recording in `Begin File` with `File Offset (s)` when the table spans several files, else the
table's own name up to its first dot); `--annotations` may be repeated. A recording without annotations is negative
throughout; annotations of a recording that has no result are listed in the output and left out. An annotation marks
positive seconds unless its label says otherwise: `not_srkw`, `not_srkw:<class>` or `negative` (what the review
page writes for "no") mark nothing, and the seconds of an `unsure` one that no positive marks are left out.

The one-second rule (score.py's `quantize_interval_to_seconds`): an interval from `start` to `end` marks the seconds
`floor(start)` to `min(ceil(end), floor(duration))`, both included, of a recording with `ceil(duration)` seconds
(seconds past the last are dropped). Annotated intervals mark positive seconds. The detector's scoring rows
(`submission`: production's one-second rows) give each second the highest confidence of the rows marking it (0 when
none does), and a positive decision when that confidence is above the recording's `local_threshold`. The inclusive
end is score.py's own: a one-second row from t to t+1 also marks second t+1, as it did when upstream scored
production's tables. Seconds of all recordings are pooled; AUPRC is average precision (score.py calls
scikit-learn's `average_precision_score`): the sum over the distinct scores, from the highest, of the precision at
that score times the recall it adds. File level: a recording is positive when any of its seconds is annotated, its
score is its global confidence (0-1) and its decision the detector's `global_prediction`.
"""

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vocabulary_orcahello import DECISION_FIELDS, SYNTHETIC_WEIGHTS_KEY

from . import saved_results, writers

RAVEN_BEGIN, RAVEN_END = "Begin Time (s)", "End Time (s)"
RAVEN_FILE, RAVEN_OFFSET = "Begin File", "File Offset (s)"
RAVEN_LABEL_COLUMNS = ("Label", "Annotation", "Class", "Species")
CSV_COLUMNS = ("file", "start_s", "end_s")
# The labels the review page writes (`orcahello detect --report`) and `orcahello adapt` reads: `srkw` for a call,
# `not_srkw` or `not_srkw:<class>` (vessel, water, ...) for a detection that is not one, `unsure`. Any other label
# (a Raven table's species, `call`, `SRKW`) marks a call.
NEGATIVE_LABELS = ("not_srkw", "negative")
UNSURE_LABEL = "unsure"
PR_CURVE_SUFFIX = ".pr_curve.png"
MATCHING_RULE = (
    "score.py's: an interval [start, end] marks seconds floor(start) .. min(ceil(end), floor(duration)) inclusive, "
    "of ceil(duration) seconds; annotations mark positive seconds; each second's score is the highest confidence of "
    "the detector's scoring rows marking it (0 if none), positive when above the recording's local_threshold; "
    "annotations labelled not_srkw[:class] or negative mark nothing, seconds of unsure ones (not marked positive) "
    "are left out; seconds of all recordings pooled; auprc = average precision (as scikit-learn's average_precision_score). File "
    "level: positive when any second is annotated; score = global confidence (0-1; results saved before 0-1 read on that scale); "
    "decision = global_prediction."
)


class EvaluationError(ValueError):
    """Detections or annotations that cannot be read or matched; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    `(precision, recall, thresholds)` at each distinct score, from the highest: a sample is called positive when its
    score is `>=` the threshold. Needs at least one positive label.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # The last sample of each run of equal scores: every sample of a run is called positive at once.
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(labels)[last_of_run]
    called = last_of_run + 1
    return true_positives / called, true_positives / true_positives[-1], scores[last_of_run]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The area under the precision-recall curve as average precision; None when no label is positive."""
    if not np.any(np.asarray(labels)):
        return None
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def decision_metrics(labels: np.ndarray, decisions: np.ndarray) -> dict[str, Any]:
    """Counts, precision, recall and F1 of binary `decisions` against `labels` (None where undefined)."""
    labels = np.asarray(labels, dtype=bool)
    decisions = np.asarray(decisions, dtype=bool)
    true_positives = int(np.sum(labels & decisions))
    false_positives = int(np.sum(~labels & decisions))
    false_negatives = int(np.sum(labels & ~decisions))
    precision = _ratio(true_positives, true_positives + false_positives)
    recall = _ratio(true_positives, true_positives + false_negatives)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "examples": int(labels.size),
        "positives": int(labels.sum()),
        "true_positives": true_positives,
        "false_positives": false_positives,
        "false_negatives": false_negatives,
        "precision": _round(precision),
        "recall": _round(recall),
        "f1": _round(f1),
    }


def scored_metrics(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray) -> dict[str, Any]:
    """`decision_metrics` plus `auprc` over `scores`."""
    metrics = decision_metrics(labels, decisions)
    auprc = average_precision(labels, scores) if len(labels) else None
    return {"auprc": _round(auprc), **metrics}


def _ratio(numerator, denominator):
    return None if denominator == 0 else numerator / denominator


def _round(value, digits=6):
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------------------------------------------
# One-second quantization (score.py's rule)
# ---------------------------------------------------------------------------------------------------------------


def marked_seconds(start: float, end: float, duration: float) -> range:
    """The seconds an interval marks (see the module docstring), within the recording's `ceil(duration)` seconds."""
    last = min(math.ceil(end), math.floor(duration), math.ceil(duration) - 1)
    return range(max(0, math.floor(start)), last + 1)


def second_scores(document: dict[str, Any]) -> np.ndarray:
    """Per second of a `detect` result: the highest confidence of the scoring rows marking it (0 where none does)."""
    duration = float(document["duration_s"])
    scores = np.zeros(math.ceil(duration), dtype=np.float64)
    for row in document["submission"]:
        start = float(row["start_time_s"])
        for second in marked_seconds(start, start + float(row["duration_s"]), duration):
            scores[second] = max(scores[second], float(row["confidence"]))
    return scores


def second_labels(intervals: Sequence[tuple[float, float]], duration: float) -> np.ndarray:
    labels = np.zeros(math.ceil(duration), dtype=bool)
    for start, end in intervals:
        for second in marked_seconds(start, end, duration):
            labels[second] = True
    return labels


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------


def load_detections(paths: Iterable[str]) -> list[dict[str, Any]]:
    """The `detect` results under `paths` (folders searched recursively for `*.orcahello.json`, or such files)."""
    suffix = writers.OUTPUT_SUFFIXES["json"]
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                files.extend(os.path.join(folder, name) for name in sorted(names) if name.endswith(suffix))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise EvaluationError(f"{path}: no such file or folder")
    documents = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"{path}: not a readable detect result ({error})") from None
        missing = [key for key in ("file", "duration_s", "submission", "global_prediction") if key not in document]
        if missing:
            raise EvaluationError(f"{path}: not a detect result (no {', '.join(missing)})")
        try:
            rows_ok = all(
                all(isinstance(row[key], (int, float)) for key in ("start_time_s", "duration_s", "confidence"))
                for row in document["submission"]
            )
        except (KeyError, TypeError):
            rows_ok = False
        if not rows_ok or not is_duration(document["duration_s"]):
            raise EvaluationError(
                f"{path}: not a detect result (bad duration_s or submission rows): a duration is a number of seconds "
                f"from 0 to {MAX_RECORDING_SECONDS}"
            )
        try:
            documents.append(saved_results.on_unit_scale(document, path))
        except saved_results.SavedResultError as error:
            raise EvaluationError(str(error)) from None
    if not documents:
        raise EvaluationError(f"no detect results (*{suffix}) in {', '.join(map(str, paths))}")
    return documents


# The longest recording evaluated: its seconds are arrays (a few bytes each), so a `duration_s` of 3e9 in a hostile
# result file took over 6 GB. 31 days is far beyond any recording a detect run scores in one piece.
MAX_RECORDING_SECONDS = 31 * 24 * 3600


def is_duration(value: Any) -> bool:
    """Whether `value` is a recording's duration in seconds: a number (not a boolean) from 0 to the bound above."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= MAX_RECORDING_SECONDS


def _number(text, where, column):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise EvaluationError(f"{where}: {column} {text!r} must be a number >= 0")
    return value


def read_annotations(path: str) -> list[tuple[str, float, float, str]]:
    """`[(file, start_s, end_s, label)]` from a `file,start_s,end_s[,label]` CSV or a Raven selection table."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read the annotations ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise EvaluationError(f"{path}: not a UTF-8 text file") from None
    try:
        return _annotation_rows(path, text)
    except csv.Error as error:  # a field over the csv module's limit, a NUL byte...
        raise EvaluationError(f"{path}: not a readable CSV ({error})") from None


def _annotation_rows(path: str, text: str) -> list[tuple[str, float, float, str]]:
    """`read_annotations`'s rows from the file's `text`."""
    first_line = text.split("\n", 1)[0]
    raven = "\t" in first_line and RAVEN_BEGIN in first_line
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if raven else ",")
    columns = reader.fieldnames or []
    required = (RAVEN_BEGIN, RAVEN_END) if raven else CSV_COLUMNS
    missing = [name for name in required if name not in columns]
    if missing:
        raise EvaluationError(
            f"{path}: no column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}[,label] or a Raven "
            f"selection table; the file has {', '.join(columns) or 'no header'}"
        )
    label_column = next((name for name in RAVEN_LABEL_COLUMNS if name in columns), None) if raven else "label"
    annotations = []
    for line, row in enumerate(reader, start=2):
        where = f"{path}, line {line}"
        if raven:
            begin, end = _number(row[RAVEN_BEGIN], where, RAVEN_BEGIN), _number(row[RAVEN_END], where, RAVEN_END)
            offset = row.get(RAVEN_OFFSET)
            start = _number(offset, where, RAVEN_OFFSET) if offset not in (None, "") else begin
            stop = start + (end - begin)
            name = (row.get(RAVEN_FILE) or "").strip() or os.path.basename(path).split(".", 1)[0]
        else:
            start, stop = _number(row["start_s"], where, "start_s"), _number(row["end_s"], where, "end_s")
            name = (row["file"] or "").strip()
            if not name:
                raise EvaluationError(f"{where}: empty file name")
        if stop < start:
            raise EvaluationError(f"{where}: the end ({stop}) is before the start ({start})")
        label = ((row.get(label_column) if label_column else None) or "").strip()
        annotations.append((name, start, stop, label))
    return annotations


def annotation_kind(label: str | None) -> str:
    """
    What an annotation's label says: `"negative"` for `not_srkw`, `not_srkw:<class>` and `negative`, `"unsure"` for
    `unsure` (any case), `"positive"` for anything else (an empty label included).
    """
    name = (label or "").strip().lower()
    if name == UNSURE_LABEL:
        return "unsure"
    return "negative" if name.split(":", 1)[0].strip() in NEGATIVE_LABELS else "positive"


def path_parts(path: str | os.PathLike[str]) -> list[str]:
    return [part for part in os.fspath(path).replace("\\", "/").split("/") if part not in ("", ".")]


def match_recording(name: str, documents_by_parts: dict[int, list[str]]) -> int | None:
    """
    The result an annotation's `file` names: the one whose path ends with that file's path (whole folder/file names),
    or whose file name without extension is `name` when `name` has no extension. Raises on an ambiguous name.
    """
    wanted = path_parts(name)
    found = [
        index
        for index, parts in documents_by_parts.items()
        if parts[-len(wanted) :] == wanted
        or ("." not in wanted[-1] and len(wanted) == 1 and os.path.splitext(parts[-1])[0] == wanted[0])
    ]
    if len(found) > 1:
        raise EvaluationError(f"annotation file {name!r} matches {len(found)} results; give more of its path")
    return found[0] if found else None


def site_of(document: dict[str, Any]) -> str:
    """The site a result belongs to: its `--site-thresholds` site, else the folder above `hls` in an archive path,
    else its folder's name."""
    site = (document.get("site_thresholds") or {}).get("site")
    if site:
        return site
    parts = path_parts(document["file"])
    if "hls" in parts[:-1] and parts.index("hls") > 0:
        return parts[parts.index("hls") - 1]
    return parts[-2] if len(parts) > 1 else "(none)"


def results_models(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models that made `documents` (each result's `model`, as detect records it), each once, in order of first
    appearance; a result without one counts as `{}`."""
    models = []
    for document in documents:
        model = document.get("model") or {}
        if model not in models:
            models.append(model)
    return models


def file_score(document: dict[str, Any]) -> float:
    """A file's score: its global confidence, 0-1 (`load_detections` reads older results on that scale)."""
    return float(document.get("global_confidence") or 0.0)


# ---------------------------------------------------------------------------------------------------------------
# The evaluation
# ---------------------------------------------------------------------------------------------------------------


def evaluate(
    documents: Sequence[dict[str, Any]],
    annotations: Iterable[tuple[str, float, float, str]],
    positive_labels: Iterable[str] | None = None,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """
    The metrics of `documents` (detect results) against `annotations` (`[(file, start, end, label)]`): positive
    seconds are those of annotations whose `annotation_kind` is positive, or with `positive_labels` those with one
    of these labels (case-insensitive); the seconds of `unsure` annotations that no positive one marks are left out.
    """
    wanted = None if not positive_labels else {label.strip().lower() for label in positive_labels}
    by_parts = {index: path_parts(document["file"]) for index, document in enumerate(documents)}
    intervals: dict[int, list[tuple[float, float]]] = {index: [] for index in by_parts}
    unsure_intervals: dict[int, list[tuple[float, float]]] = {index: [] for index in by_parts}
    unmatched = set()
    for name, start, end, label in annotations:
        index = match_recording(name, by_parts)
        kind = annotation_kind(label)
        if index is None:
            unmatched.add(name)
        elif (kind == "positive") if wanted is None else (label.lower() in wanted):
            intervals[index].append((start, end))
        elif kind == "unsure":
            unsure_intervals[index].append((start, end))

    pooled: dict[str, list] = {"labels": [], "scores": [], "decisions": [], "sites": []}
    per_file, files = [], []
    for index, document in enumerate(documents):
        duration = float(document["duration_s"])
        threshold = float((document.get("parameters") or {}).get("local_threshold", 0.5))
        scores = second_scores(document)
        labels = second_labels(intervals[index], duration)
        kept = ~(second_labels(unsure_intervals[index], duration) & ~labels)
        scores, labels = scores[kept], labels[kept]
        decisions = scores > threshold
        site = site_of(document)
        pooled["labels"].append(labels)
        pooled["scores"].append(scores)
        pooled["decisions"].append(decisions)
        pooled["sites"].append(np.full(labels.size, site, dtype=object))
        files.append((site, bool(labels.any()), file_score(document), bool(document["global_prediction"])))
        per_file.append(
            {
                "file": document["file"],
                "site": site,
                "duration_s": duration,
                "local_threshold": threshold,
                "annotated_seconds": int(labels.sum()),
                "unsure_seconds_left_out": int((~kept).sum()),
                "global_prediction": int(bool(document["global_prediction"])),
                "global_confidence": document.get("global_confidence"),
                "seconds": scored_metrics(labels, scores, decisions),
            }
        )
    labels, scores, decisions = (np.concatenate(pooled[key]) for key in ("labels", "scores", "decisions"))
    sites = np.concatenate(pooled["sites"])
    file_sites = [site for site, _, _, _ in files]
    file_columns = [np.array([entry[column] for entry in files]) for column in (1, 2, 3)]
    seconds = scored_metrics(labels, scores, decisions)
    per_site = {}
    for site in sorted(set(file_sites)):
        in_site = sites == site
        file_mask = np.array([name == site for name in file_sites])
        per_site[site] = {
            "num_files": int(file_mask.sum()),
            "seconds": scored_metrics(labels[in_site], scores[in_site], decisions[in_site]),
            "files": scored_metrics(*(column[file_mask] for column in file_columns)),
        }
    models = results_models(documents)
    return {
        "auprc": seconds["auprc"],
        # Whose results these are: figures of one model say nothing of another, and the stand-in's say nothing.
        "models": models,
        "warnings": [writers.STANDIN_WARNING] if any(model.get(SYNTHETIC_WEIGHTS_KEY) for model in models) else [],
        "matching_rule": MATCHING_RULE,
        "positive_labels": sorted(wanted) if wanted else "every annotation but not_srkw[:class], negative, unsure",
        "thresholds_used": {
            "local_threshold": sorted({entry["local_threshold"] for entry in per_file}),
            "file_decision": f"each result's global_prediction (its decision fields: {', '.join(DECISION_FIELDS)})",
        },
        "seconds": seconds,
        "files": scored_metrics(*file_columns),
        "per_site": per_site,
        "per_file": per_file,
        "annotations_without_results": sorted(unmatched),
    }, (labels, scores, sites)


def plot_pr_curves(labels: np.ndarray, scores: np.ndarray, sites: np.ndarray, path: str) -> None:
    """Precision against recall at one-second resolution: all recordings, and each site with annotated seconds."""
    from .figures import new_figure, save_figure

    figure, (axes,) = new_figure()
    curves = [("all", np.ones(labels.size, dtype=bool))] + [(site, sites == site) for site in sorted(set(sites))]
    for index, (name, mask) in enumerate(curves):
        if not labels[mask].any() or (name != "all" and len(curves) == 2):
            continue
        precision, recall, _ = precision_recall_curve(labels[mask], scores[mask])
        auprc = average_precision(labels[mask], scores[mask])
        style = {"linewidth": 2.2, "color": "black"} if index == 0 else {"linewidth": 1.2}
        label = f"{name} (AUPRC {auprc:.3f})"
        axes.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", label=label, **style)
    axes.set(xlabel="recall (seconds)", ylabel="precision (seconds)", xlim=(0, 1.01), ylim=(0, 1.02))
    axes.set_title("Precision-recall at one-second resolution", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    save_figure(figure, path)


# ---------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """
    What `orcahello evaluate` can be told (its command-line options; see `evaluate`).

    Args:
        detections (`tuple[str, ...]`): folders of detect results, or their JSON files.
        annotations (`tuple[str, ...]`): `file,start_s,end_s[,label]` CSVs or Raven selection tables.
        output (`str`): where the metrics go (JSON).
        positive_labels (`tuple[str, ...]`, *optional*): only annotations with these labels mark positive seconds;
            None: every annotation.
        plot (`str`, *optional*): the precision-recall picture; None: beside `output`, `<name>.pr_curve.png`.
    """

    detections: tuple[str, ...]
    annotations: tuple[str, ...]
    output: str
    positive_labels: tuple[str, ...] | None = None
    plot: str | None = None


def evaluate_command(options: EvaluateOptions) -> int:
    """Run `orcahello evaluate` with `options`; returns the exit status (0, or 2 with an error line)."""
    import sys

    try:
        documents = load_detections(options.detections)
        annotations = [row for path in options.annotations for row in read_annotations(path)]
        metrics, (labels, scores, sites) = evaluate(documents, annotations, options.positive_labels)
    except EvaluationError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    for warning in metrics["warnings"]:
        print(f"NOTE: {warning}", file=sys.stderr)
    if len(metrics["models"]) > 1:
        print(f"WARNING: the results were made by {len(metrics['models'])} models; the metrics pool them",
              file=sys.stderr)  # fmt: skip
    for name in metrics["annotations_without_results"]:
        print(f"WARNING: annotations of {name!r} match no detect result; left out", file=sys.stderr)
    plot_path = options.plot or os.path.splitext(options.output)[0] + PR_CURVE_SUFFIX
    metrics["pr_curve_png"] = None
    try:
        if labels.any():
            try:
                plot_pr_curves(labels, scores, sites, plot_path)
                metrics["pr_curve_png"] = plot_path
            except ImportError as error:
                print(f"NOTE: no precision-recall picture: {error}", file=sys.stderr)
        else:
            print("NOTE: no annotated second: no AUPRC and no precision-recall picture", file=sys.stderr)
        writers.write_json(options.output, metrics)
    except OSError as error:
        print(f"ERROR: cannot write {error.filename or options.output}: {error.strerror or error}", file=sys.stderr)
        return 2
    seconds, files = metrics["seconds"], metrics["files"]
    print(
        f"{len(documents)} recording(s), {seconds['examples']} seconds ({seconds['positives']} annotated): "
        f"AUPRC {_show(seconds['auprc'])}, precision {_show(seconds['precision'])}, "
        f"recall {_show(seconds['recall'])}, F1 {_show(seconds['f1'])}; "
        f"files: precision {_show(files['precision'])}, recall {_show(files['recall'])}. "
        f"Metrics in {options.output}"
    )
    return 0


def _show(value):
    return "n/a" if value is None else f"{value:.3f}"
