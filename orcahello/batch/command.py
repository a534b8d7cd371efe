# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""`orcahello batch` as a command: its parsed arguments to `run_batch`, the summary it prints, its exit status."""

import sys

from .. import EXIT_CANNOT_RUN, EXIT_OK, EXIT_SOME_FILES_FAILED, detect
from .job import run_batch
from .settings import FILES_TABLE, JSON_FOLDER, WINDOWS_FOLDER, BatchError


def batch_command(args, command=None):
    """`orcahello batch` with the parsed `args`; returns the exit status."""
    if not args.paths and not args.manifest:
        print("ERROR: give recordings (paths, folders, globs, URLs) or --manifest FILE", file=sys.stderr)
        return EXIT_CANNOT_RUN
    detect.quiet_pipeline_warnings()  # each recording's warnings are printed once below, with its path
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
