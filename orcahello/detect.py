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

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY

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
from .runs import (
    RunSettings,
    build_document,
    failure_reason,
    is_finished,
    load_finished_document,
    quiet_pipeline_warnings,
    settings_for_recording,
)

if TYPE_CHECKING:
    from .report import ReviewedRecording

DEFAULT_OUTPUT_DIR = "orcahello_results"


@dataclasses.dataclass(frozen=True)
class DetectOptions:
    """
    What `orcahello detect` can be told (its command-line options; see `detect`).

    Args:
        paths (`tuple[str, ...]`):
            Audio files, HLS playlists (paths or http(s) URLs), folders or glob patterns (`inputs.find_audio_files`).
        output_dir (`str`, *optional*, defaults to `"orcahello_results"`):
            Where the outputs go, mirroring the inputs' folders.
        formats (`tuple[str, ...]`, *optional*, defaults to every one of `writers.OUTPUT_FORMATS`):
            The per-recording outputs; the JSON is always written (the resume check reads it).
        model (`str`, *optional*):
            A model folder or Hub id; None: `models.default_model()`.
        device (`str`, *optional*, defaults to `"auto"`):
            `models.DEVICES`.
        batch_size (`int`, *optional*):
            Windows per forward pass; None: `models.default_batch_size` of the device.
        engine (`str`, *optional*, defaults to `"auto"`):
            What computes the model (`vocabulary_orcahello.ENGINES`).
        scoring (`provenance.ScoringOptions`, *optional*):
            The preset, the decision fields set for the whole run and the precision; by default the model's.
        site_thresholds (`str`, *optional*):
            A per-site table of decision parameters (`orcahello.site_thresholds`), under `scoring`'s.
        recursive (`bool`, *optional*, defaults to `False`):
            Also search the subfolders of folders, and let `**` in patterns cross folders.
        overwrite (`bool`, *optional*, defaults to `False`):
            Score again the recordings a previous run into `output_dir` finished with this model and these parameters.
        plot (`bool`, *optional*, defaults to `False`):
            Also a spectrogram picture per recording (needs matplotlib).
        report (`bool`, *optional*, defaults to `False`):
            Also `report.html` (`orcahello.report`; needs matplotlib).
        allow_other_hosts (`bool`, *optional*, defaults to `False`):
            HLS over HTTP: fetch segments (and follow redirects) on hosts other than the playlist's.
    """

    paths: tuple[str, ...]
    output_dir: str = DEFAULT_OUTPUT_DIR
    formats: tuple[str, ...] = writers.OUTPUT_FORMATS
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    engine: str = "auto"
    scoring: provenance.ScoringOptions = dataclasses.field(default_factory=provenance.ScoringOptions)
    site_thresholds: str | None = None
    recursive: bool = False
    overwrite: bool = False
    plot: bool = False
    report: bool = False
    allow_other_hosts: bool = False


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
    if document is None:  # not resumed
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


def detect_command(options: DetectOptions, command: list[str] | None = None) -> int:
    """
    `orcahello detect` with `options`, holding its output folder (one run per folder: a second one would
    rewrite the same files under the first); returns the exit status. `command` is recorded in the run file.
    """
    folder_was_there = os.path.exists(options.output_dir)
    try:
        with run_lock.OutputFolderLock(options.output_dir, "orcahello detect") as lock:
            if lock.stale_holder:  # a killed run held it: its half-written files go
                writers.remove_partial_outputs(options.output_dir)
            return detect(options, command=command)
    except run_lock.OutputFolderBusy as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        # The lock made the folder: a run that wrote nothing (refused options, no model) leaves none behind.
        if not folder_was_there and os.path.isdir(options.output_dir) and not os.listdir(options.output_dir):
            os.rmdir(options.output_dir)


def detect(options: DetectOptions, command: list[str] | None = None) -> int:
    """Run `orcahello detect` with `options` (its output folder already held, see `detect_command`); returns
    the exit status. `command` is recorded in the run file."""
    from tqdm.auto import tqdm

    started, started_at = time.monotonic(), provenance.now_iso()
    if options.plot or options.report:
        from .plot import require_matplotlib

        try:
            require_matplotlib("--plot" if options.plot else "--report")
        except ImportError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    site_table = None
    if options.site_thresholds:
        try:
            site_table = site_thresholds.load_site_thresholds(options.site_thresholds)
        except site_thresholds.SiteThresholdsError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    paths, input_problems = inputs.find_audio_files(options.paths, recursive=options.recursive)
    for path, reason in input_problems:
        print(f"ERROR {path}: {reason}", file=sys.stderr)
    if not paths:
        print("No audio files to score.", file=sys.stderr)
        return EXIT_SOME_FILES_FAILED
    model = options.model or models.default_model()
    try:
        device = models.resolve_device(options.device)
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

    parameters = provenance.scoring_parameters(options.scoring, config)
    model_info = provenance.describe_model_config(config, model)
    if model_info.get(SYNTHETIC_WEIGHTS_KEY):
        print(f"NOTE: {model}: {writers.STANDIN_WARNING} (every output file says so)", file=sys.stderr)
    # With a site table the run's hash covers the table; each recording's JSON holds the hash of its own parameters.
    run_identity = parameters if site_table is None else {**parameters, "site_thresholds": site_table}
    settings = RunSettings(
        parameters=parameters,
        batch_size=options.batch_size or models.default_batch_size(device),
        device=device,
        formats=options.formats,
        plot=options.plot,
        overwrite=options.overwrite,
        model_info=model_info,
        run_hash=provenance.run_hash(run_identity, model_info),
        engine=options.engine,
        site_thresholds_file=(
            os.path.abspath(options.site_thresholds) if options.site_thresholds and site_table is not None else None
        ),
        allow_other_hosts=options.allow_other_hosts,
    )
    output_dir = options.output_dir
    jobs = inputs.plan_jobs(paths, output_dir)
    pipe = None
    if any(
        not is_finished(job, settings_for_recording(job, settings, options.scoring, config, site_table)) for job in jobs
    ):
        try:
            pipe = models.load_pipeline(model, device)
        except Exception as error:  # weights missing or broken
            print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    summary_rows = [{"path": path, "status": "error", "error": reason} for path, reason in input_problems]
    combined_raven = []
    reviewed: list[
        ReviewedRecording
    ] = []  # --report: what the page shows of each recording (its clips are written as the run goes)
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
                job_settings = settings_for_recording(job, settings, options.scoring, config, site_table)
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
            if options.report:
                from .report import review_recording

                reviewed.append(
                    review_recording(job, document, resumed, len(reviewed) + 1, output_dir, options.formats)
                )
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
            "paths": list(options.paths),
            "output_dir": os.path.abspath(output_dir),
            "format": list(settings.formats),
            "batch_size": settings.batch_size,
            "device": options.device,
            "resolved_device": device,
            **options.scoring.record(),
            "site_thresholds": options.site_thresholds,
            "recursive": options.recursive,
            "model": model,
            "plot": options.plot,
            "overwrite": options.overwrite,
            "report": options.report,
        },
        "command": command,
        "started_at": started_at,
        "finished_at": provenance.now_iso(),
        "elapsed_s": round(time.monotonic() - started, 3),
        "files": {"found": len(jobs), **counts, "inputs_without_audio": len(input_problems)},
    }
    writers.write_json(os.path.join(output_dir, writers.RUN_PARAMETERS_JSON), run_document)
    if options.report:
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
