# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Read a model folder laid out as upstream publishes its v1 port on the Hub (`orcasound/orcahello-srkw-detector-v1`).

huggingface_hub's `PyTorchModelHubMixin.save_pretrained` writes it: `config.json` is the port's nested inference
configuration `{audio, spectrogram, model, inference}` (no `model_type`, so `AutoConfig` cannot read it),
`model.safetensors` (or, from upstream's extraction script, `model_v1.pt`) holds the port-keyed weights, and
`config.yaml` the same configuration as YAML. `read_hub_v1_settings` turns those settings into this repository's
`v1` preset fields and feature-extractor arguments, refusing any setting it cannot honour and any disagreement
between `config.json` and `config.yaml`, each with a one-line error naming it. The file-level rule is read by
`orcahello.upstream_config.model_decision` (both of upstream's forms: the older `inference` count thresholds and
today's `global_prediction` section), the one mapping `--hydrophone-config` uses too; every value goes through the
command line's range check (`vocabulary_orcahello.check_setting`).
"""

import json
import math
import os
from typing import Any

from vocabulary_orcahello import check_setting

from ..safe_yaml import YamlFileError, read_yaml_file
from ..upstream_config import GLOBAL_PREDICTION_FIELDS, UpstreamConfigError, model_decision

# The weight files upstream's layout may hold, in the order they are preferred.
HUB_WEIGHT_FILES = ("model.safetensors", "model_v1.pt")
SECTIONS = ("audio", "spectrogram", "model", "inference", "global_prediction")
# The sections a folder must have at least one of to be upstream's layout.
LAYOUT_SECTIONS = ("audio", "spectrogram", "model", "inference")
# Settings that choose where and how fast the port runs, not what it computes: accepted, never stored (the
# pipeline's device, engine and precision are chosen per run).
RUNTIME_SETTINGS = {("model", "device"), ("model", "precision"), ("inference", "max_batch_size"), ("model", "name")}
KNOWN_SETTINGS = {
    "audio": ("downmix_mono", "resample_rate", "normalize"),
    "spectrogram": (
        "sample_rate", "n_fft", "hop_length", "mel_n_filters", "mel_f_min", "mel_f_max", "mel_f_pad",
        "convert_to_db", "top_db",
    ),
    "model": ("name", "input_pad_s", "num_classes", "call_class_index", "device", "precision"),
    "inference": (
        "window_s", "window_hop_s", "max_batch_size", "local_conf_threshold", "global_pred_threshold",
        "strict_segments",
    ),
    "global_prediction": tuple(GLOBAL_PREDICTION_FIELDS),
}  # fmt: skip
# Which output of the head is P(call): the port's `model.call_class_index` (upstream's `predict_call` takes the
# softmax's column at it). This model's is 1; a folder saying 0 has its classifier's two rows swapped on conversion.
CALL_CLASS_INDEX = 1


class HubLayoutError(ValueError):
    """The folder's settings cannot be read, disagree with each other, or ask for something this model cannot do."""


def is_hub_v1_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder with the port's nested `config.json` (or only its `config.yaml`)."""
    if not os.path.isdir(path):
        return False
    config_path = os.path.join(path, "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            return False
        return isinstance(config, dict) and "model_type" not in config and bool(set(LAYOUT_SECTIONS) & set(config))
    return os.path.isfile(os.path.join(path, "config.yaml"))


def hub_weights_path(folder: str | os.PathLike[str]) -> str:
    """The folder's weight file (`model.safetensors`, else `model_v1.pt`); HubLayoutError when it has none."""
    for name in HUB_WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise HubLayoutError(f"{folder}: no weights: expected one of {', '.join(HUB_WEIGHT_FILES)}")


def _load_settings(folder):
    """`(settings, source)`: config.json and config.yaml read and checked to agree, as one nested dict."""
    found = {}
    json_path, yaml_path = os.path.join(folder, "config.json"), os.path.join(folder, "config.yaml")
    if os.path.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8") as handle:
                found["config.json"] = json.load(handle)
        except ValueError as error:
            raise HubLayoutError(f"{json_path}: not valid JSON ({error})") from None
    if os.path.isfile(yaml_path):
        try:
            found["config.yaml"] = read_yaml_file(yaml_path)
        except YamlFileError as error:
            raise HubLayoutError(str(error)) from None
    if not found:
        raise HubLayoutError(f"{folder}: neither config.json nor config.yaml: not upstream's Hub layout")
    for name, settings in found.items():
        if not isinstance(settings, dict) or not all(isinstance(settings.get(s, {}), dict) for s in SECTIONS):
            raise HubLayoutError(f"{name}: expected the sections {SECTIONS} as mappings")
    if len(found) == 2:
        flat_json, flat_yaml = _flatten(found["config.json"]), _flatten(found["config.yaml"])
        for key in sorted(set(flat_json) | set(flat_yaml)):
            in_json, in_yaml = flat_json.get(key, "<missing>"), flat_yaml.get(key, "<missing>")
            runtime = tuple(key.split(".", 1)) in RUNTIME_SETTINGS
            if runtime and "<missing>" in (in_json, in_yaml):  # where the port runs, not what it computes
                continue
            if not _same(in_json, in_yaml):
                raise HubLayoutError(
                    f"{folder}: config.json and config.yaml disagree on {key}: {in_json!r} vs {in_yaml!r}"
                )
    return next(iter(found.values())), " and ".join(found)


def _flatten(settings):
    return {f"{section}.{key}": value for section in SECTIONS for key, value in (settings.get(section) or {}).items()}


def _same(first, second):
    if isinstance(first, bool) or isinstance(second, bool):
        return first is second
    if isinstance(first, (int, float)) and isinstance(second, (int, float)):
        return float(first) == float(second)
    return first == second


def read_hub_v1_settings(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """
    The `v1` preset fields (`OrcaHelloConfig` arguments, `preset="v1"` included) and the `OrcaHelloFeatureExtractor`
    arguments that reproduce the folder's settings exactly, plus notes on the runtime settings that are not stored:
    `(config_arguments, feature_extractor_arguments, notes)`. Raises `HubLayoutError` naming the first setting that
    is unknown, cannot be honoured, or differs between `config.json` and `config.yaml`.
    """
    settings, source = _load_settings(folder)
    unknown = [
        f"{section}.{key}" for section in SECTIONS for key in (settings.get(section) or {})
        if key not in KNOWN_SETTINGS[section]
    ] + [f"{key}" for key in settings if key not in SECTIONS]  # fmt: skip
    if unknown:
        raise HubLayoutError(f"{folder} ({source}): setting(s) this model does not know, cannot honour: {unknown}")

    def get(section, key, default):
        # A setting the folder leaves out takes the port's own default (its config dataclasses), which for the
        # windows is the 2-s/1-s parity configuration, not the shipped 3-s/2-s one; where that default is not
        # known here (`default` None), the conversion stops rather than guess.
        value = (settings.get(section) or {}).get(key, default)
        if value is None:
            raise HubLayoutError(
                f"{folder} ({source}): {section}.{key} is not set and the port's default for it is not known here: "
                f"set it in config.json and config.yaml"
            )
        return value

    def require(section, key, wanted, why):
        value = get(section, key, wanted)
        if not _same(value, wanted):
            raise HubLayoutError(f"{folder} ({source}): {section}.{key}={value!r} cannot be honoured: {why}")

    require("audio", "downmix_mono", True, "the model takes one downmixed channel")
    require("spectrogram", "mel_f_pad", 0, "the mel spectrogram is computed without padding")
    require("spectrogram", "convert_to_db", True, "the model takes dB spectrograms")
    require("model", "num_classes", 2, "the head has two classes")
    call_class_index = get("model", "call_class_index", CALL_CLASS_INDEX)
    if isinstance(call_class_index, bool) or call_class_index not in (0, 1):
        raise HubLayoutError(
            f"{folder} ({source}): model.call_class_index={call_class_index!r} cannot be honoured: the head has two "
            f"classes, 0 and 1"
        )

    def number(section, key, default, kind=float, positive=True):
        value = get(section, key, default)
        field = {"window_s": "window_seconds", "window_hop_s": "hop_seconds"}.get(key)
        if field is not None:  # the ranges every source of settings is held to
            try:
                check_setting(field, value, f"{folder} ({source}): {section}.{key}")
            except ValueError as error:
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    raise HubLayoutError(str(error)) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and not value > 0):
            raise HubLayoutError(f"{folder} ({source}): {section}.{key}={value!r} must be a positive number")
        if kind is int and float(value) != int(value):
            raise HubLayoutError(f"{folder} ({source}): {section}.{key}={value!r} must be a whole number")
        return kind(value)

    def flag(section, key, default):
        value = get(section, key, default)
        if not isinstance(value, bool):
            raise HubLayoutError(f"{folder} ({source}): {section}.{key}={value!r} must be true or false")
        return value

    resample_rate = number("audio", "resample_rate", 20000, int)
    hop_length = number("spectrogram", "hop_length", 256, int)
    input_pad_s = number("model", "input_pad_s", 4.0)
    feature_extractor_arguments = {
        "sampling_rate": resample_rate,
        "filterbank_sampling_rate": number("spectrogram", "sample_rate", 16000, int),
        "n_fft": number("spectrogram", "n_fft", 2560, int),
        "hop_length": hop_length,
        "feature_size": number("spectrogram", "mel_n_filters", 256, int),
        "f_min": number("spectrogram", "mel_f_min", 0.0, positive=False),
        "f_max": number("spectrogram", "mel_f_max", 10000.0),
        "top_db": number("spectrogram", "top_db", 100.0),
        # the port's `standardize`: int(input_pad_s * resample_rate / hop_length) frames
        "num_frames": int(input_pad_s * resample_rate / hop_length),
    }
    if feature_extractor_arguments["f_min"] < 0 or not math.isfinite(feature_extractor_arguments["f_max"]):
        raise HubLayoutError(f"{folder} ({source}): spectrogram.mel_f_min/mel_f_max out of range")
    config_arguments = {
        "preset": "v1",
        "window_seconds": number("inference", "window_s", 2.0),
        "hop_seconds": number("inference", "window_hop_s", 1.0),
        "whole_recording_frontend": True,
        "peak_normalize": flag("audio", "normalize", None),
        "strict_segments": flag("inference", "strict_segments", True),
    }
    try:
        decision, decision_notes = model_decision(settings, f"{folder} ({source})")
    except UpstreamConfigError as error:
        raise HubLayoutError(str(error)) from None
    config_arguments.update(decision)
    config_arguments["call_class_index"] = int(call_class_index)
    notes = decision_notes + [
        f"{section}.{key}={(settings.get(section) or {})[key]!r} is a runtime choice, not stored (device, engine "
        f"and precision are chosen per run; batch size with --batch-size)"
        for section, key in sorted(RUNTIME_SETTINGS)
        if key != "name" and key in (settings.get(section) or {})
    ]
    return config_arguments, feature_extractor_arguments, notes
