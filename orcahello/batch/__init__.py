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
   blocks `--batch-size` windows at a time through the pipeline's `score_features`, i.e. with whatever engine
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

The job's modules: `settings` (options, errors, output names), `sources` (finding, naming and probing the
recordings), `partitions` (blocks, partitions, the resume key), `tables` (the Parquet tables), `cluster` (Ray),
`dataflow`, `featurize` and `scoring` (the Ray Data pipeline and its stages), `model_cache` (the model folder on the
workers), `job` (`BatchJob`, `run_batch`, `run_job`) and `command` (`orcahello batch`'s run and summary).
"""

from .command import batch_command
from .job import BatchJob, output_folder_lock, run_batch, run_job
from .model_cache import folder_holds, materialize_model_folder, model_cache_root, read_model_folder
from .partitions import PartitionAssembly, RecordingState, scores_identity, windows_per_block
from .settings import (
    DEFAULT_OUTPUT_DIR,
    DEFAULT_PARTITION_WINDOWS,
    FILES_TABLE,
    JSON_FOLDER,
    PARQUET_METADATA_KEY,
    PARTITION_FORMAT_VERSION,
    RUN_DOCUMENT,
    WINDOWS_FOLDER,
    BatchError,
    BatchOptions,
    require_scale_extra,
)
from .sources import Source, find_sources, plan_outputs, read_manifest, start_utc_from_name

__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "DEFAULT_PARTITION_WINDOWS",
    "FILES_TABLE",
    "JSON_FOLDER",
    "PARQUET_METADATA_KEY",
    "PARTITION_FORMAT_VERSION",
    "RUN_DOCUMENT",
    "WINDOWS_FOLDER",
    "BatchError",
    "BatchJob",
    "BatchOptions",
    "PartitionAssembly",
    "RecordingState",
    "Source",
    "batch_command",
    "find_sources",
    "folder_holds",
    "materialize_model_folder",
    "model_cache_root",
    "output_folder_lock",
    "plan_outputs",
    "read_manifest",
    "read_model_folder",
    "require_scale_extra",
    "run_batch",
    "run_job",
    "scores_identity",
    "start_utc_from_name",
    "windows_per_block",
]
