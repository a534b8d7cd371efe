# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""`orcahello batch` as a command: its options to `run_job`, the summary it prints, its exit status."""

import sys

from .. import EXIT_CANNOT_RUN, EXIT_OK, EXIT_SOME_FILES_FAILED, runs
from .job import run_job
from .settings import FILES_TABLE, JSON_FOLDER, WINDOWS_FOLDER, BatchError, BatchOptions


def batch_command(options: BatchOptions, command: list[str] | None = None) -> int:
    """`orcahello batch` with `options`; returns the exit status. `command` is recorded in the run document."""
    if not options.inputs and not options.manifests:
        print("ERROR: give recordings (paths, folders, globs, URLs) or --manifest FILE", file=sys.stderr)
        return EXIT_CANNOT_RUN
    runs.quiet_pipeline_warnings()  # each recording's warnings are printed once below, with its path
    try:
        run = run_job(options, command=command)
    except BatchError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    files, partitions, timing = run["files"], run["partitions"], run["timing"]
    speed = f" in {timing['scoring_s']:g} s" if timing.get("scoring_s") else ""
    unmatched = f"; {files['inputs_without_audio']} input(s) gave no audio" if files["inputs_without_audio"] else ""
    print(
        f"{files['found']} recording(s): {files['ok']} ok, {files['failed']} failed{unmatched}. "
        f"{partitions['scored']} partition(s) scored ({run['windows_scored']} windows{speed}), "
        f"{partitions['reused']} reused from earlier runs. Results in {options.output_dir} "
        f"({FILES_TABLE}, {WINDOWS_FOLDER}/, {JSON_FOLDER}/)"
    )
    return EXIT_OK if files["failed"] == 0 and files["inputs_without_audio"] == 0 else EXIT_SOME_FILES_FAILED
