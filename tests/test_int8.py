"""
`precision="int8"`: OpenVINO's int8 model made by `orcahello quantize` (NNCF), scored with the fast mode's rule, so
that every decision is float32's; refused with one line where it cannot run or has no int8 model.
"""

import shutil

import pytest
import soundfile
from conftest import REAL_AUDIO, REPO_ROOT, legacy_wavs

pytest.importorskip("openvino")


def int8_runs_here():
    from engines_orcahello import cpu_has_int8_instructions

    return cpu_has_int8_instructions()


def test_int8_is_refused_on_a_cpu_without_int8_dot_products(monkeypatch):
    import torch

    import engines_orcahello

    monkeypatch.setattr(engines_orcahello, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    with pytest.raises(ValueError, match=r"int8 dot products \(avx512_vnni, avx_vnni or amx_int8"):
        engines_orcahello.resolve_engine("auto", torch.device("cpu"), torch.float32, "int8")


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_int8_runs_on_openvino_only(engine):
    import torch

    from engines_orcahello import resolve_engine

    if not int8_runs_here():
        pytest.skip("this CPU has no int8 dot products")
    with pytest.raises(ValueError, match="engine='openvino' only"):
        resolve_engine(engine, torch.device("cpu"), torch.float32, "int8")


def test_int8_without_a_quantized_model_says_how_to_make_one(tiny_pipeline):
    import numpy as np

    if not int8_runs_here():
        pytest.skip("this CPU has no int8 dot products")
    with pytest.raises(ValueError, match=r"run `orcahello quantize .* --calibration RECORDINGS"):
        tiny_pipeline(np.zeros(5 * 48000, np.int16), sampling_rate=48000, precision="int8")


def test_the_int8_model_is_the_whole_network_with_its_stem_and_head_in_float32(tiny_pipeline):
    """The quantized graph is the whole window's (no padding-skipping slices) and leaves the first convolution and
    the linear layers unquantized: no activation quantizer feeds them, and their weights stay float32."""
    pytest.importorskip("nncf")
    import torch

    from engines_orcahello import scoring_module
    from orcahello.quantize import quantize_for_openvino

    if not int8_runs_here():
        pytest.skip("this CPU has no int8 dot products")
    model = tiny_pipeline.model.eval()
    windows = torch.randn(16, 1, 256, 312, generator=torch.Generator().manual_seed(0))
    shape = (1, 1, 256, 312)
    network = quantize_for_openvino(scoring_module(model, shape).eval(), shape, windows)
    operations = network.get_ordered_ops()
    kinds = [operation.get_type_name() for operation in operations]
    assert "FakeQuantize" in kinds  # quantized at all
    assert "Tile" not in kinds and "Slice" not in kinds  # not the padding-skipping graph

    def producer(operation, port):
        return operation.input_value(port).get_node()

    convolutions = [operation for operation in operations if operation.get_type_name() == "Convolution"]
    matmuls = [operation for operation in operations if operation.get_type_name() == "MatMul"]
    assert matmuls
    for kept in [convolutions[0], *matmuls]:
        assert producer(kept, 0).get_type_name() != "FakeQuantize", kept.get_friendly_name()
        weight = producer(kept, 1)
        assert weight.get_type_name() == "Constant" and weight.get_element_type().get_type_name() == "f32"
    quantized = [conv for conv in convolutions[1:] if producer(conv, 0).get_type_name() == "FakeQuantize"]
    assert len(quantized) >= len(convolutions) // 2


@pytest.mark.needs_test_data
@pytest.mark.timeout(2400)  # two NNCF quantizations of ResNet50, then every recording scored three ways
def test_int8_makes_float32s_decisions_on_every_recording(resnet50_folder, tmp_path):
    """The stand-in quantized on the fixtures' and real recordings' windows, then every one of them scored in int8:
    every decision equals float32's, under both presets."""
    pytest.importorskip("nncf")
    from transformers import pipeline

    if not int8_runs_here():
        pytest.skip("this CPU has no int8 dot products")
    folder = tmp_path / "model"
    shutil.copytree(resnet50_folder, folder)
    every_recording = legacy_wavs() + sorted(REAL_AUDIO.glob("*.wav"))
    # 48 windows of every recording calibrate (300 by default): quicker, and the decisions are exact whatever the
    # calibration; the margin's premise is checked by the pipeline on every re-scored window.
    completed = run_orcahello_cli_command(
        "quantize", folder, "--calibration", *every_recording, "--calibration-windows", 48
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    written = sorted(folder.glob("int8-*.xml"))
    # One int8 model: both presets' windows are 256 x 312 (calibrated on a share of each).
    assert len(written) == 1 and all(path.with_suffix(".bin").exists() for path in written)
    detector = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    for preset in ("fastai", "v1"):
        window_seconds = detector.resolve_parameters(preset=preset).preprocess["window_seconds"]
        rescored = []
        for path in every_recording:
            if soundfile.info(str(path)).duration < window_seconds:
                continue
            reference = detector(str(path), preset=preset, return_timestamps=True)
            fast = detector(str(path), preset=preset, return_timestamps=True, precision="int8")
            rescored.append(detector.last_rescored_fraction)
            assert fast["local_predictions"] == reference["local_predictions"], (preset, path.name)
            assert fast["global_prediction"] == reference["global_prediction"], (preset, path.name)
            assert fast["label"] == reference["label"], (preset, path.name)
        # The fast mode ran (it gives way to float32 for good if a re-scored window breaks half the margin).
        assert rescored and (rescored[0] is not None or detector.fast_mode_withdrawn), preset


def run_orcahello_cli_command(*arguments):
    """`orcahello COMMAND ARGUMENTS` in a subprocess (`run_orcahello_cli` runs `detect`)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "orcahello.cli", *map(str, arguments)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
