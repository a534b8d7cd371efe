# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
`orcahello reaggregate`: decide saved results again under other decision options, without the model.

    orcahello reaggregate results/ --output-dir redecided --aggregation mean_top_k --min-global-confidence 0.7
    orcahello reaggregate results/ --output-dir bush_point --hydrophone-config bush-point-configmap.yaml

What upstream's `run_inference.py --reaggregate` does for its port: the window scores a run saved (every
`*.orcahello.json` of `orcahello detect` or `orcahello batch`, and `orcahello live`'s minute JSONs) go through the
decision again (`results_orcahello.aggregate_windows`, the confidence floor), and the outputs are written as a fresh
`orcahello detect` with the same options writes them: the same JSON, CSV, Raven and Audacity files, summary.csv and
combined Raven table, byte for byte but for the wall-clock fields. Only decision fields can change: a preset whose
windows, hop, frontend or smoothing differ from the saved run's needs the recordings scored again, and is refused
with one line. The model's own decision defaults are read from its folder's `config.json` when the saved results
name a local folder (else the saved preset's). Neither torch nor the model's code is imported.
"""

import dataclasses
import json
import os
import sys
import time
import types
from typing import Any

from results_orcahello import DecisionParameters, build_file_result, merge_detections
from vocabulary_orcahello import DECISION_FIELDS, INFERENCE_FIELDS, INFERENCE_PRESETS

from . import EXIT_CANNOT_RUN, EXIT_OK, EXIT_SOME_FILES_FAILED, __version__, inputs, provenance, writers
from .runs import (
    RunSettings,
    failed_summary_row,
    load_decision_table,
    score_or_resume,
    settings_for_recording,
    summary_row,
    table_records,
    write_run_tables,
)
from .site_thresholds import SiteThresholdsError
from .upstream_config import HydrophoneConfig

DETECT_SUFFIX = writers.OUTPUT_SUFFIXES["json"]
# Fields of a saved run that fix its windows and rows: reaggregating cannot change them.
WINDOW_FIELDS = tuple(field for field in INFERENCE_FIELDS if field not in DECISION_FIELDS) + ("smoothing",)


class ReaggregateError(ValueError):
    """Saved results that cannot be re-decided (not OrcaHello results, or options that change their windows)."""


@dataclasses.dataclass(frozen=True)
class ReaggregateOptions:
    """
    What `orcahello reaggregate` can be told.

    Args:
        results (`tuple[str, ...]`): saved results: `*.orcahello.json` files, live minute JSONs, or folders of them.
        output_dir (`str`): where the re-decided outputs go, as `orcahello detect --output-dir` lays them out.
        scoring (`provenance.ScoringOptions`, *optional*): the preset and decision options, as detect takes them.
        site_thresholds (`str`, *optional*): a per-site table (`orcahello.site_thresholds`).
        hydrophone_config (`upstream_config.HydrophoneConfig`, *optional*): upstream's hydrophone config.
        formats (`tuple[str, ...]`, *optional*): the per-recording outputs (`writers.OUTPUT_FORMATS`).
    """

    results: tuple[str, ...]
    output_dir: str
    scoring: provenance.ScoringOptions = dataclasses.field(default_factory=provenance.ScoringOptions)
    site_thresholds: str | None = None
    hydrophone_config: HydrophoneConfig | None = None
    formats: tuple[str, ...] = writers.OUTPUT_FORMATS


def find_saved_results(paths: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """`(path, document)` of every saved result under `paths`, in order; `ReaggregateError` for one that is not."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                files += [os.path.join(folder, name) for name in sorted(names) if name.endswith(".json")]
        else:
            files.append(path)
    found = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError) as error:
            raise ReaggregateError(f"{path}: cannot read it as JSON ({error})") from None
        if isinstance(document, dict) and {"windows", "local_confidences", "parameters"} <= set(document):
            found.append((path, document))
        elif path.endswith(DETECT_SUFFIX):
            raise ReaggregateError(f"{path}: not an OrcaHello result (no windows, local_confidences, parameters)")
    if not found:
        raise ReaggregateError(f"no saved OrcaHello results in {', '.join(paths)}")
    return found


def model_config_of(document: dict[str, Any]) -> types.SimpleNamespace:
    """
    The model config the saved run scored with, as far as deciding needs it: its preset and inference fields (the
    saved windows), and the decision defaults of its folder's `config.json` when the folder is there, else the
    saved preset's: what a fresh `detect` with the same model would start from. Read as JSON: no torch.
    """
    saved = document["parameters"]
    preset = saved.get("preset") or document.get("preset") or "fastai"
    fields = dict(INFERENCE_PRESETS[preset])
    fields.update({field: saved[field] for field in WINDOW_FIELDS if field in saved})
    config_path = os.path.join(str(document.get("model", {}).get("name_or_path", "")), "config.json")
    folder_config = {}
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as handle:
            folder_config = json.load(handle)
    for field in DECISION_FIELDS:
        if field != "smoothing" and folder_config.get(field) is not None and folder_config.get("preset") == preset:
            fields[field] = folder_config[field]
    return types.SimpleNamespace(preset=preset, **fields)


def check_same_windows(document: dict[str, Any], inference: dict[str, Any], path: str) -> None:
    """`ReaggregateError` when the new settings would cut other windows or rows than the saved ones."""
    saved = {field: document["parameters"].get(field) for field in WINDOW_FIELDS}
    changed = [field for field in WINDOW_FIELDS if saved[field] is not None and saved[field] != inference[field]]
    if changed:
        field = changed[0]
        raise ReaggregateError(
            f"{path}: {field} {saved[field]!r} -> {inference[field]!r} changes the windows or rows: score the "
            f"recordings again (orcahello detect)"
        )


def redecided_result(document: dict[str, Any], parameters: dict[str, Any], inference: dict[str, Any]) -> dict:
    """The pipeline's result for the saved recording under `parameters`: what a fresh detect's pipeline returns."""
    windows = document["windows"]
    info = {
        "name": document["file"] if "file" in document else document.get("source", ""),
        "sampling_rate": document["sampling_rate"],
        "num_samples": int(round(document["duration_s"] * document["sampling_rate"])),
        "num_channels": document["num_channels"],
        "num_windows": len(windows),
        "window_seconds": inference["window_seconds"],
        "hop_seconds": inference["hop_seconds"],
        "timeline": None,
    }
    decision = DecisionParameters.from_mapping({**inference, **parameters})
    scores = [window["score"] for window in windows]
    result = build_file_result(info, scores, decision=decision, return_timestamps=True, inference=inference)
    assert isinstance(result, dict)  # with return_timestamps, the full result
    # What does not depend on the decision is the saved run's: windows and rows with their UTC times, gaps, the
    # stream's warnings (the stand-in weights' warning is the document's, added again when it is built).
    for key in ("windows", "submission", "start_time_utc", "gaps", "duration_s", "source"):
        if key in document:
            result[key] = document[key]
    result["warnings"] = [warning for warning in document["warnings"] if warning != writers.STANDIN_WARNING]
    rows = document["submission"]
    starts = [row["start_time_s"] for row in rows]
    ends = [row["start_time_s"] + row["duration_s"] for row in rows]
    # A detection's UTC: its first row's start, and the end time a window ending there was given (else the next
    # row's start), as the pipeline computes them from the stream's timeline.
    start_utc = {row["start_time_s"]: row.get("start_time_utc") for row in rows}
    end_utc = {window["end"]: window.get("end_utc") for window in windows}
    gaps = [gap["start_s"] for gap in document.get("gaps") or []]
    detections = merge_detections(starts, ends, result["local_confidences"], result["local_predictions"])
    for detection in detections:
        if document.get("source") is not None:
            detection["spans_gap"] = any(detection["start"] < gap < detection["end"] for gap in gaps)
        if document.get("start_time_utc") is not None:
            detection["start_utc"] = start_utc.get(detection["start"])
            detection["end_utc"] = end_utc.get(detection["end"]) or start_utc.get(detection["end"])
    result["detections"] = detections
    return result


class SavedResult:
    """Stands in for the pipeline where detect's writer calls it: the re-decided result of one recording."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    def __call__(self, source: str, **arguments: Any) -> dict[str, Any]:
        return self.result


def reaggregate_command(options: ReaggregateOptions, command: list[str] | None = None) -> int:
    """Run `orcahello reaggregate` with `options`; returns the exit status."""
    started, started_at = time.monotonic(), provenance.now_iso()
    try:
        saved = find_saved_results(options.results)
        site_table, table_source = load_decision_table(options.site_thresholds, options.hydrophone_config)
    except (ReaggregateError, SiteThresholdsError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    jobs = inputs.plan_jobs([document.get("file") or path for path, document in saved], options.output_dir)
    summary_rows, combined_raven, failed = [], [], 0
    settings = run_parameters = config = None
    for job, (path, document) in zip(jobs, saved):
        config = model_config_of(document)
        try:
            run_parameters = provenance.scoring_parameters(options.scoring, config)
            run_identity = run_parameters if site_table is None else {**run_parameters, "site_thresholds": site_table}
            saved_parameters = document["parameters"]
            run_settings = RunSettings(
                parameters=run_parameters,
                batch_size=saved_parameters.get("batch_size"),
                device=saved_parameters.get("device"),
                formats=options.formats,
                plot=False,
                overwrite=True,
                model_info=document["model"],
                run_hash=provenance.run_hash(run_identity, document["model"]),
                engine=saved_parameters.get("engine", "auto"),
                **table_source,
            )
            settings = settings_for_recording(job, run_settings, options.scoring, config, site_table)
            inference = provenance.inference_record(settings.parameters, config)
            check_same_windows(document, inference, path)
            result = redecided_result(document, settings.parameters, inference)
        except ReaggregateError as error:  # the options ask for other windows: no result can be re-decided
            print(f"ERROR: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        except ValueError as error:
            print(f"ERROR {path}: {' '.join(str(error).split())}", file=sys.stderr)
            summary_rows.append(failed_summary_row(job.path, str(error)))
            failed += 1
            continue
        document, _ = score_or_resume(job, SavedResult(result), settings)
        summary_rows.append(summary_row(job, document))
        combined_raven.append(
            (job.relative_path, document["duration_s"], document["detections"], writers.begin_path(job.path))
        )
    if settings is None:
        return EXIT_SOME_FILES_FAILED
    settings = run_settings  # the run's, not the last recording's (a site or location changes those)
    assert run_parameters is not None  # resolved for every recording, as `settings` was
    write_run_tables(options.output_dir, settings, combined_raven, summary_rows)
    run_document = {
        "version": __version__,
        "model": settings.model_info,
        "run_hash": settings.run_hash,
        "parameters": run_parameters,
        "inference": provenance.inference_record(run_parameters, config),
        **table_records(settings, site_table),
        "options": {
            "results": list(options.results),
            "output_dir": os.path.abspath(options.output_dir),
            "format": list(options.formats),
            **options.scoring.record(),
            "site_thresholds": options.site_thresholds,
            "hydrophone_config": None if options.hydrophone_config is None else options.hydrophone_config.path,
        },
        "command": command,
        "started_at": started_at,
        "finished_at": provenance.now_iso(),
        "elapsed_s": round(time.monotonic() - started, 3),
        "files": {"found": len(saved), "redecided": len(saved) - failed, "failed": failed},
    }
    writers.write_json(os.path.join(options.output_dir, writers.RUN_PARAMETERS_JSON), run_document)
    print(f"{len(saved)} result(s): {len(saved) - failed} re-decided, {failed} failed. Results in {options.output_dir}")
    return EXIT_OK if failed == 0 else EXIT_SOME_FILES_FAILED
