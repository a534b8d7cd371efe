"""
Quantize a model folder to int8 for `precision="int8"`: NNCF's post-training quantization of the OpenVINO model,
calibrated on windows of real recordings.

The recordings given are cut into each preset's windows and featurized as the pipeline does, and the whole network
(`input_features -> logits`) is exported, read into OpenVINO and quantized with `nncf.quantize` on an even spread of
those windows (an equal share of each preset's: both presets' windows are 256 x 312, and one int8 model serves
both), its first convolution and its linear head left in float32.
Two measured choices (`benchmarks/results_int8_graph_xeon_amx.json`, docs/speed.md):

- The whole window, not the padding-skipping graph float32 runs (`padding_skipping_orcahello`): that graph's slices
  and concatenations around every residual unit keep OpenVINO from fusing the int8 convolutions with their
  quantizers, and left half of ResNet50's 1x1 convolutions in float32, so its int8 model ran at 1.6x float32 where
  the whole network's runs at 8-10x, though it computes 22% more.
- The first convolution (one input channel, the spectrogram's decibels) and the linear layers in float32: they
  halve the worst int8 deviation of an adapted head's logits, which a head fitted to standardized features
  magnifies, for about 15% of the int8 time.
 Each int8 model is written into the model folder
as a side file named by what it depends on (`engines_orcahello.int8_model_stem`: the weights' sha256, the geometry,
the OpenVINO version; then the NNCF version), atomically. Quantizing is this command's job alone: nothing quantizes
at import or on a pipeline call, and scoring with the int8 model needs OpenVINO only. The fast mode's rule then
re-scores in float32 every window whose int8 score could change a decision (`fast_mode_orcahello`).

    orcahello quantize MODEL_FOLDER --calibration recordings/*.wav
"""

import dataclasses
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

# Windows the calibration sees (NNCF's default subset size), spread evenly over every window of the recordings.
CALIBRATION_WINDOWS = 300


@dataclasses.dataclass(frozen=True)
class QuantizeOptions:
    """
    What `orcahello quantize` does.

    Args:
        model (`str`): the model folder; the int8 models are written into it.
        calibration (`tuple[str, ...]`): recordings whose windows calibrate the quantization.
        presets (`tuple[str, ...]`): the presets whose windows the int8 model is calibrated on (and shaped for).
        calibration_windows (`int`): how many windows calibrate, shared evenly among the presets, each preset's
            spread evenly over the recordings' windows.
    """

    model: str
    calibration: tuple[str, ...]
    presets: tuple[str, ...] = ("fastai", "v1")
    calibration_windows: int = CALIBRATION_WINDOWS


def quantize_for_openvino(
    module: torch.nn.Module, example_shape: tuple[int, ...], calibration_features: torch.Tensor
) -> Any:
    """
    `module` (`input_features -> logits`, eval mode) as an OpenVINO model quantized to int8 by NNCF, calibrated on
    `calibration_features` `(windows, 1, 256, 312)`, one window at a time. Refused on CPUs without int8 dot products.
    """
    from engines_orcahello import cpu_has_int8_instructions, export_onnx

    if not cpu_has_int8_instructions():
        raise ValueError("int8 needs a CPU with int8 dot products (avx512_vnni, avx_vnni or amx_int8 flags)")
    import nncf
    import openvino

    with tempfile.TemporaryDirectory(prefix="orcahello-int8-") as folder:
        onnx_path = os.path.join(folder, "model.onnx")
        export_onnx(module, example_shape, onnx_path)
        network = openvino.Core().read_model(onnx_path)
    windows = [window[None].numpy().astype(np.float32) for window in calibration_features.cpu()]
    first_convolution = next(op.get_friendly_name() for op in network.get_ordered_ops()
                             if op.get_type_name() == "Convolution")  # fmt: skip
    # Left in float32 (see the module's docstring): the stem convolution and the head's linear layers.
    kept_in_float32 = nncf.IgnoredScope(names=[first_convolution], types=["MatMul"], validate=False)
    return nncf.quantize(
        network,
        nncf.Dataset(windows),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(windows),
        ignored_scope=kept_in_float32,
    )


def save_int8_model(network: Any, path: str) -> None:
    """Write the IR pair (`path`, an `.xml`, and its `.bin`) atomically: a reader finds the whole model or none."""
    import openvino

    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=folder) as staging:
        staged = os.path.join(staging, "model.xml")
        openvino.save_model(network, staged, compress_to_fp16=False)
        os.replace(staged[:-4] + ".bin", path[:-4] + ".bin")  # the weights first: the .xml is what is looked for
        os.replace(staged, path)


def calibration_windows(
    detector: "OrcaHelloAudioClassificationPipeline",
    paths: tuple[str, ...],
    preset: str,
    count: int = CALIBRATION_WINDOWS,
) -> torch.Tensor:
    """`count` spectrograms spread evenly over every window of `paths` under `preset`."""
    import soundfile

    frontend = detector.resolve_parameters(preset=preset).preprocess
    features: list[torch.Tensor] = []
    for path in paths:
        if soundfile.info(str(path)).duration < frontend["window_seconds"]:
            continue  # shorter than one window of this preset: nothing to calibrate on
        features.extend(chunk["input_features"] for chunk in detector.preprocess(str(path), **frontend))
    if not features:
        raise ValueError(f"no window to calibrate on: the recordings are all shorter than a {preset} window")
    every_window = torch.cat(features)
    chosen = torch.linspace(0, len(every_window) - 1, min(count, len(every_window))).long()
    return every_window[chosen]


def quantize_model_folder(options: QuantizeOptions) -> list[str]:
    """
    Write the int8 model of each input shape the presets' windows have into the model folder; the paths written.
    Presets whose windows share a shape share one int8 model (the scorer finds it by weights and shape), calibrated on
    an even share of each preset's windows: the fastai and v1 windows are both 256 x 312, with 157 and 235 frames
    of content.
    """
    import nncf

    from engines_orcahello import int8_model_stem, scoring_module

    from . import models

    detector = models.load_pipeline(options.model, "cpu")
    model = detector.model.eval()
    share = max(1, options.calibration_windows // len(options.presets))
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for preset in options.presets:
        windows = calibration_windows(detector, options.calibration, preset, share)
        by_shape.setdefault(tuple(windows[:1].shape), []).append(windows)
    written = []
    for example_shape, windows_of_presets in by_shape.items():
        path = os.path.join(options.model, f"{int8_model_stem(model, example_shape)}-nncf{nncf.__version__}.xml")
        module = scoring_module(model, example_shape).eval()  # the whole window: no padding skipping
        save_int8_model(quantize_for_openvino(module, example_shape, torch.cat(windows_of_presets)), path)
        written.append(path)
    return written


def quantize_command(options: QuantizeOptions) -> int:
    """`orcahello quantize`: the exit status (0, or 2 with one line when the model cannot be quantized here)."""
    try:
        written = quantize_model_folder(options)
    except (ValueError, ImportError) as error:
        print(f"orcahello quantize: {error}")
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
