# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The OrcaHello pipeline's call parameters: what a call with them does, resolved and validated.

The defaults are the model config's (its inference preset, as saved, and its confidence floor); a `preset` given
with the call replaces the config's whole, and each field given with it overrides that
(`configuration_orcahello.resolve_inference_settings`). `resolve_call_parameters` sorts the outcome into the
settings of the pipeline's three steps (`PipelineParameters`): how a recording is read and cut into windows, how
the windows are scored, how their scores become its result. The pipeline's `resolve_parameters` (and transformers'
`_sanitize_parameters` hook) is this function on the pipeline's model config.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from transformers import PretrainedConfig

try:
    from .configuration_orcahello import config_inference_settings, resolve_inference_settings
    from .results_orcahello import DecisionParameters
    from .vocabulary_orcahello import ENGINES, PRECISIONS, unit_scale_error
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from configuration_orcahello import config_inference_settings, resolve_inference_settings
    from results_orcahello import DecisionParameters
    from vocabulary_orcahello import ENGINES, PRECISIONS, unit_scale_error


class PipelineParameters(NamedTuple):
    """
    A call's parameters sorted into what each step of the pipeline takes (transformers' `_sanitize_parameters`).

    preprocess: how the recording is read and cut into windows (`window_seconds`, `hop_seconds`,
        `whole_recording_frontend`, `peak_normalize`, `strict_segments`, and `sampling_rate`, `allow_other_hosts`
        when given).
    forward: how the windows are scored (`engine`, `precision`, `progress_callback`, when given).
    postprocess: how the scores become the result (`decision`, a `results_orcahello.DecisionParameters`;
        `return_timestamps`, `top_k`, and `inference`: the preset and fields used, as the result records them).
    """

    preprocess: dict
    forward: dict
    postprocess: dict


def resolve_call_parameters(
    config: PretrainedConfig,
    sampling_rate: int | None = None,
    preset: str | None = None,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    whole_recording_frontend: bool | None = None,
    peak_normalize: bool | None = None,
    strict_segments: bool | None = None,
    smoothing: bool | None = None,
    aggregation: str | None = None,
    local_threshold: float | None = None,
    global_count_threshold: int | None = None,
    global_threshold: float | None = None,
    top_k_windows: int | None = None,
    min_global_confidence: float | None = None,
    min_positive_seconds: int | None = None,
    return_timestamps: bool | None = None,
    top_k: int | None = None,
    function_to_apply: str | None = None,
    engine: str | None = None,
    precision: str | None = None,
    allow_other_hosts: bool | None = None,
    progress_callback: Callable[[int, int | None], object] | None = None,
    **kwargs: Any,
) -> PipelineParameters:
    """
    What a call of the pipeline with these parameters does, for a model with `config`: `PipelineParameters`.
    The parameters are those the pipeline's docstring lists; for those left out, the config's (its inference
    preset, as saved, and its `min_global_confidence`). Raises `TypeError` for an unknown parameter and
    `ValueError` for a bad value.
    """
    if kwargs:
        raise TypeError(f"Unknown argument(s) for the OrcaHello pipeline: {sorted(kwargs)}")
    if function_to_apply not in (None, "softmax"):
        raise ValueError("The OrcaHello pipeline scores windows with softmax; function_to_apply must be 'softmax'")
    # The inference fields: the model folder's config (its preset, as saved), replaced whole by a `preset` given
    # with the call, then each field given with the call (see `configuration_orcahello.INFERENCE_PRESETS`).
    preset_name, settings, overridden = resolve_inference_settings(
        config_inference_settings(config),
        preset=preset,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
        whole_recording_frontend=whole_recording_frontend,
        peak_normalize=peak_normalize,
        strict_segments=strict_segments,
        smoothing=smoothing,
        aggregation=aggregation,
        local_threshold=local_threshold,
        global_count_threshold=global_count_threshold,
        global_threshold=global_threshold,
        top_k_windows=top_k_windows,
    )
    preprocess_params = {
        name: settings[name]
        for name in (
            "window_seconds",
            "hop_seconds",
            "whole_recording_frontend",
            "peak_normalize",
            "strict_segments",
        )
    }
    if sampling_rate is not None:
        preprocess_params["sampling_rate"] = sampling_rate
    if allow_other_hosts is not None:
        preprocess_params["allow_other_hosts"] = bool(allow_other_hosts)

    floor = getattr(config, "min_global_confidence", 0.0) if min_global_confidence is None else min_global_confidence
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
        raise ValueError(unit_scale_error("min_global_confidence", floor))
    # The positive seconds a file needs (0: the rule's own), the config's when the call gives none; checked as every
    # decision field is (`DecisionParameters`).
    seconds = getattr(config, "min_positive_seconds", 0) if min_positive_seconds is None else min_positive_seconds
    postprocess_params = {
        "decision": DecisionParameters.from_mapping(
            {**settings, "min_global_confidence": float(floor), "min_positive_seconds": seconds}
        ),
        "return_timestamps": False,
        "top_k": None,
        "inference": {"preset": preset_name, "overridden": overridden, **settings},
    }
    if return_timestamps is not None:
        postprocess_params["return_timestamps"] = return_timestamps
    if top_k is not None:
        # 0 or a negative count would return an empty or truncated-from-the-end label list, never an error.
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        postprocess_params["top_k"] = top_k
    forward_params: dict[str, Any] = {}
    if engine is not None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        forward_params["engine"] = engine
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        forward_params["precision"] = precision
    if progress_callback is not None:  # called with (windows just scored, the recording's windows)
        forward_params["progress_callback"] = progress_callback
    return PipelineParameters(preprocess_params, forward_params, postprocess_params)
