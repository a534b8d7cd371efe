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
from typing import TYPE_CHECKING, Any

from vocabulary_orcahello import FILE_COLUMN, is_url

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
    upstream_config,
    writers,
)
from .progress import RunProgress, estimated_windows
from .runs import (
    RunSettings,
    failed_summary_row,
    failure_reason,
    is_finished,
    load_decision_table,
    quiet_pipeline_warnings,
    score_or_resume,
    settings_for_recording,
    standin_note,
    summary_row,
    table_records,
    write_run_tables,
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
        hydrophone_config (`upstream_config.HydrophoneConfig`, *optional*):
            Upstream's hydrophone config (`--hydrophone-config`): its locations' decisions, as a site table is
            used (not with `site_thresholds`); its preset is `scoring`'s unless that names one.
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
    hydrophone_config: upstream_config.HydrophoneConfig | None = None
    recursive: bool = False
    overwrite: bool = False
    plot: bool = False
    report: bool = False
    allow_other_hosts: bool = False


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
    except run_lock.OutputFolderRefused as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        # The lock made the folder: a run that wrote nothing (refused options, no model) leaves none behind.
        if not folder_was_there and os.path.isdir(options.output_dir) and not os.listdir(options.output_dir):
            os.rmdir(options.output_dir)


def detect(options: DetectOptions, command: list[str] | None = None) -> int:
    """Run `orcahello detect` with `options` (its output folder already held, see `detect_command`); returns
    the exit status. `command` is recorded in the run file."""
    started, started_at = time.monotonic(), provenance.now_iso()
    if options.plot or options.report:
        from .plot import require_matplotlib

        try:
            require_matplotlib("--plot" if options.plot else "--report")
        except ImportError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    try:
        site_table, table_source = load_decision_table(options.site_thresholds, options.hydrophone_config)
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
    if standin_note(model, model_info):
        print(standin_note(model, model_info), file=sys.stderr)
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
        allow_other_hosts=options.allow_other_hosts,
        **table_source,
    )
    output_dir = options.output_dir
    jobs = inputs.plan_jobs(paths, output_dir)
    pipe = None
    finished = {
        job.path
        for job in jobs
        if is_finished(job, settings_for_recording(job, settings, options.scoring, config, site_table))
    }
    if len(finished) < len(jobs):
        try:
            pipe = models.load_pipeline(model, device)
        except Exception as error:  # weights missing or broken
            print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    summary_rows = [failed_summary_row(path, reason) for path, reason in input_problems]
    combined_raven = []
    # --report: what the page shows of each recording (its clips are written as the run goes)
    reviewed: list[ReviewedRecording] = []
    counts = {"scored": 0, "skipped": 0, "failed": 0}

    # In windows, so that a long recording moves it too: a bar on a terminal, a line every half minute elsewhere, and
    # one ETA for the run from the recordings' headers (each estimate replaced by the count once the file is open).
    window_seconds = float(parameters.get("window_seconds") or 2.0)
    hop_seconds = float(parameters.get("hop_seconds") or 1.0)
    estimates = {
        job.path: 0
        if is_url(job.path) or job.path in finished
        else estimated_windows(job.path, window_seconds, hop_seconds)
        for job in jobs
    }
    progress = RunProgress("OrcaHello", estimates)
    file_windows: dict[str, Any] = {}  # the recording being scored: its path, windows known and done

    def on_windows(count, recording_windows):
        interruption.raise_if_interrupted()  # a Ctrl-C whose KeyboardInterrupt was swallowed stops at the next batch
        if recording_windows is not None and file_windows.get("known") != recording_windows:
            file_windows["known"] = recording_windows
            progress.set_windows(file_windows["path"], recording_windows)
        file_windows["done"] += count
        progress.update(count)

    try:
        for number, job in enumerate(jobs, start=1):
            progress.set_postfix(f"file {number}/{len(jobs)} {os.path.basename(job.path)}")
            file_windows.update(path=job.path, known=None, done=0)
            try:
                job_settings = settings_for_recording(job, settings, options.scoring, config, site_table)
                document, resumed = score_or_resume(job, pipe, job_settings, progress_callback=on_windows, journal=True)
            except Exception as error:  # one bad recording never stops the batch
                reason = failure_reason(error, job.path)
                progress.write(f"ERROR {job.path}: {reason}")
                progress.set_windows(job.path, file_windows["done"])
                summary_rows.append(failed_summary_row(job.path, reason))
                counts["failed"] += 1
                continue
            counts["skipped" if resumed else "scored"] += 1
            # Counted from the results: with the exported engines the PyTorch model never runs a forward. A resumed
            # recording's windows are none of the run's work (nor of its rate).
            progress.set_windows(job.path, 0 if resumed else len(document["windows"]))
            if not resumed:
                progress.update(len(document["windows"]) - file_windows["done"])
                for warning in document["warnings"]:
                    progress.write(f"WARNING {job.path}: {warning}")
            summary_rows.append(summary_row(job, document))
            combined_raven.append(
                (job.relative_path, document["duration_s"], document["detections"], writers.begin_path(job.path))
            )
            if options.report:
                from .report import review_recording

                reviewed.append(
                    review_recording(job, document, resumed, len(reviewed) + 1, output_dir, options.formats)
                )
    finally:
        progress.close()

    write_run_tables(output_dir, settings, combined_raven, summary_rows)
    run_document = {
        "version": __version__,
        "model": model_info,
        "run_hash": settings.run_hash,
        "parameters": parameters,
        "inference": provenance.inference_record(parameters, config),  # the preset and every field it resolves to
        **table_records(settings, site_table),
        "options": {
            "paths": list(options.paths),
            "output_dir": os.path.abspath(output_dir),
            "format": list(settings.formats),
            "batch_size": settings.batch_size,
            "device": options.device,
            "resolved_device": device,
            **options.scoring.record(),
            "site_thresholds": options.site_thresholds,
            "hydrophone_config": None if options.hydrophone_config is None else options.hydrophone_config.path,
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

        failures = [(row[FILE_COLUMN], row["error"]) for row in summary_rows if row["status"] == "error"]
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
