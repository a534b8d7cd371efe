# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License (this code). The trained weights that this configuration describes are
# distributed separately under the OrcaHello RAIL-AMS licence: see the model card.
"""OrcaHello SRKW detector configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

try:
    from .vocabulary_orcahello import (
        DEFAULT_PRESET,
        EMBEDDING_LAYERS,
        INFERENCE_FIELDS,
        INFERENCE_PRESETS,
        check_setting,
        unit_scale_error,
    )
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from vocabulary_orcahello import (
        DEFAULT_PRESET,
        EMBEDDING_LAYERS,
        INFERENCE_FIELDS,
        INFERENCE_PRESETS,
        check_setting,
        unit_scale_error,
    )


# The features an adapted head (`orcahello adapt`) may read: the layers `orcahello embed --layer` embeds.
ADAPTED_HEAD_LAYERS = EMBEDDING_LAYERS


def preset_settings(name: str) -> dict[str, Any]:
    """A copy of the fields of the preset called `name` (`"fastai"` or `"v1"`)."""
    if name not in INFERENCE_PRESETS:
        raise ValueError(f"preset must be one of {tuple(INFERENCE_PRESETS)}, got {name!r}")
    return dict(INFERENCE_PRESETS[name])


def check_inference_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Raise a one-line ValueError naming the first field of `settings` (all of `INFERENCE_FIELDS`) that is wrong."""
    for name in INFERENCE_FIELDS:  # the ranges every source of settings is held to (vocabulary_orcahello)
        settings[name] = check_setting(name, settings[name])
    if settings["peak_normalize"] and not settings["whole_recording_frontend"]:
        raise ValueError(
            "peak_normalize=True needs whole_recording_frontend=True: the peak is the whole recording's, as the v1 "
            "port computes it; per-window normalisation is not a behaviour either system has"
        )
    if not settings["strict_segments"] and not settings["whole_recording_frontend"]:
        raise ValueError(
            "strict_segments=False (a partial last segment) is the port's segment cutting: it needs "
            "whole_recording_frontend=True"
        )
    return settings


def config_inference_settings(config: PretrainedConfig) -> dict[str, Any]:
    """
    A model config's inference fields and preset, as `resolve_inference_settings` takes them as `base`. A config
    loaded by a model folder's code from before presets lacks some fields: they are its preset's (fastai's).
    """
    base = {"preset": getattr(config, "preset", None) or DEFAULT_PRESET}
    for field, default in preset_settings(base["preset"]).items():
        value = getattr(config, field, None)
        base[field] = default if value is None else value
    return base


def resolve_inference_settings(
    base: dict[str, Any], preset: str | None = None, **overrides: Any
) -> tuple[str, dict[str, Any], list[str]]:
    """
    The inference fields of one call: `base` (a dict of `INFERENCE_FIELDS`, e.g. a config's), replaced whole by the
    named `preset` when one is given, then the `overrides` that are not None. Returns `(preset_name, settings,
    overridden)`: the preset the settings start from (`base["preset"]` without one), every field, and the fields
    whose value differs from that preset's.
    """
    unknown = sorted(set(overrides) - set(INFERENCE_FIELDS))
    if unknown:
        raise TypeError(f"unknown inference field(s) {unknown}; the fields are {INFERENCE_FIELDS}")
    if preset is not None:
        name, settings = preset, preset_settings(preset)
    else:
        name = base.get("preset", DEFAULT_PRESET)
        settings = {field: base[field] for field in INFERENCE_FIELDS}
    settings.update({field: value for field, value in overrides.items() if value is not None})
    for field in ("window_seconds", "hop_seconds", "local_threshold", "global_threshold"):
        if isinstance(settings[field], int) and not isinstance(settings[field], bool):
            settings[field] = float(settings[field])
    check_inference_settings(settings)
    reference = preset_settings(name)
    overridden = [field for field in INFERENCE_FIELDS if settings[field] != reference[field]]
    return name, settings, overridden


class OrcaHelloConfig(PretrainedConfig):
    r"""
    Configuration of the OrcaHello Southern Resident killer whale (SRKW) call detector: a torchvision-style
    ResNet body on a one-channel mel spectrogram, the fastai v1 classification head, and the file-level defaults
    that production OrcaHello uses to turn per-window scores into a decision for a whole recording.

    The defaults describe the production model (ResNet50, 25,609,666 parameters).

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input spectrogram. Production feeds one mono mel spectrogram.
        embedding_size (`int`, *optional*, defaults to 64):
            Output channels of the 7x7 stem convolution.
        hidden_sizes (`list[int]`, *optional*, defaults to `[256, 512, 1024, 2048]`):
            Output channels of each ResNet stage. ResNet18/34 use `[64, 128, 256, 512]`.
        depths (`list[int]`, *optional*, defaults to `[3, 4, 6, 3]`):
            Blocks per stage: ResNet18 `[2, 2, 2, 2]`, ResNet34 and ResNet50 `[3, 4, 6, 3]`, ResNet101 `[3, 4, 23, 3]`.
        layer_type (`str`, *optional*, defaults to `"bottleneck"`):
            `"bottleneck"` (ResNet50/101) or `"basic"` (ResNet18/34).
        hidden_act (`str`, *optional*, defaults to `"relu"`):
            Activation inside the ResNet body.
        head_hidden_size (`int`, *optional*, defaults to 512):
            Width of the hidden layer of the fastai head.
        head_pooled_dropout (`float`, *optional*, defaults to 0.25):
            Dropout applied to the concatenated [max, average] pooled features.
        head_hidden_dropout (`float`, *optional*, defaults to 0.5):
            Dropout applied to the hidden layer of the head.
        batch_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the head's BatchNorm1d layers (PyTorch's default, as in fastai).
        preset (`str`, *optional*, defaults to `"fastai"`):
            The inference behaviour this folder uses by default: `"fastai"` (production OrcaHello 2020-2026) or
            `"v1"` (upstream's PyTorch port with its shipped `config.yaml`). Every field below left at `None` takes
            the preset's value (`INFERENCE_PRESETS`); a field given explicitly overrides it.
        window_seconds (`float`, *optional*):
            Length of the windows (segments) a recording is cut into: 2.0 (fastai), 3.0 (v1).
        hop_seconds (`float`, *optional*):
            Step between consecutive windows: 1.0 (fastai), 2.0 (v1).
        whole_recording_frontend (`bool`, *optional*):
            False (fastai): each window is cut from the source's own samples and goes alone through downmix, an
            int16 round trip, resampling to 20 kHz and a second int16 round trip. True (v1): the whole recording is
            downmixed, resampled to 20 kHz once, optionally peak-normalised and taken through one int16 round trip,
            then cut into segments at whole milliseconds, as the port's temporary WAV and pydub slicing do.
        peak_normalize (`bool`, *optional*):
            Divide the whole (resampled) recording by its peak |x| before the int16 round trip: False (fastai), True
            (v1). Needs `whole_recording_frontend`.
        strict_segments (`bool`, *optional*):
            True (both): only whole windows are scored. False (port only): a last, shorter segment is scored too
            when the port's `floor(duration / hop)` candidate starts leave one. Needs `whole_recording_frontend`.
        smoothing (`bool`, *optional*):
            True (fastai): the windows are smoothed into one-second rows (rolling mean of 2, N + 1 rows) before the
            file-level rule. False (v1): the rule sees the raw window probabilities, one row per window. Only the
            `"orcahello"` aggregation smooths; the port's `"mean_*"` strategies never do.
        local_threshold (`float`, *optional*, 0.5 in both presets):
            A row (a one-second row, or a window without smoothing) counts as positive when its confidence is
            strictly greater than this.
        global_count_threshold (`int`, *optional*, 3 in both presets):
            With the `"orcahello"` aggregation, a recording is positive when at least this many rows are; its
            global confidence (0-1) is the mean of the positive rows (0.0 when none; production gave it x 100).
        aggregation (`str`, *optional*, `"orcahello"` in both presets):
            File-level rule: `"orcahello"` (the count rule above, used by production and by the port's
            `detect_srkw_from_file`), or the port's alternative `"mean_thresholded"` / `"mean_top_k"`.
        global_threshold (`float`, *optional*, defaults to 0.6):
            For `"mean_thresholded"` and `"mean_top_k"`: the recording is positive when its global confidence
            (0..1) is at least this.
        top_k_windows (`int`, *optional*, defaults to 3):
            Number of windows averaged by `"mean_top_k"`.
        min_global_confidence (`float`, *optional*, defaults to 0.0):
            A floor on the recording's global confidence (0-1, as every confidence OrcaHello gives): a
            recording is positive only when the rule above says so and its global confidence reaches this. 0 (the
            default) keeps production's decision; `orcahello calibrate` fits one per hydrophone.
        min_positive_seconds (`int`, *optional*, defaults to 0):
            The seconds a recording's positive rows must cover, merged, for it to be positive: under the count rule
            in place of `global_count_threshold` (the same number for production's one-second rows), under the
            mean rules as well as the mean. 0 (the default) keeps each rule's own.
        adapted_head (`dict`, *optional*):
            Set by `orcahello adapt`: the model's logits come from a linear head fitted to a site's labelled windows
            instead of the fastai head. `"layer"` says what it reads: `"pooled"` (the concat-pooled features,
            `pooled_size` wide) or `"head"` (the fastai head's last hidden layer, `head_hidden_size` wide); its
            weights are `adapted_head.weight` and `adapted_head.bias` in the checkpoint. The other keys are its
            provenance (the annotations' SHA-256, the held-out figures, the base model), kept for every output.

    Example:

    ```python
    >>> from configuration_orcahello import OrcaHelloConfig
    >>> resnet50_config = OrcaHelloConfig()
    >>> resnet18_config = OrcaHelloConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic")
    ```
    """

    model_type = "orcahello"
    adapted_head = None

    def __init__(
        self,
        num_channels: int = 1,
        embedding_size: int = 64,
        hidden_sizes: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        layer_type: str = "bottleneck",
        hidden_act: str = "relu",
        head_hidden_size: int = 512,
        head_pooled_dropout: float = 0.25,
        head_hidden_dropout: float = 0.5,
        batch_norm_eps: float = 1e-5,
        preset: str = DEFAULT_PRESET,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        whole_recording_frontend: bool | None = None,
        peak_normalize: bool | None = None,
        strict_segments: bool | None = None,
        smoothing: bool | None = None,
        local_threshold: float | None = None,
        global_count_threshold: int | None = None,
        aggregation: str | None = None,
        global_threshold: float | None = None,
        top_k_windows: int | None = None,
        min_global_confidence: float = 0.0,
        min_positive_seconds: int = 0,
        adapted_head: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if layer_type not in ("basic", "bottleneck"):
            raise ValueError(f"layer_type must be 'basic' or 'bottleneck', got {layer_type!r}")
        if not 0.0 <= min_global_confidence <= 1.0:
            raise ValueError(unit_scale_error("min_global_confidence", min_global_confidence))
        if adapted_head is not None and (
            not isinstance(adapted_head, dict) or adapted_head.get("layer") not in ADAPTED_HEAD_LAYERS
        ):
            raise ValueError(
                f"adapted_head must be a dict whose 'layer' is one of {ADAPTED_HEAD_LAYERS}, got {adapted_head!r}"
            )
        given = {
            "window_seconds": window_seconds,
            "hop_seconds": hop_seconds,
            "whole_recording_frontend": whole_recording_frontend,
            "peak_normalize": peak_normalize,
            "strict_segments": strict_segments,
            "smoothing": smoothing,
            "local_threshold": local_threshold,
            "global_count_threshold": global_count_threshold,
            "aggregation": aggregation,
            "global_threshold": global_threshold,
            "top_k_windows": top_k_windows,
        }
        _, inference_settings, _ = resolve_inference_settings({}, preset=preset, **given)
        hidden_sizes = [256, 512, 1024, 2048] if hidden_sizes is None else list(hidden_sizes)
        depths = [3, 4, 6, 3] if depths is None else list(depths)
        if len(hidden_sizes) != len(depths):
            raise ValueError(f"hidden_sizes {hidden_sizes} and depths {depths} must have one entry per stage")
        self.num_channels = num_channels
        self.embedding_size = embedding_size
        self.hidden_sizes = hidden_sizes
        self.depths = depths
        self.layer_type = layer_type
        self.hidden_act = hidden_act
        self.head_hidden_size = head_hidden_size
        self.head_pooled_dropout = head_pooled_dropout
        self.head_hidden_dropout = head_hidden_dropout
        self.batch_norm_eps = batch_norm_eps
        self.preset = preset
        for field, value in inference_settings.items():
            setattr(self, field, value)
        self.min_global_confidence = min_global_confidence
        self.min_positive_seconds = check_setting("min_positive_seconds", min_positive_seconds)
        if adapted_head is not None:  # unset, it stays out of config.json (the class attribute answers None)
            self.adapted_head = adapted_head
        # The two classes of the fastai learner (label_from_folder sorts them); P(call) = softmax(logits)[1].
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["id2label"] = {0: "negative", 1: "positive"}
            kwargs.setdefault("label2id", {"negative": 0, "positive": 1})
        kwargs.setdefault("problem_type", "single_label_classification")
        super().__init__(**kwargs)

    def inference_settings(self) -> dict[str, Any]:
        """This folder's default inference fields (`INFERENCE_FIELDS`) and the preset they start from."""
        return config_inference_settings(self)

    @property
    def pooled_size(self) -> int:
        """Width of the concatenated [max, average] pooled features the head receives (4096 for ResNet50)."""
        return 2 * self.hidden_sizes[-1]

    def layer_size(self, layer: str) -> int:
        """Width of the features at `layer`: `"pooled"` (`pooled_size`) or `"head"` (`head_hidden_size`)."""
        if layer not in ADAPTED_HEAD_LAYERS:
            raise ValueError(f"layer must be one of {ADAPTED_HEAD_LAYERS}, got {layer!r}")
        return self.pooled_size if layer == "pooled" else self.head_hidden_size
