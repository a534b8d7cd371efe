# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
What the commands that score recordings (`detect`, `batch`, `live`, `embed`) share about a run: its settings and the
per-recording ones a site table or a hydrophone config gives (`RunSettings`, `load_decision_table`), the OrcaHello
JSON of a recording (`build_document`), the check that a previous run already finished a recording
(`load_finished_document`), the one line that says why a recording failed, the pipeline's warnings left to the
command, and writing a recording's outputs and the run's tables as `orcahello detect` writes them
(`score_or_resume`, `summary_row`, `write_run_tables`; `orcahello reaggregate` writes the same).
"""

import dataclasses
import json
import logging
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vocabulary_orcahello import FILE_COLUMN, GLOBAL_CONFIDENCE_PERCENT, SYNTHETIC_WEIGHTS_KEY, is_url

from . import __version__, inputs, provenance, saved_results, site_thresholds, writers

if TYPE_CHECKING:
    from . import upstream_config

# The pipeline's result keys stored in each file's JSON: production's five (its global confidence on today's 0-1
# scale, then on production's legacy 0-100 one), then the port's extras.
RESULT_KEYS = (
    "global_prediction",
    "global_confidence",
    GLOBAL_CONFIDENCE_PERCENT,
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
    """
    How a run scores each recording and what identifies its results (the resume check's `run_hash`).

    Args:
        parameters (`dict`): every scoring parameter, resolved (`provenance.scoring_parameters`).
        batch_size (`int`): windows per forward pass (`orcahello batch` sets it once the actors' device is known).
        device (`str`): where the model runs (`orcahello batch`: the actors' device, set with the batch size).
        formats (`tuple[str, ...]`): the per-recording outputs written (`writers.OUTPUT_FORMATS`).
        plot (`bool`): also a spectrogram picture per recording.
        overwrite (`bool`): score every recording again, even one a previous run finished.
        model_info (`dict`): the model's identity (`provenance.describe_model_config`).
        run_hash (`str`): the hash of the parameters and the model (`provenance.run_hash`).
        engine (`str`): what computes the model (`vocabulary_orcahello.ENGINES`).
        site_thresholds_file (`str`, *optional*): the `--site-thresholds` table, when one is used.
        site (`str`, *optional*): the table's site pattern that gave this recording's parameters (None: its default).
        allow_other_hosts (`bool`): HLS over HTTP: segments and redirects on hosts other than the playlist's.
        hydrophone_config (`dict`, *optional*): the `--hydrophone-config` file's record (path, sha256, form,
            preset), when one is used; per recording also the location that applied and the overrides it set.
    """

    parameters: dict[str, Any]
    batch_size: int | None
    device: str | None
    formats: tuple[str, ...]
    plot: bool
    overwrite: bool
    model_info: dict[str, Any]
    run_hash: str
    engine: str = "auto"
    site_thresholds_file: str | None = None
    site: str | None = None
    allow_other_hosts: bool = False
    hydrophone_config: dict[str, Any] | None = None


def load_decision_table(
    site_thresholds_file: str | None, hydrophone_config: "upstream_config.HydrophoneConfig | None"
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """
    The per-recording decision table of a run, from `--site-thresholds` or `--hydrophone-config` (the same
    machinery: a hydrophone config's locations are sites named by their node), and the `RunSettings` fields that
    record where it came from. Raises `site_thresholds.SiteThresholdsError` for a table that cannot be used.
    """
    if hydrophone_config is not None:
        if site_thresholds_file:
            raise site_thresholds.SiteThresholdsError(
                "--site-thresholds and --hydrophone-config both set per-recording decisions: give one of them"
            )
        return hydrophone_config.site_table(), {"hydrophone_config": hydrophone_config.record()}
    if not site_thresholds_file:
        return None, {}
    table = site_thresholds.load_site_thresholds(site_thresholds_file)
    return table, {"site_thresholds_file": os.path.abspath(site_thresholds_file)}


def table_records(settings: RunSettings, table: dict[str, Any] | None) -> dict[str, Any]:
    """What a run file records of its per-recording table: `site_thresholds` and `hydrophone_config`."""
    record: dict[str, Any] = {"site_thresholds": None, "hydrophone_config": None}
    if table is not None and settings.hydrophone_config is not None:
        record["hydrophone_config"] = {**settings.hydrophone_config, "table": table}
    elif table is not None:
        record["site_thresholds"] = {"file": settings.site_thresholds_file, "table": table}
    return record


def settings_for_recording(
    job: inputs.AudioJob,
    settings: RunSettings,
    scoring: provenance.ScoringOptions,
    config: Any,
    site_table: dict[str, Any] | None,
) -> RunSettings:
    """
    The run's settings with `job`'s own parameters when a per-site table is used: its site's entry under the run's
    `scoring` options, and the hash of those parameters, so that resuming rescores exactly the recordings whose site
    entry changed.
    """
    if site_table is None:
        return settings
    # The absolute path, so that site folders above the folder given on the command line match too; a URL's path
    # names the node (`.../rpi_orcasound_lab/hls/...`).
    path = urllib.parse.urlsplit(job.path).path if is_url(job.path) else os.path.abspath(job.path)
    overrides = site_thresholds.parameters_for(path, site_table)
    parameters = provenance.scoring_parameters(scoring, config, overrides)
    site = site_thresholds.match_site(path, site_table)
    hydrophone_config = settings.hydrophone_config
    if hydrophone_config is not None:
        hydrophone_config = {**hydrophone_config, "location": site, "overrides": overrides}
    return dataclasses.replace(
        settings,
        parameters=parameters,
        run_hash=provenance.run_hash(parameters, settings.model_info),
        site=site,
        hydrophone_config=hydrophone_config,
    )


def is_finished(job: inputs.AudioJob, settings: RunSettings) -> bool:
    """Whether a previous run scored `job` with this model and these parameters (its JSON says so): then its outputs
    can be made from that JSON, with no model."""
    json_path = writers.output_path(job.output_stem, "json")
    return not settings.overwrite and load_finished_document(json_path, settings.run_hash) is not None


def load_finished_document(json_path: str, expected_hash: str) -> dict[str, Any] | None:
    """The JSON a previous run wrote for this recording, if it used the same model and parameters; else None."""
    try:
        with open(json_path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    # A result saved before every confidence was 0-1 is scored again: its outputs (CSV, summary) would mix scales.
    finished = isinstance(document, dict) and document.get("run_hash") == expected_hash
    return document if finished and saved_results.is_current(document) else None


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
    if settings.hydrophone_config is not None:  # the file (and its hash), the location and the overrides applied
        document["hydrophone_config"] = settings.hydrophone_config
    # The pipeline's results say so when the config marks the stand-in; a folder known by its name only, or scores
    # built without the pipeline (`orcahello batch`), get it here: once, first.
    if settings.model_info.get(SYNTHETIC_WEIGHTS_KEY) and writers.STANDIN_WARNING not in document["warnings"]:
        document["warnings"] = [writers.STANDIN_WARNING] + list(document["warnings"])
    return document


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


def standin_note(model: str, model_info: dict[str, Any]) -> str | None:
    """The line `detect`, `batch` and `live` print when the model's weights are the synthetic stand-in (`model_info`
    as `provenance.describe_model` gives it); None for any other model."""
    if not model_info.get(SYNTHETIC_WEIGHTS_KEY):
        return None
    return f"NOTE: {model}: {writers.STANDIN_WARNING} (every output file says so)"


def quiet_pipeline_warnings() -> None:
    """
    Leave a recording's warnings (digital silence, gaps) to the command, which prints each once with the recording's
    path and keeps them in the outputs: the pipeline also logs them, for library users, from the module that builds
    its results.
    """
    import results_orcahello

    logging.getLogger(results_orcahello.__name__).setLevel(logging.ERROR)


def score_or_resume(
    job: inputs.AudioJob,
    pipe: Any,
    settings: RunSettings,
    progress_callback: Callable[[int, int | None], None] | None = None,
    journal: bool = False,
) -> tuple[dict[str, Any], bool]:
    """
    Score `job` (or take a previous run's result for it) and write its outputs. Returns `(document, resumed)`.

    A resumed recording is not scored again; outputs missing from its earlier run (another `--format`, `--plot`)
    are written from its JSON. A recording scored again first loses every output of its earlier scoring, the JSON
    first, and gets its new JSON last: so whenever a JSON exists, every output beside it was made from it, even
    after an interrupted run. With `journal`, the windows are scored through a journal in the output folder
    (`window_journal`), so that a run interrupted in the middle of a long recording resumes where it stopped.
    """
    json_path = writers.output_path(job.output_stem, "json")
    document = None if settings.overwrite else load_finished_document(json_path, settings.run_hash)
    resumed = document is not None
    scored_journal, result = None, None
    if document is None and journal:
        # Imported here: building the command line's parser never loads torch (the journal scores through the
        # pipeline's modules).
        from . import window_journal

        if window_journal.is_journalled(job, settings):
            result, scored_journal = window_journal.score_with_journal(job, pipe, settings, progress_callback)
    if document is None and result is None:
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
    if document is None:
        assert result is not None  # scored just above
        document = build_document(job, result, settings)
        for kind in writers.OUTPUT_SUFFIXES:  # "json" comes first
            stale_path = writers.output_path(job.output_stem, kind)
            if os.path.exists(stale_path):
                os.remove(stale_path)

    writers.write_recording_tables(job.output_stem, document, settings.formats, job.path, only_missing=resumed)
    if settings.plot and (not resumed or not os.path.exists(writers.output_path(job.output_stem, "png"))):
        from .plot import plot_detections

        png_path = writers.output_path(job.output_stem, "png")
        plot_detections(job.path, document, png_path, allow_other_hosts=settings.allow_other_hosts)
    if not resumed:
        writers.write_json(json_path, document)
    if scored_journal is not None:  # the recording's results are on disk: its journal has served
        scored_journal.remove()
    return document, resumed


def failed_summary_row(path: str, reason: str) -> dict[str, Any]:
    """The row of summary.csv of a recording that could not be scored (`path`, as given) and why."""
    return {FILE_COLUMN: path, "status": "error", "error": reason}


def summary_row(job: inputs.AudioJob, document: dict[str, Any]) -> dict[str, Any]:
    """The recording's row of summary.csv (`writers.write_summary_csv`)."""
    return {
        FILE_COLUMN: job.path,
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


def write_run_tables(
    output_dir: str, settings: RunSettings, combined_raven: list[tuple], summary_rows: list[dict[str, Any]]
) -> None:
    """The run's own tables: the combined Raven table (when Raven tables are asked for) and summary.csv."""
    os.makedirs(output_dir, exist_ok=True)
    if "raven" in settings.formats:
        writers.write_combined_raven_table(
            os.path.join(output_dir, writers.COMBINED_RAVEN_TABLE),
            combined_raven,
            synthetic_weights=bool(settings.model_info.get(SYNTHETIC_WEIGHTS_KEY)),
        )
    writers.write_summary_csv(os.path.join(output_dir, writers.SUMMARY_CSV), summary_rows)
