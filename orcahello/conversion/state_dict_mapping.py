# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
Map a source state_dict onto this repository's model: infer the ResNet's config from the keys and tensor shapes,
label the two classes, rename every key, and check everything against a freshly built
`OrcaHelloForAudioClassification` (no key missing, none unused, every shape equal) with [`map_state_dict`].
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from modeling_orcahello import OrcaHelloForAudioClassification

from .errors import ConversionError, short_list
from .key_formats import KEY_FORMATS, canonical_to_orcahello, orcahello_to_canonical
from .model_folder import default_config

EXPECTED_CLASS_NAMES = ("negative", "positive")

ARCHITECTURE_NAMES: dict[tuple[str, tuple[int, ...]], str] = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


def infer_architecture(canonical: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], int, str]:
    """
    The `OrcaHelloConfig` arguments of the ResNet the canonical state_dict describes: block type from the presence
    of a third convolution, depths from the largest block index of each stage, widths from tensor shapes.
    """
    if "conv1.weight" not in canonical:
        raise ConversionError("the checkpoint has no stem convolution (conv1.weight / 0.0.weight): not a ResNet")
    stage_blocks: dict[int, set[int]] = {}
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


def labels_for(class_names: Sequence[str] | None, num_labels: int) -> tuple[dict[int, str], dict[str, int]]:
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


def map_state_dict(
    source_state_dict: Mapping[str, torch.Tensor], key_format: str, class_names: Sequence[str] | None = None
) -> tuple[OrcaHelloForAudioClassification, dict[str, torch.Tensor], dict[str, Any]]:
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
        problems.append(f"missing keys: {short_list(from_canonical(orcahello_to_canonical(key)) for key in missing)}")
    if unexpected:
        problems.append(f"unexpected (unused) keys: {short_list(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {short_list(mismatched)}")
    if problems:
        raise ConversionError(
            f"the checkpoint ({description}) does not match an OrcaHello {architecture} model:\n  "
            + "\n  ".join(problems)
        )

    ordered = {key: mapped[key] for key in expected}
    model.load_state_dict(ordered, strict=True)
    details: dict[str, Any] = {
        "architecture": architecture,
        "config": settings,
        "class_names": [id2label[0], id2label[1]],
        "filled_num_batches_tracked": filled_counters,
    }
    return model, ordered, details
