# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Upstream's configuration files read as this project's settings: the one mapping from orcasound/orcahello's keys to
the inference and decision fields (`vocabulary_orcahello.INFERENCE_FIELDS`), used by the converter
(`orcahello.conversion.hub_v1_layout`) and by `--hydrophone-config` alike.

Two kinds of file:

- a model `config.yaml` (the sections `audio`, `spectrogram`, `model`, `inference`, and since 2026-03
  `global_prediction`): `model_decision` reads its file-level rule, in either form. The older one,
  `inference.local_conf_threshold` / `inference.global_pred_threshold`, is the port's count rule (the file is
  positive when at least that many windows are); today's `global_prediction` section (`aggregation_strategy`
  `mean_top_k` or `mean_thresholded`, `mean_top_k`, `pred_local_threshold`, `pred_global_threshold`) is the rule
  of upstream's `aggregate_predictions()` (`InferenceSystem/src/model/inference.py` at cc9be0e3), whose
  defaults (`model/types.py`, `GlobalPredictionConfig`) apply to the keys it leaves out; with that section the
  older keys are ignored, as upstream's code ignores them.
- a hydrophone config, what upstream's live orchestrator (`InferenceSystem/src/LiveInferenceOrchestrator.py` at
  010b4c78) reads: a Kubernetes ConfigMap whose `data.config.yml` holds it, the bare `config.yml`, or the
  multi-location form (`orchestrator_config` shared by every `location_config` entry). `read_hydrophone_config`
  gives each location's preset and decision fields: its `model_config_overrides` merged over the model config
  section by section, as `apply_model_config_overrides()` merges them (a location's own overrides over the shared
  ones); the FastAI-era form (`model_type: "FastAI"`, `model_local_threshold`, `model_global_threshold`) is the
  fastai preset with those thresholds.

Every value goes through `vocabulary_orcahello.check_setting`, the command line's own range check, and a refusal
is one line naming the file and the key. Torch-free.
"""

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from vocabulary_orcahello import check_setting

from .safe_yaml import YamlFileError, load_yaml_text, read_yaml_file

# Today's `global_prediction` keys, the field each sets, and upstream's defaults for those a file leaves out
# (`GlobalPredictionConfig`, InferenceSystem/src/model/types.py at cc9be0e3).
GLOBAL_PREDICTION_FIELDS = {
    "aggregation_strategy": "aggregation",
    "mean_top_k": "top_k_windows",
    "pred_local_threshold": "local_threshold",
    "pred_global_threshold": "global_threshold",
}
GLOBAL_PREDICTION_DEFAULTS = {
    "aggregation_strategy": "mean_top_k",
    "mean_top_k": 2,
    "pred_local_threshold": 0.5,
    "pred_global_threshold": 0.6,
}
UPSTREAM_AGGREGATIONS = ("mean_top_k", "mean_thresholded")
# The older form: the port's count rule, in the `inference` section, with the port's defaults then.
OLDER_INFERENCE_FIELDS = {"local_conf_threshold": "local_threshold", "global_pred_threshold": "global_count_threshold"}
OLDER_INFERENCE_DEFAULTS = {"local_conf_threshold": 0.5, "global_pred_threshold": 3}
# The FastAI-era hydrophone config's keys (LiveInferenceOrchestrator.py before 2026-03).
FASTAI_FIELDS = {"model_local_threshold": "local_threshold", "model_global_threshold": "global_count_threshold"}
FASTAI_MODEL_TYPE = "FastAI"

# Override keys that say where and how fast the model runs, not what it computes: accepted, not applied (a batch
# size moves scores by ~1e-6 at most; the device is the command's --device).
RUNTIME_OVERRIDES = {("inference", "max_batch_size"), ("model", "device"), ("model", "precision")}
MODEL_CONFIG_SECTIONS = ("audio", "spectrogram", "model", "inference", "global_prediction")

# The hydrophone config's own keys: what each is to this project.
CLOUD_KEYS = ("upload_to_azure", "delete_local_wavs", "cleanup_azure_uploads")  # upstream's Azure uploads only
MODEL_KEYS = ("model_id", "model_hf_repo_id", "model_config_path", "model_path", "model_name", "model_type")
STREAM_KEYS = (
    "hls_stream_type",
    "hls_hydrophone_id",
    "hls_polling_interval",
    "hls_live_delay_buffer",
    "inference_segment_size",
    "hls_start_time_pst",
    "hls_end_time_pst",
)
HYDROPHONE_KEYS = set(CLOUD_KEYS + MODEL_KEYS + STREAM_KEYS + tuple(FASTAI_FIELDS)) | {
    "model_config_overrides",
    "location_id",
}
CONFIGMAP_DATA_KEYS = ("config.yml", "config.yaml")
# What the live orchestrator scores as one clip (`inference_segment_size`, default 60 s): `orcahello live` decides
# each minute, so 60 is the value it can honour.
LIVE_SEGMENT_SECONDS = 60.0


class UpstreamConfigError(ValueError):
    """An upstream configuration file that cannot be read, or asks for something this project cannot honour."""


def checked(field: str, value: Any, where: str) -> Any:
    """`value` for `field` through the one range check (`vocabulary_orcahello.check_setting`), named `where`."""
    try:
        return check_setting(field, value, where)
    except ValueError as error:
        raise UpstreamConfigError(str(error)) from None


def model_decision(settings: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """
    The decision fields (`smoothing`, `aggregation`, `local_threshold`, `global_count_threshold` or
    `global_threshold` and `top_k_windows`) of an upstream model config (`settings`: its nested sections), and notes
    on what was read. `source` names the file in errors.
    """
    inference = settings.get("inference") or {}
    section = settings.get("global_prediction")
    notes: list[str] = []
    if section is None:
        # The older form: the port's count rule on the raw windows.
        fields = {"smoothing": False, "aggregation": "orcahello"}
        for key, field in OLDER_INFERENCE_FIELDS.items():
            fields[field] = checked(
                field, inference.get(key, OLDER_INFERENCE_DEFAULTS[key]), f"{source}: inference.{key}"
            )
        return fields, notes
    if not isinstance(section, Mapping):
        raise UpstreamConfigError(f"{source}: global_prediction must be a mapping, got {section!r}")
    unknown = sorted(str(key) for key in section if key not in GLOBAL_PREDICTION_FIELDS)
    if unknown:
        raise UpstreamConfigError(f"{source}: global_prediction setting(s) this model does not know: {unknown}")
    fields = {"smoothing": False}
    for key, field in GLOBAL_PREDICTION_FIELDS.items():
        fields[field] = checked(
            field, section.get(key, GLOBAL_PREDICTION_DEFAULTS[key]), f"{source}: global_prediction.{key}"
        )
    if fields["aggregation"] not in UPSTREAM_AGGREGATIONS:
        raise UpstreamConfigError(
            f"{source}: global_prediction.aggregation_strategy must be one of {', '.join(UPSTREAM_AGGREGATIONS)}, "
            f"got {fields['aggregation']!r}"
        )
    older = [f"inference.{key}" for key in OLDER_INFERENCE_FIELDS if key in inference]
    if older:
        notes.append(f"{', '.join(older)} ignored: global_prediction decides, as in upstream's aggregate_predictions()")
    return fields, notes


def override_decision(overrides: Any, source: str) -> tuple[dict[str, Any], list[str]]:
    """
    The decision fields a `model_config_overrides` mapping sets (only those it names), and notes on the keys it
    holds that change nothing here (runtime ones; unknown ones, which upstream also skips with a warning). A key
    that would change the windows or the features cannot be honoured by a decision: `UpstreamConfigError`.
    """
    if not isinstance(overrides, Mapping):
        raise UpstreamConfigError(f"{source}: model_config_overrides must be a mapping of sections, got {overrides!r}")
    fields, notes = {}, []
    for section, values in overrides.items():
        where = f"{source}: model_config_overrides.{section}"
        if section not in MODEL_CONFIG_SECTIONS:
            notes.append(f"{where}: unknown section, skipped (as upstream skips it)")
            continue
        if not isinstance(values, Mapping):
            raise UpstreamConfigError(f"{where} must be a mapping, got {values!r}")
        for key, value in values.items():
            if section == "global_prediction" and key in GLOBAL_PREDICTION_FIELDS:
                field = GLOBAL_PREDICTION_FIELDS[key]
                fields[field] = checked(field, value, f"{where}.{key}")
            elif (section, key) in RUNTIME_OVERRIDES:
                notes.append(f"{where}.{key}={value!r} is a runtime choice, not applied (--batch-size, --device)")
            elif section == "global_prediction":
                notes.append(f"{where}.{key}: unknown key, skipped (as upstream skips it)")
            else:
                raise UpstreamConfigError(
                    f"{where}.{key}={value!r} cannot be honoured here: it changes the windows or the features, which "
                    f"come from the model folder (convert one with it)"
                )
    if fields.get("aggregation", UPSTREAM_AGGREGATIONS[0]) not in UPSTREAM_AGGREGATIONS:
        raise UpstreamConfigError(
            f"{source}: model_config_overrides.global_prediction.aggregation_strategy must be one of "
            f"{', '.join(UPSTREAM_AGGREGATIONS)}, got {fields['aggregation']!r}"
        )
    return fields, notes


# ----------------------------------------------------------------------------------------------------------------
# Hydrophone configs
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HydrophoneLocation:
    """
    One hydrophone of a hydrophone config, as this project runs it.

    Args:
        location_id (`str`): its name in the file (`location_id`, else `hls_hydrophone_id`, else the file's name).
        hydrophone_id (`str`, *optional*): the Orcasound node it follows (`hls_hydrophone_id`).
        preset (`str`): `"v1"` (upstream's model config, today's rule) or `"fastai"` (the FastAI-era form).
        decision (`dict`): the decision fields its overrides (or FastAI-era thresholds) set, over the preset's.
        overrides (`dict`): its `model_config_overrides` after the merge, as upstream applies them.
        poll_seconds (`float`, *optional*): `hls_polling_interval`, how often `live` polls a caught-up source.
        stream_type (`str`): `hls_stream_type` (`"LiveHLS"` unless the file says otherwise).
        segment_seconds (`float`): `inference_segment_size`, the clip the orchestrator decides on (60 s).
    """

    location_id: str
    hydrophone_id: str | None
    preset: str
    decision: dict[str, Any]
    overrides: dict[str, Any]
    poll_seconds: float | None = None
    stream_type: str = "LiveHLS"
    segment_seconds: float = LIVE_SEGMENT_SECONDS


@dataclasses.dataclass(frozen=True)
class HydrophoneConfig:
    """
    A hydrophone config file read (`read_hydrophone_config`).

    Args:
        path (`str`): the file, absolute.
        sha256 (`str`): the file's SHA-256, recorded by every output made with it.
        form (`str`): `"configmap"`, `"config.yml"` or `"multi-location"`.
        preset (`str`): the preset every location runs with.
        shared (`dict`): the decision fields every location shares (a multi-location file's `orchestrator_config`;
            a single location's own).
        locations (`tuple[HydrophoneLocation, ...]`): the hydrophones, in the file's order.
        notes (`tuple[str, ...]`): what was read but is not applied (runtime settings, upstream's cloud keys).
    """

    path: str
    sha256: str
    form: str
    preset: str
    shared: dict[str, Any]
    locations: tuple[HydrophoneLocation, ...]
    notes: tuple[str, ...] = ()

    def site_table(self) -> dict[str, Any]:
        """
        The config as a per-site table (`orcahello.site_thresholds`): one location applies to every recording; a
        multi-location file's shared fields are the default and each location applies to the recordings whose path
        names its node (`hls_hydrophone_id`).
        """
        from .site_thresholds import check_site_thresholds

        if self.form != "multi-location":
            table = {"default": dict(self.locations[0].decision), "sites": {}}
        else:
            sites = {
                location.hydrophone_id or location.location_id: dict(location.decision) for location in self.locations
            }
            table = {"default": dict(self.shared), "sites": sites}
        return check_site_thresholds(table, source=self.path)

    def record(self) -> dict[str, Any]:
        """What a run records of the file: its path, hash, form and the preset it set."""
        return {"file": self.path, "sha256": self.sha256, "form": self.form, "preset": self.preset}


def merge_overrides(shared: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """`own` over `shared`, section by section (a section both name keeps the keys of both, `own`'s winning)."""
    merged = {section: dict(values) if isinstance(values, Mapping) else values for section, values in shared.items()}
    for section, values in own.items():
        if isinstance(values, Mapping) and isinstance(merged.get(section), Mapping):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = dict(values) if isinstance(values, Mapping) else values
    return merged


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UpstreamConfigError(f"{where} must be a number of seconds from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _location(entry: Mapping[str, Any], source: str, default_name: str) -> tuple[HydrophoneLocation, list[str]]:
    """One location from its merged keys (`entry`)."""
    unknown = sorted(str(key) for key in entry if key not in HYDROPHONE_KEYS)
    if unknown:
        raise UpstreamConfigError(f"{source}: key(s) this project does not know: {', '.join(unknown)}")
    hydrophone_id = entry.get("hls_hydrophone_id")
    if hydrophone_id is not None and (not isinstance(hydrophone_id, str) or not hydrophone_id.strip()
                                      or "/" in hydrophone_id or hydrophone_id in (".", "..")):  # fmt: skip
        raise UpstreamConfigError(f"{source}: hls_hydrophone_id must be a node name, got {hydrophone_id!r}")
    name = entry.get("location_id") or hydrophone_id or default_name
    notes: list[str] = []
    overrides = entry.get("model_config_overrides") or {}
    if entry.get("model_type") is not None:
        if entry["model_type"] != FASTAI_MODEL_TYPE:
            raise UpstreamConfigError(
                f"{source}: model_type must be {FASTAI_MODEL_TYPE!r} (the FastAI-era form) or left out, got "
                f"{entry['model_type']!r}"
            )
        preset = "fastai"
        decision = {
            field: checked(field, entry[key], f"{source}: {key}")
            for key, field in FASTAI_FIELDS.items()
            if key in entry
        }
        if overrides:
            raise UpstreamConfigError(f"{source}: model_config_overrides is not read by the FastAI-era form")
    else:
        extra = sorted(key for key in FASTAI_FIELDS if key in entry)
        if extra:
            raise UpstreamConfigError(f"{source}: {', '.join(extra)} belong(s) to the FastAI-era form (model_type)")
        preset = "v1"
        decision, notes = override_decision(overrides, source)
    poll_seconds = entry.get("hls_polling_interval")
    if poll_seconds is not None:
        poll_seconds = _number(poll_seconds, f"{source}: hls_polling_interval", 0.1, 3600.0)
    segment_seconds = _number(
        entry.get("inference_segment_size", LIVE_SEGMENT_SECONDS), f"{source}: inference_segment_size", 1.0, 3600.0
    )
    if "hls_live_delay_buffer" in entry:
        _number(entry["hls_live_delay_buffer"], f"{source}: hls_live_delay_buffer", 0.0, 86400.0)
    stream_type = entry.get("hls_stream_type", "LiveHLS")
    if stream_type not in ("LiveHLS", "DateRangeHLS"):
        raise UpstreamConfigError(f"{source}: hls_stream_type must be LiveHLS or DateRangeHLS, got {stream_type!r}")
    location = HydrophoneLocation(
        location_id=str(name),
        hydrophone_id=hydrophone_id,
        preset=preset,
        decision=decision,
        overrides=dict(overrides),
        poll_seconds=poll_seconds,
        stream_type=stream_type,
        segment_seconds=segment_seconds,
    )
    return location, notes


def parse_hydrophone_config(document: Any, path: str, sha256: str) -> HydrophoneConfig:
    """`read_hydrophone_config` on a document already parsed (`path` names it)."""
    form = "config.yml"
    if isinstance(document, Mapping) and document.get("kind") == "ConfigMap":
        data = document.get("data")
        names = [name for name in CONFIGMAP_DATA_KEYS if isinstance(data, Mapping) and name in data]
        if not names or not isinstance(data, Mapping) or not isinstance(data[names[0]], str):  # names: data a mapping
            raise UpstreamConfigError(f"{path}: a ConfigMap holding no data.config.yml text")
        document = load_yaml_text(data[names[0]], f"{path}: data.{names[0]}")
        form = "configmap"
    if not isinstance(document, Mapping):
        raise UpstreamConfigError(f"{path}: expected a mapping of settings (upstream's config.yml), got {document!r}")
    default_name = os.path.splitext(os.path.basename(path))[0]
    if "orchestrator_config" in document or "location_config" in document:
        unknown = sorted(str(key) for key in document if key not in ("orchestrator_config", "location_config"))
        shared, entries = document.get("orchestrator_config") or {}, document.get("location_config")
        if unknown or not isinstance(shared, Mapping) or not isinstance(entries, list) or not entries:
            raise UpstreamConfigError(
                f"{path}: the multi-location form is orchestrator_config (a mapping) and location_config (a list of "
                f"locations) only"
            )
        shared_location, notes = _location(shared, f"{path}: orchestrator_config", default_name)
        locations = []
        for number, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise UpstreamConfigError(f"{path}: location_config[{number}] must be a mapping, got {entry!r}")
            merged = {**shared, **entry}
            merged["model_config_overrides"] = merge_overrides(
                shared.get("model_config_overrides") or {}, entry.get("model_config_overrides") or {}
            )
            where = f"{path}: location_config[{number}]"
            location, _ = _location(merged, where, default_name)
            locations.append(location)
            # Notes on the location's own overrides only: the shared ones were noted once.
            notes.extend(override_decision(entry.get("model_config_overrides") or {}, where)[1])
        form = "multi-location"
        names = [location.hydrophone_id or location.location_id for location in locations]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise UpstreamConfigError(f"{path}: location(s) named twice: {', '.join(repeated)}")
        presets = {location.preset for location in locations}
        if len(presets) > 1:
            raise UpstreamConfigError(f"{path}: locations of one file must share a model (FastAI-era or v1)")
        shared_decision = shared_location.decision
    else:
        location, notes = _location(document, path, default_name)
        locations, shared_decision = [location], location.decision
    cloud = sorted({key for key in CLOUD_KEYS if key in document or key in (document.get("orchestrator_config") or {})})
    if cloud:
        notes.append(f"{path}: {', '.join(cloud)}: upstream's Azure uploads, which this project does not do; ignored")
    return HydrophoneConfig(
        path=path,
        sha256=sha256,
        form=form,
        preset=locations[0].preset,
        shared=dict(shared_decision),
        locations=tuple(locations),
        notes=tuple(notes),
    )


def read_hydrophone_config(path: str | os.PathLike) -> HydrophoneConfig:
    """
    Read the hydrophone config at `path` (upstream's ConfigMap, its bare `config.yml`, or the multi-location form),
    YAML read safely (`orcahello.safe_yaml`) and every value range-checked; `UpstreamConfigError` with one line
    naming the file and key otherwise.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        document = read_yaml_file(path)
        with open(path, "rb") as handle:
            sha256 = hashlib.sha256(handle.read()).hexdigest()
    except YamlFileError as error:
        raise UpstreamConfigError(str(error)) from None
    except OSError as error:
        raise UpstreamConfigError(f"{path}: cannot read it ({error.strerror or error})") from None
    return parse_hydrophone_config(document, path, sha256)
