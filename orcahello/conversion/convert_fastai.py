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

The steps live in their own modules: reading the input (`checkpoint_reading.py`, through the restricted unpickler
of `learner_export.py` for a learner), its key formats (`key_formats.py`), mapping and checking the state_dict
(`state_dict_mapping.py`); this module verifies the result, writes the folder, and is the command line.

Usage:

```bash
orcahello convert --input model.pkl --output-dir orcahello-srkw-detector-v1 --card README.md
python -m orcahello.conversion.convert_fastai --input model.pkl --output-dir orcahello-srkw-detector-v1   # the same
```
"""

import dataclasses
import json
import os
import sys
import time
from typing import Any

import torch

from configuration_orcahello import resolve_inference_settings
from feature_extraction_orcahello import OrcaHelloFeatureExtractor

from .checkpoint_reading import read_checkpoint
from .errors import ConversionError, short_list
from .hub_v1_layout import (
    CALL_CLASS_INDEX,
    HubLayoutError,
    hub_weights_path,
    is_hub_v1_folder,
    read_hub_v1_settings,
)
from .key_formats import detect_key_format
from .model_folder import save_model_folder
from .pickle_allow_list import UnsafePickleError
from .state_dict_mapping import EXPECTED_CLASS_NAMES, map_state_dict

# A conversion fails when the converted model's logits differ from the learner's own by more than this.
MAX_LOGIT_DIFFERENCE = 1e-4


# ----------------------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------------------


def spectrogram_like_inputs(
    num_channels: int = 1, num_mels: int = 256, num_frames: int = 312, seed: int = 0
) -> torch.Tensor:
    """
    Inputs in the range the detector sees (dB values around -40 with a spread of ~20): two full spectrograms and
    two whose last 155 frames are 0 dB, as the frontend pads a 2-second window (157 frames) to 312.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(4, num_channels, num_mels, num_frames, generator=generator) * 20 - 40
    inputs[2:, ..., 157:] = 0.0
    return inputs


def check_tensors_equal(model: torch.nn.Module, mapped_state_dict: dict[str, torch.Tensor]) -> int:
    """Every tensor of the converted model equals its source bit for bit; returns the number checked."""
    converted = model.state_dict()
    different = [
        key
        for key, source in mapped_state_dict.items()
        if not torch.equal(converted[key], source.to(device=converted[key].device, dtype=converted[key].dtype))
    ]
    if different:
        raise ConversionError(f"converted tensors differ from their source: {short_list(different)}")
    return len(converted)


@torch.inference_mode()
def compare_with_learner(
    reference_model: torch.nn.Module, converted_model: torch.nn.Module, inputs: torch.Tensor
) -> tuple[float, float]:
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


def convert(
    input_path: str | os.PathLike, output_dir: str | os.PathLike, verify: bool = True, model_card: str | None = None
) -> dict[str, Any]:
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
        call_class_index = config_arguments.pop("call_class_index")
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

    verification: dict[str, Any] = {"tensors_bit_exact": check_tensors_equal(model, mapped)}
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
    if hub_settings is not None and call_class_index != CALL_CLASS_INDEX:
        # The folder's P(call) is its head's output 0 (upstream's predict_call reads the softmax's column at
        # call_class_index): this model reads output 1, so the classifier's two rows trade places.
        with torch.no_grad():
            for parameter in (model.classifier.out_proj.weight, model.classifier.out_proj.bias):
                parameter.copy_(parameter.flip(0))
        report["warnings"].append(
            f"model.call_class_index={call_class_index}: the classifier's rows were swapped, so that P(call) is "
            f"output {CALL_CLASS_INDEX} as this model reads it"
        )

    save_model_folder(model, os.fspath(output_dir), feature_extractor=feature_extractor, model_card=model_card)
    report["files"] = sorted(os.listdir(output_dir))
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """
    What `orcahello convert` can be told (its command-line options; see `convert`).

    Args:
        input (`str`): a learner export (`model.pkl`), a state_dict (`.pt`, `.pth`, `.safetensors`) or a folder in
            upstream's Hub layout.
        output_dir (`str`): the model folder to write (created if needed).
        card (`str`, *optional*): a model card (README.md) to copy into the folder.
        verify (`bool`, *optional*, defaults to `True`): compare the converted model's forward pass with the
            learner's (the key and shape checks always run).
    """

    input: str
    output_dir: str
    card: str | None = None
    verify: bool = True


def convert_command(options: ConvertOptions) -> int:
    """`orcahello convert` with `options`: prints the conversion report; returns the exit status (1 on a refusal)."""
    model_card = None
    if options.card:
        with open(options.card, encoding="utf-8") as handle:
            model_card = handle.read()
    try:
        report = convert(options.input, options.output_dir, verify=options.verify, model_card=model_card)
    except (ConversionError, UnsafePickleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m orcahello.conversion.convert_fastai ...`: `orcahello convert ...`; returns the exit status."""
    from ..cli import main as command_line

    return command_line(["convert", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
