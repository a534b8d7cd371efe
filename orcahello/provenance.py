# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Where a run's results come from: the model's identity (files, hashes, git revision), the parameters (the run's
`ScoringOptions` over the model's config and a site table, each decision value checked by `check_decision_value`)
and the hash that decides whether a finished result can be reused.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import sys
import types
from collections.abc import Mapping
from typing import Any

from results_orcahello import check_decision_value
from vocabulary_orcahello import (
    DECISION_FIELD_TYPES,
    DECISION_FIELDS,
    PRECISIONS,
    SYNTHETIC_WEIGHTS_KEY,
    WEIGHTS_FILE,
)

from . import REPO_ROOT, models

DEFAULT_PRECISION = PRECISIONS[0]  # float32: production's numbers
# The scoring parameters every run has recorded (and hashed) since the first release, whatever they are: results
# scored then still resume. The other inference fields are recorded only where they differ from production's.
RECORDED_SINCE_THE_FIRST_RELEASE = (
    "aggregation",
    "local_threshold",
    "global_count_threshold",
    "global_threshold",
    "top_k_windows",
    "window_seconds",
    "hop_seconds",
)
# The decision fields (`vocabulary_orcahello.DECISION_FIELDS`) that a run's options set, by the option's name:
# production's names where they differ from the field's. The command line's flags are these names
# (`--threshold`), and run records keep the options under them. `--min-positive-seconds` is seconds under every
# rule (the field of that name); the count rule's count of rows (`global_count_threshold`), which is seconds only
# for production's one-second rows, comes from the preset, the config or a site table. The other decision fields come from the
# preset or the model's config (and a site table) only.
DECISION_OPTIONS = {
    "threshold": "local_threshold",
    "min_positive_seconds": "min_positive_seconds",
    "aggregation": "aggregation",
    "min_global_confidence": "min_global_confidence",
}


@dataclasses.dataclass(frozen=True)
class ScoringOptions:
    """
    What a run's options change in the numbers the model's config gives (`scoring_parameters` resolves them).

    Args:
        preset (`str`, *optional*):
            The inference preset (`vocabulary_orcahello.INFERENCE_PRESETS`) replacing the model folder's; None: the
            folder's.
        decision (`dict[str, bool | str | float | int]`, *optional*):
            Decision fields (`vocabulary_orcahello.DECISION_FIELDS`) set for every recording of the run, over the
            preset's, the model's and a site table's values: only the fields given.
        precision (`str`, *optional*, defaults to `"float32"`):
            The opt-in fast mode (`vocabulary_orcahello.PRECISIONS`).
    """

    preset: str | None = None
    decision: dict[str, bool | str | float | int] = dataclasses.field(default_factory=dict)
    precision: str = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        unknown = sorted(set(self.decision) - set(DECISION_FIELDS))
        if unknown:
            raise ValueError(f"not decision fields: {', '.join(unknown)}; they are {', '.join(DECISION_FIELDS)}")
        # In each field's type (a threshold given as 1 is 1.0), as the run's hash must see it.
        checked = {field: check_decision_value(field, value) for field, value in self.decision.items()}
        object.__setattr__(self, "decision", checked)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @classmethod
    def from_options(
        cls, preset: str | None = None, precision: str = DEFAULT_PRECISION, **options: Any
    ) -> "ScoringOptions":
        """
        From the options as the command line names them (`DECISION_OPTIONS`: `threshold`, `min_positive_seconds`,
        ...; None or absent: not given). Raises `TypeError` for a name that is not one of them.
        """
        unknown = sorted(set(options) - set(DECISION_OPTIONS))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(DECISION_OPTIONS)}")
        given = {name: value for name, value in options.items() if value is not None}
        for name, value in given.items():  # said with the option's name
            check_decision_value(DECISION_OPTIONS[name], value, name)
        decision = {DECISION_OPTIONS[name]: value for name, value in given.items()}
        return cls(preset=preset, decision=decision, precision=precision)

    def record(self) -> dict[str, Any]:
        """The options as a run records them, by their command-line names (None: not given)."""
        fields = {field: name for name, field in DECISION_OPTIONS.items()}
        given = {fields.get(field, field): value for field, value in self.decision.items()}
        return {**{name: None for name in DECISION_OPTIONS}, **given, "preset": self.preset}


def git_revision(folder: str) -> str | None:
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


def file_sha256(path: str) -> str:
    """The SHA-256 of the file at `path`, as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_model(pipe: Any, model: str) -> dict[str, Any]:
    """
    What identifies the model in the outputs: its name or path, the Hub commit it was downloaded at (or the git
    commit of a cloned folder), and for a local folder the SHA-256 of its weights, so that a folder re-converted
    with other weights is never mistaken for the one a previous run used.
    """
    return describe_model_config(pipe.model.config, model)


def describe_model_config(config: Any, model: str) -> dict[str, Any]:
    """`describe_model` from the model's config alone (`orcahello batch` never loads the weights in its driver)."""
    is_folder = os.path.isdir(model)
    info: dict[str, Any] = {"name_or_path": os.path.abspath(model) if is_folder else model}
    revision = getattr(config, "_commit_hash", None) or (git_revision(model) if is_folder else None)
    revision = revision or models.hub_options(model).get("revision")
    if revision:
        info["revision"] = revision
    if is_folder and os.path.isfile(os.path.join(model, WEIGHTS_FILE)):
        info["weights_sha256"] = file_sha256(os.path.join(model, WEIGHTS_FILE))
    # Folders converted before the config said so are known by the name fetch_model.py gives them.
    if getattr(config, SYNTHETIC_WEIGHTS_KEY, False) or (
        is_folder and os.path.basename(os.path.normpath(model)) == models.STANDIN_FOLDER_NAME
    ):
        info[SYNTHETIC_WEIGHTS_KEY] = True
    # A folder made by `orcahello adapt`: every output says so, from which labels and with what held-out figures.
    adapted = getattr(config, "adapted_head", None)
    if adapted:
        info["adapted_head"] = {
            key: adapted[key]
            for key in ("layer", "annotations", "held_out", "base_model", "created_at")
            if key in adapted
        }
    return info


def inference_presets_module() -> types.ModuleType:
    """`configuration_orcahello`, where the inference presets are defined (a root file of the model folder)."""
    try:
        import configuration_orcahello
    except ImportError:  # run from elsewhere than the repository root
        sys.path.insert(0, REPO_ROOT)
        import configuration_orcahello
    return configuration_orcahello


def scoring_parameters(
    options: ScoringOptions, config: Any, site_parameters: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """
    Every parameter that changes the numbers, resolved: the run's `options`, else the recording's entry in the
    `--site-thresholds` table (`site_parameters`), else the model config's. An option given for the run applies to
    every recording: it is the explicit request, the table holds standing defaults.
    """
    presets = inference_presets_module()
    # The model folder's preset and fields, or `--preset`'s (configuration_orcahello.INFERENCE_PRESETS).
    preset, settings, _ = presets.resolve_inference_settings(
        presets.config_inference_settings(config), preset=options.preset
    )
    parameters = {name: settings[name] for name in RECORDED_SINCE_THE_FIRST_RELEASE}
    # The decision fields no preset sets (the confidence floor): the model config's, else production's.
    from results_orcahello import DEFAULT_DECISION

    for name in DECISION_FIELDS:
        if name not in settings:
            value = getattr(config, name, None)
            parameters[name] = DECISION_FIELD_TYPES[name](getattr(DEFAULT_DECISION, name) if value is None else value)
    # The preset's other fields go into the parameters (and so into the resume hash) only when they are not
    # production's, so that results scored before presets existed still resume. Every JSON records them all.
    fastai = presets.preset_settings("fastai")
    other_fields = [field for field in presets.INFERENCE_FIELDS if field not in parameters]
    if preset != "fastai" or any(settings[field] != fastai[field] for field in other_fields):
        parameters.update(preset=preset, **{field: settings[field] for field in other_fields})
    parameters.update(site_parameters or {})
    parameters.update(options.decision)
    # Reduced precision changes the numbers, so it is part of what a resumed result must match; float32, the
    # default, stays out of the parameters so that results scored before the option existed still resume.
    if options.precision != DEFAULT_PRECISION:
        parameters["precision"] = options.precision
    return parameters


def inference_record(parameters: dict[str, Any], config: Any) -> dict[str, Any]:
    """The preset and every inference field the pipeline resolves when called with `parameters` on a model with
    `config`: what each JSON records (`preset`, `overridden`, the fields)."""
    presets = inference_presets_module()
    preset, settings, overridden = presets.resolve_inference_settings(
        presets.config_inference_settings(config),
        preset=parameters.get("preset"),
        **{name: value for name, value in parameters.items() if name in presets.INFERENCE_FIELDS},
    )
    return {"preset": preset, "overridden": overridden, **settings}


def run_hash(parameters: dict[str, Any], model_info: dict[str, Any]) -> str:
    """
    The key of the resume check: a hash of the scoring parameters and the model's identity (its weights' hash, else
    its revision, else its name). Batch size and device are left out: they move scores by ~1e-6 at most.
    """
    identity = model_info.get("weights_sha256") or model_info.get("revision") or model_info["name_or_path"]
    payload = {"parameters": parameters, "model": identity}
    if model_info.get(SYNTHETIC_WEIGHTS_KEY):  # results made before the outputs said so are made again, with the mark
        payload[SYNTHETIC_WEIGHTS_KEY] = True
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def now_iso() -> str:
    """Now, in UTC, as ISO 8601 to the second (the times the run files record)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
