# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
The key formats an OrcaHello checkpoint may be written in (fastai's learner, the upstream port, this repository),
and how each maps to and from one canonical naming; [`detect_key_format`] tells which one a state_dict uses.
"""

import re
from collections.abc import Iterable

from .errors import ConversionError

# ----------------------------------------------------------------------------------------------------------------
# Key formats. Every format is mapped to and from one canonical naming: torchvision's ResNet names (`conv1`, `bn1`,
# `layerN.i.convK`, `layerN.i.bnK`, `layerN.i.downsample.{0,1}`) plus the fastai head as the port names it
# (`fc.1` BatchNorm1d(pooled), `fc.3` Linear(pooled, 512), `fc.5` BatchNorm1d(512), `fc.7` Linear(512, 2)).
# ----------------------------------------------------------------------------------------------------------------

_TENSOR_SUFFIX = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RESNET_HEAD_TO_ORCAHELLO = {"1": "pooled_norm", "3": "dense", "5": "hidden_norm", "7": "out_proj"}
_ORCAHELLO_HEAD_TO_RESNET = {name: index for index, name in _RESNET_HEAD_TO_ORCAHELLO.items()}
_STEM = "orcahello.resnet.embedder.embedder"
_STAGES = "orcahello.resnet.encoder.stages"


def canonical_to_orcahello(key: str) -> str | None:
    """This repository's state_dict key for a canonical (torchvision-style) key, or None if it has no place there."""
    if match := re.fullmatch(rf"conv1\.{_TENSOR_SUFFIX}", key):
        return f"{_STEM}.convolution.{match[1]}"
    if match := re.fullmatch(rf"bn1\.{_TENSOR_SUFFIX}", key):
        return f"{_STEM}.normalization.{match[1]}"
    if match := re.fullmatch(rf"layer(\d+)\.(\d+)\.(conv|bn)(\d+)\.{_TENSOR_SUFFIX}", key):
        stage, block, kind, position, suffix = int(match[1]), int(match[2]), match[3], int(match[4]), match[5]
        if stage < 1 or position < 1:
            return None
        sublayer = "convolution" if kind == "conv" else "normalization"
        return f"{_STAGES}.{stage - 1}.layers.{block}.layer.{position - 1}.{sublayer}.{suffix}"
    if match := re.fullmatch(rf"layer(\d+)\.(\d+)\.downsample\.([01])\.{_TENSOR_SUFFIX}", key):
        stage, block, downsample_index, suffix = int(match[1]), int(match[2]), match[3], match[4]
        if stage < 1:
            return None
        sublayer = "convolution" if downsample_index == "0" else "normalization"
        return f"{_STAGES}.{stage - 1}.layers.{block}.shortcut.{sublayer}.{suffix}"
    if match := re.fullmatch(rf"fc\.([1357])\.{_TENSOR_SUFFIX}", key):
        return f"classifier.{_RESNET_HEAD_TO_ORCAHELLO[match[1]]}.{match[2]}"
    return None


def orcahello_to_canonical(key: str) -> str | None:
    """Inverse of [`canonical_to_orcahello`]."""
    if match := re.fullmatch(rf"{re.escape(_STEM)}\.(convolution|normalization)\.{_TENSOR_SUFFIX}", key):
        return f"{'conv1' if match[1] == 'convolution' else 'bn1'}.{match[2]}"
    pattern = (
        rf"{re.escape(_STAGES)}\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.(convolution|normalization)\.{_TENSOR_SUFFIX}"
    )
    if match := re.fullmatch(pattern, key):
        kind = "conv" if match[4] == "convolution" else "bn"
        return f"layer{int(match[1]) + 1}.{match[2]}.{kind}{int(match[3]) + 1}.{match[5]}"
    pattern = rf"{re.escape(_STAGES)}\.(\d+)\.layers\.(\d+)\.shortcut\.(convolution|normalization)\.{_TENSOR_SUFFIX}"
    if match := re.fullmatch(pattern, key):
        position = "0" if match[3] == "convolution" else "1"
        return f"layer{int(match[1]) + 1}.{match[2]}.downsample.{position}.{match[4]}"
    if match := re.fullmatch(rf"classifier\.(\w+)\.{_TENSOR_SUFFIX}", key):
        if match[1] in _ORCAHELLO_HEAD_TO_RESNET:
            return f"fc.{_ORCAHELLO_HEAD_TO_RESNET[match[1]]}.{match[2]}"
    return None


# fastai's learner is Sequential(body, head). The body is torchvision's ResNet children without avgpool and fc
# (0 conv1, 1 bn1, 2 relu, 3 maxpool, 4..7 layer1..layer4); the head is create_head's Sequential (0 concat pool,
# 1 flatten, 2 BN, 3 dropout, 4 linear, 5 relu, 6 BN, 7 dropout, 8 linear), whose parametrized layers are the
# port's fc.1/3/5/7, one index lower.
_FASTAI_BODY_TO_CANONICAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_CANONICAL_TO_FASTAI_BODY = {name: index for index, name in _FASTAI_BODY_TO_CANONICAL.items()}


def fastai_to_canonical(key: str) -> str | None:
    """Canonical key for a fastai learner state_dict key (`0.5.0.downsample.1.running_var` -> `layer2.0....`)."""
    if match := re.fullmatch(r"0\.(\d+)\.(.+)", key):
        if match[1] in _FASTAI_BODY_TO_CANONICAL:
            return f"{_FASTAI_BODY_TO_CANONICAL[match[1]]}.{match[2]}"
        return None
    if match := re.fullmatch(r"1\.(\d+)\.(.+)", key):
        if match[1] in ("2", "4", "6", "8"):
            return f"fc.{int(match[1]) - 1}.{match[2]}"
    return None


def canonical_to_fastai(key: str) -> str:
    """Inverse of [`fastai_to_canonical`]."""
    if match := re.fullmatch(r"fc\.(\d+)\.(.+)", key):
        return f"1.{int(match[1]) + 1}.{match[2]}"
    first, _, rest = key.partition(".")
    return f"0.{_CANONICAL_TO_FASTAI_BODY.get(first, first)}.{rest}"


KEY_FORMATS = {
    # name: (description, source key -> canonical key or None, canonical key -> source key)
    "fastai": ("fastai learner state_dict (0.* body, 1.* head)", fastai_to_canonical, canonical_to_fastai),
    "port": (
        "upstream port (model.conv1 ... model.fc.7, as model_v1.pt and the Hub's first model.safetensors)",
        lambda key: key[len("model.") :] if key.startswith("model.") else None,
        lambda key: f"model.{key}",
    ),
    "orcahello": (
        "this repository's OrcaHelloForAudioClassification",
        lambda key: orcahello_to_canonical(key),
        lambda key: canonical_to_orcahello(key) or key,
    ),
}


def detect_key_format(keys: Iterable[str]) -> str:
    """Name of the [`KEY_FORMATS`] entry the keys are written in; raises [`ConversionError`] if none fits."""
    roots = {key.split(".", 1)[0] for key in keys}
    if not keys:
        raise ConversionError("the checkpoint holds no tensors")
    if roots == {"model"}:
        return "port"
    if roots <= {"0", "1"}:
        return "fastai"
    if roots <= {"orcahello", "classifier"}:
        return "orcahello"
    examples = ", ".join(sorted(keys)[:5])
    raise ConversionError(
        f"cannot tell the key format of this state_dict (top-level names {sorted(roots)[:10]}, e.g. {examples}): "
        "expected fastai's '0.*'/'1.*', the port's 'model.*' or this repository's 'orcahello.*'/'classifier.*'"
    )
