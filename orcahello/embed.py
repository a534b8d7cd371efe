# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello embed`: what the detector's network makes of every window, as a vector per window in a Parquet table,
to cluster what it heard (vessels, other whales, the squeak that fools it) or to train something on top.

    orcahello embed recordings/ --recursive --output-dir embeddings
    orcahello embed archive/rpi_orcasound_lab/hls/1600000000/live.m3u8 --layer head --output-dir embeddings

The inputs and windows are `detect`'s: the same files, folders, globs and HLS streams, cut, featurized and scored by
the loaded pipeline's own `score_windows` (so whatever window settings the pipeline applies apply here too). Each
recording gets `<stem>.orcahello.embeddings.parquet`, one row per window:

- `file` (the recording as given), `window_index`, `start` and `end` (seconds), `start_utc` and `end_utc` (ISO 8601,
  null unless the input says when it started, as for detect: HLS), `spans_gap` (HLS: the window spans a gap in the
  stream), `silent` (digital silence), `score` (P(call) from the same forward pass);
- `embedding`: a fixed-size list of float32. `--layer pooled` (default): the 4096 concat-pooled ResNet features,
  `AutoModel`'s `pooler_output`; `--layer head`: the 512 features the head's last linear layer classifies (after
  its ReLU and BatchNorm).

Embeddings are computed by the PyTorch model: the fast CPU engines (OpenVINO, ONNX Runtime) are exported to give
logits only. Recordings are processed in batches of windows and written in row groups, so memory stays flat on
hour-long recordings. Each table is written to a temporary file and renamed when complete; a rerun into the same
folder skips the tables already made with the same model, layer and windows (`--overwrite` redoes them). The
table's Parquet metadata (key `orcahello`) holds the recording's duration, start time, gaps and warnings, the model
and the parameters. Needs pyarrow (`pip install "orcahello-srkw-detector[embed]"`).

From Python: `iter_window_embeddings` (streaming), `window_embeddings` (one recording in memory),
`write_embeddings` (one table) and `embed_files` (what the command does).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow

    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline
    from results_orcahello import ScoredWindows

    from .inputs import AudioJob

from vocabulary_orcahello import EMBEDDING_LAYERS

from .atomic_files import temporary_file_beside

DEFAULT_LAYER = "pooled"
DEFAULT_OUTPUT_DIR = "orcahello_embeddings"
EMBEDDINGS_SUFFIX = ".orcahello.embeddings.parquet"
RUN_FILE = "orcahello_embed_run.json"
METADATA_KEY = b"orcahello"
# Windows per Parquet row group: 256 pooled embeddings are 4 MB, small enough to hold while the next batches run,
# large enough that readers scan the table efficiently.
ROW_GROUP_WINDOWS = 256
PYARROW_MISSING = (
    'orcahello embed needs pyarrow, which is not installed: pip install "orcahello-srkw-detector[embed]" '
    '(or pip install "pyarrow>=14")'
)


def require_pyarrow() -> None:
    """Raise an `ImportError` with an install hint when pyarrow is missing (checked before a run starts)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(PYARROW_MISSING) from None


def iter_window_embeddings(
    pipe: OrcaHelloAudioClassificationPipeline,
    source: Any,
    layer: str = DEFAULT_LAYER,
    batch_size: int | None = None,
    **pipeline_parameters: Any,
) -> Iterator[ScoredWindows]:
    """
    Embed every window of one recording, batch by batch: yields the pipeline's `ScoredWindows`
    (`results_orcahello`), each with its windows' rows of the window table (`windows`), `window_indices`,
    `silent`, `embeddings` (float32 `(windows, dimension)`), `scores` (P(call)), `probabilities`, `logits` and the
    recording's summary (`recording`).

    `pipe` is the OrcaHello audio-classification pipeline (`orcahello.models.load_pipeline`, or the Hub's remote code);
    `source` anything it accepts (a path, an HLS playlist or segment folder, bytes, an array with `sampling_rate=`);
    `pipeline_parameters` its call parameters that choose the windows (`window_seconds`, `hop_seconds`,
    `sampling_rate`): the windows are the pipeline's own, scored by its `score_windows` with `layer`, a few blocks
    at a time, so memory does not grow with the recording's length. Raises the pipeline's `AudioInputError` for
    input it cannot score.
    """
    yield from pipe.score_windows(source, layer=layer, batch_size=batch_size, **pipeline_parameters)


def window_embeddings(
    pipe: OrcaHelloAudioClassificationPipeline,
    source: Any,
    layer: str = DEFAULT_LAYER,
    batch_size: int | None = None,
    **pipeline_parameters: Any,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """
    One recording's windows and embeddings in memory: `(windows, embeddings, scores)`, detect's window entries, a
    float32 `(windows, dimension)` array and the P(call) of each window. For long recordings prefer
    `iter_window_embeddings` or `write_embeddings`.
    """
    windows: list[dict[str, Any]] = []
    embeddings, scores = [], []
    for block in iter_window_embeddings(pipe, source, layer, batch_size, **pipeline_parameters):
        # `score_windows` with a layer gives every block its embeddings and rows of the window table.
        assert block.windows is not None and block.embeddings is not None
        windows.extend(block.windows)
        embeddings.append(block.embeddings)
        scores.append(block.scores)
    return windows, np.concatenate(embeddings), np.concatenate(scores)


def embeddings_schema(dimension: int, metadata: dict[str, Any] | None = None) -> pyarrow.Schema:
    import pyarrow as pa

    fields = [
        pa.field("file", pa.string()),
        pa.field("window_index", pa.int32()),
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("start_utc", pa.string()),
        pa.field("end_utc", pa.string()),
        pa.field("spans_gap", pa.bool_()),
        pa.field("silent", pa.bool_()),
        pa.field("score", pa.float32()),
        pa.field("embedding", pa.list_(pa.float32(), dimension)),
    ]
    encoded = {METADATA_KEY: json.dumps(metadata).encode("utf-8")} if metadata is not None else None
    return pa.schema(fields, metadata=encoded)


def _record_batch(file_name, blocks, schema):
    import pyarrow as pa

    windows = [window for block in blocks for window in block.windows]
    embeddings = np.concatenate([block.embeddings for block in blocks]).astype(np.float32, copy=False)
    dimension = embeddings.shape[1]
    columns = {
        "file": [file_name] * len(windows),
        "window_index": [index for block in blocks for index in block.window_indices],
        "start": [window["start"] for window in windows],
        "end": [window["end"] for window in windows],
        "start_utc": [window.get("start_utc") for window in windows],
        "end_utc": [window.get("end_utc") for window in windows],
        "spans_gap": [bool(window.get("spans_gap", False)) for window in windows],
        "silent": [flag for block in blocks for flag in block.silent],
        "score": np.concatenate([block.scores for block in blocks]).astype(np.float32),
    }
    arrays = [pa.array(columns[field.name], type=field.type) for field in schema if field.name != "embedding"]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), dimension))
    return pa.record_batch(arrays, schema=schema)


def write_embeddings(
    pipe: OrcaHelloAudioClassificationPipeline,
    source: Any,
    output_path: str,
    layer: str = DEFAULT_LAYER,
    batch_size: int | None = None,
    file_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[int], object] | None = None,
    **pipeline_parameters: Any,
) -> dict[str, Any]:
    """
    Write one recording's table to `output_path` (see the module's description), through a temporary file renamed
    when complete: an interrupted run never leaves a table that looks finished. `file_name` fills the `file` column
    (default: `source` as given); `metadata` (a JSON-able dict) is stored with the recording's summary under the
    Parquet metadata key `orcahello`; `progress(windows)` is called after every batch. Returns the metadata
    written (with the recording's summary, less its window table, and `num_windows`).
    """
    import pyarrow.parquet as parquet

    if file_name is None:
        file_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<input>"
    embedding_dimension = pipe.embedding_size(layer)
    with temporary_file_beside(output_path) as temporary_path:
        writer: Any = None  # pyarrow's ParquetWriter, made when the first block gives the schema
        pending, pending_windows, total_windows = [], 0, 0
        written: dict[str, Any] = {}
        try:
            for block in iter_window_embeddings(pipe, source, layer, batch_size, **pipeline_parameters):
                # `score_windows` gives every block its rows of the window table and the recording's summary.
                assert block.windows is not None and block.recording is not None
                if writer is None:
                    # The schema's metadata must be known before the first row group: everything in it is known once
                    # the recording is open.
                    summary = {key: value for key, value in block.recording.items() if key != "windows"}
                    written = {
                        **(metadata or {}),
                        "recording": summary,
                        "layer": layer,
                        "num_windows": len(block.recording["windows"]),
                    }
                    schema = embeddings_schema(embedding_dimension, written)
                    # Dictionary encoding only for the one repeated string: on the float vectors it makes the file
                    # 20% larger than the raw floats. zstd saves another ~10% on them.
                    writer = parquet.ParquetWriter(temporary_path, schema, use_dictionary=["file"], compression="zstd")
                pending.append(block)
                pending_windows += len(block.windows)
                total_windows += len(block.windows)
                if pending_windows >= ROW_GROUP_WINDOWS:
                    writer.write_batch(_record_batch(file_name, pending, schema))
                    pending, pending_windows = [], 0
                if progress is not None:
                    progress(len(block.windows))
            if pending:
                writer.write_batch(_record_batch(file_name, pending, schema))
            writer.close()
            writer = None
            if total_windows != written["num_windows"]:
                raise RuntimeError(f"{file_name}: {total_windows} windows embedded of {written['num_windows']}")
            os.replace(temporary_path, output_path)
        finally:
            if writer is not None:
                writer.close()
    return written


def read_embeddings_metadata(path: str) -> dict[str, Any] | None:
    """The `orcahello` metadata of a table `write_embeddings` made, or None when it is missing or unreadable."""
    try:
        import pyarrow.parquet as parquet

        metadata = parquet.read_schema(path).metadata or {}
        return json.loads(metadata[METADATA_KEY])
    except (OSError, ValueError, KeyError, ImportError):  # pyarrow's ArrowInvalid (a damaged file) is a ValueError
        return None


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def embeddings_path(job: AudioJob) -> str:
    """Where `job`'s table goes: beside where detect would write its outputs, `<stem>.orcahello.embeddings.parquet`."""
    return os.fspath(job.output_stem) + EMBEDDINGS_SUFFIX


def embed_files(
    paths: Iterable[str | os.PathLike[str]],
    output_dir: str,
    model: str | None = None,
    layer: str = DEFAULT_LAYER,
    batch_size: int | None = None,
    device: str = "auto",
    recursive: bool = False,
    overwrite: bool = False,
    pipe: OrcaHelloAudioClassificationPipeline | None = None,
    command: Sequence[str] | None = None,
    pipeline_parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    What `orcahello embed` does: find the recordings in `paths` as detect does, write each one's table under
    `output_dir` (mirroring the inputs' folders), skip those an earlier run finished with the same model, layer and
    windows (unless `overwrite`), and write `orcahello_embed_run.json`. A recording that cannot be read is reported
    and never stops the others. `pipe` may be an already loaded pipeline (else `model` is loaded on `device`);
    `pipeline_parameters` are pipeline call parameters that choose the windows (e.g. `{"hop_seconds": 0.5}`).

    Returns `{"written": [paths], "skipped": [paths], "failed": [(input, reason)], "windows": n, "run_file": path}`.
    """
    from tqdm.auto import tqdm

    from . import __version__, inputs, models, provenance, runs, writers

    require_pyarrow()
    if layer not in EMBEDDING_LAYERS:
        raise ValueError(f"layer must be one of {EMBEDDING_LAYERS}, got {layer!r}")
    started, started_at = time.monotonic(), provenance.now_iso()
    input_paths = [os.fspath(path) for path in paths]
    recordings, failed = inputs.find_audio_files(input_paths, recursive=recursive)
    failed = list(failed)
    for path, reason in failed:
        print(f"ERROR {path}: {reason}", file=sys.stderr)
    if model is None and pipe is not None:  # the pipeline given names its own model
        model = getattr(pipe.model.config, "_name_or_path", None) or None
    model = model or models.default_model()
    if pipe is None:
        device = models.resolve_device(device)
        pipe = models.load_pipeline(model, device)
    batch_size = batch_size or models.default_batch_size(pipe.device.type)
    # The windows are the pipeline's: whatever its preprocessing parameters are (from the model's config), they
    # are part of what a finished table must match.
    pipeline_parameters = dict(pipeline_parameters or {})
    parameters = {**pipe.resolve_parameters(**pipeline_parameters).preprocess, "layer": layer}
    model_info = provenance.describe_model_config(pipe.model.config, model)
    run_hash = provenance.run_hash(parameters, model_info)
    metadata = {"model": model_info, "parameters": parameters, "run_hash": run_hash, "version": __version__}

    written, skipped, windows_embedded = [], [], 0
    jobs = inputs.plan_jobs(recordings, output_dir)
    # disable=None: a bar on a terminal, none in logs and pipes.
    progress_bar = tqdm(jobs, desc="OrcaHello embed", unit="file", file=sys.stderr, disable=None)
    try:
        for job in progress_bar:
            output_path = embeddings_path(job)
            previous = None if overwrite else read_embeddings_metadata(output_path)
            if previous is not None and previous.get("run_hash") == run_hash:
                skipped.append(output_path)
                continue

            def count(windows):
                nonlocal windows_embedded
                windows_embedded += windows
                progress_bar.set_postfix_str(f"{windows_embedded} windows embedded")

            try:
                table_metadata = write_embeddings(
                    pipe,
                    job.path,
                    output_path,
                    layer=layer,
                    batch_size=batch_size,
                    file_name=job.path,
                    metadata=metadata,
                    progress=count,
                    **pipeline_parameters,
                )
            except Exception as error:  # one bad recording never stops the others
                reason = runs.failure_reason(error, job.path)
                progress_bar.write(f"ERROR {job.path}: {reason}", file=sys.stderr)
                failed.append((job.path, reason))
                continue
            for warning in table_metadata["recording"]["warnings"]:
                progress_bar.write(f"WARNING {job.path}: {warning}", file=sys.stderr)
            written.append(output_path)
    finally:
        progress_bar.close()

    run_file = os.path.join(output_dir, RUN_FILE)
    writers.write_json(
        run_file,
        {
            **metadata,
            "options": {
                "paths": input_paths,
                "output_dir": os.path.abspath(output_dir),
                "model": model,
                "layer": layer,
                "batch_size": batch_size,
                "device": str(pipe.device),
                "recursive": recursive,
                "overwrite": overwrite,
            },
            "command": command,
            "started_at": started_at,
            "finished_at": provenance.now_iso(),
            "elapsed_s": round(time.monotonic() - started, 3),
            "files": {"found": len(jobs), "written": len(written), "skipped": len(skipped), "failed": len(failed)},
            "failed": [{"path": path, "error": reason} for path, reason in failed],
        },
    )
    return {"written": written, "skipped": skipped, "failed": failed, "windows": windows_embedded, "run_file": run_file}


@dataclasses.dataclass(frozen=True)
class EmbedOptions:
    """
    What `orcahello embed` can be told (its command-line options; see `embed_files`).

    Args:
        paths (`tuple[str, ...]`):
            As for detect: files, HLS playlists, folders, glob patterns.
        output_dir (`str`, *optional*, defaults to `"orcahello_embeddings"`):
            Where the tables go, mirroring the inputs' folders.
        model (`str`, *optional*):
            A model folder or Hub id; None: `models.default_model()`.
        device (`str`, *optional*, defaults to `"auto"`):
            `models.DEVICES`.
        batch_size (`int`, *optional*):
            Windows per forward pass; None: `models.default_batch_size` of the device.
        preset (`str`, *optional*):
            The inference preset whose windows (and frontend) are embedded; None: the model folder's.
        layer (`str`, *optional*, defaults to `"pooled"`):
            `EMBEDDING_LAYERS`: the concat-pooled features, or the features the head's last layer classifies.
        recursive (`bool`, *optional*, defaults to `False`):
            Also search the subfolders of folders, and let `**` in patterns cross folders.
        overwrite (`bool`, *optional*, defaults to `False`):
            Make again the tables an earlier run made with the same model, layer and windows.
    """

    paths: tuple[str, ...]
    output_dir: str = DEFAULT_OUTPUT_DIR
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    preset: str | None = None
    layer: str = DEFAULT_LAYER
    recursive: bool = False
    overwrite: bool = False


def embed_command(options: EmbedOptions, command: list[str] | None = None) -> int:
    """Run `orcahello embed` with `options`; returns the exit status. `command` is recorded in the run file."""
    from . import EXIT_CANNOT_RUN, EXIT_OK, EXIT_SOME_FILES_FAILED, models

    try:
        require_pyarrow()
    except ImportError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    model = options.model or models.default_model()
    try:
        device = models.resolve_device(options.device)
        pipe = models.load_pipeline(model, device)
    except Exception as error:  # a missing folder, no Hub access, a broken config: nothing can be embedded
        print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    outcome = embed_files(
        options.paths,
        options.output_dir,
        model=model,
        layer=options.layer,
        batch_size=options.batch_size,
        recursive=options.recursive,
        overwrite=options.overwrite,
        pipe=pipe,
        command=command,
        pipeline_parameters=None if options.preset is None else {"preset": options.preset},
    )
    skipped = ""
    if outcome["skipped"]:
        skipped = f", {len(outcome['skipped'])} skipped (already embedded; --overwrite redoes them)"
    print(
        f"{len(outcome['written'])} table(s) written{skipped}, {len(outcome['failed'])} failed; "
        f"{outcome['windows']} windows embedded. Tables in {options.output_dir}"
    )
    return EXIT_OK if not outcome["failed"] else EXIT_SOME_FILES_FAILED
