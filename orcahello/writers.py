# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Output files of `orcahello detect`, written from the pipeline's `return_timestamps=True` result (or from the JSON
document that stores it):

- `<stem>.orcahello.json`: production's result keys plus windows, detections, warnings, model and parameters;
- `<stem>.orcahello.csv`: the scoring table production's evaluation reads (`wav_filename,start_time_s,duration_s,
  confidence`, one row per one-second row; plus `start_time_utc` when the recording's start is known, as for HLS);
- `<stem>.OrcaHello.selection.table.txt`: a Raven selection table (BirdNET's naming), one selection per detection
  (plus `Begin UTC` and `End UTC` annotation columns when the start is known);
- `<stem>.orcahello.labels.txt`: Audacity labels, one per detection;
- `OrcaHello.combined.selection.table.txt` and `summary.csv` for a whole run.
"""

import csv
import io
import json
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from vocabulary_orcahello import (
    FILE_COLUMN,
    RECORDING_START_UTC_COLUMN,
    SYNTHETIC_WEIGHTS_KEY,
    SYNTHETIC_WEIGHTS_WARNING,
)

from .atomic_files import PARTIAL_SUFFIX, write_atomically

OUTPUT_FORMATS = ("json", "csv", "raven", "audacity")
OUTPUT_SUFFIXES = {
    "json": ".orcahello.json",
    "csv": ".orcahello.csv",
    "raven": ".OrcaHello.selection.table.txt",
    "audacity": ".orcahello.labels.txt",
    "png": ".orcahello.png",
}
COMBINED_RAVEN_TABLE = "OrcaHello.combined.selection.table.txt"
SUMMARY_CSV = "summary.csv"
RUN_PARAMETERS_JSON = "orcahello_run.json"

RAVEN_HEADER = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Label",
    "Score",
)
# Where the recording is (an absolute path, or its URL), as BirdNET-Analyzer's tables say it: Raven opens it from there.
RAVEN_PATH_COLUMN = "Begin Path"
RAVEN_COMBINED_HEADER = RAVEN_HEADER + ("Begin File", "File Offset (s)", RAVEN_PATH_COLUMN)
# The band the model looks at (its mel filterbank stops at 10 kHz), drawn as each selection's box in Raven.
RAVEN_LOW_FREQUENCY_HZ = 0
RAVEN_HIGH_FREQUENCY_HZ = 10000
# What was detected, as a label in Raven and Audacity (BirdNET-Analyzer names the species there too).
DETECTION_LABEL = "SRKW call"
# What every output says when the model's weights are the synthetic stand-in (`scripts/fetch_model.py` offline):
# a column in the tables (a value on every row, so the header says it even without rows), a first label in
# Audacity's, a warning in the JSON and the summary.
STANDIN_WARNING = SYNTHETIC_WEIGHTS_WARNING
STANDIN_COLUMN = "model_weights"
RAVEN_STANDIN_COLUMN = "Model Weights"
STANDIN_VALUE = "SYNTHETIC stand-in"

SCORING_TABLE_HEADER = ("wav_filename", "start_time_s", "duration_s", "confidence")
SCORING_TABLE_UTC_COLUMN = "start_time_utc"
# Annotation columns, not Raven's own clock-time measurements: Raven computes those from its sound's settings.
RAVEN_UTC_COLUMNS = ("Begin UTC", "End UTC")
# The run's table, one row per input, in the outputs' vocabulary (`vocabulary_orcahello.OUTPUT_VOCABULARY`).
SUMMARY_HEADER = (
    FILE_COLUMN,
    "status",
    "global_prediction",
    "global_confidence",
    "positive_seconds",
    "duration_s",
    RECORDING_START_UTC_COLUMN,
    "gaps",
    "warnings",
    "error",
)


def output_path(output_stem: str | os.PathLike[str], kind: str) -> str:
    """The path of one output (`"json"`, `"csv"`, `"raven"`, `"audacity"` or `"png"`) of the file `output_stem`."""
    return os.fspath(output_stem) + OUTPUT_SUFFIXES[kind]


def partial_files_of(path: str, name_pattern: str | None = None) -> list[str]:
    """
    The temporary files `temporary_file_beside` made for `path` and a killed process left, never any other file;
    with `name_pattern` (a regular expression), those of every output of `path`'s folder whose name matches it.
    """
    folder, name = os.path.split(os.path.abspath(path))
    name_pattern = re.escape(name) if name_pattern is None else name_pattern
    pattern = re.compile(r"\.(?:" + name_pattern + r")\.[a-z0-9_]{8}" + re.escape(PARTIAL_SUFFIX))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, entry) for entry in sorted(names) if pattern.fullmatch(entry)]


def remove_partial_outputs(folder: str) -> list[str]:
    """
    Remove, under `folder`, the partial files of detect's outputs that a killed run left (`temporary_file_beside`'s
    hidden names), and nothing else. Called with the folder's run lock just taken over from a dead holder: no live
    run can be writing there. Returns the paths removed.
    """
    output_names = tuple(OUTPUT_SUFFIXES.values()) + (COMBINED_RAVEN_TABLE, SUMMARY_CSV, RUN_PARAMETERS_JSON)
    pattern = re.compile(r"\.(.+)\.[a-z0-9_]{8}" + re.escape(PARTIAL_SUFFIX))
    removed = []
    for directory, _, names in os.walk(folder):
        for name in names:
            match = pattern.fullmatch(name)
            if match and match.group(1).endswith(output_names):
                os.remove(os.path.join(directory, name))
                removed.append(os.path.join(directory, name))
    return sorted(removed)


def positive_seconds(detections: Iterable[Mapping[str, Any]]) -> float:
    """Seconds covered by the merged detections (= positive one-second rows for the `"orcahello"` aggregation)."""
    return float(sum(detection["end"] - detection["start"] for detection in detections))


def format_seconds(value: float) -> str:
    return f"{value:.3f}"


def format_score(value: float) -> str:
    # Six decimals: exact enough to compare with the JSON (to 1e-6), short enough to read in Raven and Audacity.
    return f"{value:.6f}"


# What makes a spreadsheet read a text cell as a formula (or split it into one): a file name, label or site copied
# from someone else's input into a CSV must stay text (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """`value` as a CSV cell no spreadsheet runs: text starting like a formula gets a leading `'`; numbers stay."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)  # "-0.5" is a number, written as one
        return value
    except ValueError:
        return "'" + value


def _delimited_text(header, rows, delimiter):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def write_json(path: str, document: Any) -> None:
    write_atomically(path, json.dumps(document, indent=2) + "\n")


def _whole_as_int(value):
    # Production's submission DataFrame indexes rows by the integer second: "0", "1"... rather than "0.0", "1.0".
    return int(value) if float(value).is_integer() else value


def write_scoring_csv(path: str, submission: Sequence[Mapping[str, Any]], synthetic_weights: bool = False) -> None:
    """
    Production's scoring table: every row of `submission`, confidences at full precision; with a `start_time_utc`
    column after production's four when the rows carry UTC times (an empty cell where a gap of unknown length makes
    the time unknown); with `synthetic_weights`, a last `model_weights` column saying so.
    """
    with_utc = any(SCORING_TABLE_UTC_COLUMN in row for row in submission)
    rows = []
    for row in submission:
        cells = [row["wav_filename"], _whole_as_int(row["start_time_s"]), row["duration_s"], row["confidence"]]
        if with_utc:
            cells.append(row.get(SCORING_TABLE_UTC_COLUMN) or "")
        if synthetic_weights:
            cells.append(STANDIN_VALUE)
        rows.append(cells)
    header = SCORING_TABLE_HEADER + ((SCORING_TABLE_UTC_COLUMN,) if with_utc else ())
    header += (STANDIN_COLUMN,) if synthetic_weights else ()
    write_atomically(path, _delimited_text(header, rows, ","))


def raven_rows(detections: Iterable[Mapping[str, Any]], first_selection: int = 1) -> list[list[Any]]:
    return [
        [
            first_selection + index,
            "Spectrogram 1",
            1,
            format_seconds(detection["start"]),
            format_seconds(detection["end"]),
            RAVEN_LOW_FREQUENCY_HZ,
            RAVEN_HIGH_FREQUENCY_HZ,
            DETECTION_LABEL,
            format_score(detection["max_confidence"]),
        ]
        for index, detection in enumerate(detections)
    ]


def write_raven_table(
    path: str,
    detections: Sequence[Mapping[str, Any]],
    with_utc: bool = False,
    synthetic_weights: bool = False,
    begin_path: str | None = None,
) -> None:
    """
    A Raven selection table with one selection per merged detection, scored by its highest row; with `with_utc`
    (the recording's start is known), `Begin UTC` and `End UTC` columns in ISO 8601; with `begin_path` (the
    recording's absolute path or URL), a `Begin Path` column; with `synthetic_weights`, a `Model Weights` annotation
    column saying so.
    """
    rows = raven_rows(detections)
    if with_utc:
        for row, detection in zip(rows, detections):
            row.extend([detection.get("start_utc") or "", detection.get("end_utc") or ""])
    header = RAVEN_HEADER + (RAVEN_UTC_COLUMNS if with_utc else ())
    if begin_path is not None:
        header += (RAVEN_PATH_COLUMN,)
        rows = [row + [begin_path] for row in rows]
    if synthetic_weights:
        header += (RAVEN_STANDIN_COLUMN,)
        rows = [row + [STANDIN_VALUE] for row in rows]
    write_atomically(path, _delimited_text(header, rows, "\t"))


def write_combined_raven_table(
    path: str,
    recordings: Iterable[tuple[str, float, Sequence[Mapping[str, Any]], str]],
    synthetic_weights: bool = False,
) -> None:
    """
    One Raven selection table for a whole run, to open over the recordings as a file sequence. `recordings` is a
    list of `(begin_file, duration_s, detections, begin_path)` in sequence order. As in Raven's multi-file tables,
    `Begin Time` and `End Time` count from the start of the sequence, `File Offset (s)` from the start of `Begin File`;
    `Begin Path` is where the recording is (its absolute path or URL).
    """
    rows: list[list[Any]] = []
    sequence_offset = 0.0
    for begin_file, duration_s, detections, begin_path in recordings:
        for row, detection in zip(raven_rows(detections, first_selection=len(rows) + 1), detections):
            row[3] = format_seconds(sequence_offset + detection["start"])
            row[4] = format_seconds(sequence_offset + detection["end"])
            rows.append(row + [begin_file, format_seconds(detection["start"]), begin_path])
        sequence_offset += duration_s
    header: tuple[str, ...] = RAVEN_COMBINED_HEADER
    if synthetic_weights:
        header += (RAVEN_STANDIN_COLUMN,)
        rows = [row + [STANDIN_VALUE] for row in rows]
    write_atomically(path, _delimited_text(header, rows, "\t"))


def write_audacity_labels(path: str, detections: Iterable[Mapping[str, Any]], synthetic_weights: bool = False) -> None:
    """Audacity's label-track text format: `start<TAB>end<TAB>label`, the label carrying the detection's score; with
    `synthetic_weights`, a first point label at 0 saying so."""
    lines = [f"0.000000\t0.000000\t{STANDIN_VALUE} weights: these scores mean nothing\n"] if synthetic_weights else []
    lines += [
        f"{detection['start']:.6f}\t{detection['end']:.6f}\t"
        f"{DETECTION_LABEL} {format_score(detection['max_confidence'])}\n"
        for detection in detections
    ]
    write_atomically(path, "".join(lines))


def begin_path(path: str) -> str:
    """A recording's `Begin Path`: a URL as it is, a file's absolute path."""
    return path if re.match(r"[a-z][a-z0-9+.-]*://", path, flags=re.IGNORECASE) else os.path.abspath(path)


def write_recording_tables(
    output_stem: str,
    document: Mapping[str, Any],
    formats: Collection[str],
    recording_path: str,
    only_missing: bool = False,
) -> None:
    """
    The tables of one recording's result `document` (detect's JSON document) beside its JSON: production's scoring
    CSV, the Raven selection table and Audacity's labels, those of `formats` ("json" is the caller's). With
    `only_missing` (a resumed recording), only the tables not on disk yet.
    """
    synthetic = bool(document["model"].get(SYNTHETIC_WEIGHTS_KEY))

    def needs(kind):
        return kind in formats and not (only_missing and os.path.exists(output_path(output_stem, kind)))

    if needs("csv"):
        write_scoring_csv(output_path(output_stem, "csv"), document["submission"], synthetic_weights=synthetic)
    if needs("raven"):
        write_raven_table(
            output_path(output_stem, "raven"),
            document["detections"],
            with_utc=document.get("start_time_utc") is not None,
            synthetic_weights=synthetic,
            begin_path=begin_path(recording_path),
        )
    if needs("audacity"):
        write_audacity_labels(output_path(output_stem, "audacity"), document["detections"], synthetic_weights=synthetic)


def write_summary_csv(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """One row per input: `rows` are dicts with the keys of `SUMMARY_HEADER` (missing keys are left empty)."""
    table = [[row.get(column, "") for column in SUMMARY_HEADER] for row in rows]
    write_atomically(path, _delimited_text(SUMMARY_HEADER, table, ","))
