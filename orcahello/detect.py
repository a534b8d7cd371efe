# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello detect`: run the OrcaHello killer-whale call detector over recordings and write, per recording, the
production result as JSON, production's scoring table as CSV, a Raven selection table, Audacity labels and
(`--plot`) a spectrogram picture; per run, a summary CSV, a combined Raven table and the run's parameters.

    orcahello detect recordings/ --recursive --output-dir results
    python -m orcahello.cli detect clip.wav --model models/orcahello-srkw-detector-v1 --plot
    orcahello detect https://example.org/rpi_orcasound_lab/hls/1600000000/live.m3u8 archive/hls/ --recursive

HLS (Orcasound's streams and archives) is scored as whole recordings: an `.m3u8` playlist (a path or an http(s)
URL) is one recording, and its folder's `.ts` segments are not scored on their own; a folder of `.ts` segments
without a playlist is one recording. Their results carry UTC times when the playlist or the folder name gives them.

With `--site-thresholds sites.json`, each recording gets the decision thresholds of its hydrophone: the first site
name or glob pattern of the table that matches its path (see `orcahello.site_thresholds`).

A recording that cannot be scored is reported as `ERROR <path>: <reason>` on stderr and never stops the run; the
exit status is 0 when every recording was scored, 1 otherwise. Re-running into the same output folder skips the
recordings already scored with the same model and parameters (`--overwrite` redoes them).
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vocabulary_orcahello import (
    SYNTHETIC_WEIGHTS_KEY,
    is_url,
)

from . import (
    EXIT_CANNOT_RUN,
    EXIT_OK,
    EXIT_SOME_FILES_FAILED,
    __version__,
    inputs,
    interruption,
    models,
    provenance,
    run_lock,
    site_thresholds,
    writers,
)

DEFAULT_OUTPUT_DIR = "orcahello_results"


DEFAULT_FORMATS = "json,csv,raven,audacity"


# The pipeline's result keys stored in each file's JSON: production's five, then the port's extras.
RESULT_KEYS = (
    "global_prediction",
    "global_confidence",
    "local_predictions",
    "local_confidences",
    "submission",
    "windows",
    "detections",
    "warnings",
    "start_time_utc",
    "gaps",
)


@dataclass
class RunSettings:
    """How a detect run scores each recording and what identifies its results (the resume check's `run_hash`)."""

    parameters: dict
    batch_size: int
    device: str
    formats: tuple
    plot: bool
    overwrite: bool
    model_info: dict
    run_hash: str
    engine: str = "auto"
    site_thresholds_file: str | None = None  # the --site-thresholds table, when one is used
    site: str | None = None  # the table's site pattern that gave this recording's parameters (None: its default)
    allow_other_hosts: bool = False  # HLS over HTTP: segments and redirects on hosts other than the playlist's


def settings_for_recording(
    job: inputs.AudioJob, settings: RunSettings, args: argparse.Namespace, config: Any, site_table: dict | None
) -> RunSettings:
    """
    The run's settings with `job`'s own parameters when a per-site table is used: its site's entry, and the hash of
    those parameters, so that resuming rescores exactly the recordings whose site entry changed.
    """
    if site_table is None:
        return settings
    # The absolute path, so that site folders above the folder given on the command line match too; a URL's path
    # names the node (`.../rpi_orcasound_lab/hls/...`).
    path = urllib.parse.urlsplit(job.path).path if is_url(job.path) else os.path.abspath(job.path)
    parameters = provenance.scoring_parameters(args, config, site_thresholds.parameters_for(path, site_table))
    return dataclasses.replace(
        settings,
        parameters=parameters,
        run_hash=provenance.run_hash(parameters, settings.model_info),
        site=site_thresholds.match_site(path, site_table),
    )


def is_finished(job: inputs.AudioJob, settings: RunSettings) -> bool:
    """Whether a previous run scored `job` with this model and these parameters (its JSON says so): then
    `score_or_resume` needs no model, it writes any missing output from the JSON."""
    json_path = writers.output_path(job.output_stem, "json")
    return not settings.overwrite and load_finished_document(json_path, settings.run_hash) is not None


def load_finished_document(json_path: str, expected_hash: str) -> dict[str, Any] | None:
    """The JSON a previous run wrote for this recording, if it used the same model and parameters; else None."""
    try:
        with open(json_path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("run_hash") == expected_hash else None


def build_document(job: inputs.AudioJob, result: dict[str, Any], settings: RunSettings) -> dict[str, Any]:
    """The `<stem>.orcahello.json` content: the pipeline's result, the model, the version and every parameter."""
    document = {"file": job.path, "label": result["label"]}
    document.update({key: result[key] for key in RESULT_KEYS})
    document["preset"] = result.get("preset")  # the inference preset; its resolved fields are in "parameters"
    if "source" in result:  # HLS: the playlist or folder, its segments, where the start time came from
        document["source"] = result["source"]
    document.update(
        {
            "duration_s": result["duration_s"],
            "sampling_rate": result["sampling_rate"],
            "num_channels": result["num_channels"],
            "parameters": {
                **result["parameters"],
                # The fast mode, when asked for (it changes the numbers; float32 is the default and stays implicit).
                **{name: settings.parameters[name] for name in ("precision",) if name in settings.parameters},
                "batch_size": settings.batch_size,
                "device": settings.device,
                "engine": settings.engine,
            },
            "model": settings.model_info,
            "version": __version__,
            "run_hash": settings.run_hash,
            "created_at": provenance.now_iso(),
        }
    )
    if settings.site_thresholds_file is not None:
        document["site_thresholds"] = {"file": settings.site_thresholds_file, "site": settings.site}
    if settings.model_info.get(SYNTHETIC_WEIGHTS_KEY):
        document["warnings"] = [writers.STANDIN_WARNING] + list(document["warnings"])
    return document


def score_or_resume(
    job: inputs.AudioJob,
    pipe: Any,
    settings: RunSettings,
    progress_callback: Callable[[int, int | None], None] | None = None,
) -> tuple[dict[str, Any], bool]:
    """
    Score `job` (or take a previous run's result for it) and write its outputs. Returns `(document, resumed)`.

    A resumed recording is not scored again; outputs missing from its earlier run (another `--format`, `--plot`)
    are written from its JSON. A recording scored again first loses every output of its earlier scoring, the JSON
    first, and gets its new JSON last: so whenever a JSON exists, every output beside it was made from it, even
    after an interrupted run.
    """
    json_path = writers.output_path(job.output_stem, "json")
    document = None if settings.overwrite else load_finished_document(json_path, settings.run_hash)
    resumed = document is not None
    if not resumed:
        extra = {} if progress_callback is None else {"progress_callback": progress_callback}
        result = pipe(
            job.path,
            return_timestamps=True,
            batch_size=settings.batch_size,
            engine=settings.engine,
            allow_other_hosts=settings.allow_other_hosts,
            **settings.parameters,
            **extra,
        )
        document = build_document(job, result, settings)
        for kind in writers.OUTPUT_SUFFIXES:  # "json" comes first
            stale_path = writers.output_path(job.output_stem, kind)
            if os.path.exists(stale_path):
                os.remove(stale_path)

    def needs(kind):
        return not resumed or not os.path.exists(writers.output_path(job.output_stem, kind))

    synthetic = bool(document["model"].get(SYNTHETIC_WEIGHTS_KEY))
    if "csv" in settings.formats and needs("csv"):
        writers.write_scoring_csv(
            writers.output_path(job.output_stem, "csv"), document["submission"], synthetic_weights=synthetic
        )
    if "raven" in settings.formats and needs("raven"):
        writers.write_raven_table(
            writers.output_path(job.output_stem, "raven"),
            document["detections"],
            with_utc=document.get("start_time_utc") is not None,
            synthetic_weights=synthetic,
        )
    if "audacity" in settings.formats and needs("audacity"):
        writers.write_audacity_labels(
            writers.output_path(job.output_stem, "audacity"), document["detections"], synthetic_weights=synthetic
        )
    if settings.plot and needs("png"):
        from .plot import plot_detections

        png_path = writers.output_path(job.output_stem, "png")
        plot_detections(job.path, document, png_path, allow_other_hosts=settings.allow_other_hosts)
    if not resumed:
        writers.write_json(json_path, document)
    return document, resumed


def failure_reason(error: BaseException, path: str) -> str:
    """One line saying why `path` failed, without repeating the path the pipeline's messages start with."""
    # Imported here: building the command line's parser never loads torch (the pipeline's module does).
    from audio_orcahello import AudioInputError

    message = str(error).strip() or type(error).__name__
    if message.startswith(f"{path}: "):
        message = message[len(path) + 2 :]
    # AudioInputError messages say what is wrong with the audio; anything else is unexpected: name its type.
    if not isinstance(error, AudioInputError):
        message = f"{type(error).__name__}: {message}"
    return " ".join(message.split())


def quiet_pipeline_warnings() -> None:
    """
    Leave a recording's warnings (digital silence, gaps) to the command, which prints each once with the recording's
    path and keeps them in the outputs: the pipeline also logs them, for library users, from the module that builds
    its results.
    """
    import results_orcahello

    logging.getLogger(results_orcahello.__name__).setLevel(logging.ERROR)


def summary_row(job: inputs.AudioJob, document: dict[str, Any]) -> dict[str, Any]:
    """The recording's row of summary.csv (`writers.write_summary_csv`)."""
    return {
        "path": job.path,
        "status": "ok",
        "global_prediction": document["global_prediction"],
        "global_confidence": document["global_confidence"],
        "positive_seconds": writers.positive_seconds(document["detections"]),
        "duration_s": document["duration_s"],
        "start_time_utc": document.get("start_time_utc") or "",
        "gaps": len(document.get("gaps") or []),
        "warnings": "; ".join(document["warnings"]),
        "error": "",
    }


def detect_command(args: argparse.Namespace, command: list[str] | None = None) -> int:
    """
    `orcahello detect` with the parsed `args`, holding its output folder (one run per folder: a second one would
    rewrite the same files under the first); returns the exit status. `command` is recorded in the run file.
    """
    folder_was_there = os.path.exists(args.output_dir)
    try:
        with run_lock.OutputFolderLock(args.output_dir, "orcahello detect") as lock:
            if lock.stale_holder:  # a killed run held it: its half-written files go
                writers.remove_partial_outputs(args.output_dir)
            return detect(args, command=command)
    except run_lock.OutputFolderBusy as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        # The lock made the folder: a run that wrote nothing (refused options, no model) leaves none behind.
        if not folder_was_there and os.path.isdir(args.output_dir) and not os.listdir(args.output_dir):
            os.rmdir(args.output_dir)


def detect(args: argparse.Namespace, command: list[str] | None = None) -> int:
    """Run `orcahello detect` with the parsed `args` (its output folder already held, see `detect_command`); returns
    the exit status. `command` is recorded in the run file."""
    from tqdm.auto import tqdm

    started, started_at = time.monotonic(), provenance.now_iso()
    if args.plot or args.report:
        from .plot import require_matplotlib

        try:
            require_matplotlib("--plot" if args.plot else "--report")
        except ImportError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    site_table = None
    if args.site_thresholds:
        try:
            site_table = site_thresholds.load_site_thresholds(args.site_thresholds)
        except site_thresholds.SiteThresholdsError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    paths, input_problems = inputs.find_audio_files(args.paths, recursive=args.recursive)
    for path, reason in input_problems:
        print(f"ERROR {path}: {reason}", file=sys.stderr)
    if not paths:
        print("No audio files to score.", file=sys.stderr)
        return EXIT_SOME_FILES_FAILED
    model = args.model or models.default_model()
    try:
        device = models.resolve_device(args.device)
        # The config first: with it the resume check runs, and a run with nothing left to do never loads the
        # weights (seconds) or the engines.
        config = models.load_config(model)
    except models.ModelNotFoundError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except Exception as error:  # no Hub access, a broken config: nothing can be scored
        print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    # Warnings about a recording (digital silence) are in its JSON and printed below, once, with its path.
    quiet_pipeline_warnings()

    parameters = provenance.scoring_parameters(args, config)
    model_info = provenance.describe_model_config(config, model)
    if model_info.get(SYNTHETIC_WEIGHTS_KEY):
        print(f"NOTE: {model}: {writers.STANDIN_WARNING} (every output file says so)", file=sys.stderr)
    # With a site table the run's hash covers the table; each recording's JSON holds the hash of its own parameters.
    run_identity = parameters if site_table is None else {**parameters, "site_thresholds": site_table}
    settings = RunSettings(
        parameters=parameters,
        batch_size=args.batch_size or models.default_batch_size(device),
        device=device,
        formats=args.format,
        plot=args.plot,
        overwrite=args.overwrite,
        model_info=model_info,
        run_hash=provenance.run_hash(run_identity, model_info),
        engine=args.engine,
        site_thresholds_file=os.path.abspath(args.site_thresholds) if site_table is not None else None,
        allow_other_hosts=args.allow_other_hosts,
    )
    output_dir = args.output_dir
    jobs = inputs.plan_jobs(paths, output_dir)
    pipe = None
    if any(not is_finished(job, settings_for_recording(job, settings, args, config, site_table)) for job in jobs):
        try:
            pipe = models.load_pipeline(model, device)
        except Exception as error:  # weights missing or broken
            print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    summary_rows = [{"path": path, "status": "error", "error": reason} for path, reason in input_problems]
    combined_raven = []
    reviewed = []  # --report: what the page shows of each recording (its clips are written as the run goes)
    counts = {"scored": 0, "skipped": 0, "failed": 0}

    # disable=None: a bar on a terminal, none in logs and pipes (where it would be a wall of carriage returns). It
    # counts windows, so that a long recording moves it too; its total grows as each recording's length is known.
    progress_bar = tqdm(total=0, desc="OrcaHello", unit="window", file=sys.stderr, disable=None)
    windows_scored = 0
    progress = {"windows_before": 0, "file_windows": 0}

    def on_windows(count, recording_windows):
        interruption.raise_if_interrupted()  # a Ctrl-C whose KeyboardInterrupt was swallowed stops at the next batch
        if recording_windows is not None and not progress["file_windows"]:
            progress["file_windows"] = recording_windows
            progress_bar.total = progress["windows_before"] + recording_windows
            progress_bar.refresh()
        progress_bar.update(count)

    try:
        for number, job in enumerate(jobs, start=1):
            progress_bar.set_description(f"OrcaHello file {number}/{len(jobs)}")
            progress_bar.set_postfix_str(os.path.basename(job.path))
            progress["file_windows"] = 0
            try:
                job_settings = settings_for_recording(job, settings, args, config, site_table)
                document, resumed = score_or_resume(job, pipe, job_settings, progress_callback=on_windows)
            except Exception as error:  # one bad recording never stops the batch
                reason = failure_reason(error, job.path)
                progress_bar.write(f"ERROR {job.path}: {reason}", file=sys.stderr)
                summary_rows.append({"path": job.path, "status": "error", "error": reason})
                counts["failed"] += 1
                continue
            counts["skipped" if resumed else "scored"] += 1
            if not resumed:
                # Counted from the results: with the exported engines the PyTorch model never runs a forward.
                windows_scored += len(document["windows"])
                progress["windows_before"] += len(document["windows"])
                progress_bar.total, progress_bar.n = progress["windows_before"], progress["windows_before"]
                progress_bar.set_postfix_str(f"{windows_scored} windows scored")
                for warning in document["warnings"]:
                    progress_bar.write(f"WARNING {job.path}: {warning}", file=sys.stderr)
            summary_rows.append(summary_row(job, document))
            combined_raven.append((job.relative_path, document["duration_s"], document["detections"]))
            if args.report:
                from .report import review_recording

                reviewed.append(review_recording(job, document, resumed, len(reviewed) + 1, output_dir, args.format))
    finally:
        progress_bar.close()

    os.makedirs(output_dir, exist_ok=True)
    if "raven" in settings.formats:
        writers.write_combined_raven_table(
            os.path.join(output_dir, writers.COMBINED_RAVEN_TABLE),
            combined_raven,
            synthetic_weights=bool(model_info.get(SYNTHETIC_WEIGHTS_KEY)),
        )
    writers.write_summary_csv(os.path.join(output_dir, writers.SUMMARY_CSV), summary_rows)
    run_document = {
        "version": __version__,
        "model": model_info,
        "run_hash": settings.run_hash,
        "parameters": parameters,
        "inference": provenance.inference_record(parameters, config),  # the preset and every field it resolves to
        "site_thresholds": None if site_table is None else {"file": settings.site_thresholds_file, "table": site_table},
        "options": {
            "paths": list(args.paths),
            "output_dir": os.path.abspath(output_dir),
            "format": list(settings.formats),
            "batch_size": settings.batch_size,
            "device": args.device,
            "resolved_device": device,
            "threshold": args.threshold,
            "min_positive_seconds": args.min_positive_seconds,
            "aggregation": args.aggregation,
            "min_global_confidence": args.min_global_confidence,
            "preset": args.preset,
            "site_thresholds": args.site_thresholds,
            "recursive": args.recursive,
            "model": model,
            "plot": args.plot,
            "overwrite": args.overwrite,
            "report": args.report,
        },
        "command": command,
        "started_at": started_at,
        "finished_at": provenance.now_iso(),
        "elapsed_s": round(time.monotonic() - started, 3),
        "files": {"found": len(jobs), **counts, "inputs_without_audio": len(input_problems)},
    }
    writers.write_json(os.path.join(output_dir, writers.RUN_PARAMETERS_JSON), run_document)
    if args.report:
        from .report import write_report

        failures = [(row["path"], row["error"]) for row in summary_rows if row["status"] == "error"]
        report_path = write_report(output_dir, reviewed, failures, run_document)
        print(f"Report: {report_path}")

    skipped = (
        f", {counts['skipped']} skipped (already scored with this model and these parameters; --overwrite redoes them)"
        if counts["skipped"]
        else ""
    )
    unmatched = f"; {len(input_problems)} input(s) gave no audio file" if input_problems else ""
    print(
        f"{len(jobs)} file(s): {counts['scored']} scored{skipped}, {counts['failed']} failed{unmatched}. "
        f"Results in {output_dir} (summary: {os.path.join(output_dir, writers.SUMMARY_CSV)})"
    )
    return EXIT_OK if counts["failed"] == 0 and not input_problems else EXIT_SOME_FILES_FAILED
