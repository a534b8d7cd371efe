# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello calibrate`: fit a per-hydrophone confidence floor (`min_global_confidence`) from labelled detections and
write it as a `--site-thresholds` table, with a report beside it.

    orcahello calibrate test-data/data/moderator_labels/detections.csv --target-precision 0.5 --output calibrated/sites.json

The input is a CSV with one row per event heard at a hydrophone: its site, the detector's file-level confidence when
the detector flagged it (empty when only people reported it) and the class people gave it. The defaults read
Orcasound's moderator export (`NodeName`, `Confidence` on 0-100, `Category`, SRKW = `resident`).

For each site, the floor is the lowest flagged event's confidence (on 0-1) at which the events flagged at or above it
reach the target precision (share of positives) with at least `--min-flagged` of them; 0 when all flagged events
already do (the production decision is kept). Where no floor does, the site gets the floor 1.0, above every score of
the data: it flags nothing (`"flags_nothing": true` in its `fit`), except a minute at exactly 100.

Each entry's `fit` records what it was fitted on: the counts, the precision at production's decision and at the floor,
the share of the site's known positive events still flagged (recall among the labelled events; events that only
people reported were never flagged), the false positives' classes and the SHA-256 of the data.

Site names are written as the CSV gives them and matched (`orcahello.site_thresholds`) against every folder name of a
recording's path: Orcasound's node names (`rpi_bush_point`) are the node folders of its archive paths
(`<bucket>/rpi_bush_point/hls/<epoch>/live042.ts`).

No calibration map (isotonic, Platt) is fitted: a monotone map of the confidence leaves the minutes above a floor
unchanged, so it would not change a decision; and the labelled events are a curated list rather than a sample of the
stream, so the probabilities it gave would not be P(SRKW) of a minute on the stream either.
"""

import csv
import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import site_thresholds, writers

DEFAULT_SITE_COLUMN = "NodeName"
DEFAULT_SCORE_COLUMN = "Confidence"
DEFAULT_LABEL_COLUMN = "Category"
DEFAULT_POSITIVE_LABELS = ("resident",)
DEFAULT_SCORE_SCALE = 100.0
DEFAULT_MIN_FLAGGED = 10
# The decision field (vocabulary_orcahello.DECISION_FIELDS) this command fits per site: the floor on the confidence.
FITTED_FIELD = "min_global_confidence"
# The floor of a site where no floor reaches the target: above every confidence the detector can give but 100.
FLAGS_NOTHING_FLOOR = 1.0
# The thresholds of the report's curves: every hundredth of the 0-1 scale.
CURVE_THRESHOLDS = tuple(step / 100.0 for step in range(101))
# Characters that would make a site name a glob pattern or a path in the site table.
PATTERN_CHARACTERS = set("*?[]/\\")

REPORT_SUFFIXES = {
    "curves_csv": ".precision_curves.csv",
    "curves_png": ".precision_curves.png",
    "false_positives_csv": ".false_positives.csv",
    "report_md": ".report.md",
}
CURVE_COLUMNS = ("site", "threshold", "flagged", "positives_flagged", "precision", "flagged_share", "recall_labelled")
# Upstream's live thresholds, set by hand per hydrophone (orcasound/orcahello, InferenceSystem/deploy/: Bush Point
# 0.90 against a mechanical squeak at 034e397, North SJC 0.95 against a chain jingle at 57beba7) over the model
# config's `global_prediction.pred_global_threshold` of 0.6 (InferenceSystem/model/config.yaml at 423ff5b) that
# every other hydrophone runs with.
UPSTREAM_DEFAULT_THRESHOLD = 0.6
UPSTREAM_SITE_THRESHOLDS = {"rpi_bush_point": 0.90, "rpi_north_sjc": 0.95}
# The keys of the hydrophone config `--upstream-overrides` writes that are not decisions, as upstream's live pods
# set them (one minute decided at a time, from the live HLS stream).
UPSTREAM_STREAM_SETTINGS = {"hls_stream_type": "LiveHLS", "inference_segment_size": 60}


class CalibrationError(ValueError):
    """Labels that cannot be read or fitted; the message names the file and the problem."""


@dataclass(frozen=True)
class LabelledEvent:
    site: str
    score: float | None  # the detector's confidence on 0-1; None when the detector did not flag the event
    label: str
    positive: bool


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_labels(
    path: str,
    site_column: str = DEFAULT_SITE_COLUMN,
    score_column: str = DEFAULT_SCORE_COLUMN,
    label_column: str = DEFAULT_LABEL_COLUMN,
    positive_labels: Iterable[str] = DEFAULT_POSITIVE_LABELS,
    score_scale: float = DEFAULT_SCORE_SCALE,
) -> list[LabelledEvent]:
    """
    The labelled events of the CSV `path`: a `LabelledEvent` per row, its score divided by `score_scale` (100 for
    production's 0-100 confidence, 1 for a 0-1 one). Labels are compared case-insensitively. Raises
    `CalibrationError` naming the row for a missing column, a score that is not a number in [0, score_scale] or a
    site name that is not a plain name.
    """
    positives = {label.strip().lower() for label in positive_labels}
    if not score_scale > 0:
        raise CalibrationError(f"the score scale must be a number above 0 (100 or 1), got {score_scale!r}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [name for name in (site_column, score_column, label_column) if name not in columns]
            if missing:
                raise CalibrationError(
                    f"{path}: no column(s) {', '.join(missing)}; the file has {', '.join(columns) or 'no header'}"
                )
            events = []
            for line, row in enumerate(reader, start=2):
                events.append(_event(path, line, row, site_column, score_column, label_column, positives, score_scale))
    except OSError as error:
        raise CalibrationError(f"{path}: cannot read the labels ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not a UTF-8 text CSV") from None
    except csv.Error as error:  # a field over the csv module's limit, a NUL byte...
        raise CalibrationError(f"{path}: not a readable CSV ({error})") from None
    if not events:
        raise CalibrationError(f"{path}: no labelled events")
    if not any(event.score is not None for event in events):
        raise CalibrationError(f"{path}: no event has a score in column {score_column!r}; nothing to fit")
    return events


def _event(path, line, row, site_column, score_column, label_column, positives, score_scale):
    where = f"{path}, line {line}"
    site = (row.get(site_column) or "").strip()
    if not site or PATTERN_CHARACTERS & set(site):
        raise CalibrationError(f"{where}: site {site!r} in {site_column!r} must be a plain, non-empty node name")
    text = (row.get(score_column) or "").strip()
    score = None
    if text:
        try:
            value = float(text)
        except ValueError:
            raise CalibrationError(f"{where}: {score_column} {text!r} is not a number") from None
        if not 0.0 <= value <= score_scale:
            raise CalibrationError(f"{where}: {score_column} {value} is outside 0-{score_scale:g}")
        score = value / score_scale
    label = (row.get(label_column) or "").strip()
    return LabelledEvent(site=site, score=score, label=label, positive=label.lower() in positives)


def precision_at(events: list[LabelledEvent], floor: float) -> tuple[int, int]:
    """`(flagged, positives flagged)` among `events` whose score reaches `floor` (the pipeline's `>=` rule)."""
    flagged = [event for event in events if event.score is not None and event.score >= floor]
    return len(flagged), sum(event.positive for event in flagged)


def false_positive_classes(events: list[LabelledEvent], floor: float) -> dict[str, int]:
    """The classes of the negative events still flagged at `floor`, most frequent first."""
    negatives = Counter(
        event.label or "(none)"
        for event in events
        if event.score is not None and event.score >= floor and not event.positive
    )
    return dict(sorted(negatives.items(), key=lambda item: (-item[1], item[0])))


def ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def fit_site(events: list[LabelledEvent], target_precision: float, min_flagged: int) -> tuple[float, dict[str, Any]]:
    """
    The floor of one site's `events` and what it was fitted on (see the module docstring). Returns
    `(min_global_confidence, fit)`.
    """
    scores = sorted({event.score for event in events if event.score is not None})
    flagged_at_production, positives_at_production = precision_at(events, 0.0)
    positives = sum(event.positive for event in events)
    floor, flags_nothing = FLAGS_NOTHING_FLOOR, True
    for candidate in scores:
        flagged, positives_flagged = precision_at(events, candidate)
        if flagged < min_flagged:
            break  # higher floors flag fewer still
        if positives_flagged / flagged >= target_precision:
            # The lowest score flags every flagged event, as no floor does: keep production's decision then.
            floor, flags_nothing = (0.0 if candidate == scores[0] else candidate), False
            break
    flagged, positives_flagged = (0, 0) if flags_nothing else precision_at(events, floor)
    fit = {
        "target_precision": target_precision,
        "min_flagged": min_flagged,
        "flags_nothing": flags_nothing,
        "events": len(events),
        "positive_events": positives,
        "flagged_events": flagged_at_production,
        "positives_flagged": positives_at_production,
        "precision_without_floor": _round(ratio(positives_at_production, flagged_at_production)),
        "recall_labelled_without_floor": _round(ratio(positives_at_production, positives)),
        "flagged_at_floor": flagged,
        "positives_at_floor": positives_flagged,
        "precision_at_floor": _round(ratio(positives_flagged, flagged)),
        "flagged_share_at_floor": _round(ratio(flagged, flagged_at_production)),
        "recall_labelled_at_floor": _round(ratio(positives_flagged, positives)),
        "false_positives_without_floor": false_positive_classes(events, 0.0),
        "max_score": _round(scores[-1]) if scores else None,
    }
    return floor, fit


def _round(value, digits=4):
    return None if value is None else round(value, digits)


def sites_of(events: Iterable[LabelledEvent]) -> dict[str, list[LabelledEvent]]:
    by_site: dict[str, list[LabelledEvent]] = {}
    for event in events:
        by_site.setdefault(event.site, []).append(event)
    return dict(sorted(by_site.items()))


def calibrate(
    events: list[LabelledEvent],
    target_precision: float,
    min_flagged: int = DEFAULT_MIN_FLAGGED,
    source: str | None = None,
    data_sha256: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    The `--site-thresholds` table fitted on `events`: every site's `min_global_confidence` and its `fit`
    (`source`, `data_sha256` and `options`, the reading options, are recorded in each fit). Sites absent from the
    data keep the model's decision (the table has no default).
    """
    if isinstance(target_precision, bool) or not 0.0 < target_precision <= 1.0:
        raise CalibrationError(f"the target precision must be a number in (0, 1], got {target_precision!r}")
    if isinstance(min_flagged, bool) or not isinstance(min_flagged, int) or min_flagged < 1:
        raise CalibrationError(f"the minimum flagged count must be a whole number >= 1, got {min_flagged!r}")
    sites: dict[str, dict[str, Any]] = {}
    for site, site_events in sites_of(events).items():
        floor, fit = fit_site(site_events, target_precision, min_flagged)
        fit["data"] = {"file": os.path.basename(source) if source else None, "sha256": data_sha256, **(options or {})}
        sites[site] = {FITTED_FIELD: floor, "fit": fit}
    nothing = sum(entry["fit"]["flags_nothing"] for entry in sites.values())
    table = {
        "description": (
            f"Per-hydrophone floors on the global confidence, fitted by orcahello calibrate on "
            f"{os.path.basename(source) if source else 'labelled events'} (sha256 {data_sha256}): the lowest floor at "
            f"which flagged events reach precision {target_precision:g} with at least {min_flagged} of them; "
            f"{nothing} of {len(sites)} sites have none and flag nothing."
        ),
        "default": {},
        "sites": sites,
    }
    # What --site-thresholds will read: refuse to write a table it would refuse.
    site_thresholds.check_site_thresholds(table, source="fitted table")
    return table


def upstream_threshold(site: str) -> float:
    """The `pred_global_threshold` upstream's live pod of `site` runs with (`UPSTREAM_SITE_THRESHOLDS`)."""
    return UPSTREAM_SITE_THRESHOLDS.get(site, UPSTREAM_DEFAULT_THRESHOLD)


def upstream_threshold_for_floor(floor: float) -> float:
    """
    The `global_prediction.pred_global_threshold` that makes upstream's rule (the file positive when the mean of its
    2 most confident windows, its global confidence, is at least the threshold) flag what the v1 preset flags with
    this floor on the same global confidence: the higher of the two, never below upstream's 0.6.
    """
    return round(max(UPSTREAM_DEFAULT_THRESHOLD, floor), 4)


def upstream_overrides(table: dict[str, Any]) -> dict[str, Any]:
    """
    The fitted `table` as one of upstream's hydrophone configs, in its multi-location form (`orchestrator_config` and
    a `location_config` per site), which `--hydrophone-config` reads: each location's `model_config_overrides` is
    what that hydrophone's ConfigMap holds under `config.yml`.
    """
    shared = {
        **UPSTREAM_STREAM_SETTINGS,
        "model_config_overrides": {"global_prediction": {"pred_global_threshold": UPSTREAM_DEFAULT_THRESHOLD}},
    }
    locations = []
    for site, entry in table["sites"].items():
        threshold = upstream_threshold_for_floor(entry[FITTED_FIELD])
        location: dict[str, Any] = {"location_id": site, "hls_hydrophone_id": site}
        if threshold != UPSTREAM_DEFAULT_THRESHOLD:
            location["model_config_overrides"] = {"global_prediction": {"pred_global_threshold": threshold}}
        locations.append(location)
    return {"orchestrator_config": shared, "location_config": locations}


def upstream_overrides_text(table: dict[str, Any]) -> str:
    """`upstream_overrides(table)` as YAML, after a comment saying where it comes from and what it assumes."""
    import yaml

    header = [
        "# Per-hydrophone thresholds for upstream's live system (orcasound/orcahello), written by orcahello calibrate.",
        "# " + table["description"],
        "# Each location's model_config_overrides is what its ConfigMap's config.yml holds; orcahello --hydrophone-config",
        "# reads this file as it is. A site that flags nothing at the target gets 1.0 (only a top-2 mean of exactly 1).",
        "# The floors were fitted on the labels' confidences (the detector of their time): see the report.",
    ]
    body = yaml.safe_dump(upstream_overrides(table), sort_keys=False, default_flow_style=False)
    return "\n".join(line.rstrip() for line in header) + "\n" + body


def upstream_rows(table: dict[str, Any], events: list[LabelledEvent]) -> list[dict[str, Any]]:
    """Per site, upstream's hand-set threshold and the fitted floor: flagged events, precision and labelled recall
    at each (the labels' confidence read as the global confidence both are thresholds on)."""
    rows = []
    by_site = sites_of(events)
    for site, entry in table["sites"].items():
        site_events = by_site[site]
        positives = sum(event.positive for event in site_events)
        row: dict[str, Any] = {"site": site}
        for name, threshold in (("upstream", upstream_threshold(site)), ("fitted", entry[FITTED_FIELD])):
            if name == "fitted" and entry["fit"]["flags_nothing"]:
                flagged, positives_flagged = 0, 0
            else:
                flagged, positives_flagged = precision_at(site_events, threshold)
            row[f"{name}_threshold"] = threshold
            row[f"{name}_flagged"] = flagged
            row[f"{name}_precision"] = _round(ratio(positives_flagged, flagged))
            row[f"{name}_recall_labelled"] = _round(ratio(positives_flagged, positives))
        rows.append(row)
    return rows


def curve_rows(events: list[LabelledEvent], thresholds: Iterable[float] = CURVE_THRESHOLDS) -> list[dict[str, Any]]:
    """The report's curves: per site and threshold, flagged events, precision, flagged share and labelled recall."""
    rows = []
    for site, site_events in sites_of(events).items():
        flagged_at_production, _ = precision_at(site_events, 0.0)
        positives = sum(event.positive for event in site_events)
        for threshold in thresholds:
            flagged, positives_flagged = precision_at(site_events, threshold)
            rows.append(
                {
                    "site": site,
                    "threshold": threshold,
                    "flagged": flagged,
                    "positives_flagged": positives_flagged,
                    "precision": _round(ratio(positives_flagged, flagged)),
                    "flagged_share": _round(ratio(flagged, flagged_at_production)),
                    "recall_labelled": _round(ratio(positives_flagged, positives)),
                }
            )
    return rows


def report_paths(output: str) -> dict[str, str]:
    stem = os.path.splitext(os.fspath(output))[0]
    return {kind: stem + suffix for kind, suffix in REPORT_SUFFIXES.items()}


def _csv_text(header, rows):
    cells = [["" if row[name] is None else row[name] for name in header] for row in rows]
    return writers._delimited_text(header, cells, ",")


def write_report(table: dict[str, Any], events: list[LabelledEvent], output: str, plot: bool = True) -> dict[str, str]:
    """Write the report files beside the table `output` (see `REPORT_SUFFIXES`); returns their paths."""
    paths = report_paths(output)
    rows = curve_rows(events)
    writers.write_atomically(paths["curves_csv"], _csv_text(CURVE_COLUMNS, rows))
    false_positive_rows = []
    for site, entry in table["sites"].items():
        floor = entry[FITTED_FIELD]
        at_floor = {} if entry["fit"]["flags_nothing"] else false_positive_classes(sites_of(events)[site], floor)
        negatives = entry["fit"]["flagged_events"] - entry["fit"]["positives_flagged"]
        for label, count in entry["fit"]["false_positives_without_floor"].items():
            false_positive_rows.append(
                {
                    "site": site,
                    "class": label,
                    "without_floor": count,
                    "share_without_floor": _round(ratio(count, negatives)),
                    "at_floor": at_floor.get(label, 0),
                }
            )
    header = ("site", "class", "without_floor", "share_without_floor", "at_floor")
    writers.write_atomically(paths["false_positives_csv"], _csv_text(header, false_positive_rows))
    if plot:
        lowest_score = min(event.score for event in events if event.score is not None)
        plot_curves(table, rows, paths["curves_png"], start=max(0.0, math.floor(lowest_score * 20) / 20 - 0.05))
    else:
        paths.pop("curves_png")
    writers.write_atomically(paths["report_md"], report_markdown(table, paths, upstream_rows(table, events)))
    return paths


def plot_curves(table: dict[str, Any], rows: list[dict[str, Any]], path: str, start: float = 0.0) -> None:
    """Precision and flagged share against the floor from `start`, one curve per site; the fitted floors marked."""
    from .figures import new_figure, save_figure

    figure, (precision_axes, share_axes) = new_figure(columns=2)
    for site, entry in table["sites"].items():
        site_rows = [row for row in rows if row["site"] == site and row["threshold"] >= start - 1e-9]
        thresholds = [row["threshold"] for row in site_rows]
        precision = [row["precision"] if row["precision"] is not None else float("nan") for row in site_rows]
        line = precision_axes.plot(thresholds, precision)[0]
        shares = [row["flagged_share"] or 0.0 for row in site_rows]
        share_axes.plot(thresholds, shares, color=line.get_color(), label=site)
        if not entry["fit"]["flags_nothing"]:
            # A floor of 0 (production's decision kept) is drawn at the left edge.
            marker = ([max(start, entry[FITTED_FIELD])], [entry["fit"]["precision_at_floor"]])
            precision_axes.plot(*marker, "o", color=line.get_color())
    target = next(iter(table["sites"].values()))["fit"]["target_precision"] if table["sites"] else None
    if target is not None:
        share_axes.plot([], [], color="grey", linestyle="--", linewidth=1, label=f"target precision {target:g}")
        precision_axes.axhline(target, color="grey", linestyle="--", linewidth=1)
    axis_label = "floor on global confidence (0-1)"
    precision_axes.set(xlabel=axis_label, ylabel="precision among flagged events", ylim=(0, 1.02), xlim=(start, 1.0))
    share_axes.set(xlabel=axis_label, ylabel="share of flagged events kept", ylim=(0, 1.02), xlim=(start, 1.0))
    share_axes.legend(fontsize=7, loc="lower left")
    precision_axes.grid(alpha=0.3)
    share_axes.grid(alpha=0.3)
    precision_axes.set_title("Precision (dots: fitted floors)", fontsize=10)
    share_axes.set_title("Flagged share", fontsize=10)
    save_figure(figure, path)


def _cell(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def report_markdown(table: dict[str, Any], paths: dict[str, str], upstream: list[dict[str, Any]] | None = None) -> str:
    """A human-readable summary of the fitted table; with `upstream` (`upstream_rows`), upstream's hand-set live
    thresholds beside the fitted floors."""
    lines = [
        "# Per-site confidence floors",
        "",
        table["description"],
        "",
        "| site | floor | flagged | precision | flagged at floor | precision at floor | flagged share | "
        "SRKW recall (labelled) | top false positives |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for site, entry in table["sites"].items():
        fit = entry["fit"]
        floor = "flags nothing" if fit["flags_nothing"] else f"{entry[FITTED_FIELD]:.4f}"
        top_classes = list(fit["false_positives_without_floor"].items())[:3]
        classes = ", ".join(f"{label} {count}" for label, count in top_classes)
        lines.append(
            f"| {site} | {floor} | {fit['flagged_events']} | {_cell(fit['precision_without_floor'])} | "
            f"{fit['flagged_at_floor']} | {_cell(fit['precision_at_floor'])} | "
            f"{_cell(fit['flagged_share_at_floor'])} | "
            f"{_cell(fit['recall_labelled_without_floor'])} -> {_cell(fit['recall_labelled_at_floor'])} | {classes} |"
        )
    lines += [
        "",
        "flagged / precision: the events the detector flagged and the share of them that were positive, without a "
        "floor; at floor: the same for the events whose confidence reaches the floor. SRKW recall (labelled): the "
        "share of the site's labelled positive events that are flagged, without and with the floor (events only "
        "people reported count as missed).",
        "",
        "The events are a curated list (what the detector flagged and moderators reviewed, and what listeners "
        "reported), not a random sample of the stream: precision here is among flagged events, not a false-positive "
        "rate per hour, and recall is among the events someone noticed.",
        "",
        "Files: " + ", ".join(f"`{os.path.basename(path)}`" for kind, path in paths.items() if kind != "report_md"),
        "",
    ]
    if upstream:
        lines += [
            "## Upstream's live thresholds beside the fitted floors",
            "",
            f"Upstream's live pods decide with `pred_global_threshold` {UPSTREAM_DEFAULT_THRESHOLD:g}, raised by hand "
            "per hydrophone (Bush Point 0.90, North SJC 0.95). Both are read here as thresholds on the labels' "
            "confidence.",
            "",
            "| site | upstream threshold | flagged | precision | SRKW recall (labelled) | fitted floor | flagged | "
            "precision | SRKW recall (labelled) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in upstream:
            lines.append(
                f"| {row['site']} | {row['upstream_threshold']:.2f} | {row['upstream_flagged']} | "
                f"{_cell(row['upstream_precision'])} | {_cell(row['upstream_recall_labelled'])} | "
                f"{row['fitted_threshold']:.4f} | {row['fitted_flagged']} | {_cell(row['fitted_precision'])} | "
                f"{_cell(row['fitted_recall_labelled'])} |"
            )
        lines += [
            "",
            "What these labels can and cannot tell about the v1 rule: each event's confidence is the one the detector "
            "of its time gave (production's fastai detector, its global confidence: the mean of the positive windows' "
            "probabilities), not the v1 rule's mean of the 2 most confident 3-s windows, and only events that detector "
            "flagged have one. The rows above therefore say how each threshold sorts the events that detector "
            "flagged, by its scale; they do not say how many minutes v1 flags at that threshold, nor what v1 finds "
            "that it missed. To fit v1's own thresholds, score the labelled minutes with the v1 preset (`orcahello "
            "detect --preset v1`) and calibrate on those confidences (`--score-column`, `--score-scale 1`).",
            "",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class CalibrateOptions:
    """
    What `orcahello calibrate` can be told (its command-line options; see `read_labels` and `calibrate`).

    Args:
        labels (`str`): the CSV of labelled events, one per row (site, score, class).
        target_precision (`float`): the share of flagged events that must be positive at the fitted floor, in (0, 1].
        output (`str`): the table to write; the report goes beside it.
        min_flagged (`int`, *optional*, defaults to 10): flagged events a floor must keep to count.
        site_column (`str`, *optional*, defaults to `"NodeName"`): the column naming each event's site.
        score_column (`str`, *optional*, defaults to `"Confidence"`): the detector's confidence, empty when it did
            not flag the event.
        label_column (`str`, *optional*, defaults to `"Category"`): the class people gave the event.
        positive_labels (`tuple[str, ...]`, *optional*, defaults to `("resident",)`): the classes that are positive.
        score_scale (`float`, *optional*, defaults to 100): what a score of certainty is in the CSV.
        upstream_overrides (`str`, *optional*): also write the floors as upstream's per-hydrophone
            `model_config_overrides` (a multi-location hydrophone config, `upstream_overrides`) to this YAML file.
    """

    labels: str
    target_precision: float
    output: str
    min_flagged: int = DEFAULT_MIN_FLAGGED
    site_column: str = DEFAULT_SITE_COLUMN
    score_column: str = DEFAULT_SCORE_COLUMN
    label_column: str = DEFAULT_LABEL_COLUMN
    positive_labels: tuple[str, ...] = DEFAULT_POSITIVE_LABELS
    score_scale: float = DEFAULT_SCORE_SCALE
    upstream_overrides: str | None = None


def calibrate_command(options: CalibrateOptions) -> int:
    """Run `orcahello calibrate` with `options`; returns the exit status (0, or 2 with an error line)."""
    import json
    import sys

    reading: dict[str, Any] = {
        "site_column": options.site_column,
        "score_column": options.score_column,
        "label_column": options.label_column,
        "positive_labels": list(options.positive_labels),
        "score_scale": options.score_scale,
    }
    try:
        events = read_labels(options.labels, **reading)
        table = calibrate(
            events,
            options.target_precision,
            options.min_flagged,
            source=options.labels,
            data_sha256=file_sha256(options.labels),
            options=reading,
        )
    except CalibrationError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    plot = True
    try:
        from .plot import require_matplotlib

        require_matplotlib()
    except ImportError:
        plot = False
        print("NOTE: matplotlib is not installed: the report has no PNG (pip install matplotlib)", file=sys.stderr)
    try:
        writers.write_atomically(options.output, json.dumps(table, indent=2) + "\n")
        paths = write_report(table, events, options.output, plot=plot)
        if options.upstream_overrides:
            writers.write_atomically(options.upstream_overrides, upstream_overrides_text(table))
    except OSError as error:
        print(f"ERROR: cannot write {error.filename or options.output}: {error.strerror or error}", file=sys.stderr)
        return 2
    for site, entry in table["sites"].items():
        fit = entry["fit"]
        if fit["flags_nothing"]:
            decision = (
                f"flags nothing (no floor reaches precision {options.target_precision:g} with {options.min_flagged}+)"
            )
        else:
            decision = (
                f"floor {entry[FITTED_FIELD]:.4f}: {fit['flagged_at_floor']} of {fit['flagged_events']} "
                f"flagged, precision {fit['precision_at_floor']:.2f}"
            )
        print(f"{site}: {decision}")
    print(f"Table: {options.output}; report: {paths['report_md']}")
    if options.upstream_overrides:
        print(f"Upstream's model_config_overrides per hydrophone: {options.upstream_overrides}")
    return 0
