# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello adapt`: teach the detector a site from its moderators' labels. The windows `detect` scores are embedded
by the model, a class-balanced logistic regression is fitted on them, and the result is saved as a model folder
whose logits come from that head (`config.adapted_head`): `detect`, `batch`, `live`, `embed`, the pipeline and the
endpoint handler load it like any other.

    orcahello adapt labels.csv --recordings recordings/ --model models/orcahello-srkw-detector-v1 \
        --output-dir models/bush-point-adapted

ANNOTATIONS are `orcahello evaluate`'s: `file,start_s,end_s[,label]` CSVs (what the review page of
`detect --report` downloads) or Raven selection tables. An annotated interval is a call unless its label says
`not_srkw`, `not_srkw:<class>` or `negative`; `unsure` ones are left out. The time of a listed recording that no
annotation covers is negative (`--unannotated ignore` leaves it out instead, for labels given to detections only).
A window is positive when a call interval covers at least half a second of it (or the whole interval, when
shorter); a window that a call touches less, or that an `unsure` interval touches, is left out.

Before the final head is fitted on every labelled window, the recordings are split into `--folds` groups (scikit-
learn's `StratifiedGroupKFold`): each group is held out once while a head is fitted on the others, so no window of
a held-out recording is ever trained on. The held-out scores are aggregated as `detect` aggregates them and measured
as `orcahello evaluate` measures them (one-second AUPRC, files), beside the model's own scores: those figures, not
the final head's fit to its own data, say whether the adaptation helps, and they go into the folder's config, its
README.md card and `adaptation_summary.json`. Needs scikit-learn and pyarrow (`pip install
"orcahello-srkw-detector[adapt]"`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY

from . import evaluate, writers
from .atomic_files import PARTIAL_SUFFIX

if TYPE_CHECKING:
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

# One recording's labelled intervals: `(start, end, kind)`, kind "positive", "negative" or "unsure".
Interval = tuple[float, float, str]

SUMMARY_FILE = "adaptation_summary.json"
DEFAULT_FOLDS = 5
DEFAULT_REGULARIZATION = 1.0
UNANNOTATED_POLICIES = ("negative", "ignore")
# A call shorter than a window is heard in it when the window holds at least this much of it (or all of it).
MIN_CALL_OVERLAP_SECONDS = 0.5
POSITIVE, NEGATIVE, LEFT_OUT = 1, 0, -1
SKLEARN_MISSING = (
    'orcahello adapt needs scikit-learn, which is not installed: pip install "orcahello-srkw-detector[adapt]" '
    '(or pip install "scikit-learn>=1.3")'
)


class AdaptationError(ValueError):
    """Labels, recordings or folds that cannot make a head; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class AdaptOptions:
    """
    What `orcahello adapt` is asked to do (the command line's options, typed).

    Args:
        annotations (`tuple[str, ...]`): annotation files (`orcahello evaluate`'s formats).
        recordings (`tuple[str, ...]`): the labelled recordings: files, folders, globs (as for `detect`).
        output_dir (`str`): the adapted model folder to write (must not exist, unless `overwrite`).
        model (`str`, *optional*): the base model folder or Hub id (default: `detect`'s).
        layer (`str`): `"pooled"` (the 4096 concat-pooled features) or `"head"` (the fastai head's 512).
        folds (`int`): groups of recordings for the held-out figures (at most one per recording).
        regularization (`float`): the logistic regression's `C` (smaller: a simpler head).
        unannotated (`str`): `"negative"` or `"ignore"`: what un-annotated time of a listed recording is.
        recursive (`bool`), device (`str`), batch_size (`int`, *optional*), overwrite (`bool`): as for `detect`.
    """

    annotations: tuple
    recordings: tuple
    output_dir: str
    model: str | None = None
    layer: str = "pooled"
    folds: int = DEFAULT_FOLDS
    regularization: float = DEFAULT_REGULARIZATION
    unannotated: str = "negative"
    recursive: bool = False
    device: str = "auto"
    batch_size: int | None = None
    overwrite: bool = False


@dataclasses.dataclass
class EmbeddedRecording:
    """One labelled recording: its windows, their embeddings and the model's scores, and its window labels."""

    path: str
    recording: dict  # `orcahello.embed.recording_summary`: duration, rate, channels, window and hop seconds
    windows: list  # detect's window entries (start, end)
    embeddings: np.ndarray  # (windows, dimension) float32
    base_scores: np.ndarray  # (windows,) the model's own P(call), from the same forward pass
    labels: np.ndarray  # (windows,) int8: POSITIVE, NEGATIVE or LEFT_OUT


@dataclasses.dataclass
class LinearHead:
    """A logistic regression folded into one linear function of the features: P(call) = sigmoid(x @ weight + bias)."""

    weight: np.ndarray  # (dimension,) float64
    bias: float

    def scores(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(call) of each row of `features` (float64)."""
        logits = np.asarray(features, dtype=np.float64) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-logits))


def require_scikit_learn() -> None:
    """Raise an `ImportError` with an install hint when scikit-learn is missing (checked before a run starts)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(SKLEARN_MISSING) from None


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------


def annotations_by_recording(
    annotations: Iterable[tuple[str, float, float, str]], recordings: Sequence[str]
) -> tuple[dict[int, list[Interval]], list[str]]:
    """
    `{recording index: [(start, end, kind)]}` for the annotations (`[(file, start, end, label)]`) whose `file`
    names one of `recordings` (as `orcahello evaluate` matches them), and the sorted names that match none.
    """
    by_parts = {index: evaluate.path_parts(path) for index, path in enumerate(recordings)}
    found: dict[int, list[Interval]] = {index: [] for index in by_parts}
    unmatched = set()
    for name, start, end, label in annotations:
        index = evaluate.match_recording(name, by_parts)
        if index is None:
            unmatched.add(name)
        else:
            found[index].append((float(start), float(end), evaluate.annotation_kind(label)))
    return found, sorted(unmatched)


def window_labels(
    windows: Sequence[dict[str, Any]], intervals: Iterable[Interval], unannotated: str = "negative"
) -> npt.NDArray[np.int8]:
    """
    Each window's label (`POSITIVE`, `NEGATIVE`, `LEFT_OUT`) from one recording's `(start, end, kind)` intervals,
    by the rule in the module's description.
    """
    if unannotated not in UNANNOTATED_POLICIES:
        raise ValueError(f"unannotated must be one of {UNANNOTATED_POLICIES}, got {unannotated!r}")
    labels = np.full(len(windows), NEGATIVE if unannotated == "negative" else LEFT_OUT, dtype=np.int8)
    for position, window in enumerate(windows):
        start, end = float(window["start"]), float(window["end"])
        # (overlap in seconds, interval length, kind) of every interval the window touches
        touching = [
            (min(end, stop) - max(start, begin), stop - begin, kind)
            for begin, stop, kind in intervals
            if min(end, stop) - max(start, begin) > 0
        ]
        calls = [(overlap, length) for overlap, length, kind in touching if kind == "positive"]
        if any(overlap >= min(MIN_CALL_OVERLAP_SECONDS, length) for overlap, length in calls):
            labels[position] = POSITIVE
        elif calls or any(kind == "unsure" for _, _, kind in touching):
            labels[position] = LEFT_OUT
        elif any(kind == "negative" for _, _, kind in touching):
            labels[position] = NEGATIVE
    return labels


def annotation_files(paths: Iterable[str]) -> list[dict[str, Any]]:
    """`[{"file", "sha256", "annotations"}]` of the annotation files: which labels a head was made from."""
    from .provenance import file_sha256

    return [
        {
            "file": os.path.basename(path),
            "sha256": file_sha256(path),
            "annotations": len(evaluate.read_annotations(path)),
        }
        for path in paths
    ]


# ---------------------------------------------------------------------------------------------------------------
# Embedding the labelled recordings
# ---------------------------------------------------------------------------------------------------------------


def embed_recordings(
    pipe: OrcaHelloAudioClassificationPipeline,
    recordings: Sequence[str],
    intervals: dict[int, list[Interval]],
    layer: str = "pooled",
    batch_size: int | None = None,
    unannotated: str = "negative",
    log: Callable[[str], None] | None = None,
) -> list[EmbeddedRecording]:
    """
    `EmbeddedRecording` of each of `recordings` (paths), with `intervals` (`{index: [(start, end, kind)]}`): the
    windows the pipeline scores, embedded by `orcahello.embed` in one forward pass with the model's own scores.
    """
    from .embed import iter_window_embeddings

    embedded = []
    for index, path in enumerate(recordings):
        try:
            blocks = list(iter_window_embeddings(pipe, path, layer=layer, batch_size=batch_size))
        except Exception as error:  # the pipeline's AudioInputError, an unreadable file: say which, in one line
            from .runs import failure_reason

            raise AdaptationError(f"{path}: {failure_reason(error, path)}") from None
        if not blocks:
            raise AdaptationError(f"{path}: no window to embed")
        windows = [window for block in blocks for window in block.windows or []]  # (`score_windows` sets them)
        assert blocks[0].recording is not None  # `score_windows` gives every block the recording's summary
        embedded.append(
            EmbeddedRecording(
                path=path,
                recording=blocks[0].recording,
                windows=windows,
                embeddings=np.concatenate([block.embeddings for block in blocks]),
                base_scores=np.concatenate([block.scores for block in blocks]).astype(np.float64),
                labels=window_labels(windows, intervals.get(index, []), unannotated),
            )
        )
        if log is not None:
            counts = np.bincount(embedded[-1].labels + 1, minlength=3)
            log(f"{path}: {len(windows)} windows ({counts[2]} positive, {counts[1]} negative, {counts[0]} left out)")
    return embedded


# ---------------------------------------------------------------------------------------------------------------
# Fitting and cross-validation
# ---------------------------------------------------------------------------------------------------------------


def fit_head(
    features: npt.ArrayLike, labels: npt.ArrayLike, regularization: float = DEFAULT_REGULARIZATION
) -> LinearHead:
    """
    A `LinearHead` fitted to `features` (windows x dimension) and binary `labels`: scikit-learn's standardisation and
    `LogisticRegression(class_weight="balanced")` (L2, lbfgs: convex and deterministic), the standardisation folded
    into the weights so that one linear layer computes it.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        raise AdaptationError("the training windows are all of one class: a head needs positive and negative windows")
    features = np.asarray(features, dtype=np.float64)
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(class_weight="balanced", C=regularization, max_iter=5000)
    classifier.fit(scaler.transform(features), labels)
    weight = classifier.coef_[0] / scaler.scale_
    bias = float(classifier.intercept_[0] - np.dot(weight, scaler.mean_))
    return LinearHead(weight=weight, bias=bias)


def recording_folds(embedded: Sequence[EmbeddedRecording], folds: int) -> npt.NDArray[np.int_]:
    """
    The fold (0 .. folds-1) each recording is held out in: scikit-learn's `StratifiedGroupKFold` over the labelled
    windows, grouped by recording (no recording is ever split) and stratified so that each training set holds both
    classes where the recordings allow. Recordings without a labelled window are dealt out in turn.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labelled = [index for index, item in enumerate(embedded) if (item.labels != LEFT_OUT).any()]
    folds = min(int(folds), len(labelled))
    if folds < 2:
        raise AdaptationError(f"held-out figures need at least 2 recordings with labelled windows, got {len(labelled)}")
    groups = np.concatenate([np.full(int((embedded[i].labels != LEFT_OUT).sum()), i) for i in labelled])
    labels = np.concatenate([embedded[i].labels[embedded[i].labels != LEFT_OUT] for i in labelled])
    assignment = np.zeros(len(embedded), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(labels.size), labels, groups)):
        assignment[np.unique(groups[test])] = fold
    unlabelled = [index for index in range(len(embedded)) if index not in set(labelled)]
    for turn, index in enumerate(unlabelled):
        assignment[index] = turn % folds
    return assignment


def training_set(
    embedded: Sequence[EmbeddedRecording], indices: Iterable[int]
) -> tuple[np.ndarray, npt.NDArray[np.int8]]:
    """The features and labels of the labelled windows of the recordings `indices`."""
    features = [embedded[i].embeddings[embedded[i].labels != LEFT_OUT] for i in indices]
    labels = [embedded[i].labels[embedded[i].labels != LEFT_OUT] for i in indices]
    return np.concatenate(features), np.concatenate(labels)


def cross_validate(
    embedded: list[EmbeddedRecording],
    folds: int,
    regularization: float = DEFAULT_REGULARIZATION,
    fit: Callable[[np.ndarray, np.ndarray, float], LinearHead] = fit_head,
) -> tuple[list[npt.NDArray[np.float64]], npt.NDArray[np.int_], list[LinearHead]]:
    """
    Held-out scores of every window: per fold, a head fitted (`fit(features, labels, regularization)`) on the other
    folds' recordings scores the fold's. Returns `(scores per recording, fold per recording, heads per fold)`.
    """
    assignment = recording_folds(embedded, folds)
    held_out_scores: list[Any] = [None] * len(embedded)  # every recording is held out in one fold, below
    heads = []
    for fold in range(int(assignment.max()) + 1):
        training = [index for index in range(len(embedded)) if assignment[index] != fold]
        features, labels = training_set(embedded, training)
        try:
            head = fit(features, labels, regularization)
        except AdaptationError as error:
            held = [os.path.basename(embedded[i].path) for i in range(len(embedded)) if assignment[i] == fold]
            raise AdaptationError(f"fold {fold + 1} (holding out {', '.join(held)}): {error}") from None
        heads.append(head)
        for index in np.flatnonzero(assignment == fold):
            held_out_scores[index] = head.scores(embedded[index].embeddings)
    return held_out_scores, assignment, heads


# ---------------------------------------------------------------------------------------------------------------
# Held-out figures, as `orcahello evaluate` measures them
# ---------------------------------------------------------------------------------------------------------------


def scored_document(
    item: EmbeddedRecording, window_scores: Sequence[float] | np.ndarray, decision_settings: dict[str, Any]
) -> dict[str, Any]:
    """
    What `detect` would write for `item`'s recording scored `window_scores`: the pipeline's own aggregation
    (`results_orcahello.build_file_result`) with `decision_settings` (the model's inference fields), as
    `orcahello evaluate` reads it.
    """
    from results_orcahello import DecisionParameters, build_file_result

    recording = item.recording
    info = {
        "name": item.path,
        "sampling_rate": recording["sampling_rate"],
        "num_samples": int(round(recording["duration_s"] * recording["sampling_rate"])),
        "num_channels": recording["num_channels"],
        "num_windows": len(item.windows),
        "window_seconds": recording["window_seconds"],
        "hop_seconds": recording["hop_seconds"],
        "timeline": None,  # UTC times do not change a measure
    }
    decision = DecisionParameters.from_mapping(decision_settings)
    document = build_file_result(info, window_scores, decision=decision, return_timestamps=True)
    assert isinstance(document, dict)  # with return_timestamps, the full result
    return {**document, "file": item.path, "parameters": dict(document["parameters"])}


def precision_at_recall(labels: np.ndarray, scores: np.ndarray, recall: float | None) -> float | None:
    """The precision at the highest threshold whose recall reaches `recall` (None without positives)."""
    if recall is None or not np.any(labels):
        return None
    precision, achieved, _ = evaluate.precision_recall_curve(labels, scores)
    return float(precision[np.argmax(achieved >= recall - 1e-12)])


def held_out_figures(
    embedded: Sequence[EmbeddedRecording],
    held_out_scores: Sequence[np.ndarray],
    annotations: Sequence[tuple[str, float, float, str]],
    decision_settings: dict[str, Any],
) -> dict[str, Any]:
    """
    The base model's and the adapted heads' held-out results measured by `orcahello.evaluate.evaluate` (one-second
    AUPRC, precision and recall of its decision, file AUPRC), and the precision of each at the base model's recall.
    """
    measured = {}
    for name, scores in (("base", [item.base_scores for item in embedded]), ("adapted", held_out_scores)):
        documents = [
            scored_document(item, item_scores, decision_settings) for item, item_scores in zip(embedded, scores)
        ]
        measured[name] = evaluate.evaluate(documents, annotations)
    base_recall = measured["base"][0]["seconds"]["recall"]
    figures = {"base_recall": base_recall}
    for name, (metrics, (labels, second_scores, _)) in measured.items():
        seconds = metrics["seconds"]
        at_recall = precision_at_recall(labels, second_scores, base_recall)
        figures[name] = {
            "seconds_auprc": seconds["auprc"],
            "files_auprc": metrics["files"]["auprc"],
            "precision": seconds["precision"],
            "recall": seconds["recall"],
            "precision_at_base_recall": None if at_recall is None else round(at_recall, 6),
            "seconds": seconds["examples"],
            "annotated_seconds": seconds["positives"],
        }
    return figures


# ---------------------------------------------------------------------------------------------------------------
# The adapted model folder
# ---------------------------------------------------------------------------------------------------------------


def save_adapted_folder(
    pipe: OrcaHelloAudioClassificationPipeline,
    head: LinearHead,
    output_dir: str,
    adapted_head: dict[str, Any],
    card: str,
    extra_files: dict[str, Any] | None = None,
) -> str:
    """
    Save the pipeline's model with `head` as its `adapted_head` (and `adapted_head`, the provenance dict, in its
    config) as a complete model folder at `output_dir`, written beside it and renamed when complete (replacing
    any folder there). `card` is the README.md; `extra_files` (`{name: JSON-able document}`) go in too.
    """
    import copy

    import torch
    from torch import nn

    from .conversion.model_folder import save_model_folder

    model = copy.deepcopy(pipe.model).to("cpu", torch.float32).eval()  # type: ignore[arg-type]  # transformers wraps `to`
    model.config.adapted_head = adapted_head
    dimension = model.config.layer_size(adapted_head["layer"])
    if head.weight.shape != (dimension,):
        raise AdaptationError(
            f"the head reads {head.weight.shape[0]} features; layer {adapted_head['layer']} has {dimension}"
        )
    linear = nn.Linear(dimension, model.config.num_labels)
    with torch.no_grad():
        # softmax([-z/2, z/2])[1] = sigmoid(z): the folder's P(call) is the logistic regression's probability.
        weight = torch.as_tensor(head.weight, dtype=torch.float64) / 2
        linear.weight.copy_(torch.stack([-weight, weight]).float())
        linear.bias.copy_(torch.tensor([-head.bias / 2, head.bias / 2], dtype=torch.float32))
    model.adapted_head = linear
    parent, name = os.path.split(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    # Written beside, renamed when complete: a killed run never leaves a folder that loads as a finished model.
    temporary = tempfile.mkdtemp(prefix=f".{name}.", suffix=PARTIAL_SUFFIX, dir=parent)
    try:
        save_model_folder(model, temporary, feature_extractor=pipe.feature_extractor, model_card=card)
        for file_name, document in (extra_files or {}).items():
            writers.write_json(os.path.join(temporary, file_name), document)
        if os.path.isdir(output_dir):
            shutil.rmtree(output_dir)
        os.replace(temporary, output_dir)
    finally:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary)
    return output_dir


# ---------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------


def adapt(
    options: AdaptOptions, command: Sequence[str] | None = None, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """
    What `orcahello adapt` does (see the module's description): returns the summary written to
    `<output_dir>/adaptation_summary.json`. Raises `AdaptationError` (or `EvaluationError`) with a one-line reason
    for labels, recordings or options that cannot make a head.
    """
    from . import __version__, inputs, models, provenance
    from .adapted_card import adapted_model_card
    from .embed import require_pyarrow

    log = log or (lambda message: print(message, file=sys.stderr))
    require_scikit_learn()
    require_pyarrow()
    if options.layer not in ("pooled", "head"):
        raise AdaptationError(f"layer must be pooled or head, got {options.layer!r}")
    if not options.regularization > 0:
        raise AdaptationError(f"--regularization must be a positive number, got {options.regularization}")
    if os.path.exists(options.output_dir) and os.listdir(options.output_dir) and not options.overwrite:
        raise AdaptationError(f"{options.output_dir} exists and is not empty (--overwrite replaces it)")
    started, started_at = time.monotonic(), provenance.now_iso()
    annotations = [row for path in options.annotations for row in evaluate.read_annotations(path)]
    recordings, problems = inputs.find_audio_files(list(options.recordings), recursive=options.recursive)
    if problems:
        raise AdaptationError("; ".join(f"{path}: {reason}" for path, reason in problems))
    intervals, unmatched = annotations_by_recording(annotations, recordings)
    for name in unmatched:
        log(f"WARNING: annotations of {name!r} match no recording given with --recordings; left out")

    model = options.model or models.default_model()
    device = models.resolve_device(options.device)
    pipe = models.load_pipeline(model, device)
    base_info = provenance.describe_model_config(pipe.model.config, model)
    # The preset's fields and no confidence floor (`DecisionParameters`' default): the model's own decision.
    decision_settings = pipe.model.config.inference_settings()
    embedded = embed_recordings(
        pipe, recordings, intervals, options.layer, options.batch_size, options.unannotated, log=log
    )
    held_out_scores, assignment, _ = cross_validate(embedded, options.folds, options.regularization)
    figures = held_out_figures(embedded, held_out_scores, annotations, decision_settings)
    features, labels = training_set(embedded, range(len(embedded)))
    head = fit_head(features, labels, options.regularization)

    counts = {
        "positive": int(sum((item.labels == POSITIVE).sum() for item in embedded)),
        "negative": int(sum((item.labels == NEGATIVE).sum() for item in embedded)),
        "left_out": int(sum((item.labels == LEFT_OUT).sum() for item in embedded)),
    }
    base_identity = {
        key: base_info[key]
        for key in ("name_or_path", "revision", "weights_sha256", SYNTHETIC_WEIGHTS_KEY, "adapted_head")
        if key in base_info
    }
    if os.path.isdir(model):
        # The folder's name, not this machine's path: the adapted folder and its card may be shared or uploaded;
        # the weights' sha256 says which weights they were.
        base_identity["name_or_path"] = os.path.basename(os.path.normpath(model))
    adapted_head = {
        "layer": options.layer,
        "method": f"scikit-learn StandardScaler + LogisticRegression(class_weight='balanced', C={options.regularization})"
        ", folded into one linear layer",
        "annotations": annotation_files(options.annotations),
        "recordings": len(embedded),
        "windows": counts,
        "unannotated": options.unannotated,
        "held_out": {"folds": int(assignment.max()) + 1, "grouped_by": "recording", **figures},
        "base_model": base_identity,
        "created_at": provenance.now_iso(),
        "version": __version__,
    }
    summary = {
        "adapted_head": adapted_head,
        "recordings": [
            {
                "path": item.path,
                "fold": int(fold) + 1,
                "windows": len(item.windows),
                "positive": int((item.labels == POSITIVE).sum()),
                "negative": int((item.labels == NEGATIVE).sum()),
                "left_out": int((item.labels == LEFT_OUT).sum()),
            }
            for item, fold in zip(embedded, assignment)
        ],
        "annotations_without_recordings": unmatched,
        "options": {**dataclasses.asdict(options), "model": model, "device": str(pipe.device)},
        "command": list(command) if command is not None else None,
        "started_at": started_at,
        "finished_at": provenance.now_iso(),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    card = adapted_model_card(model, adapted_head)
    save_adapted_folder(pipe, head, options.output_dir, adapted_head, card, extra_files={SUMMARY_FILE: summary})
    return summary


def figure_line(figures: dict[str, Any]) -> str:
    """The held-out figures in one line (the command's report)."""

    def show(value):
        return "n/a" if value is None else f"{value:.3f}"

    base, adapted = figures["base"], figures["adapted"]
    return (
        f"held-out one-second AUPRC {show(base['seconds_auprc'])} -> {show(adapted['seconds_auprc'])}; precision at "
        f"the base model's recall ({show(figures['base_recall'])}) {show(base['precision_at_base_recall'])} -> "
        f"{show(adapted['precision_at_base_recall'])}; file AUPRC {show(base['files_auprc'])} -> "
        f"{show(adapted['files_auprc'])}"
    )


def adapt_command(options: AdaptOptions, command: Sequence[str] | None = None) -> int:
    """Run `orcahello adapt`; returns the exit status (0, or 2 with a one-line error)."""
    from . import EXIT_CANNOT_RUN, EXIT_OK, models

    try:
        summary = adapt(options, command=command)
    except (AdaptationError, evaluate.EvaluationError, models.ModelNotFoundError, ImportError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    head = summary["adapted_head"]
    print(
        f"{head['recordings']} recording(s), {head['windows']['positive']} positive and "
        f"{head['windows']['negative']} negative windows ({head['windows']['left_out']} left out); "
        f"{head['held_out']['folds']} folds by recording: {figure_line(head['held_out'])}. "
        f"Adapted model in {options.output_dir}"
    )
    return EXIT_OK
