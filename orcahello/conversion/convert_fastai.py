# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License. This script converts weights; it never ships any. The trained OrcaHello weights
# are under Orcasound's OrcaHello RAIL-AMS licence: see the model card.
"""
Convert an OrcaHello checkpoint into this repository's Transformers model folder.

Accepted inputs (the format is detected from the file, then from its keys):

- a fastai v1 learner export (`learn.export()`, usually `model.pkl`) in either torch serialization format (the
  2020 production file is the legacy non-zip format, newer exports are zip files). It is unpickled without fastai by
  a restricted unpickler (`orcahello/conversion/restricted_unpickler.py`) that refuses any global outside an allow-list;
- a plain state_dict (`.pt`/`.pth`, loaded with `torch.load(weights_only=True)`, or `.safetensors`) with the keys of
  the fastai learner (`0.*` body, `1.*` head), of the upstream pure-PyTorch port (`model.conv1`, ..., `model.fc.7`:
  `model_v1.pt` and the Hub's first `model.safetensors`), or of this repository (`orcahello.resnet.*`,
  `classifier.*`). fastai's `learn.save()` files (`{"model": state_dict, "opt": ...}`) are unwrapped;
- a folder laid out as upstream publishes its v1 port on the Hub (`PyTorchModelHubMixin`: nested `config.json`
  without `model_type`, `config.yaml`, port-keyed `model.safetensors` or `model_v1.pt`): its weights are converted
  and its settings become the written folder's defaults, preset `"v1"` (`orcahello/conversion/hub_v1_layout.py`).

A learner or a bare state_dict gives a folder whose default preset is `"fastai"` (production's behaviour).

The backbone (ResNet18/34/50/101/152, or any torchvision-layout ResNet) is inferred from the keys and tensor shapes,
every tensor is checked against a freshly built `OrcaHelloForAudioClassification` (no key missing, none unused,
every shape equal), and the converted model is verified before the folder is written: against the unpickled
learner's own forward pass (max |logit difference| <= 1e-4 on spectrogram-like inputs) for a learner, bit-exact
tensors and a finite forward pass for a state_dict.

Usage:

```bash
python -m orcahello.conversion.convert_fastai --input model.pkl --output-dir orcahello-srkw-detector-v1 --card README.md
```
"""

import argparse
import json
import os
import pickle
import re
import sys
import time
from collections.abc import Mapping

import torch
from torch import nn

from configuration_orcahello import resolve_inference_settings
from feature_extraction_orcahello import OrcaHelloFeatureExtractor
from modeling_orcahello import OrcaHelloForAudioClassification

from .hub_v1_layout import (
    HubLayoutError,
    hub_weights_path,
    is_hub_v1_folder,
    read_hub_v1_settings,
)
from .learner_export import check_torch_file_globals, load_learner_export, pickles_objects, torch_file_format
from .model_folder import default_config, save_model_folder
from .pickle_allow_list import InertObject, UnsafePickleError

# A conversion fails when the converted model's logits differ from the learner's own by more than this.
MAX_LOGIT_DIFFERENCE = 1e-4
EXPECTED_CLASS_NAMES = ("negative", "positive")
# How many offending keys an error message lists before summarizing the rest.
MAX_KEYS_IN_MESSAGE = 12

ARCHITECTURE_NAMES = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


class ConversionError(ValueError):
    """The input cannot be converted: unreadable, not an OrcaHello checkpoint, or not matching the model."""


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


def canonical_to_orcahello(key):
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
        stage, block, position, suffix = int(match[1]), int(match[2]), match[3], match[4]
        if stage < 1:
            return None
        sublayer = "convolution" if position == "0" else "normalization"
        return f"{_STAGES}.{stage - 1}.layers.{block}.shortcut.{sublayer}.{suffix}"
    if match := re.fullmatch(rf"fc\.([1357])\.{_TENSOR_SUFFIX}", key):
        return f"classifier.{_RESNET_HEAD_TO_ORCAHELLO[match[1]]}.{match[2]}"
    return None


def orcahello_to_canonical(key):
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


def fastai_to_canonical(key):
    """Canonical key for a fastai learner state_dict key (`0.5.0.downsample.1.running_var` -> `layer2.0....`)."""
    if match := re.fullmatch(r"0\.(\d+)\.(.+)", key):
        if match[1] in _FASTAI_BODY_TO_CANONICAL:
            return f"{_FASTAI_BODY_TO_CANONICAL[match[1]]}.{match[2]}"
        return None
    if match := re.fullmatch(r"1\.(\d+)\.(.+)", key):
        if match[1] in ("2", "4", "6", "8"):
            return f"fc.{int(match[1]) - 1}.{match[2]}"
    return None


def canonical_to_fastai(key):
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


def detect_key_format(keys):
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


# ----------------------------------------------------------------------------------------------------------------
# Reading inputs
# ----------------------------------------------------------------------------------------------------------------


def _is_tensor_mapping(value):
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items())
    )


def _module_tree_problems(module, path="model"):
    """Paths and original names of objects in a learner's module tree that are not runnable nn.Modules."""
    if isinstance(module, InertObject):
        return [f"{path} ({type(module).original_name})"]
    if not isinstance(module, nn.Module):
        return [f"{path} ({type(module).__name__})"]
    problems = []
    for name, child in module.__dict__.get("_modules", {}).items():
        if child is not None:
            problems.extend(_module_tree_problems(child, f"{path}.{name}"))
    return problems


def learner_class_names(export):
    """The class names a fastai learner export stores (`data -> y_proc -> CategoryProcessor.classes`), or None."""
    data = export.get("data") if isinstance(export, Mapping) else None
    if not isinstance(data, Mapping):
        return None
    for processor in data.get("y_proc") or []:
        classes = getattr(processor, "classes", None)
        if classes is not None:
            return [str(name) for name in classes]
    classes = data.get("classes")
    return [str(name) for name in classes] if classes is not None else None


def read_checkpoint(input_path):
    """
    Read `input_path` and return a dict describing it: `file_format` ("legacy", "zip" or "safetensors"), `content`
    ("learner" or "state_dict"), `state_dict`, and for a learner `model` (the unpickled module tree, runnable),
    `class_names` and `pickle_globals`.
    """
    if not os.path.isfile(input_path):
        raise ConversionError(f"{input_path} does not exist or is not a file")
    try:
        file_format = torch_file_format(input_path)
    except ValueError as error:
        raise ConversionError(str(error)) from None

    if file_format == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(input_path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ConversionError(
                f"cannot read {input_path}: the safetensors file is truncated or corrupted ({error})"
            ) from None
        return {"file_format": file_format, "content": "state_dict", "state_dict": state_dict}

    # Refuse anything outside the allow-list before a single opcode runs. The static scan also tells a learner (it
    # pickles modules and fastai objects) from a state_dict (only tensors and plain data), which torch's own
    # weights-only loader reads.
    try:
        pickle_globals = check_torch_file_globals(input_path)
    except UnsafePickleError:
        raise
    except ValueError as error:
        raise ConversionError(str(error)) from None

    loaded = not_loaded = object()
    if not pickles_objects(pickle_globals):
        try:
            loaded = torch.load(input_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's weights-only allow-list is narrower than ours for plain data (numpy scalars, for one); the
            # restricted unpickler below reads it, or explains why the file is unreadable.
            pass
        except Exception as error:  # RuntimeError, EOFError, ... for a damaged file
            raise ConversionError(
                f"cannot load {input_path}: the file is truncated or corrupted ({type(error).__name__}: {error})"
            ) from None
    if loaded is not_loaded:
        try:
            loaded = load_learner_export(input_path)
        except UnsafePickleError:
            raise
        except ValueError as error:
            raise ConversionError(str(error)) from None

    common = {"file_format": file_format, "pickle_globals": pickle_globals}
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), nn.Module):
        model, class_names = loaded["model"], learner_class_names(loaded)
    elif isinstance(loaded, nn.Module):  # `torch.save(learn.model)`: the module tree without fastai metadata
        model, class_names = loaded, None
    elif _is_tensor_mapping(loaded):
        return {**common, "content": "state_dict", "state_dict": dict(loaded)}
    elif isinstance(loaded, Mapping) and any(_is_tensor_mapping(loaded.get(name)) for name in ("model", "state_dict")):
        # fastai's learn.save() writes {"model": state_dict, "opt": optimizer state}
        entry = "model" if _is_tensor_mapping(loaded.get("model")) else "state_dict"
        return {**common, "content": "state_dict", "state_dict": dict(loaded[entry])}
    else:
        shown = (
            f"a dict with keys {sorted(map(str, loaded))[:10]}"
            if isinstance(loaded, Mapping)
            else type(loaded).__name__
        )
        raise ConversionError(
            f"{input_path} is not a fastai learner export nor a state_dict: it holds {shown}. A learner export "
            "(learn.export()) is a dict whose 'model' entry is the nn.Sequential(body, head); a state_dict maps "
            "names to tensors"
        )

    problems = _module_tree_problems(model)
    if problems:
        raise ConversionError(
            "the learner's model contains objects this converter cannot run (no stand-in for their class): "
            + ", ".join(problems[:MAX_KEYS_IN_MESSAGE])
        )
    if not (isinstance(model, nn.Sequential) and len(model) == 2):
        raise ConversionError(
            f"the learner's model is a {type(model).__name__} with {len(list(model.children()))} children; a fastai "
            "vision/audio learner is an nn.Sequential of exactly two parts, [body, head]"
        )
    return {
        **common,
        "content": "learner",
        "model": model,
        "state_dict": model.state_dict(),
        "class_names": class_names,
    }


# ----------------------------------------------------------------------------------------------------------------
# Mapping and checking
# ----------------------------------------------------------------------------------------------------------------


def _short_list(items):
    items = list(items)
    shown = ", ".join(items[:MAX_KEYS_IN_MESSAGE])
    return shown + (f", ... and {len(items) - MAX_KEYS_IN_MESSAGE} more" if len(items) > MAX_KEYS_IN_MESSAGE else "")


def infer_architecture(canonical):
    """
    The `OrcaHelloConfig` arguments of the ResNet the canonical state_dict describes: block type from the presence
    of a third convolution, depths from the largest block index of each stage, widths from tensor shapes.
    """
    if "conv1.weight" not in canonical:
        raise ConversionError("the checkpoint has no stem convolution (conv1.weight / 0.0.weight): not a ResNet")
    stage_blocks = {}
    for key in canonical:
        if match := re.match(r"layer(\d+)\.(\d+)\.", key):
            stage_blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if not stage_blocks or sorted(stage_blocks) != list(range(1, len(stage_blocks) + 1)):
        raise ConversionError(f"the checkpoint's ResNet stages are {sorted(stage_blocks)}; expected layer1..layerN")
    layer_type = "bottleneck" if any(re.match(r"layer\d+\.\d+\.conv3\.", key) for key in canonical) else "basic"
    last_conv = "conv3" if layer_type == "bottleneck" else "conv2"
    depths, hidden_sizes = [], []
    for stage in sorted(stage_blocks):
        depths.append(max(stage_blocks[stage]) + 1)
        widths = [
            canonical[f"layer{stage}.{block}.{last_conv}.weight"].shape[0]
            for block in sorted(stage_blocks[stage])
            if f"layer{stage}.{block}.{last_conv}.weight" in canonical
        ]
        if not widths:
            raise ConversionError(
                f"stage layer{stage} of the checkpoint has no {last_conv} weight to read its width from"
            )
        hidden_sizes.append(int(widths[0]))
    stem = canonical["conv1.weight"]
    settings = {
        "num_channels": int(stem.shape[1]),
        "embedding_size": int(stem.shape[0]),
        "depths": depths,
        "hidden_sizes": hidden_sizes,
        "layer_type": layer_type,
    }
    head_hidden_size = next(
        (canonical[key].shape[0] for key in ("fc.3.weight", "fc.5.weight") if key in canonical), None
    )
    if head_hidden_size is not None:
        settings["head_hidden_size"] = int(head_hidden_size)
    num_labels = next((int(canonical[key].shape[0]) for key in ("fc.7.weight", "fc.7.bias") if key in canonical), 2)
    name = ARCHITECTURE_NAMES.get((layer_type, tuple(depths)), f"custom {layer_type} resnet {depths}")
    standard_widths = [64, 128, 256, 512] if layer_type == "basic" else [256, 512, 1024, 2048]
    if name.startswith("resnet") and (hidden_sizes != standard_widths or settings["embedding_size"] != 64):
        name = f"{name}-like (stem {settings['embedding_size']}, widths {hidden_sizes})"
    return settings, num_labels, name


def labels_for(class_names, num_labels):
    """`id2label`/`label2id` for the converted config; refuses anything but a two-class detector."""
    if class_names is not None and len(class_names) != num_labels:
        raise ConversionError(
            f"the learner lists {len(class_names)} classes {class_names} but its last layer has {num_labels} outputs"
        )
    if num_labels != 2:
        shown = f" {class_names}" if class_names else ""
        raise ConversionError(
            f"the checkpoint is a {num_labels}-class classifier{shown}; the OrcaHello detector has exactly 2 classes "
            f"{list(EXPECTED_CLASS_NAMES)} (P(call) = softmax(logits)[1])"
        )
    names = list(class_names) if class_names else list(EXPECTED_CLASS_NAMES)
    if len(set(names)) != 2:
        raise ConversionError(f"the learner's class names {names} are not distinct")
    return {index: name for index, name in enumerate(names)}, {name: index for index, name in enumerate(names)}


def map_state_dict(source_state_dict, key_format, class_names=None):
    """
    Rename a source state_dict into this repository's keys, infer the config, and check everything against a
    freshly built model. Returns `(model, mapped_state_dict, details)` where `model` has the converted weights
    loaded with `strict=True`. Raises [`ConversionError`] naming every unused, missing or mis-shaped key (in the
    source's own naming) at once.
    """
    description, to_canonical, from_canonical = KEY_FORMATS[key_format]
    canonical, unused = {}, []
    for key, tensor in source_state_dict.items():
        canonical_key = to_canonical(key)
        if canonical_key is None or canonical_to_orcahello(canonical_key) is None:
            unused.append(key)
        else:
            canonical[canonical_key] = tensor

    settings, num_labels, architecture = infer_architecture(canonical)
    id2label, label2id = labels_for(class_names, num_labels)
    config = default_config(**settings, id2label=id2label, label2id=label2id)
    model = OrcaHelloForAudioClassification(config).eval()
    expected = model.state_dict()

    mapped = {canonical_to_orcahello(key): tensor for key, tensor in canonical.items()}
    source_name = {canonical_to_orcahello(key): from_canonical(key) for key in canonical}
    unexpected = sorted(unused + [source_name[key] for key in mapped if key not in expected])
    missing = [key for key in expected if key not in mapped]

    # Some exporters drop BatchNorm's step counters; they never affect inference (momentum is fixed), so a source
    # without any of them gets zeros rather than a refusal. A source that has some but not all is refused.
    filled_counters = 0
    if missing and not any(key.endswith("num_batches_tracked") for key in source_state_dict):
        for key in [key for key in missing if key.endswith("num_batches_tracked")]:
            mapped[key] = torch.zeros_like(expected[key])
            filled_counters += 1
        missing = [key for key in missing if key not in mapped]

    mismatched = [
        f"{source_name[key]} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
        for key, tensor in mapped.items()
        if key in expected and key in source_name and tuple(tensor.shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(from_canonical(orcahello_to_canonical(key)) for key in missing)}")
    if unexpected:
        problems.append(f"unexpected (unused) keys: {_short_list(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_short_list(mismatched)}")
    if problems:
        raise ConversionError(
            f"the checkpoint ({description}) does not match an OrcaHello {architecture} model:\n  "
            + "\n  ".join(problems)
        )

    mapped = {key: mapped[key] for key in expected}
    model.load_state_dict(mapped, strict=True)
    details = {
        "architecture": architecture,
        "config": settings,
        "class_names": [id2label[0], id2label[1]],
        "filled_num_batches_tracked": filled_counters,
    }
    return model, mapped, details


# ----------------------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------------------


def spectrogram_like_inputs(num_channels=1, num_mels=256, num_frames=312, seed=0):
    """
    Inputs in the range the detector sees (dB values around -40 with a spread of ~20): two full spectrograms and
    two whose last 155 frames are 0 dB, as the frontend pads a 2-second window (157 frames) to 312.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(4, num_channels, num_mels, num_frames, generator=generator) * 20 - 40
    inputs[2:, ..., 157:] = 0.0
    return inputs


def check_tensors_equal(model, mapped_state_dict):
    """Every tensor of the converted model equals its source bit for bit; returns the number checked."""
    converted = model.state_dict()
    different = [
        key
        for key, source in mapped_state_dict.items()
        if not torch.equal(converted[key], source.to(device=converted[key].device, dtype=converted[key].dtype))
    ]
    if different:
        raise ConversionError(f"converted tensors differ from their source: {_short_list(different)}")
    return len(converted)


@torch.inference_mode()
def compare_with_learner(reference_model, converted_model, inputs):
    """Max |logit difference| and max |P(positive) difference| between the learner and the converted model."""
    reference_model.eval()
    converted_model.eval()
    reference_logits = reference_model(inputs.clone()).float()
    converted_logits = converted_model(input_features=inputs.clone()).logits.float()
    if reference_logits.shape != converted_logits.shape:
        raise ConversionError(
            f"the learner returns logits of shape {tuple(reference_logits.shape)}, the converted model "
            f"{tuple(converted_logits.shape)}"
        )
    logit_difference = (reference_logits - converted_logits).abs().max().item()
    probability_difference = (reference_logits.softmax(-1) - converted_logits.softmax(-1)).abs().max().item()
    return logit_difference, probability_difference


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------

_FILE_FORMAT_NAMES = {
    "legacy": "legacy non-zip torch serialization",
    "zip": "zip torch serialization",
    "safetensors": "safetensors",
}


def convert(input_path, output_dir, verify=True, model_card=None):
    """
    Convert the checkpoint at `input_path` (see the module docstring for the formats) into a complete model folder
    at `output_dir`, and return a report dict (source format, architecture, tensor count, class names,
    verification results). `model_card` is the text of a README.md to include. With `verify=False` the forward-pass
    comparison is skipped (key, shape and strict-loading checks always run).

    Raises [`UnsafePickleError`] for a pickle that references anything outside the allow-list (nothing in it is
    executed) and [`ConversionError`] for every other problem, with a message naming it.
    """
    started = time.perf_counter()
    hub_settings = None
    if os.path.isdir(input_path):
        if not is_hub_v1_folder(input_path):
            raise ConversionError(
                f"{input_path} is a folder but not upstream's Hub layout (a config.json without model_type holding "
                "the sections audio/spectrogram/model/inference, or a config.yaml)"
            )
        try:
            hub_settings = read_hub_v1_settings(input_path)
            input_path = hub_weights_path(input_path)
        except HubLayoutError as error:
            raise ConversionError(str(error)) from None
    source = read_checkpoint(os.fspath(input_path))
    source_state_dict = source["state_dict"]
    key_format = detect_key_format(list(source_state_dict))
    model, mapped, details = map_state_dict(source_state_dict, key_format, source.get("class_names"))

    report = {
        "input": os.path.abspath(input_path),
        "output_dir": os.path.abspath(output_dir),
        "source_format": (
            f"{'fastai learner export' if source['content'] == 'learner' else 'state_dict'} "
            f"({_FILE_FORMAT_NAMES[source['file_format']]})"
        ),
        "file_format": source["file_format"],
        "content": source["content"],
        "key_format": key_format,
        "architecture": details["architecture"],
        "config": details["config"],
        "num_tensors": len(source_state_dict),
        "source_dtypes": sorted({str(tensor.dtype).replace("torch.", "") for tensor in source_state_dict.values()}),
        "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "class_names": details["class_names"],
        "filled_num_batches_tracked": details["filled_num_batches_tracked"],
        "warnings": [],
    }
    if "pickle_globals" in source:
        report["pickle_globals"] = source["pickle_globals"]
    if tuple(details["class_names"]) != EXPECTED_CLASS_NAMES:
        report["warnings"].append(
            f"class names are {details['class_names']}; the pipeline reads index 1 as the call class"
        )

    feature_extractor = None
    if hub_settings is not None:
        config_arguments, feature_extractor_arguments, notes = hub_settings
        preset = config_arguments.pop("preset")
        _, settings, _ = resolve_inference_settings({}, preset=preset, **config_arguments)
        model.config.preset = preset
        for field, value in settings.items():
            setattr(model.config, field, value)
        feature_extractor = OrcaHelloFeatureExtractor(**feature_extractor_arguments)
        report["preset"] = {"preset": preset, **settings}
        report["feature_extractor"] = feature_extractor_arguments
        report["warnings"].extend(notes)
    else:
        report["preset"] = {"preset": model.config.preset, **model.config.inference_settings()}

    verification = {"tensors_bit_exact": check_tensors_equal(model, mapped)}
    if verify:
        inputs = spectrogram_like_inputs(num_channels=model.config.num_channels)
        if source["content"] == "learner":
            logit_difference, probability_difference = compare_with_learner(source["model"], model, inputs)
            verification.update(
                method="forward pass of the unpickled learner vs the converted model",
                num_inputs=inputs.shape[0],
                max_abs_logit_diff=logit_difference,
                max_abs_prob_diff=probability_difference,
            )
            if not logit_difference <= MAX_LOGIT_DIFFERENCE:
                raise ConversionError(
                    f"the converted model's logits differ from the learner's by up to {logit_difference:.3g} "
                    f"(allowed {MAX_LOGIT_DIFFERENCE}): the learner is not the architecture this converter assumes"
                )
        else:
            with torch.inference_mode():
                logits = model(input_features=inputs[:1]).logits
            if not torch.isfinite(logits).all():
                raise ConversionError(f"the converted model returns non-finite logits {logits.tolist()}")
            verification.update(
                method="bit-exact tensors and a finite forward pass", num_inputs=1, max_abs_logit_diff=None
            )
    report["verification"] = verification

    save_model_folder(model, os.fspath(output_dir), feature_extractor=feature_extractor, model_card=model_card)
    report["files"] = sorted(os.listdir(output_dir))
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert an OrcaHello fastai learner export or state_dict into a Transformers model folder."
    )
    parser.add_argument(
        "--input",
        required=True,
        help="model.pkl (learner export), .pt/.pth or .safetensors state_dict, or a folder in upstream's Hub layout "
        "(config.json + config.yaml + model.safetensors or model_v1.pt): converted with preset v1 as its default",
    )
    parser.add_argument("--output-dir", required=True, help="folder to write (created if needed)")
    parser.add_argument("--card", help="model card (README.md) to copy into the folder")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the forward-pass comparison (the key and shape checks still run)",
    )
    args = parser.parse_args(argv)

    model_card = None
    if args.card:
        with open(args.card, encoding="utf-8") as handle:
            model_card = handle.read()
    try:
        report = convert(args.input, args.output_dir, verify=not args.no_verify, model_card=model_card)
    except (ConversionError, UnsafePickleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
