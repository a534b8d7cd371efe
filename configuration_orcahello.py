# coding=utf-8
# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License (this code). The trained weights that this configuration describes are
# distributed separately under the OrcaHello RAIL-AMS licence: see the model card.
"""OrcaHello SRKW detector configuration."""

from transformers import PretrainedConfig


AGGREGATION_STRATEGIES = ("orcahello", "mean_thresholded", "mean_top_k")


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
        window_seconds (`float`, *optional*, defaults to 2.0):
            Length of the windows a recording is cut into; the model was trained on 2-second clips.
        hop_seconds (`float`, *optional*, defaults to 1.0):
            Step between consecutive windows.
        local_threshold (`float`, *optional*, defaults to 0.5):
            A one-second row (or, for the port's strategies, a window) counts as positive when its confidence is
            strictly greater than this.
        global_count_threshold (`int`, *optional*, defaults to 3):
            With the `"orcahello"` aggregation, a recording is positive when at least this many one-second rows are.
        aggregation (`str`, *optional*, defaults to `"orcahello"`):
            File-level rule: `"orcahello"` (production: windows smoothed into one-second rows), or the upstream
            port's `"mean_thresholded"` / `"mean_top_k"`.
        global_threshold (`float`, *optional*, defaults to 0.6):
            For `"mean_thresholded"` and `"mean_top_k"`: the recording is positive when its global confidence
            (0..1) is at least this.
        top_k_windows (`int`, *optional*, defaults to 3):
            Number of windows averaged by `"mean_top_k"`.
        min_global_confidence (`float`, *optional*, defaults to 0.0):
            A floor on the recording's global confidence on a 0-1 scale (`"orcahello"`'s 0-100 value / 100): a
            recording is positive only when the rule above says so and its global confidence reaches this. 0 (the
            default) keeps production's decision; `orcahello calibrate` fits one per hydrophone.

    Example:

    ```python
    >>> from configuration_orcahello import OrcaHelloConfig
    >>> resnet50_config = OrcaHelloConfig()
    >>> resnet18_config = OrcaHelloConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic")
    ```
    """

    model_type = "orcahello"

    def __init__(
        self,
        num_channels=1,
        embedding_size=64,
        hidden_sizes=None,
        depths=None,
        layer_type="bottleneck",
        hidden_act="relu",
        head_hidden_size=512,
        head_pooled_dropout=0.25,
        head_hidden_dropout=0.5,
        batch_norm_eps=1e-5,
        window_seconds=2.0,
        hop_seconds=1.0,
        local_threshold=0.5,
        global_count_threshold=3,
        aggregation="orcahello",
        global_threshold=0.6,
        top_k_windows=3,
        min_global_confidence=0.0,
        **kwargs,
    ):
        if layer_type not in ("basic", "bottleneck"):
            raise ValueError(f"layer_type must be 'basic' or 'bottleneck', got {layer_type!r}")
        if aggregation not in AGGREGATION_STRATEGIES:
            raise ValueError(f"aggregation must be one of {AGGREGATION_STRATEGIES}, got {aggregation!r}")
        if not 0.0 <= min_global_confidence <= 1.0:
            raise ValueError(
                f"min_global_confidence must be from 0 to 1 (global confidence / 100), got {min_global_confidence}"
            )
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
        self.window_seconds = window_seconds
        self.hop_seconds = hop_seconds
        self.local_threshold = local_threshold
        self.global_count_threshold = global_count_threshold
        self.aggregation = aggregation
        self.global_threshold = global_threshold
        self.top_k_windows = top_k_windows
        self.min_global_confidence = min_global_confidence
        # The two classes of the fastai learner (label_from_folder sorts them); P(call) = softmax(logits)[1].
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["id2label"] = {0: "negative", 1: "positive"}
            kwargs.setdefault("label2id", {"negative": 0, "positive": 1})
        kwargs.setdefault("problem_type", "single_label_classification")
        super().__init__(**kwargs)

    @property
    def pooled_size(self):
        """Width of the concatenated [max, average] pooled features the head receives (4096 for ResNet50)."""
        return 2 * self.hidden_sizes[-1]
