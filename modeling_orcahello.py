# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License (this code). The trained weights are distributed separately under the
# OrcaHello RAIL-AMS licence: see the model card.
"""
PyTorch OrcaHello SRKW detector: production OrcaHello's fastai v1 learner (a ResNet body on one-channel mel
spectrograms with fastai's concat-pool head), rebuilt on transformers' `ResNetModel` with no fastai at all.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, ResNetConfig, ResNetModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

try:
    from .configuration_orcahello import OrcaHelloConfig
    from .feature_extraction_orcahello import OrcaHelloFeatureExtractor  # noqa: F401  (copied on save_pretrained)
    from .pipeline_orcahello import OrcaHelloAudioClassificationPipeline  # noqa: F401  (copied on save_pretrained)
except ImportError:  # imported as a plain module (tests, conversion scripts) rather than as Hub custom code
    from configuration_orcahello import OrcaHelloConfig


@dataclass
class OrcaHelloModelOutput(ModelOutput):
    """
    Output of [`OrcaHelloModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_sizes[-1], height, width)`):
            Feature map of the last ResNet stage (2048 x 8 x 10 for a 256 x 312 ResNet50 input).
        pooler_output (`torch.FloatTensor` of shape `(batch_size, 2 * hidden_sizes[-1])`):
            fastai's concat pooling: adaptive max pool, then adaptive average pool, flattened and concatenated.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            Feature maps of the stem and of every stage.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple | None = None


def resnet_config_from(config: OrcaHelloConfig) -> ResNetConfig:
    """The transformers `ResNetConfig` of the body described by an `OrcaHelloConfig` (torchvision layout)."""
    return ResNetConfig(
        num_channels=config.num_channels,
        embedding_size=config.embedding_size,
        hidden_sizes=list(config.hidden_sizes),
        depths=list(config.depths),
        layer_type=config.layer_type,
        hidden_act=config.hidden_act,
        # torchvision ResNet v1.5: no stride in the first stage, stride on the 3x3 convolution of a bottleneck.
        downsample_in_first_stage=False,
        downsample_in_bottleneck=False,
    )


class OrcaHelloPreTrainedModel(PreTrainedModel):
    config_class = OrcaHelloConfig
    base_model_prefix = "orcahello"
    main_input_name = "input_features"
    # A tuple, as transformers' own audio models give it (its annotation says `str | list[str]`).
    input_modalities = ("audio",)  # type: ignore[assignment]
    _no_split_modules = ["ResNetConvLayer", "ResNetShortCut"]

    def _init_weights(self, module):
        # Only reached for weights missing from a checkpoint (e.g. a fresh model for fine-tuning): fastai's
        # kaiming init for convolutions, PyTorch defaults elsewhere.
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if module.running_mean is not None and module.running_var is not None:
                nn.init.zeros_(module.running_mean)
                nn.init.ones_(module.running_var)
            if module.num_batches_tracked is not None:
                module.num_batches_tracked.zero_()


class OrcaHelloConcatPool(nn.Module):
    """fastai's `AdaptiveConcatPool2d`: [adaptive max pool, adaptive average pool] in that order, flattened."""

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        max_pooled = torch.amax(feature_map, dim=(-2, -1))
        average_pooled = torch.mean(feature_map, dim=(-2, -1))
        return torch.cat([max_pooled, average_pooled], dim=1)


class OrcaHelloModel(OrcaHelloPreTrainedModel):
    """
    The ResNet body and fastai's concat pooling: spectrograms in, pooled features out. Use it to extract
    embeddings; [`OrcaHelloForAudioClassification`] adds the classification head.
    """

    def __init__(self, config: OrcaHelloConfig) -> None:
        super().__init__(config)
        self.resnet = ResNetModel(resnet_config_from(config))
        self.pooler = OrcaHelloConcatPool()
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> OrcaHelloModelOutput | tuple[torch.Tensor, ...]:
        r"""
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, 1, 256, 312)`):
                dB mel spectrograms from [`OrcaHelloFeatureExtractor`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        check_input_features(input_features, self.config.num_channels)
        backbone_outputs = self.resnet(input_features, output_hidden_states=output_hidden_states, return_dict=True)
        last_hidden_state = backbone_outputs.last_hidden_state
        pooled = self.pooler(last_hidden_state)
        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled, backbone_outputs.hidden_states) if v is not None)
        return OrcaHelloModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=backbone_outputs.hidden_states,
        )


def check_input_features(input_features: torch.Tensor, num_channels: int) -> None:
    """Refuse inputs that would otherwise fail deep inside a convolution, naming what was expected."""
    if not isinstance(input_features, torch.Tensor):
        raise TypeError(
            f"input_features must be a torch.Tensor of shape (batch, {num_channels}, 256, 312), got "
            f"{type(input_features).__name__}; use OrcaHelloFeatureExtractor(..., return_tensors='pt')"
        )
    if input_features.ndim != 4 or input_features.shape[1] != num_channels:
        raise ValueError(
            f"input_features must have shape (batch, {num_channels}, n_mels, frames), e.g. (batch, {num_channels}, "
            f"256, 312) as OrcaHelloFeatureExtractor produces; got {tuple(input_features.shape)}"
        )
    if input_features.shape[0] == 0:
        raise ValueError("input_features is an empty batch")


class OrcaHelloClassificationHead(nn.Module):
    """
    fastai v1's `create_head` for two classes: BatchNorm -> Dropout -> Linear -> ReLU -> BatchNorm -> Dropout ->
    Linear, on the concat-pooled features.
    """

    def __init__(self, config: OrcaHelloConfig) -> None:
        super().__init__()
        self.pooled_norm = nn.BatchNorm1d(config.pooled_size, eps=config.batch_norm_eps)
        self.pooled_dropout = nn.Dropout(config.head_pooled_dropout)
        self.dense = nn.Linear(config.pooled_size, config.head_hidden_size)
        self.activation = nn.ReLU()
        self.hidden_norm = nn.BatchNorm1d(config.head_hidden_size, eps=config.batch_norm_eps)
        self.hidden_dropout = nn.Dropout(config.head_hidden_dropout)
        self.out_proj = nn.Linear(config.head_hidden_size, config.num_labels)

    def hidden_features(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """The features the last linear layer classifies (after the hidden ReLU, BatchNorm and dropout)."""
        hidden = self.pooled_dropout(self.pooled_norm(pooled_features))
        hidden = self.activation(self.dense(hidden))
        return self.hidden_dropout(self.hidden_norm(hidden))

    def forward(self, pooled_features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.hidden_features(pooled_features))


class OrcaHelloForAudioClassification(OrcaHelloPreTrainedModel):
    """
    The OrcaHello detector: [`OrcaHelloModel`] plus fastai's classification head. `softmax(logits)[:, 1]` is the
    probability that a 2-second window holds a killer-whale call.

    For whole recordings use the pipeline: `pipeline("audio-classification", model=..., trust_remote_code=True)`.

    A folder made by `orcahello adapt` (`config.adapted_head` set) also has `adapted_head`, a linear layer fitted to
    a site's labelled windows on the pooled features or the fastai head's hidden layer: its logits are the model's.
    """

    def __init__(self, config: OrcaHelloConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.orcahello = OrcaHelloModel(config)
        self.classifier = OrcaHelloClassificationHead(config)
        adapted = getattr(config, "adapted_head", None)
        self.adapted_head = (
            nn.Linear(config.layer_size(adapted["layer"]), config.num_labels) if adapted is not None else None
        )
        self.post_init()

    def logits_from_pooled(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """
        The logits of concat-pooled features: the fastai head's, or the adapted head's when the folder has one. The
        fastai head always runs (a 4096 x 512 product, nothing beside the ResNet), so its layers' hooks see every
        window, as `orcahello embed --layer head` needs. Engines that skip the padding call this too.
        """
        hidden = self.classifier.hidden_features(pooled_features)
        logits = self.classifier.out_proj(hidden)
        if self.adapted_head is None:
            return logits
        features = pooled_features if self.config.adapted_head["layer"] == "pooled" else hidden
        return self.adapted_head(features)

    def forward(
        self,
        input_features: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, 1, 256, 312)`):
                dB mel spectrograms from [`OrcaHelloFeatureExtractor`].
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                0 (negative) or 1 (positive); when given, the cross-entropy loss is returned, so `Trainer` can
                fine-tune the model.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.orcahello(input_features, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.logits_from_pooled(outputs.pooler_output)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels.to(logits.device).view(-1).long())
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = [
    "OrcaHelloModel",
    "OrcaHelloForAudioClassification",
    "OrcaHelloPreTrainedModel",
    "OrcaHelloModelOutput",
]
