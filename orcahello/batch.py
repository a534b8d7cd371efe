# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello batch`: score many recordings on a Ray cluster with Ray Data, with the numbers of `orcahello detect`.

    orcahello batch recordings/ --recursive --output-dir results          # a local Ray instance on every core
    orcahello batch --manifest sources.txt --address auto --output-dir results   # the cluster `ray start` joined

The job runs in stages:

1. The driver expands the inputs (files, folders, globs, URLs, manifests) and looks in the output folder for the
   partitions a previous run already wrote.
2. Ray tasks open every recording that still needs work and report its length (`open_recording`, as the pipeline
   opens it); the driver cuts each into partitions of `--partition-windows` consecutive windows.
3. CPU tasks read and featurize each partition's windows block by block (`featurize_windows`, the pipeline's own
   frontend); model actors (one GPU each when the cluster has GPUs, else `--cpus-per-worker` CPUs each) score the
   blocks `--batch-size` windows at a time through the pipeline's `score_input_features`, i.e. with whatever engine
   the pipeline itself uses; the blocks start at multiples of the batch size, so every forward pass holds the same
   windows as in `orcahello detect`.
4. The driver writes each partition's window scores as one Parquet file (through a temporary file and a rename)
   as soon as the partition is complete, and each recording's OrcaHello JSON (`build_file_result` and the
   document `orcahello detect` writes) as soon as all its partitions are; at the end, one Parquet row per
   recording in `files.parquet` and the run's description in `orcahello_batch_run.json`.

Resuming: a partition file is reused when it was written with the same model (weights), frontend configuration
and windowing, for the same windows of the same source; decision parameters (thresholds, aggregation, per-site
tables) are applied on the driver, so changing them rewrites the JSONs without scoring anything again. Layout and
schemas: docs/batch.md.

Ray and pyarrow come with the `scale` extra (`pip install "orcahello-srkw-detector[scale]"`); this module imports
them only inside the functions that need them, and nothing else in the package imports this module at start-up.
"""

import argparse
import contextlib
import dataclasses
import datetime
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from vocabulary_orcahello import DEFAULT_BATCH_SIZE, SYNTHETIC_WEIGHTS_KEY, is_url, temporary_file_beside

from . import (
    EXIT_CANNOT_RUN,
    EXIT_OK,
    EXIT_SOME_FILES_FAILED,
    REPO_ROOT,
    __version__,
    detect,
    inputs,
    models,
    provenance,
    run_lock,
    site_thresholds,
    writers,
)

SCALE_EXTRA_HINT = 'pip install "orcahello-srkw-detector[scale]"'
DEFAULT_OUTPUT_DIR = "orcahello_batch_results"
# About ten minutes of audio at the default 1-second hop: the unit of resuming, so a killed job loses at most that
# much work per running task; big enough that a one-minute recording is one partition (one file to write).
DEFAULT_PARTITION_WINDOWS = 640
WINDOWS_FOLDER = "windows"
JSON_FOLDER = "json"
FILES_TABLE = "files.parquet"
RUN_DOCUMENT = "orcahello_batch_run.json"
PARTITION_FILE_PATTERN = "part-{first_window:09d}.parquet"
PARTITION_NAME_PATTERN = r"part-[0-9]{9}\.parquet"
PARQUET_METADATA_KEY = b"orcahello"
PARTITION_FORMAT_VERSION = 1
URL_TIMEOUT_SECONDS = 120
# A UTC timestamp in a file name, ISO 8601 basic format (SanctSound, AudioMoth, many recorders): 20200423T164427Z.
UTC_NAME_PATTERN = re.compile(r"(?<!\d)(\d{8}T\d{6})Z(?![0-9A-Za-z])")
# Orcasound's HLS archive keeps each stream in a folder named by its start in Unix seconds: <node>/hls/<t>/live.m3u8.
UNIX_TIME_FOLDER_PATTERN = re.compile(r"^\d{10}$")


class BatchError(RuntimeError):
    """The job cannot run at all (Ray missing, the model does not load, a bad option); one line for the user."""


def require_scale_extra():
    """Import Ray (with Ray Data) and pyarrow, or say in one line how to install them."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as error:
        raise BatchError(
            f"orcahello batch needs Ray Data and pyarrow ({error.name or error} is missing): {SCALE_EXTRA_HINT}"
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------




def read_manifest(path):
    """
    The sources a manifest lists: one path or URL per line, blank lines and `#` comments ignored. Each line is one
    recording, taken as written (no folder or glob expansion); relative paths are relative to the manifest's folder.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BatchError(f"cannot read the manifest {path}: {error}") from None
    folder = os.path.dirname(os.path.abspath(path))
    sources = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        sources.append(entry if is_url(entry) or os.path.isabs(entry) else os.path.join(folder, entry))
    return sources


def find_sources(paths=(), manifests=(), recursive=False):
    """
    The recordings to score, in order, each once: the PATHs expanded as `orcahello detect` expands them (with HLS
    playlists, `.m3u8`, found in folders too), URLs as given, then every manifest's lines. Returns `(sources,
    problems)`, `problems` being `(input, reason)` for each PATH that gave nothing.
    """
    sources, problems = inputs.find_audio_files(list(paths), recursive=recursive)
    seen = {inputs.recording_key(source) for source in sources}
    for manifest in manifests:
        for source in read_manifest(manifest):
            if inputs.recording_key(source) not in seen:
                seen.add(inputs.recording_key(source))
                sources.append(source)
    return sources, problems


@dataclasses.dataclass
class Source:
    """One recording of the job and where its outputs go (paths relative to the output folder, "/"-separated)."""

    index: int
    source: str  # as given: a path or a URL; the `recording` column of both tables
    relative_path: str  # below the local inputs' common folder, or host/path for a URL
    output_stem: str  # JSON: json/<stem>.orcahello.json; window partitions: windows/<stem>/part-*.parquet


def plan_outputs(sources):
    """
    Name every recording's outputs: local files mirror their folder tree below the deepest folder holding them all
    (as `orcahello detect` does), URLs go under their host name.
    """
    local = [source for source in sources if not is_url(source)]
    names = {}
    if local:
        for job in inputs.plan_jobs(local, ""):
            names[job.path] = (job.relative_path, job.output_stem.replace(os.sep, "/"))
    planned, stems = [], set()
    for index, source in enumerate(sources):
        if is_url(source):
            # Named exactly as `orcahello detect` names them: no "..", no separators smuggled in as %2F.
            relative_path = inputs.url_relative_path(source).replace(os.sep, "/")
            stem = os.path.splitext(relative_path)[0]
        else:
            relative_path, stem = names[source]
        if stem in stems:  # a URL and a local file (or two URLs differing in their query) would share their outputs
            stem = f"{stem}~{index}"
        stems.add(stem)
        planned.append(Source(index=index, source=source, relative_path=relative_path, output_stem=stem))
    return planned


def start_utc_from_name(source):
    """
    The recording's start in UTC when its name says so unambiguously, else None: a `YYYYMMDDTHHMMSSZ` timestamp in
    the file name, or an HLS playlist in a folder named by a 10-digit Unix time (Orcasound's archive layout).
    """
    path = urllib.parse.urlsplit(source).path if is_url(source) else source
    name = os.path.basename(path)
    match = UTC_NAME_PATTERN.search(name)
    if match:
        try:
            return datetime.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            return None
    folder = os.path.basename(os.path.dirname(path))
    if name.lower().endswith(".m3u8") and UNIX_TIME_FOLDER_PATTERN.match(folder):
        return datetime.datetime.fromtimestamp(int(folder), tz=datetime.timezone.utc)
    return None


# ----------------------------------------------------------------------------------------------------------------
# Worker side: opening, probing and featurizing recordings (Ray tasks)
# ----------------------------------------------------------------------------------------------------------------


def open_source(source):
    """
    Open one recording with the pipeline's `open_recording`, so that every format it reads (WAV, FLAC, OGG, MP3,
    and HLS where it supports it) is read the same way here. An http(s) URL of a sound file is downloaded into
    memory first; a playlist URL (`.m3u8`) is handed to `open_recording` as it is.
    """
    from pipeline_orcahello import AudioInputError, open_recording

    if is_url(source) and not urllib.parse.urlsplit(source).path.lower().endswith(".m3u8"):
        try:
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT_SECONDS) as response:
                data = response.read()
        except Exception as error:  # HTTP errors, refused connections, timeouts: the source cannot be read
            raise AudioInputError(f"{source}: cannot download ({' '.join(str(error).split())})") from None
        return open_recording({"bytes": data, "path": source})
    return open_recording(source)


def probe_source(
    row, window_seconds, hop_seconds, whole_recording_frontend=False, strict_segments=True, model_sampling_rate=20000
):
    """
    A recording's length and format, or the one-line reason it cannot be scored: `{"source_index", "source"}` in,
    a row out (a Ray Data `map` for URLs; called in driver threads for local files, which only need their headers
    read: that is faster than starting worker processes for it).
    """
    from pipeline_orcahello import scoring_windows

    probed = {"source_index": row["source_index"], "error": "", "start_utc": ""}
    probed.update(sampling_rate=0, num_samples=0, num_channels=0, num_windows=0)
    try:
        recording = open_source(row["source"])
        try:
            bounds = scoring_windows(
                recording, window_seconds, hop_seconds, whole_recording_frontend, strict_segments, model_sampling_rate
            )
            start = getattr(recording, "start_utc", None)  # a reader that knows the start (HLS) may say so
            probed.update(
                sampling_rate=recording.sampling_rate,
                num_samples=recording.num_samples,
                num_channels=recording.num_channels,
                num_windows=len(bounds),
                start_utc=start.isoformat() if isinstance(start, datetime.datetime) else "",
            )
        finally:
            recording.close()
    except Exception as error:  # any reason a recording cannot be read is reported for it alone
        probed["error"] = detect.failure_reason(error, row["source"])
    return probed


def _block_row(source_index, partition_first_window, first_window, features, silent, error=""):
    import numpy as np

    return {
        "source_index": np.array([source_index], dtype=np.int64),
        "partition_first_window": np.array([partition_first_window], dtype=np.int64),
        "first_window": np.array([first_window], dtype=np.int64),
        "input_features": features[None],
        "silent": np.asarray(silent, dtype=bool)[None],
        "error": np.array([error], dtype=object),
    }


def featurize_partitions(
    batch, feature_extractor, block_windows, window_seconds, hop_seconds, whole_recording_frontend=False,
    strict_segments=True, peak_normalize=False, model_sampling_rate=20000,
):
    """
    Ray Data `map_batches` (a generator, so a long partition never sits in memory whole): for each partition row,
    its windows read and featurized `block_windows` at a time, one output row per block. A recording that fails to
    read gives one row with its `error` instead, and the partition's remaining blocks are not produced.
    """
    import numpy as np

    from pipeline_orcahello import AudioInputError, featurize_windows, scoring_windows, whole_recording_audio

    for source_index, source, first, count, expected_samples in zip(
        batch["source_index"], batch["source"], batch["first_window"], batch["num_windows"], batch["num_samples"]
    ):
        source_index, first, count = int(source_index), int(first), int(count)
        recording = None
        try:
            recording = open_source(str(source))
            if recording.num_samples != int(expected_samples):
                raise AudioInputError(
                    f"{source}: it changed during the job ({expected_samples} samples when probed, "
                    f"{recording.num_samples} now)"
                )
            bounds = scoring_windows(
                recording, window_seconds, hop_seconds, whole_recording_frontend, strict_segments, model_sampling_rate
            )[first : first + count]
            if whole_recording_frontend:  # the v1 preset: windows are cut from the whole recording, prepared once
                recording = whole_recording_audio(recording, feature_extractor, peak_normalize=peak_normalize)
            for offset in range(0, count, block_windows):
                features, silent = featurize_windows(
                    recording, bounds[offset : offset + block_windows], feature_extractor
                )
                yield _block_row(source_index, first, first + offset, features.numpy(), silent)
        except Exception as error:  # reported on this recording's row; the job goes on with the others
            empty = np.zeros((0, 1, 1, 1), dtype=np.float32)
            yield _block_row(source_index, first, first, empty, [], error=detect.failure_reason(error, str(source)))
        finally:
            if recording is not None:
                recording.close()


# ----------------------------------------------------------------------------------------------------------------
# Worker side: the model actors
# ----------------------------------------------------------------------------------------------------------------


def read_model_folder(folder):
    """The files at the top of a model folder (config, weights, custom code...), to send to the model actors."""
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.startswith("."):
            with open(path, "rb") as handle:
                files[name] = handle.read()
    return files


def model_cache_root():
    """
    This user's private folder for model copies, `<tmp>/orcahello-batch-models-<uid>`: made with mode 0700 and
    checked on every use (a directory, not a link, owned by this user, closed to everyone else). Under a shared
    temporary folder anyone can create a path first; a copy found in a folder someone else could write might hold
    any code, and model folders' code runs (`trust_remote_code`).
    """
    if not hasattr(os, "getuid"):  # Windows: no owner to check; a private folder of this process instead
        return tempfile.mkdtemp(prefix="orcahello-batch-models-")
    root = os.path.join(tempfile.gettempdir(), f"orcahello-batch-models-{os.getuid()}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    status = os.lstat(root)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or stat.S_IMODE(status.st_mode) & 0o077:
        raise RuntimeError(
            f"{root} is not a private folder of this user (a directory owned by uid {os.getuid()}, mode 0700): "
            "refusing to keep model copies there; remove it"
        )
    return root


def folder_holds(folder, files):
    """Whether `folder` holds exactly `files` (name -> content), compared by SHA-256."""
    try:
        names = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    except OSError:
        return False
    if names != sorted(files):
        return False
    for name, content in files.items():
        path = os.path.join(folder, name)
        if os.path.islink(path) or provenance.file_sha256(path) != hashlib.sha256(content).hexdigest():
            return False
    return True


def materialize_model_folder(name, files):
    """
    Write a model folder sent by the driver on this machine, in this user's private cache (`model_cache_root`),
    under a name given by its content, so that every actor on the machine (and every later run) reuses one copy and
    transformers' module cache holds one copy of its code. A copy found there is used only when it holds exactly
    the files sent, byte for byte.
    """
    digest = hashlib.sha256()
    for file_name in sorted(files):
        digest.update(file_name.encode("utf-8") + b"\0" + hashlib.sha256(files[file_name]).digest())
    root = model_cache_root()
    folder = os.path.join(root, digest.hexdigest()[:16], name)
    if folder_holds(folder, files):
        return folder
    # Written aside and renamed into place: a folder under its final name is always complete.
    staging = tempfile.mkdtemp(prefix="staging-", dir=root)
    os.mkdir(os.path.join(staging, name))
    for file_name, content in files.items():
        with open(os.path.join(staging, name, file_name), "wb") as handle:
            handle.write(content)
    try:
        os.rename(staging, os.path.dirname(folder))
        return folder
    except OSError:  # another actor on this machine got there first: its copy is checked below
        pass
    if folder_holds(folder, files):
        shutil.rmtree(staging, ignore_errors=True)
        return folder
    return os.path.join(staging, name)  # a damaged copy under the content's name: this actor uses its own


class WindowScorer:
    """
    A Ray Data model actor: loads the OrcaHello pipeline once and scores featurized blocks with the pipeline's own
    `score_input_features`, `batch_size` windows per forward pass. One output row per window.
    """

    def __init__(self, model, device, batch_size, threads):
        import ray
        import torch

        if isinstance(model, dict):  # a local folder, sent through Ray's object store
            model = materialize_model_folder(model["name"], ray.get(model["files"]))
        if device == "cpu":
            # Ray caps a CPU actor's thread pools at its reserved CPUs; this says so to PyTorch and ONNX Runtime.
            torch.set_num_threads(threads)
        logging.getLogger("transformers_modules").setLevel(logging.ERROR)
        self.pipe = models.load_pipeline(model, device)
        if not hasattr(self.pipe, "score_input_features"):
            raise RuntimeError(
                f"the model's pipeline_orcahello.py ({model}) predates orcahello batch (it has no "
                "score_input_features): convert the model again, or copy this package's pipeline_orcahello.py into it"
            )
        self.batch_size = batch_size

    def __call__(self, batch):
        import numpy as np
        import torch

        columns = {name: [] for name in ("source_index", "partition_first_window", "window_index", "p_positive")}
        columns.update(silent=[], error=[])
        for row in range(len(batch["source_index"])):
            source_index = int(batch["source_index"][row])
            partition = int(batch["partition_first_window"][row])
            error = str(batch["error"][row])
            features = np.asarray(batch["input_features"][row], dtype=np.float32)
            silent = np.asarray(batch["silent"][row], dtype=bool)
            if error:
                windows, scores, silent = [-1], [float("nan")], [False]
            else:
                first = int(batch["first_window"][row])
                windows = list(range(first, first + features.shape[0]))
                scores = []
                for start in range(0, features.shape[0], self.batch_size):
                    chunk = torch.from_numpy(np.ascontiguousarray(features[start : start + self.batch_size]))
                    scores.extend(self.pipe.score_input_features(chunk)[:, 1].tolist())
            columns["source_index"].extend([source_index] * len(windows))
            columns["partition_first_window"].extend([partition] * len(windows))
            columns["window_index"].extend(windows)
            columns["p_positive"].extend(scores)
            columns["silent"].extend(bool(flag) for flag in silent)
            columns["error"].extend([error] * len(windows))
        return {
            "source_index": np.array(columns["source_index"], dtype=np.int64),
            "partition_first_window": np.array(columns["partition_first_window"], dtype=np.int64),
            "window_index": np.array(columns["window_index"], dtype=np.int64),
            # float32: what the model computes; its float64 value is exactly the JSON's number.
            "p_positive": np.array(columns["p_positive"], dtype=np.float32),
            "silent": np.array(columns["silent"], dtype=bool),
            "error": np.array(columns["error"], dtype=object),
        }


# ----------------------------------------------------------------------------------------------------------------
# Driver side: Parquet tables
# ----------------------------------------------------------------------------------------------------------------


def windows_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("recording", pa.string(), nullable=False),
            pa.field("window_index", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("start_utc", pa.timestamp("ms", tz="UTC")),
            pa.field("p_positive", pa.float32(), nullable=False),
            pa.field("silent", pa.bool_(), nullable=False),
        ]
    )


def files_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("recording", pa.string(), nullable=False),
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
            pa.field("start_utc", pa.timestamp("ms", tz="UTC")),
            pa.field("warnings", pa.string()),
            pa.field("run_hash", pa.string()),
            pa.field("json_path", pa.string()),
        ]
    )


def write_table_atomically(path, table):
    """Write a Parquet file through a temporary file and a rename: a killed job never leaves half a file under
    `path`, so a file that exists is complete."""
    import pyarrow.parquet as pq

    with temporary_file_beside(path) as temporary_path:
        pq.write_table(table, temporary_path)
        os.replace(temporary_path, path)


def partition_metadata(path):
    """The job's description of a partition file (its `orcahello` key), or None for a file that is unreadable or not
    one of ours."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[PARQUET_METADATA_KEY])
    except Exception:  # missing, truncated by hand, another program's Parquet: not a finished partition
        return None


def utc_milliseconds(start_utc, seconds):
    """Milliseconds since the epoch of `start_utc` (ISO text or None) plus `seconds`, for timestamp columns."""
    if not start_utc:
        return [None] * len(seconds)
    base = datetime.datetime.fromisoformat(start_utc).timestamp() * 1000.0
    return [int(round(base + 1000.0 * value)) for value in seconds]


def write_windows_table(path, source, first_window, scores, silent, recording, metadata):
    """One partition's windows table: a row per window of `[first_window, first_window + len(scores))`."""
    import numpy as np
    import pyarrow as pa

    hop, window = recording["hop_seconds"], recording["window_seconds"]
    indices = np.arange(first_window, first_window + len(scores), dtype=np.int64)
    starts = indices * hop
    columns = {
        "recording": [source] * len(scores),
        "window_index": indices.astype(np.int32),
        "start_s": starts,
        "end_s": starts + window,
        "start_utc": utc_milliseconds(recording.get("start_utc"), starts),
        "p_positive": np.asarray(scores, dtype=np.float32),
        "silent": np.asarray(silent, dtype=bool),
    }
    schema = windows_schema().with_metadata({PARQUET_METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    write_table_atomically(path, pa.table(columns, schema=schema))


def read_partition_scores(path):
    """`(p_positive as float64, silent)` of a partition file, in window order."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["window_index", "p_positive", "silent"])
    order = np.argsort(table["window_index"].to_numpy())
    scores = table["p_positive"].to_numpy().astype(np.float64)[order]
    return scores, table["silent"].to_numpy(zero_copy_only=False)[order]


# ----------------------------------------------------------------------------------------------------------------
# Driver side: the job
# ----------------------------------------------------------------------------------------------------------------


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def windows_per_block(batch_size, frontend_block_windows=32):
    """Windows featurized together and sent to an actor as one block: the pipeline's 32, rounded up to a multiple of
    the batch size, so that blocks (and partitions, made of blocks) start where `orcahello detect`'s batches do."""
    return batch_size * max(1, -(-frontend_block_windows // batch_size))


def scores_identity(model_info, parameters, feature_extractor):
    """
    The key of the partition resume check: what the window scores depend on (the model's weights or revision, the
    frontend's configuration, the windowing), and nothing they do not (thresholds, aggregation, batch size).
    """
    identity = model_info.get("weights_sha256") or model_info.get("revision") or model_info["name_or_path"]
    payload = {
        "model": identity,
        "feature_extractor": feature_extractor.to_dict(),
        "window_seconds": parameters["window_seconds"],
        "hop_seconds": parameters["hop_seconds"],
        # the v1 preset's frontend (absent for production's, so that earlier runs' partitions are still reused)
        **{name: parameters[name] for name in ("whole_recording_frontend", "peak_normalize", "strict_segments")
           if name in parameters},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def custom_code_differences(model):
    """The model folder's frontend and pipeline modules that differ from this package's (the job featurizes with the
    package's code and scores with the folder's pipeline, as `orcahello detect` does everything with the folder's)."""
    if not os.path.isdir(model):
        return []
    different = []
    for name in ("feature_extraction_orcahello.py", "pipeline_orcahello.py"):
        ours, theirs = os.path.join(REPO_ROOT, name), os.path.join(model, name)
        module = sys.modules.get(name[:-3])
        if module is not None and getattr(module, "__file__", None):
            ours = module.__file__
        if os.path.isfile(ours) and os.path.isfile(theirs) and provenance.file_sha256(ours) != provenance.file_sha256(theirs):
            different.append(name)
    return different


class PartitionAssembly:
    """
    The window scores of the partitions in flight, gathered as they arrive, in any order. A window that arrives
    twice (Ray runs a task again when its worker died) is kept once: partitions are complete when every window is
    in, never by counting arrivals.
    """

    def __init__(self):
        self._partitions = {}

    def add(self, key, num_windows, offset, score, silent):
        """Record window `offset` of partition `key`. Returns `(is_new, complete)`: whether the window was not in yet,
        and `(scores, silent flags)` once the partition is complete (it is then forgotten), else None."""
        import numpy as np

        scores, flags, arrived = self._partitions.setdefault(
            key, (np.zeros(num_windows, np.float32), np.zeros(num_windows, bool), np.zeros(num_windows, bool))
        )
        is_new = not arrived[offset]
        scores[offset], flags[offset], arrived[offset] = score, silent, True
        if not arrived.all():
            return is_new, None
        del self._partitions[key]
        return is_new, (scores, flags)


@dataclasses.dataclass
class RecordingState:
    """What the driver knows about one recording during the job."""

    source: Source
    settings: detect.RunSettings  # its decision parameters (per site with a site table) and run hash
    info: dict = None  # sampling_rate, num_samples, num_channels, num_windows, window/hop seconds, start_utc
    partitions: dict = dataclasses.field(default_factory=dict)  # first window -> number of windows
    done: set = dataclasses.field(default_factory=set)  # first windows whose partition file is written or reused
    reused: set = dataclasses.field(default_factory=set)  # ... of which an earlier run wrote
    error: str = None
    document: dict = None  # its OrcaHello JSON, once written
    silent_windows: int = None


def import_frontend():
    """The package's pipeline module: the featurization the workers run and the result builder the driver runs."""
    try:
        import pipeline_orcahello
    except ImportError:  # a checkout used without installing the package: its root holds the module
        sys.path.insert(0, REPO_ROOT)
        import pipeline_orcahello
    return pipeline_orcahello


def worker_runtime_env():
    """
    Workers import this package's modules (orcahello, pipeline_orcahello...) to run the stages. Where the package is
    not installed but imported from a checkout, they find it through PYTHONPATH; on a cluster whose machines do not
    share this folder, install the package on every machine instead.
    """
    folders = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(import_frontend().__file__)]
    existing = os.environ.get("PYTHONPATH", "")
    paths = list(dict.fromkeys(folders + ([existing] if existing else [])))
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


@contextlib.contextmanager
def output_folder_lock(output_dir):
    """
    Hold the output folder's run lock (`orcahello.run_lock`, the one `detect` takes) for the job, or refuse at once
    with a clear message: two jobs writing one folder would delete each other's temporary files and partitions. The
    lock is the operating system's: a job that is killed releases it with its process, so nothing stale is left.
    """
    try:
        lock = run_lock.OutputFolderLock(output_dir, "orcahello batch").acquire()
    except run_lock.OutputFolderBusy as error:
        raise BatchError(f"another orcahello run is writing into {output_dir}: {error}") from None
    try:
        yield
    finally:
        lock.release()


def connect_ray(address, num_cpus):
    """Join the cluster at `address`, or start a local Ray instance on `num_cpus` CPUs (default: this machine's
    cores); nothing when this process is connected already. Returns True when this call connected (and so the job
    should disconnect, which also stops a local instance it started)."""
    import ray

    if ray.is_initialized():
        return False
    # Ray reports usage statistics to its developers unless told not to; a detector must not phone home unasked.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options = {"logging_level": logging.WARNING, "log_to_driver": False}
    # Ray says on every start that token authentication is on (its default for local instances): it stays on, and
    # the line is left out.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=num_cpus or available_cores(), include_dashboard=False, **options)
    except Exception as error:  # no cluster at that address, a version mismatch...
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise BatchError(f"cannot start or join {where}: {' '.join(str(error).split())}") from None
    return True


def quiet_ray_data():
    """Ray Data's progress bars and execution logs would drown the job's own lines (one per failed recording)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ...which says, as a warning, that its progress bars are off: this job has its own.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


@dataclasses.dataclass
class BatchOptions:
    """Everything `orcahello batch` can be told (see `run_batch`)."""

    inputs: tuple = ()
    output_dir: str = DEFAULT_OUTPUT_DIR
    manifests: tuple = ()
    recursive: bool = False
    model: str = None
    address: str = None
    num_cpus: int = None
    num_workers: int = None
    cpus_per_worker: int = 1
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE["cpu"]
    partition_windows: int = DEFAULT_PARTITION_WINDOWS
    threshold: float = None
    min_positive_seconds: int = None
    aggregation: str = None
    min_global_confidence: float = None
    preset: str = None
    site_thresholds: str = None
    overwrite: bool = False

    def check(self):
        if self.address and self.num_cpus:
            raise BatchError("--num-cpus sizes a local Ray instance; a cluster given with --address has its own CPUs")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BatchError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float)) and 0 <= self.threshold <= 1):
            raise BatchError(f"threshold must be a number from 0 to 1, got {self.threshold!r}")
        if self.min_positive_seconds is not None and (
            not isinstance(self.min_positive_seconds, int) or isinstance(self.min_positive_seconds, bool)
            or self.min_positive_seconds < 0
        ):  # fmt: skip
            raise BatchError(
                f"min_positive_seconds must be a whole number of at least 0, got {self.min_positive_seconds!r}"
            )
        for name in ("batch_size", "partition_windows", "cpus_per_worker", "num_workers", "num_cpus"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BatchError(f"{name} must be a whole number of at least 1, got {value!r}")


class BatchJob:
    """One run of `orcahello batch`; `run()` does it all (see the module's description for the stages)."""

    def __init__(self, options, log=None, command=None):
        options.check()
        require_scale_extra()
        self.options = options
        self.command = command
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started, self.started_at = time.monotonic(), provenance.now_iso()
        self.timing = {}
        self.counts = {"partitions_reused": 0, "partitions_scored": 0, "windows_scored": 0}
        self.output_dir = os.fspath(options.output_dir)

        self.site_table = None
        if options.site_thresholds:
            try:
                self.site_table = site_thresholds.load_site_thresholds(options.site_thresholds)
            except site_thresholds.SiteThresholdsError as error:
                raise BatchError(str(error)) from None
        self.model = options.model or models.default_model()
        try:
            from feature_extraction_orcahello import OrcaHelloFeatureExtractor

            self.config = models.load_config(self.model)  # a mistyped folder, an unpinned Hub repo: said in one line
            self.feature_extractor = OrcaHelloFeatureExtractor.from_pretrained(
                self.model, **models.hub_options(self.model)
            )
        except models.ModelNotFoundError as error:
            raise BatchError(str(error)) from None
        except Exception as error:  # no Hub access, a broken config
            raise BatchError(f"cannot load the model {self.model!r}: {' '.join(str(error).split())}") from None
        self.model_info = provenance.describe_model_config(self.config, self.model)
        # The command line's own resolution of the decision parameters (model config < site table < options).
        self.parameter_options = argparse.Namespace(
            aggregation=options.aggregation,
            threshold=options.threshold,
            min_positive_seconds=options.min_positive_seconds,
            min_global_confidence=options.min_global_confidence,
            preset=options.preset,
        )
        try:
            self.parameters = provenance.scoring_parameters(self.parameter_options, self.config)
        except ValueError as error:
            raise BatchError(str(error)) from None
        self.window_seconds, self.hop_seconds = self.parameters["window_seconds"], self.parameters["hop_seconds"]
        # The rest of the inference preset (`configuration_orcahello.INFERENCE_PRESETS`): the parameters hold them
        # when they are not production's; the record every JSON gets holds them all.
        self.inference = provenance.inference_record(self.parameters, self.config)
        self.frontend_settings = {
            "whole_recording_frontend": self.inference["whole_recording_frontend"],
            "strict_segments": self.inference["strict_segments"],
            "model_sampling_rate": self.feature_extractor.sampling_rate,
        }
        self.scores_hash = scores_identity(self.model_info, self.parameters, self.feature_extractor)
        self.block_windows = windows_per_block(options.batch_size)
        self.partition_windows = -(-options.partition_windows // self.block_windows) * self.block_windows
        self.code_differences = custom_code_differences(self.model)

        sources, self.input_problems = find_sources(options.inputs, options.manifests, recursive=options.recursive)
        run_identity = dict(self.parameters)
        if self.site_table is not None:  # as detect: the run's hash covers the table
            run_identity["site_thresholds"] = self.site_table
        self.run_settings = detect.RunSettings(
            parameters=self.parameters,
            batch_size=options.batch_size,
            device=None,  # the actors' device, known once the cluster is
            formats=("json",),
            plot=False,
            overwrite=options.overwrite,
            model_info=self.model_info,
            run_hash=provenance.run_hash(run_identity, self.model_info),
            site_thresholds_file=os.path.abspath(options.site_thresholds) if self.site_table is not None else None,
        )
        self.states = []
        for source in plan_outputs(sources):
            job = self.audio_job(source)
            settings = detect.settings_for_recording(
                job, self.run_settings, self.parameter_options, self.config, self.site_table
            )
            self.states.append(RecordingState(source=source, settings=settings))

    # -- paths ------------------------------------------------------------------------------------------------

    @staticmethod
    def audio_job(source):
        return inputs.AudioJob(path=source.source, relative_path=source.relative_path, output_stem=source.output_stem)

    def inside_output_dir(self, path):
        """`path`, once checked to lie under the output folder (links resolved): no source's name can make the job
        write or delete anything elsewhere."""
        root = os.path.realpath(self.output_dir)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise BatchError(f"refusing to write {path}: it is outside the output folder {self.output_dir}")
        return path

    def partition_folder(self, state):
        folder = os.path.join(self.output_dir, WINDOWS_FOLDER, *state.source.output_stem.split("/"))
        return self.inside_output_dir(folder)

    def partition_path(self, state, first_window):
        return os.path.join(self.partition_folder(state), PARTITION_FILE_PATTERN.format(first_window=first_window))

    def json_path(self, state):
        stem = os.path.join(self.output_dir, JSON_FOLDER, *state.source.output_stem.split("/"))
        return self.inside_output_dir(writers.output_path(stem, "json"))

    def remove_partial_files(self):
        """What a killed run of this job was writing (never complete, never read): the temporary files beside this
        job's own outputs, and nothing else (a user's `x.tmp1` stays)."""
        outputs = [os.path.join(self.output_dir, name) for name in (FILES_TABLE, RUN_DOCUMENT)]
        outputs += [self.json_path(state) for state in self.states]
        partial = [path for output in outputs for path in writers.partial_files_of(output)]
        for state in self.states:  # every partition size's files, as `finalize` removes those of other sizes
            partial += writers.partial_files_of(self.partition_path(state, 0), PARTITION_NAME_PATTERN)
        for path in partial:
            os.remove(path)

    def partition_files(self, state):
        return glob.glob(os.path.join(glob.escape(self.partition_folder(state)), "part-*.parquet"))

    # -- the stages -------------------------------------------------------------------------------------------

    def run(self):
        """Run the job; returns its run document (also written to `orcahello_batch_run.json`)."""
        for given, reason in self.input_problems:
            self.log(f"ERROR {given}: {reason}")
        if self.model_info.get(SYNTHETIC_WEIGHTS_KEY):
            self.log(f"NOTE: {self.model}: {writers.STANDIN_WARNING} (every output file says so)")
        if self.code_differences:
            self.log(
                f"NOTE: the model folder's {', '.join(self.code_differences)} differ from this package's: windows are "
                "featurized with the package's code, so scores can differ from `orcahello detect` with this folder"
            )
        os.makedirs(self.output_dir, exist_ok=True)
        with output_folder_lock(self.output_dir):
            self.remove_partial_files()
            return self.run_locked()

    def run_locked(self):
        import ray

        to_probe = [state for state in self.states if not self.resume_without_probing(state)]
        if not to_probe and all(self.finished_before(state) for state in self.states):
            # Nothing to score, no JSON to rewrite: no Ray instance to start (tens of seconds) for nothing.
            self.cluster, self.num_workers, self.actor_device = None, 0, None
            self.finalize_finished()
            return self.write_run_outputs()
        connected = connect_ray(self.options.address, self.options.num_cpus)
        try:
            self.timing["ray_ready_s"] = round(time.monotonic() - self.started, 3)
            quiet_ray_data()
            self.choose_workers(ray.cluster_resources())
            self.probe(to_probe)
            self.finalize_finished()
            self.score()
        finally:
            if connected:
                ray.shutdown()
        return self.write_run_outputs()

    def finished_before(self, state):
        """Every partition and the JSON of this recording were written by earlier runs, with these parameters."""
        if self.options.overwrite or not state.partitions or state.reused != set(state.partitions):
            return False
        return detect.load_finished_document(self.json_path(state), state.settings.run_hash) is not None

    def finalize_finished(self):
        for state in self.states:
            self.counts["partitions_reused"] += len(state.reused)
            if state.error is None and state.partitions and state.done == set(state.partitions):
                self.finalize(state)

    def choose_workers(self, resources):
        options = self.options
        self.cluster = {"cpus": float(resources.get("CPU", 0)), "gpus": int(resources.get("GPU", 0))}
        self.cluster["local_instance"] = not options.address
        if options.device == "cuda" and not self.cluster["gpus"]:
            raise BatchError("--device cuda was asked for but the Ray cluster has no GPU")
        gpu_actors = options.device == "cuda" or (options.device == "auto" and self.cluster["gpus"] > 0)
        self.actor_device = "cuda" if gpu_actors else "cpu"
        self.num_workers = options.num_workers
        if self.num_workers is None:
            if gpu_actors:
                self.num_workers = self.cluster["gpus"]
            else:
                self.num_workers = max(1, int(self.cluster["cpus"] // options.cpus_per_worker))
        unit = "GPU" if gpu_actors else "CPU"
        needed = self.num_workers * (1 if gpu_actors else options.cpus_per_worker)
        have = self.cluster["gpus"] if gpu_actors else self.cluster["cpus"]
        if needed > have and not options.address:
            # A fixed pool of actors that cannot all start would wait for them forever. (A cluster joined with
            # --address may be autoscaling: it gets the request and may grow.)
            raise BatchError(
                f"{self.num_workers} model actor(s) need {needed:g} {unit}(s); the Ray cluster has {have:g}"
            )
        self.run_settings.device = self.actor_device
        for state in self.states:
            state.settings.device = self.actor_device

    def previous_partitions(self, state):
        """first window -> metadata of the partition files an earlier run wrote for this source with this model,
        frontend and windowing."""
        found = {}
        if self.options.overwrite:
            return found
        for path in sorted(self.partition_files(state)):
            metadata = partition_metadata(path)
            if (
                metadata
                and metadata.get("format") == PARTITION_FORMAT_VERSION
                and metadata.get("scores_hash") == self.scores_hash
                and metadata.get("source") == state.source.source
                and path == self.partition_path(state, metadata["first_window"])
            ):
                found[metadata["first_window"]] = metadata
        return found

    def plan_partitions(self, state):
        total = state.info["num_windows"]
        state.partitions = {
            first: min(self.partition_windows, total - first) for first in range(0, total, self.partition_windows)
        }

    def reuse_partitions(self, state, previous):
        for first, count in state.partitions.items():
            metadata = previous.get(first)
            if metadata and metadata["num_windows"] == count and metadata["recording"] == state.info:
                state.done.add(first)
                state.reused.add(first)

    def resume_without_probing(self, state):
        """True when earlier runs wrote every partition of this recording: what they recorded about it is enough,
        and it is not opened at all."""
        previous = self.previous_partitions(state)
        recordings = {json.dumps(metadata["recording"], sort_keys=True) for metadata in previous.values()}
        if len(recordings) != 1:
            return False
        state.info = next(iter(previous.values()))["recording"]
        self.plan_partitions(state)
        self.reuse_partitions(state, previous)
        if state.done == set(state.partitions):
            return True
        state.info, state.partitions, state.done, state.reused = None, {}, set(), set()
        return False

    def probe(self, states):
        """Open each recording for its length: local files in driver threads (a header read each: faster than
        starting worker processes for it), URLs on the cluster (they must be downloaded to be read)."""
        import ray.data

        started = time.monotonic()
        rows = [{"source_index": state.source.index, "source": state.source.source} for state in states]
        local_rows = [row for row in rows if not is_url(row["source"])]
        remote_rows = [row for row in rows if is_url(row["source"])]
        windowing = {"window_seconds": self.window_seconds, "hop_seconds": self.hop_seconds, **self.frontend_settings}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="orcahello-probe") as executor:
            probed = list(executor.map(lambda row: probe_source(row, **windowing), local_rows))
        if remote_rows:
            probed += (
                ray.data.from_items(remote_rows, override_num_blocks=len(remote_rows))
                .map(probe_source, fn_kwargs=windowing, num_cpus=0.5, runtime_env=worker_runtime_env())
                .take_all()
            )
        for row in probed:
            state = self.states[int(row["source_index"])]
            if row["error"]:
                self.fail(state, str(row["error"]))
                continue
            state.info = {key: int(row[key]) for key in ("sampling_rate", "num_samples", "num_channels", "num_windows")}
            start_utc = str(row["start_utc"]) or _isoformat(start_utc_from_name(state.source.source))
            state.info.update(window_seconds=self.window_seconds, hop_seconds=self.hop_seconds, start_utc=start_utc)
            self.plan_partitions(state)
            self.reuse_partitions(state, self.previous_partitions(state))
        self.timing["probe_s"] = round(time.monotonic() - started, 3)

    def fail(self, state, reason):
        if state.error is None:
            state.error = reason
            self.log(f"ERROR {state.source.source}: {reason}")

    def dataset(self, work):
        """The Ray Data pipeline: partition rows -> featurized blocks (CPU tasks) -> window scores (model actors)."""
        import ray
        import ray.data

        model = self.model
        if os.path.isdir(model):
            # Sent through the object store, so the workers need no access to the driver's disk.
            model = {"name": os.path.basename(os.path.normpath(model)), "files": ray.put(read_model_folder(model))}
        if self.actor_device == "cuda":
            featurize = {"num_cpus": 1, "compute": ray.data.TaskPoolStrategy()}
            actor_resources = {"num_gpus": 1, "num_cpus": 1}
        else:
            # On CPU the model takes ~95% of the time (about 90 ms a window on one core, against 5 ms to featurize
            # it): the model actors reserve the CPUs and featurization runs beside them, one task per actor at most.
            featurize = {"num_cpus": 0, "compute": ray.data.TaskPoolStrategy(size=self.num_workers)}
            actor_resources = {"num_cpus": self.options.cpus_per_worker}
        runtime_env = worker_runtime_env()
        return (
            ray.data.from_items(work, override_num_blocks=len(work))
            .map_batches(
                featurize_partitions,
                batch_size=1,
                fn_kwargs={
                    "feature_extractor": self.feature_extractor,
                    "block_windows": self.block_windows,
                    "window_seconds": self.window_seconds,
                    "hop_seconds": self.hop_seconds,
                    "peak_normalize": self.inference["peak_normalize"],
                    **self.frontend_settings,
                },
                runtime_env=runtime_env,
                **featurize,
            )
            .map_batches(
                WindowScorer,
                batch_size=1,
                fn_constructor_kwargs={
                    "model": model,
                    "device": self.actor_device,
                    "batch_size": self.options.batch_size,
                    "threads": self.options.cpus_per_worker,
                },
                compute=ray.data.ActorPoolStrategy(size=self.num_workers),
                runtime_env=runtime_env,
                **actor_resources,
            )
        )

    def score(self):
        """Featurize and score every partition not done yet; write each partition as soon as all its windows are
        in, and each recording's JSON as soon as all its partitions are."""
        from tqdm.auto import tqdm

        work = [
            {
                "source_index": state.source.index,
                "source": state.source.source,
                "first_window": first,
                "num_windows": count,
                "num_samples": state.info["num_samples"],
            }
            for state in self.states
            if state.error is None
            for first, count in sorted(state.partitions.items())
            if first not in state.done
        ]
        if not work:
            return
        # Ray's core worker logs this, as an error, when Ray Data starts actors whose arguments (here the model
        # folder's files) sit in the object store: said once here so that nobody takes it for a failure.
        if os.path.isdir(self.model):
            self.log(
                "NOTE: Ray may log \"Actor ... MapWorker(MapBatches(WindowScorer)) ... has constructor arguments in "
                "the object store and max_restarts > 0\": harmless, the job keeps the model's files there until it "
                "ends, so a restarted model actor finds them"
            )
        assembly = PartitionAssembly()
        progress_bar = tqdm(
            total=sum(row["num_windows"] for row in work), desc="OrcaHello batch", unit="window", file=sys.stderr,
            disable=None,
        )  # fmt: skip
        started = time.monotonic()
        try:
            for batch in self.dataset(work).iter_batches(batch_size=None, batch_format="numpy"):
                self.timing.setdefault("first_scores_s", round(time.monotonic() - started, 3))
                rows = zip(
                    batch["source_index"], batch["partition_first_window"], batch["window_index"],
                    batch["p_positive"], batch["silent"], batch["error"],
                )  # fmt: skip
                for source_index, first, window_index, score, silent, error in rows:
                    state, first = self.states[int(source_index)], int(first)
                    if error:
                        self.fail(state, str(error))
                        continue
                    if first in state.done:
                        continue  # a retried task's copy of a partition already written
                    is_new, complete = assembly.add(
                        (state.source.index, first), state.partitions[first], int(window_index) - first, score, silent
                    )
                    if is_new:
                        self.counts["windows_scored"] += 1
                        progress_bar.update(1)
                    if complete is not None:
                        self.write_partition(state, first, *complete)
        except BatchError:
            raise
        except Exception as error:  # an actor that cannot load the model, a lost node...
            raise BatchError(f"the Ray job failed: {' '.join(str(error).split())[:2000]}") from None
        finally:
            progress_bar.close()
        finished = time.monotonic()
        self.timing["scoring_s"] = round(finished - started, 3)
        # The whole stage, the actors' start included. (A rate from the first result on would overstate: Ray Data
        # hands results over in bundles, the first one late; benchmarks/batch_throughput.py measures steady rates.)
        self.timing["windows_per_s"] = round(self.counts["windows_scored"] / (finished - started), 2)
        for state in self.states:
            if state.error is None and state.done != set(state.partitions):
                self.fail(state, "some of its windows were never scored (the job lost them)")

    def write_partition(self, state, first, scores, silent):
        metadata = {
            "format": PARTITION_FORMAT_VERSION,
            "scores_hash": self.scores_hash,
            "source": state.source.source,
            "first_window": first,
            "num_windows": len(scores),
            "partition_windows": self.partition_windows,
            "recording": state.info,
            "model": self.model_info,
            "version": __version__,
        }  # no wall-clock time: a job killed and run again writes the same bytes (the run document has the times)
        write_windows_table(
            self.partition_path(state, first), state.source.source, first, scores, silent, state.info, metadata
        )
        self.counts["partitions_scored"] += 1
        state.done.add(first)
        if state.error is None and state.done == set(state.partitions):
            self.finalize(state)

    def finalize(self, state):
        """All partitions of `state` are on disk: remove those of other partition sizes, and write its JSON (or keep
        the one an earlier run wrote, when nothing was scored again and the decision parameters are the same)."""
        import numpy as np

        planned = {self.partition_path(state, first) for first in state.partitions}
        for path in self.partition_files(state):
            if path not in planned:
                os.remove(path)
        scores, silent = [], []
        for first in sorted(state.partitions):
            partition_scores, partition_silent = read_partition_scores(self.partition_path(state, first))
            scores.append(partition_scores)
            silent.append(partition_silent)
        scores, silent = np.concatenate(scores), np.concatenate(silent)
        state.silent_windows = int(silent.sum())
        previous = None
        if not self.options.overwrite:
            previous = detect.load_finished_document(self.json_path(state), state.settings.run_hash)
        if previous is not None and state.reused == set(state.partitions):
            state.document = previous
            return
        info = {key: state.info[key] for key in ("sampling_rate", "num_samples", "num_channels", "num_windows")}
        info.update(name=state.source.source, window_seconds=self.window_seconds, hop_seconds=self.hop_seconds)
        decision = {key: state.settings.parameters[key] for key in DECISION_PARAMETERS}
        inference = provenance.inference_record(state.settings.parameters, self.config)
        # Imported here: a job with nothing to rebuild never imports the pipeline (transformers' pipelines: seconds).
        frontend = import_frontend()
        result = frontend.build_file_result(
            info, scores, state.silent_windows, return_timestamps=True, smoothing=inference["smoothing"],
            inference=inference, **decision,
        )
        state.document = detect.build_document(self.audio_job(state.source), result, state.settings)
        # The one field of `orcahello detect`'s document that changes from run to run: left out, so that a job
        # killed and run again writes the same bytes as one that was not (the run document has the times).
        state.document.pop("created_at", None)
        writers.write_json(self.json_path(state), state.document)
        for warning in state.document["warnings"]:
            self.log(f"WARNING {state.source.source}: {warning}")

    def write_run_outputs(self):
        import pyarrow as pa

        rows = [file_row(state) for state in self.states]
        rows += [error_row(given, reason) for given, reason in self.input_problems]
        files_table = pa.Table.from_pylist(rows, schema=files_schema())
        # The model (with `synthetic_weights` for the stand-in) in the table itself, as in every partition file.
        files_table = files_table.replace_schema_metadata(
            {PARQUET_METADATA_KEY: json.dumps({"model": self.model_info}, sort_keys=True)}
        )
        write_table_atomically(os.path.join(self.output_dir, FILES_TABLE), files_table)
        failed = sum(state.error is not None for state in self.states)
        options = dataclasses.asdict(self.options)
        options.update(output_dir=os.path.abspath(self.output_dir), model=self.model, num_workers=self.num_workers,
                       resolved_device=self.actor_device, partition_windows=self.partition_windows)  # fmt: skip
        site_table = self.site_table
        run_document = {
            "version": __version__,
            "model": self.model_info,
            "scores_hash": self.scores_hash,
            "run_hash": self.run_settings.run_hash,
            "parameters": self.parameters,
            "inference": self.inference,  # the preset and every field it resolves to
            "site_thresholds": (
                None if site_table is None else {"file": self.run_settings.site_thresholds_file, "table": site_table}
            ),
            "options": options,
            "cluster": self.cluster,
            "command": self.command,
            "started_at": self.started_at,
            "finished_at": provenance.now_iso(),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "timing": self.timing,
            "files": {
                "found": len(self.states),
                "ok": len(self.states) - failed,
                "failed": failed,
                "inputs_without_audio": len(self.input_problems),
            },
            "partitions": {"reused": self.counts["partitions_reused"], "scored": self.counts["partitions_scored"]},
            "windows_scored": self.counts["windows_scored"],
            "custom_code_differences": self.code_differences,
        }
        writers.write_json(os.path.join(self.output_dir, RUN_DOCUMENT), run_document)
        return run_document


DECISION_PARAMETERS = (
    "aggregation",
    "local_threshold",
    "global_count_threshold",
    "global_threshold",
    "top_k_windows",
    "min_global_confidence",
)


def run_batch(inputs=(), output_dir=DEFAULT_OUTPUT_DIR, log=None, command=None, **options):
    """
    Run `orcahello batch` from Python: `inputs` (paths, folders, globs, URLs) into `output_dir`, with the command's
    options as keyword arguments (`manifests`, `recursive`, `model`, `address`, `num_cpus`, `num_workers`,
    `cpus_per_worker`, `device`, `batch_size`, `partition_windows`, `threshold`, `min_positive_seconds`,
    `aggregation`, `min_global_confidence`, `preset`, `site_thresholds`, `overwrite`). Returns the run document
    (`orcahello_batch_run.json`).

    Uses the calling process's Ray connection when there is one, else joins `address` or starts a local instance of
    `num_cpus` CPUs (and stops what it started). Raises `BatchError` when nothing can run; a recording that cannot
    be scored is reported through `log` (default: a line on stderr), counted as failed, and never stops the job.
    """
    unknown = sorted(set(options) - {field.name for field in dataclasses.fields(BatchOptions)})
    if unknown:
        raise TypeError(f"run_batch got unknown option(s) {', '.join(unknown)}")
    batch_options = BatchOptions(inputs=tuple(inputs), output_dir=output_dir, **options)
    batch_options.manifests = tuple(batch_options.manifests)
    return BatchJob(batch_options, log=log, command=command).run()


def _isoformat(moment):
    return moment.isoformat() if moment is not None else ""


def file_row(state):
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
        start_utc=datetime.datetime.fromisoformat(start_utc) if start_utc else None,
        warnings="; ".join(document["warnings"]),
        run_hash=document["run_hash"],
        json_path="/".join((JSON_FOLDER, state.source.output_stem)) + writers.OUTPUT_SUFFIXES["json"],
    )
    return row


def error_row(recording, reason):
    row = {name: None for name in files_schema().names}
    row.update(recording=recording, status="error", error=reason)
    return row


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def batch_command(args, command=None):
    """`orcahello batch` with the parsed `args`; returns the exit status."""
    if not args.paths and not args.manifest:
        print("ERROR: give recordings (paths, folders, globs, URLs) or --manifest FILE", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        run = run_batch(
            args.paths,
            args.output_dir,
            manifests=args.manifest,
            recursive=args.recursive,
            model=args.model,
            address=args.address,
            num_cpus=args.num_cpus,
            num_workers=args.num_workers,
            cpus_per_worker=args.cpus_per_worker,
            device=args.device,
            batch_size=args.batch_size,
            partition_windows=args.partition_windows,
            threshold=args.threshold,
            min_positive_seconds=args.min_positive_seconds,
            aggregation=args.aggregation,
            min_global_confidence=args.min_global_confidence,
            preset=args.preset,
            site_thresholds=args.site_thresholds,
            overwrite=args.overwrite,
            command=command,
        )
    except BatchError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    files, partitions, timing = run["files"], run["partitions"], run["timing"]
    speed = f" in {timing['scoring_s']:g} s" if timing.get("scoring_s") else ""
    unmatched = f"; {files['inputs_without_audio']} input(s) gave no audio" if files["inputs_without_audio"] else ""
    print(
        f"{files['found']} recording(s): {files['ok']} ok, {files['failed']} failed{unmatched}. "
        f"{partitions['scored']} partition(s) scored ({run['windows_scored']} windows{speed}), "
        f"{partitions['reused']} reused from earlier runs. Results in {args.output_dir} "
        f"({FILES_TABLE}, {WINDOWS_FOLDER}/, {JSON_FOLDER}/)"
    )
    return EXIT_OK if files["failed"] == 0 and files["inputs_without_audio"] == 0 else EXIT_SOME_FILES_FAILED
