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
import datetime
import glob
import hashlib
import inspect
import json
import logging
import os
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass

from . import REPO_ROOT, __version__, run_lock, site_thresholds, writers

HUB_MODEL_ID = "orcasound/orcahello-srkw-detector-v1"
# The commit of HUB_MODEL_ID that the CLI and `orcahello batch` load when no local model is given or found: its code
# runs (`trust_remote_code`), so it is never "whatever main holds today". None: not pinned yet (the Hub repo holds no
# release with this repo's custom code so far), and the Hub is then not used at all. To change it, set the full
# 40-character commit of a reviewed release (`huggingface_hub.HfApi().model_info(HUB_MODEL_ID).sha`).
HUB_MODEL_REVISION = None
# `config.json` key that `scripts/fetch_model.py` sets on the synthetic stand-in it converts.
SYNTHETIC_WEIGHTS_KEY = "synthetic_weights"
EXIT_INTERRUPTED = 130
MODEL_ENVIRONMENT_VARIABLE = "ORCAHELLO_MODEL"
# What `python scripts/fetch_model.py` makes: the Hub weights converted, or the synthetic stand-in when offline.
STANDIN_FOLDER_NAME = "standin-resnet50-synthetic-weights"
LOCAL_MODEL_FOLDERS = (
    os.path.join("models", "orcahello-srkw-detector-v1"),
    os.path.join("models", STANDIN_FOLDER_NAME),
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
PLAYLIST_EXTENSION = ".m3u8"
SEGMENT_EXTENSION = ".ts"
DEFAULT_OUTPUT_DIR = "orcahello_results"
DEFAULT_FORMATS = "json,csv,raven,audacity"
# The pipeline's own CPU default (see pipeline_orcahello.DEFAULT_BATCH_SIZE); on a GPU, pass a larger one.
DEFAULT_BATCH_SIZE = 8
WEIGHTS_FILE = "model.safetensors"

EXIT_OK = 0
EXIT_SOME_FILES_FAILED = 1
EXIT_CANNOT_RUN = 2

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


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def is_model_folder(path):
    return os.path.isfile(os.path.join(path, "config.json"))


def default_model():
    """
    The model `detect` uses without `--model`: `$ORCAHELLO_MODEL`, else a folder made by `scripts/fetch_model.py`
    under the repo root, else the Hub repo (downloaded once into the Hugging Face cache).
    """
    if os.environ.get(MODEL_ENVIRONMENT_VARIABLE):
        return os.environ[MODEL_ENVIRONMENT_VARIABLE]
    for folder in LOCAL_MODEL_FOLDERS:
        path = os.path.join(REPO_ROOT, folder)
        if is_model_folder(path):
            return path
    return HUB_MODEL_ID


class ModelNotFoundError(RuntimeError):
    """`--model` names neither a model folder nor a loadable Hub repo."""


HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def check_model(model):
    """
    Say in one line what is wrong with `model` before transformers does (its error for a mistyped folder is about
    Hub repo ids): a folder must hold a config.json; a name that is not a folder is a Hub id only when it looks like
    one (`owner/name`) and does not start with a folder that exists here (`models/...` is a mistyped folder).
    """
    if os.path.isdir(model):
        if not is_model_folder(model):
            raise ModelNotFoundError(f"{model} is a folder but not a model folder (it has no config.json)")
        return
    first = model.replace(os.sep, "/").split("/")[0]
    looks_like_path = (
        not HUB_ID_PATTERN.fullmatch(model) or ".." in model or model.startswith(("~", ".")) or os.path.isdir(first)
    )
    if looks_like_path or os.path.exists(model):
        raise ModelNotFoundError(f"no such model folder: {model} (give a folder holding config.json, or a Hub id)")


def hub_options(model):
    """`from_pretrained`'s revision for `model`: the pinned one for the default Hub repo (whose code runs)."""
    if os.path.isdir(model) or model != HUB_MODEL_ID:
        return {}
    if HUB_MODEL_REVISION is None:
        raise ModelNotFoundError(
            f"no local model, and {HUB_MODEL_ID} has no pinned revision to load (its code would run): make one "
            "with `python scripts/fetch_model.py` or give --model DIR"
        )
    return {"revision": HUB_MODEL_REVISION}


def resolve_device(requested):
    """`"auto"` picks CUDA, then Apple MPS, then the CPU; an explicit accelerator that is missing is an error."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise RuntimeError(f"--device {requested} was asked for but this machine has no {requested.upper()} device")
    return requested


def load_pipeline(model, device):
    """`transformers.pipeline("audio-classification", ..., trust_remote_code=True)` on `model`."""
    check_model(model)
    options = hub_options(model)
    if os.path.isdir(model):
        # A local folder needs nothing from the Hub; without this, transformers may still ask it about the repo.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import pipeline

    return pipeline("audio-classification", model=model, trust_remote_code=True, device=device, **options)


def load_config(model):
    """The model's config alone (`AutoConfig`, with its custom code): what resuming and `orcahello batch`'s driver
    need, without loading the weights."""
    check_model(model)
    options = hub_options(model)
    if os.path.isdir(model):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model, trust_remote_code=True, **options)


def git_revision(folder):
    """The commit checked out in `folder` when it is a git clone (as `git clone` of a Hub repo makes), else None."""
    git_dir = os.path.join(folder, ".git")
    try:
        if os.path.isfile(git_dir):  # a submodule or worktree: ".git" is a file naming the real git directory
            with open(git_dir, encoding="utf-8") as handle:
                pointer = handle.read().strip()
            if not pointer.startswith("gitdir:"):
                return None
            git_dir = os.path.join(folder, pointer[len("gitdir:") :].strip())
        with open(os.path.join(git_dir, "HEAD"), encoding="utf-8") as handle:
            head = handle.read().strip()
        if not head.startswith("ref:"):
            return head or None  # a detached HEAD holds the commit itself
        ref = head[len("ref:") :].strip()
        ref_file = os.path.join(git_dir, *ref.split("/"))
        if os.path.isfile(ref_file):
            with open(ref_file, encoding="utf-8") as handle:
                return handle.read().strip() or None
        with open(os.path.join(git_dir, "packed-refs"), encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) == 2 and fields[1] == ref:
                    return fields[0]
    except OSError:
        return None
    return None


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_model(pipe, model):
    """
    What identifies the model in the outputs: its name or path, the Hub commit it was downloaded at (or the git
    commit of a cloned folder), and for a local folder the SHA-256 of its weights, so that a folder re-converted
    with other weights is never mistaken for the one a previous run used.
    """
    return describe_model_config(pipe.model.config, model)


def describe_model_config(config, model):
    """`describe_model` from the model's config alone (`orcahello batch` never loads the weights in its driver)."""
    is_folder = os.path.isdir(model)
    info = {"name_or_path": os.path.abspath(model) if is_folder else model}
    revision = getattr(config, "_commit_hash", None) or (git_revision(model) if is_folder else None)
    revision = revision or hub_options(model).get("revision")
    if revision:
        info["revision"] = revision
    if is_folder and os.path.isfile(os.path.join(model, WEIGHTS_FILE)):
        info["weights_sha256"] = file_sha256(os.path.join(model, WEIGHTS_FILE))
    # Folders converted before the config said so are known by the name fetch_model.py gives them.
    if getattr(config, SYNTHETIC_WEIGHTS_KEY, False) or (
        is_folder and os.path.basename(os.path.normpath(model)) == STANDIN_FOLDER_NAME
    ):
        info[SYNTHETIC_WEIGHTS_KEY] = True
    return info


def inference_presets_module():
    """`configuration_orcahello`, where the inference presets are defined (a root file of the model folder)."""
    try:
        import configuration_orcahello
    except ImportError:  # run from elsewhere than the repository root
        sys.path.insert(0, REPO_ROOT)
        import configuration_orcahello
    return configuration_orcahello


def preset_name(value):
    """argparse type of `--preset`: a name of `configuration_orcahello.INFERENCE_PRESETS`."""
    names = tuple(inference_presets_module().INFERENCE_PRESETS)
    if value not in names:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}, got {value!r}")
    return value


def scoring_parameters(args, config, site_parameters=None):
    """
    Every parameter that changes the numbers, resolved: the command line's, else the recording's entry in the
    `--site-thresholds` table (`site_parameters`), else the model config's. An option given on the command line
    applies to every recording: it is the explicit request, the table holds standing defaults.
    """
    presets = inference_presets_module()
    # The model folder's preset and fields, or `--preset`'s (configuration_orcahello.INFERENCE_PRESETS).
    preset, settings, _ = presets.resolve_inference_settings(
        presets.config_inference_settings(config), preset=getattr(args, "preset", None)
    )
    parameters = {
        name: settings[name]
        for name in ("aggregation", "local_threshold", "global_count_threshold", "global_threshold", "top_k_windows",
                     "window_seconds", "hop_seconds")
    }
    parameters["min_global_confidence"] = float(getattr(config, "min_global_confidence", 0.0))
    # The preset's other fields go into the parameters (and so into the resume hash) only when they are not
    # production's, so that results scored before presets existed still resume. Every JSON records them all.
    fastai = presets.preset_settings("fastai")
    other_fields = [field for field in presets.INFERENCE_FIELDS if field not in parameters]
    if preset != "fastai" or any(settings[field] != fastai[field] for field in other_fields):
        parameters.update(preset=preset, **{field: settings[field] for field in other_fields})
    parameters.update(site_parameters or {})
    if args.aggregation:
        parameters["aggregation"] = args.aggregation
    if args.threshold is not None:
        parameters["local_threshold"] = float(args.threshold)
    if args.min_positive_seconds is not None:
        parameters["global_count_threshold"] = int(args.min_positive_seconds)
    if getattr(args, "min_global_confidence", None) is not None:
        parameters["min_global_confidence"] = float(args.min_global_confidence)
    # Reduced precision changes the numbers, so it is part of what a resumed result must match; float32, the
    # default, stays out of the parameters so that results scored before the option existed still resume.
    if getattr(args, "precision", "float32") != "float32":
        parameters["precision"] = args.precision
    return parameters


def inference_record(parameters, config):
    """The preset and every inference field the pipeline resolves when called with `parameters` on a model with
    `config`: what each JSON records (`preset`, `overridden`, the fields)."""
    presets = inference_presets_module()
    preset, settings, overridden = presets.resolve_inference_settings(
        presets.config_inference_settings(config),
        preset=parameters.get("preset"),
        **{name: value for name, value in parameters.items() if name in presets.INFERENCE_FIELDS},
    )
    return {"preset": preset, "overridden": overridden, **settings}


def run_hash(parameters, model_info):
    """
    The key of the resume check: a hash of the scoring parameters and the model's identity (its weights' hash, else
    its revision, else its name). Batch size and device are left out: they move scores by ~1e-6 at most.
    """
    identity = model_info.get("weights_sha256") or model_info.get("revision") or model_info["name_or_path"]
    payload = {"parameters": parameters, "model": identity}
    if model_info.get(SYNTHETIC_WEIGHTS_KEY):  # results made before the outputs said so are made again, with the mark
        payload[SYNTHETIC_WEIGHTS_KEY] = True
    payload = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------
# Inputs and where their outputs go
# ----------------------------------------------------------------------------------------------------------------


def is_url(path):
    return path.lower().startswith(("http://", "https://"))


def recording_key(path):
    """What makes two names one recording: a URL as written, a path once absolute (and case-folded where the file
    system ignores case)."""
    return path if is_url(path) else os.path.normcase(os.path.abspath(path))


def is_audio_file(name):
    """A sound file or an HLS playlist, by its name. Hidden files are skipped: "._clip.wav" AppleDouble files, which
    macOS leaves on SD cards, are not audio."""
    return name.lower().endswith(AUDIO_EXTENSIONS + (PLAYLIST_EXTENSION,)) and not name.startswith(".")


def recordings_in_directory(directory, names):
    """
    The recordings of one folder, given its file names: its sound files and playlists; and the folder itself when it
    holds `.ts` segments but no playlist (an HLS segment folder is one recording). With a playlist there, the
    segments are the playlist's and are not scored on their own.
    """
    files = sorted(name for name in names if is_audio_file(name) and os.path.isfile(os.path.join(directory, name)))
    found = [os.path.join(directory, name) for name in files]
    has_playlist = any(name.lower().endswith(PLAYLIST_EXTENSION) for name in files)
    has_segments = any(name.lower().endswith(SEGMENT_EXTENSION) and not name.startswith(".") for name in names)
    if has_segments and not has_playlist:
        found.insert(0, os.path.normpath(directory))
    return found


def audio_files_in_folder(folder, recursive):
    if not recursive:
        return recordings_in_directory(folder, os.listdir(folder))
    found = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        found.extend(recordings_in_directory(directory, names))
    return found


def find_audio_files(paths, recursive=False):
    """
    Expand the command line's PATHs into recordings. A file is taken as named (whatever its extension), an http(s)
    URL too (the pipeline fetches `.m3u8` playlists); a folder gives its .wav/.flac/.ogg/.mp3 files and .m3u8
    playlists (any case), itself when it holds .ts segments without a playlist, and the same of its subfolders with
    `recursive`; a glob pattern (`"data/*.wav"`, `"data/**/*.flac"` with `recursive`) gives the recordings of the
    files and folders it matches.

    Returns `(files, problems)`: the files in order, each once, and `(path, reason)` for each PATH that gave none.
    """
    files, problems, seen = [], [], set()

    def add(path):
        if recording_key(path) not in seen:
            seen.add(recording_key(path))
            files.append(path)

    for given in paths:
        if is_url(given):
            add(given)
        elif os.path.isfile(given):
            add(given)
        elif os.path.isdir(given):
            found = audio_files_in_folder(given, recursive)
            if not found:
                hint = "" if recursive else " (add --recursive to search its subfolders)"
                kinds = ", ".join(AUDIO_EXTENSIONS + (PLAYLIST_EXTENSION,))
                problems.append((given, f"no audio files ({kinds}) or .ts segments in this folder{hint}"))
            for path in found:
                add(path)
        elif any(character in given for character in "*?["):
            found = []
            for match in sorted(glob.glob(given, recursive=recursive)):
                if os.path.isdir(match):
                    found.extend(audio_files_in_folder(match, recursive))
                elif is_audio_file(os.path.basename(match)):
                    found.append(match)
                elif match.lower().endswith(SEGMENT_EXTENSION):  # "hls/*/live*.ts": their folder is the recording
                    found.append(os.path.dirname(match) or ".")
            if not found:
                problems.append((given, "no audio files match this pattern"))
            for path in found:
                add(path)
        else:
            problems.append((given, "no such file or directory"))
    return files, problems


@dataclass
class AudioJob:
    """One recording to score and where its outputs go."""

    path: str  # as found on the command line or in a folder: what messages and summary.csv show
    relative_path: str  # relative to the inputs' common folder, "/"-separated: the combined table's Begin File
    output_stem: str  # <output dir>/<relative folder>/<stem>: every output's path minus its suffix


def url_relative_path(url):
    """Where a URL's outputs go under the output folder: `<host[_port]>/<its path>`, each part a safe file name."""
    parts = urllib.parse.urlsplit(url)
    pieces = [parts.netloc] + [urllib.parse.unquote(piece) for piece in parts.path.split("/")]
    pieces = [re.sub(r"[^A-Za-z0-9._-]", "_", piece) for piece in pieces if piece not in ("", ".", "..")]
    return os.path.join(*pieces)


def plan_jobs(paths, output_dir):
    """
    Mirror the inputs' folder tree under `output_dir`, relative to the deepest folder holding all of them; a URL's
    outputs go under `<host>/<its path>`. Recordings of one folder that share a stem (`a.wav`, `a.flac`) keep their
    extension in their outputs' names; a segment folder's outputs are named after the folder.
    """
    local = [path for path in paths if not is_url(path)]
    absolute = {path: os.path.abspath(path) for path in local}
    relative = {path: url_relative_path(path) for path in paths if is_url(path)}
    if local:
        try:
            root = os.path.commonpath([os.path.dirname(path) for path in absolute.values()])
            relative.update({path: os.path.relpath(absolute[path], root) for path in local})
        except ValueError:  # Windows paths on different drives have no common folder: keep each one's full path
            relative.update({path: os.path.splitdrive(absolute[path])[1].lstrip("\\/") for path in local})
    relative = [relative[path] for path in paths]
    stems = [
        path if not is_url(given) and os.path.isdir(given) else os.path.splitext(path)[0]
        for given, path in zip(paths, relative)
    ]
    jobs = []
    for path, relative_path, stem in zip(paths, relative, stems):
        if stems.count(stem) > 1:
            stem = relative_path
        jobs.append(
            AudioJob(
                path=path,
                relative_path=relative_path.replace(os.sep, "/"),
                output_stem=os.path.join(output_dir, stem),
            )
        )
    return jobs


# ----------------------------------------------------------------------------------------------------------------
# Scoring one recording
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RunSettings:
    parameters: dict
    batch_size: int
    device: str
    formats: tuple
    plot: bool
    overwrite: bool
    model_info: dict
    run_hash: str
    engine: str = "auto"
    site_thresholds_file: str = None  # the --site-thresholds table, when one is used
    site: str = None  # the table's site pattern that gave this recording's parameters (None: its default)
    allow_other_hosts: bool = False  # HLS over HTTP: segments and redirects on hosts other than the playlist's


def settings_for_recording(job, settings, args, config, site_table):
    """
    The run's settings with `job`'s own parameters when a per-site table is used: its site's entry, and the hash of
    those parameters, so that resuming rescores exactly the recordings whose site entry changed.
    """
    if site_table is None:
        return settings
    # The absolute path, so that site folders above the folder given on the command line match too; a URL's path
    # names the node (`.../rpi_orcasound_lab/hls/...`).
    path = urllib.parse.urlsplit(job.path).path if is_url(job.path) else os.path.abspath(job.path)
    parameters = scoring_parameters(args, config, site_thresholds.parameters_for(path, site_table))
    return dataclasses.replace(
        settings,
        parameters=parameters,
        run_hash=run_hash(parameters, settings.model_info),
        site=site_thresholds.match_site(path, site_table),
    )


def is_finished(job, settings):
    """Whether a previous run scored `job` with this model and these parameters (its JSON says so): then
    `score_or_resume` needs no model, it writes any missing output from the JSON."""
    json_path = writers.output_path(job.output_stem, "json")
    return not settings.overwrite and load_finished_document(json_path, settings.run_hash) is not None


def load_finished_document(json_path, expected_hash):
    """The JSON a previous run wrote for this recording, if it used the same model and parameters; else None."""
    try:
        with open(json_path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("run_hash") == expected_hash else None


def build_document(job, result, settings):
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
            "created_at": now_iso(),
        }
    )
    if settings.site_thresholds_file is not None:
        document["site_thresholds"] = {"file": settings.site_thresholds_file, "site": settings.site}
    if settings.model_info.get(SYNTHETIC_WEIGHTS_KEY):
        document["warnings"] = [writers.STANDIN_WARNING] + list(document["warnings"])
    return document


def score_or_resume(job, pipe, settings, progress_callback=None):
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
            job.path, return_timestamps=True, batch_size=settings.batch_size, engine=settings.engine,
            allow_other_hosts=settings.allow_other_hosts, **settings.parameters, **extra,
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


def failure_reason(error, path):
    """One line saying why `path` failed, without repeating the path the pipeline's messages start with."""
    message = str(error).strip() or type(error).__name__
    if message.startswith(f"{path}: "):
        message = message[len(path) + 2 :]
    # AudioInputError messages say what is wrong with the audio; anything else is unexpected: name its type.
    if type(error).__name__ != "AudioInputError":
        message = f"{type(error).__name__}: {message}"
    return " ".join(message.split())


def summary_row(job, document):
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


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def parse_formats(text):
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in formats if name not in writers.OUTPUT_FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown)}; choose from {','.join(writers.OUTPUT_FORMATS)}"
        )
    return formats


def probability(text):
    """A threshold on confidences: a number from 0 to 1 (`nan` and `1.5` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def non_negative_integer(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {value}")
    return value


def positive_integer(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def unit_fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1 (global confidence / 100), got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="orcahello",
        description="OrcaHello Southern Resident killer whale call detector.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    detect_parser = commands.add_parser(
        "detect",
        help="score recordings and write per-file results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    detect_parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="audio files, HLS playlists (.m3u8, a path or an http(s) URL), folders (their .wav .flac .ogg .mp3 "
        "files and .m3u8 playlists; a folder of .ts segments is one recording) or glob patterns (quote them)",
    )
    detect_parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=DEFAULT_OUTPUT_DIR,
        help=f"where outputs go, mirroring the inputs' folders (default: ./{DEFAULT_OUTPUT_DIR})",
    )
    detect_parser.add_argument(
        "--format",
        metavar="LIST",
        default=DEFAULT_FORMATS,
        type=parse_formats,
        help=f"comma-separated outputs among {','.join(writers.OUTPUT_FORMATS)} (default: all); the JSON is "
        "always written, the resume check reads it",
    )
    detect_parser.add_argument(
        "--batch-size",
        metavar="N",
        type=positive_integer,
        default=DEFAULT_BATCH_SIZE,
        help=f"2-second windows per forward pass (default: {DEFAULT_BATCH_SIZE}; on a GPU try 32 or more)",
    )
    detect_parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="default: auto")
    detect_parser.add_argument(
        "--engine",
        choices=("auto", "openvino", "onnxruntime", "torch"),
        default="auto",
        help="what computes the model (default: auto, i.e. OpenVINO on CPU when installed, PyTorch on GPUs); the "
        "engines agree to ~1e-5",
    )
    detect_parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="opt-in fast mode for large archives: bfloat16 (CPUs with bfloat16 instructions, GPUs) or float16 "
        "(GPUs), about 2x faster, at an accuracy cost that depends on the weights (see benchmarks/run.py); "
        "default: float32, production's numbers",
    )
    detect_parser.add_argument(
        "--threshold",
        metavar="T",
        type=probability,
        default=None,
        help="a one-second row is positive when its confidence is above this (default: the model's, 0.5)",
    )
    detect_parser.add_argument(
        "--min-positive-seconds",
        metavar="N",
        type=non_negative_integer,
        default=None,
        help="a recording is positive when at least this many rows are (default: the model's, 3)",
    )
    detect_parser.add_argument(
        "--aggregation",
        choices=("orcahello", "mean_thresholded", "mean_top_k"),
        default=None,
        help="file-level decision: production's (orcahello, default) or the upstream port's",
    )
    detect_parser.add_argument(
        "--preset",
        type=preset_name,
        default=None,
        help="inference behaviour: fastai (production 2020-2026: 2-s windows every second, smoothed) or v1 "
        "(upstream's port: 3-s windows every 2 s, whole-recording peak normalisation, raw segments); default: the "
        "model folder's. --threshold, --min-positive-seconds and --aggregation apply on top of it",
    )
    detect_parser.add_argument(
        "--min-global-confidence",
        metavar="F",
        type=unit_fraction,
        default=None,
        help="a recording is positive only when its global confidence / 100 also reaches this (0-1; default: the "
        "model's, 0, i.e. production's decision); orcahello calibrate fits one per hydrophone",
    )
    detect_parser.add_argument(
        "--site-thresholds",
        metavar="FILE",
        default=None,
        help="JSON (or YAML) table of decision parameters per hydrophone, matched by name or glob pattern against "
        "each recording's path; options given on the command line override it (see orcahello/site_thresholds.py)",
    )
    detect_parser.add_argument(
        "--recursive",
        action="store_true",
        help="also search the subfolders of folders, and let ** in patterns cross folders",
    )
    detect_parser.add_argument(
        "--model",
        metavar="DIR_OR_REPO",
        default=None,
        help=f"model folder or Hub id (default: ${MODEL_ENVIRONMENT_VARIABLE}, else models/ from "
        f"scripts/fetch_model.py, else {HUB_MODEL_ID})",
    )
    detect_parser.add_argument(
        "--plot", action="store_true", help="also save a spectrogram PNG per file (needs matplotlib)"
    )
    detect_parser.add_argument(
        "--allow-other-hosts",
        action="store_true",
        help="HLS over HTTP: fetch segments (and follow redirects) on hosts other than the playlist's, which are "
        "refused by default",
    )
    detect_parser.add_argument(
        "--overwrite",
        action="store_true",
        help="score every file again, even those a previous run finished with the same model and parameters",
    )
    detect_parser.add_argument(
        "--report",
        action="store_true",
        help="also write report.html: every detection with its spectrogram and audio clip, a confidence timeline "
        "per recording (a static page, no server; needs matplotlib; see orcahello/report.py)",
    )
    from .embed import add_embed_parser

    add_embed_parser(commands)
    add_batch_parser(commands)
    from . import calibrate, evaluate

    calibrate.add_parser(commands)
    evaluate.add_parser(commands)
    from .live import add_live_parser  # `orcahello live` keeps its options with it (orcahello.live)

    add_live_parser(commands)
    return parser


def add_batch_parser(commands):
    """`orcahello batch`: its options; the job itself is `orcahello.batch` (which needs the `scale` extra)."""
    from . import batch

    batch_parser = commands.add_parser(
        "batch",
        help="score many recordings with Ray Data, locally or on a Ray cluster (needs the scale extra)",
        description=batch.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch_parser.add_argument(
        "paths",
        nargs="*",
        metavar="SOURCE",
        help="audio files, HLS playlists (.m3u8), folders, glob patterns (quote them) or http(s) URLs",
    )
    batch_parser.add_argument(
        "--manifest",
        metavar="FILE",
        action="append",
        default=[],
        help="a text file listing one recording (path or URL) per line; relative paths are relative to the file; "
        "may be repeated",
    )
    batch_parser.add_argument(
        "--recursive", action="store_true", help="also search subfolders, and let ** in patterns cross folders"
    )
    batch_parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=batch.DEFAULT_OUTPUT_DIR,
        help=f"where the Parquet tables and JSONs go (default: ./{batch.DEFAULT_OUTPUT_DIR}); on the driver's machine",
    )
    batch_parser.add_argument(
        "--model",
        metavar="DIR_OR_REPO",
        default=None,
        help="model folder (sent to the workers) or Hub id; default as for detect",
    )
    batch_parser.add_argument(
        "--address",
        metavar="ADDRESS",
        default=None,
        help="join this Ray cluster (auto: the one this machine belongs to, or its head's HOST:PORT) instead of "
        "starting a local instance",
    )
    batch_parser.add_argument(
        "--num-cpus",
        metavar="N",
        type=positive_integer,
        default=None,
        help="CPUs of the local Ray instance (default: this machine's cores)",
    )
    batch_parser.add_argument(
        "--num-workers",
        metavar="N",
        type=positive_integer,
        default=None,
        help="model actors (default: one per GPU of the cluster, else one per --cpus-per-worker CPUs)",
    )
    batch_parser.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=positive_integer,
        default=1,
        help="CPUs (and threads) each CPU model actor reserves (default: 1)",
    )
    batch_parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="model actors on GPUs (cuda) or CPUs; auto: GPUs when the cluster has any",
    )
    batch_parser.add_argument(
        "--batch-size",
        metavar="N",
        type=positive_integer,
        default=DEFAULT_BATCH_SIZE,
        help=f"2-second windows per forward pass (default: {DEFAULT_BATCH_SIZE}; on a GPU try 32 or more)",
    )
    batch_parser.add_argument(
        "--partition-windows",
        metavar="N",
        type=positive_integer,
        default=batch.DEFAULT_PARTITION_WINDOWS,
        help="windows per partition, the unit of work and of resuming (default: "
        f"{batch.DEFAULT_PARTITION_WINDOWS}, rounded up to a multiple of the featurization block)",
    )
    batch_parser.add_argument("--threshold", metavar="T", type=probability, default=None, help="as for detect")
    batch_parser.add_argument(
        "--min-positive-seconds", metavar="N", type=non_negative_integer, default=None, help="as for detect"
    )
    batch_parser.add_argument(
        "--aggregation", choices=("orcahello", "mean_thresholded", "mean_top_k"), default=None, help="as for detect"
    )
    batch_parser.add_argument(
        "--min-global-confidence", metavar="F", type=unit_fraction, default=None, help="as for detect"
    )
    batch_parser.add_argument("--site-thresholds", metavar="FILE", default=None, help="as for detect")
    batch_parser.add_argument("--preset", type=preset_name, default=None, help="as for detect")
    batch_parser.add_argument(
        "--overwrite", action="store_true", help="score everything again, ignoring what earlier runs wrote"
    )


def detect(args, command=None):
    """Run `orcahello detect` with the parsed `args`; returns the exit status. `command` is recorded in the run file."""
    from tqdm.auto import tqdm

    started, started_at = time.monotonic(), now_iso()
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

    paths, input_problems = find_audio_files(args.paths, recursive=args.recursive)
    for path, reason in input_problems:
        print(f"ERROR {path}: {reason}", file=sys.stderr)
    if not paths:
        print("No audio files to score.", file=sys.stderr)
        return EXIT_SOME_FILES_FAILED
    model = args.model or default_model()
    try:
        device = resolve_device(args.device)
        # The config first: with it the resume check runs, and a run with nothing left to do never loads the
        # weights (seconds) or the engines.
        config = load_config(model)
    except ModelNotFoundError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except Exception as error:  # no Hub access, a broken config: nothing can be scored
        print(f"ERROR: cannot load the model {model!r}: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    # Warnings about a recording (digital silence) are in its JSON and printed below, once, with its path.
    logging.getLogger("transformers_modules").setLevel(logging.ERROR)

    parameters = scoring_parameters(args, config)
    model_info = describe_model_config(config, model)
    if model_info.get(SYNTHETIC_WEIGHTS_KEY):
        print(f"NOTE: {model}: {writers.STANDIN_WARNING} (every output file says so)", file=sys.stderr)
    # With a site table the run's hash covers the table; each recording's JSON holds the hash of its own parameters.
    run_identity = parameters if site_table is None else {**parameters, "site_thresholds": site_table}
    settings = RunSettings(
        parameters=parameters,
        batch_size=args.batch_size,
        device=device,
        formats=args.format,
        plot=args.plot,
        overwrite=args.overwrite,
        model_info=model_info,
        run_hash=run_hash(run_identity, model_info),
        engine=args.engine,
        site_thresholds_file=os.path.abspath(args.site_thresholds) if site_table is not None else None,
        allow_other_hosts=args.allow_other_hosts,
    )
    output_dir = args.output_dir
    jobs = plan_jobs(paths, output_dir)
    pipe = None
    if any(not is_finished(job, settings_for_recording(job, settings, args, config, site_table)) for job in jobs):
        try:
            pipe = load_pipeline(model, device)
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
        if recording_windows is not None and not progress["file_windows"]:
            progress["file_windows"] = recording_windows
            progress_bar.total = progress["windows_before"] + recording_windows
            progress_bar.refresh()
        progress_bar.update(count)

    # A model folder whose pipeline_orcahello.py predates the callback gets the bar moving once per file.
    takes_callback = pipe is not None and "progress_callback" in inspect.signature(pipe._sanitize_parameters).parameters
    window_progress = on_windows if takes_callback else None
    try:
        for number, job in enumerate(jobs, start=1):
            progress_bar.set_description(f"OrcaHello file {number}/{len(jobs)}")
            progress_bar.set_postfix_str(os.path.basename(job.path))
            progress["file_windows"] = 0
            try:
                job_settings = settings_for_recording(job, settings, args, config, site_table)
                document, resumed = score_or_resume(job, pipe, job_settings, progress_callback=window_progress)
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
        "inference": inference_record(parameters, config),  # the preset and every field it resolves to
        "site_thresholds": None if site_table is None else {"file": settings.site_thresholds_file, "table": site_table},
        "options": {
            "paths": list(args.paths),
            "output_dir": os.path.abspath(output_dir),
            "format": list(settings.formats),
            "batch_size": args.batch_size,
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
        "finished_at": now_iso(),
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


def main(argv=None):
    """The `orcahello` console script; `argv` defaults to the command line. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "detect":
            # One run per output folder: a second one would rewrite the same files under the first.
            folder_was_there = os.path.exists(args.output_dir)
            try:
                with run_lock.OutputFolderLock(args.output_dir, "orcahello detect") as lock:
                    if lock.stale_holder:  # a killed run held it: its half-written files go
                        writers.remove_partial_outputs(args.output_dir)
                    return detect(args, command=["orcahello", *argv])
            except run_lock.OutputFolderBusy as error:
                print(f"ERROR: {error}", file=sys.stderr)
                return EXIT_CANNOT_RUN
            finally:
                # The lock made the folder: a run that wrote nothing (refused options, no model) leaves none behind.
                if not folder_was_there and os.path.isdir(args.output_dir) and not os.listdir(args.output_dir):
                    os.rmdir(args.output_dir)
        if args.command == "embed":
            from .embed import embed_command

            return embed_command(args, command=["orcahello", *argv])
        if args.command == "batch":
            from .batch import batch_command

            return batch_command(args, command=["orcahello", *argv])
        if args.command == "calibrate":
            from .calibrate import calibrate_command

            return calibrate_command(args)
        if args.command == "evaluate":
            from .evaluate import evaluate_command

            return evaluate_command(args)
        if args.command == "live":
            from .live import live_command

            return live_command(args, command=["orcahello", *argv])
    except KeyboardInterrupt:
        # Every output is written through a temporary file and a rename: what is finished stays, the rest is
        # done by the next run.
        print(
            "\nInterrupted: the finished results are kept; run the same command again to do the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
