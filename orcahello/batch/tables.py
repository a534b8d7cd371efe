# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The Parquet tables of an `orcahello batch` job (layout: docs/batch.md): their schemas, the windows table of one
partition with the job's description in its metadata, the files table's rows, and atomic writes.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vocabulary_orcahello import (
    END_COLUMN,
    FILE_COLUMN,
    RECORDING_START_UTC_COLUMN,
    SCORE_COLUMN,
    START_COLUMN,
    START_UTC_COLUMN,
)

from .. import writers
from ..atomic_files import temporary_file_beside
from .settings import JSON_FOLDER, PARQUET_METADATA_KEY

if TYPE_CHECKING:
    import numpy as np
    import pyarrow

    from .partitions import RecordingState


def windows_schema() -> pyarrow.Schema:
    import pyarrow as pa

    # The outputs' names (`vocabulary_orcahello.OUTPUT_VOCABULARY`), as detect's JSON windows and embed's tables.
    return pa.schema(
        [
            pa.field(FILE_COLUMN, pa.string(), nullable=False),
            pa.field("window_index", pa.int32(), nullable=False),
            pa.field(START_COLUMN, pa.float64(), nullable=False),
            pa.field(END_COLUMN, pa.float64(), nullable=False),
            pa.field(START_UTC_COLUMN, pa.timestamp("ms", tz="UTC")),
            pa.field(SCORE_COLUMN, pa.float32(), nullable=False),
            pa.field("silent", pa.bool_(), nullable=False),
        ]
    )


def files_schema() -> pyarrow.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(FILE_COLUMN, pa.string(), nullable=False),
            pa.field("relative_path", pa.string()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("error", pa.string()),
            pa.field("global_prediction", pa.int8()),
            pa.field("global_confidence", pa.float64()),
            pa.field("positive_seconds", pa.float64()),
            pa.field("num_windows", pa.int32()),
            pa.field("silent_windows", pa.int32()),
            pa.field("num_detections", pa.int32()),
            pa.field("duration_s", pa.float64()),
            pa.field("sampling_rate", pa.int32()),
            pa.field("num_channels", pa.int16()),
            pa.field(RECORDING_START_UTC_COLUMN, pa.timestamp("ms", tz="UTC")),
            pa.field("warnings", pa.string()),
            pa.field("run_hash", pa.string()),
            pa.field("json_path", pa.string()),
        ]
    )


def write_table_atomically(path: str, table: pyarrow.Table) -> None:
    """Write a Parquet file through a temporary file and a rename: a killed job never leaves half a file under
    `path`, so a file that exists is complete."""
    import pyarrow.parquet as pq

    with temporary_file_beside(path) as temporary_path:
        pq.write_table(table, temporary_path)
        os.replace(temporary_path, path)


def partition_metadata(path: str) -> dict[str, Any] | None:
    """The job's description of a partition file (its `orcahello` key), or None for a file that is unreadable or not
    one of ours."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[PARQUET_METADATA_KEY])
    except Exception:  # missing, truncated by hand, another program's Parquet: not a finished partition
        return None


def utc_milliseconds(recording: dict[str, Any], seconds: Sequence[float]) -> list[int | None]:
    """
    Milliseconds since the epoch at `seconds` into `recording` (its `state.info`), for timestamp columns; None
    where its time is unknown. An HLS stream's time line (its UTC anchors: the time resumes after a gap later by
    what is missing) gives the times `orcahello detect` writes; any other recording's `start_utc` (ISO text or "")
    plus the seconds.
    """
    timeline = recording.get("timeline")
    if timeline is not None:
        from hls_timeline_orcahello import utc_at

        moments = (utc_at(timeline["anchors"], value) for value in seconds)
        return [None if moment is None else int(round(moment * 1000.0)) for moment in moments]
    start_utc = recording.get("start_utc")
    if not start_utc:
        return [None] * len(seconds)
    base = datetime.datetime.fromisoformat(start_utc).timestamp() * 1000.0
    return [int(round(base + 1000.0 * value)) for value in seconds]


def write_windows_table(
    path: str,
    source: str,
    first_window: int,
    scores: np.ndarray,
    silent: np.ndarray,
    recording: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """One partition's windows table: a row per window of `[first_window, first_window + len(scores))`."""
    import numpy as np
    import pyarrow as pa

    hop, window = recording["hop_seconds"], recording["window_seconds"]
    indices = np.arange(first_window, first_window + len(scores), dtype=np.int64)
    starts = indices * hop
    columns = {
        FILE_COLUMN: [source] * len(scores),
        "window_index": indices.astype(np.int32),
        START_COLUMN: starts,
        END_COLUMN: starts + window,
        START_UTC_COLUMN: utc_milliseconds(recording, starts),
        SCORE_COLUMN: np.asarray(scores, dtype=np.float32),
        "silent": np.asarray(silent, dtype=bool),
    }
    schema = windows_schema().with_metadata({PARQUET_METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    write_table_atomically(path, pa.table(columns, schema=schema))


def read_partition_scores(path: str) -> tuple[np.ndarray, np.ndarray]:
    """`(score as float64, silent)` of a partition file, in window order."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["window_index", SCORE_COLUMN, "silent"])
    order = np.argsort(table["window_index"].to_numpy())
    scores = table[SCORE_COLUMN].to_numpy().astype(np.float64)[order]
    return scores, table["silent"].to_numpy(zero_copy_only=False)[order]


def file_row(state: RecordingState) -> dict[str, Any]:
    """`files.parquet`'s row for one recording."""
    row = error_row(state.source.source, state.error)
    row["relative_path"] = state.source.relative_path
    if state.error is not None or state.document is None:
        row["error"] = state.error or "not scored"
        return row
    document = state.document
    start_utc = (state.info or {}).get("start_utc")
    row.update(
        status="ok",
        error=None,
        global_prediction=document["global_prediction"],
        global_confidence=document["global_confidence"],
        positive_seconds=writers.positive_seconds(document["detections"]),
        num_windows=len(document["windows"]),
        silent_windows=state.silent_windows,
        num_detections=len(document["detections"]),
        duration_s=document["duration_s"],
        sampling_rate=document["sampling_rate"],
        num_channels=document["num_channels"],
        **{RECORDING_START_UTC_COLUMN: datetime.datetime.fromisoformat(start_utc) if start_utc else None},
        warnings="; ".join(document["warnings"]),
        run_hash=document["run_hash"],
        json_path="/".join((JSON_FOLDER, state.source.output_stem)) + writers.OUTPUT_SUFFIXES["json"],
    )
    return row


def error_row(recording: str, reason: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in files_schema().names}
    row.update({FILE_COLUMN: recording, "status": "error", "error": reason})
    return row
