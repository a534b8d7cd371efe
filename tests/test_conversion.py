"""
Tests for the checkpoint converter (`orcahello.conversion.convert_fastai`), its restricted unpickler and the upload
check.

The two stand-in learners of the test data's fixtures/legacy/ were exported by real fastai 1.0.61: the ResNet50 one in
torch's legacy non-zip format, the ResNet18 one in the zip format. Production's per-window probabilities for every
fixture WAV are stored next to them, with the exact model inputs (spectrograms) of up to three windows per file.
"""

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LEGACY, REPO_ROOT
from safetensors.torch import load_file, save_file

from modeling_orcahello import OrcaHelloForAudioClassification
from orcahello.conversion.convert_fastai import convert, main
from orcahello.conversion.errors import ConversionError
from orcahello.conversion.learner_export import load_learner_export
from orcahello.conversion.pickle_allow_list import UnsafePickleError
from orcahello.conversion.restricted_unpickler import RESTRICTED_PICKLE_MODULE

OUTPUTS = LEGACY / "outputs"
R50_LEARNER = LEGACY / "model_resnet50_legacy_format" / "model.pkl"
R18_LEARNER = LEGACY / "model_resnet18_zip_format" / "model.pkl"

MODEL_FOLDER_FILES = (
    "model.safetensors",
    "config.json",
    "preprocessor_config.json",
    "configuration_orcahello.py",
    "modeling_orcahello.py",
    "feature_extraction_orcahello.py",
    "audio_orcahello.py",
    "hls_orcahello.py",
    "hls_playlist_orcahello.py",
    "hls_stream_orcahello.py",
    "hls_timeline_orcahello.py",
    "http_orcahello.py",
    "pipeline_orcahello.py",
    "results_orcahello.py",
)
MODEL_CARD = """---
library_name: transformers
pipeline_tag: audio-classification
license: other
license_name: orcahello-rail-ams
license_link: https://github.com/orcasound/orcahello/blob/main/LICENSE
---
# OrcaHello stand-in (test card)
"""
# Every global the fixture learners' pickles name (LEGACY_NOTES.md section 4), read statically; ResNet18 has
# BasicBlock where ResNet50 has Bottleneck.
LEARNER_PICKLE_GLOBALS = {
    "_codecs.encode", "audio.data.AudioList", "builtins.float", "builtins.int", "builtins.set",
    "collections.OrderedDict", "fastai.basic_train.Learner", "fastai.basic_train.Recorder",
    "fastai.data_block.CategoryList", "fastai.data_block.CategoryProcessor", "fastai.layers.AdaptiveConcatPool2d",
    "fastai.layers.Flatten", "fastai.layers.FlattenedLoss", "fastai.metrics.accuracy", "functools.partial",
    "numpy.core.multiarray.scalar", "numpy.dtype", "torch.FloatStorage", "torch.LongStorage",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor_v2", "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.batchnorm.BatchNorm1d", "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.conv.Conv2d", "torch.nn.modules.dropout.Dropout",
    "torch.nn.modules.linear.Linear", "torch.nn.modules.loss.CrossEntropyLoss",
    "torch.nn.modules.pooling.AdaptiveAvgPool2d", "torch.nn.modules.pooling.AdaptiveMaxPool2d",
    "torch.nn.modules.pooling.MaxPool2d", "torch.optim.adam.Adam",
}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Helpers and shared conversions
# ----------------------------------------------------------------------------------------------------------------


def fastai_to_port_key(key):
    """SPEC section 2's mapping, written out independently of the converter: fastai learner key -> port key."""
    part, index, rest = key.split(".", 2)
    if part == "0":
        body = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}[index]
        return f"model.{body}.{rest}"
    head = {"2": "fc.1", "4": "fc.3", "6": "fc.5", "8": "fc.7"}[index]
    return f"model.{head}.{rest}"


def port_state_dict(learner_path):
    """A learner's weights renamed to the upstream port's keys, as `model_v1.pt` holds them."""
    learner = load_learner_export(str(learner_path))
    return {fastai_to_port_key(key): tensor.clone() for key, tensor in learner["model"].state_dict().items()}


def assert_same_weights(folder, reference_folder):
    converted = load_file(Path(folder) / "model.safetensors")
    reference = load_file(Path(reference_folder) / "model.safetensors")
    assert converted.keys() == reference.keys()
    for key, tensor in reference.items():
        assert torch.equal(converted[key], tensor), key


def stored_model_inputs():
    """(wav stem, spectrograms [k, 1, 256, 312], their window start times) for every fixture WAV."""
    for npz_path in sorted((OUTPUTS / "fastai_r50_legacy").glob("*.fastai_clips.npz")):
        with np.load(npz_path) as clips:
            yield npz_path.name.split(".")[0], clips["spectrogram"], clips["spectrogram_clip_start_s"].tolist()


def production_probabilities(wav_stem, learner):
    """Production's P(positive) per window start time (before smoothing) for one WAV and one learner."""
    if learner == "fastai_r50_legacy":
        with np.load(OUTPUTS / learner / f"{wav_stem}.fastai_clips.npz") as clips:
            return dict(zip(clips["clip_start_s"].tolist(), clips["prob_positive"].tolist()))
    with open(OUTPUTS / learner / f"{wav_stem}.fastai_r18zip_predict.json") as handle:
        windows = json.load(handle)["per_clip_raw_sorted_by_start"]
    return {window["start_s"]: window["prob_positive"] for window in windows}


@pytest.fixture(scope="module")
def r50_conversion(tmp_path_factory):
    """The ResNet50 legacy-format learner converted once for the whole module: (folder, report)."""
    folder = tmp_path_factory.mktemp("orcahello_r50")
    return folder, convert(R50_LEARNER, folder)


@pytest.fixture(scope="module")
def r18_conversion(tmp_path_factory):
    """The ResNet18 zip-format learner converted once, with a model card: (folder, report)."""
    folder = tmp_path_factory.mktemp("orcahello_r18")
    return folder, convert(R18_LEARNER, folder, model_card=MODEL_CARD)


@pytest.fixture(scope="module")
def r18_port_state_dict():
    return port_state_dict(R18_LEARNER)


# ----------------------------------------------------------------------------------------------------------------
# The fixture learners
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_resnet50_legacy_learner_converts(r50_conversion):
    folder, report = r50_conversion
    assert report["file_format"] == "legacy" and report["content"] == "learner" and report["key_format"] == "fastai"
    assert report["architecture"] == "resnet50"
    assert report["config"]["depths"] == [3, 4, 6, 3] and report["config"]["layer_type"] == "bottleneck"
    assert report["num_tensors"] == 332  # 320 body + 12 head tensors, num_batches_tracked included
    assert report["num_parameters"] == 25_609_666
    assert report["class_names"] == ["negative", "positive"]
    assert set(report["pickle_globals"]) == LEARNER_PICKLE_GLOBALS | {"torchvision.models.resnet.Bottleneck"}
    assert report["verification"]["max_abs_logit_diff"] <= 1e-4
    for name in MODEL_FOLDER_FILES:
        assert (folder / name).is_file(), name


@pytest.mark.needs_test_data
def test_resnet18_zip_learner_converts(r18_conversion):
    folder, report = r18_conversion
    assert report["file_format"] == "zip" and report["content"] == "learner"
    assert report["architecture"] == "resnet18"
    assert report["config"]["depths"] == [2, 2, 2, 2] and report["config"]["layer_type"] == "basic"
    assert report["config"]["hidden_sizes"] == [64, 128, 256, 512]
    assert report["num_tensors"] == 134
    assert set(report["pickle_globals"]) == LEARNER_PICKLE_GLOBALS | {"torchvision.models.resnet.BasicBlock"}
    assert report["verification"]["max_abs_logit_diff"] <= 1e-4
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["layer_type"] == "basic"
    assert (folder / "README.md").read_text() == MODEL_CARD


@pytest.mark.needs_test_data
@pytest.mark.parametrize("learner", ["fastai_r50_legacy", "fastai_r18_zip"])
def test_probabilities_match_production_on_every_stored_spectrogram(learner, request):
    # The ResNet18 run stored no spectrograms of its own: the frontend does not depend on the model, so the ResNet50
    # run's stored inputs are exactly what production fed the ResNet18 learner for the same windows.
    conversion = "r50_conversion" if learner == "fastai_r50_legacy" else "r18_conversion"
    folder, _ = request.getfixturevalue(conversion)
    model = OrcaHelloForAudioClassification.from_pretrained(folder).eval()
    worst, checked = 0.0, 0
    for wav_stem, spectrograms, starts in stored_model_inputs():
        expected = production_probabilities(wav_stem, learner)
        with torch.inference_mode():
            probabilities = model(input_features=torch.from_numpy(spectrograms)).logits.softmax(-1)[:, 1]
        for start, probability in zip(starts, probabilities.tolist()):
            assert abs(probability - expected[start]) <= 1e-4, (wav_stem, start, probability, expected[start])
            worst = max(worst, abs(probability - expected[start]))
            checked += 1
    assert checked == 31  # 3 windows for each of 10 files, 1 for the 2.5 s file
    print(f"{learner}: max |delta P(positive)| = {worst:.3g} over {checked} windows")


@pytest.mark.needs_test_data
def test_verification_catches_a_learner_that_computes_something_else(tmp_path, monkeypatch):
    # A learner whose blocks are not the ResNet blocks the converter assumes (here: no residual connection) has the
    # same keys and shapes, so only the forward-pass comparison can catch it.
    from orcahello.conversion import pickle_allow_list

    def forward_without_residual(self, hidden_state):
        out = self.relu(self.bn1(self.conv1(hidden_state)))
        return self.relu(self.bn2(self.conv2(out)))

    monkeypatch.setattr(pickle_allow_list.TorchvisionBasicBlock, "forward", forward_without_residual)
    with pytest.raises(ConversionError, match="logits differ from the learner's by up to"):
        convert(R18_LEARNER, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# State_dict inputs
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_port_format_pt_and_safetensors_match_the_learner_conversion(r50_conversion, tmp_path):
    reference_folder, _ = r50_conversion
    state_dict = port_state_dict(R50_LEARNER)
    torch.save(state_dict, tmp_path / "model_v1.pt")
    save_file(state_dict, str(tmp_path / "model.safetensors"))
    for source in ("model_v1.pt", "model.safetensors"):
        report = convert(tmp_path / source, tmp_path / f"from_{source}")
        assert report["content"] == "state_dict" and report["key_format"] == "port"
        assert report["architecture"] == "resnet50"
        assert report["verification"]["tensors_bit_exact"] == 332
        assert_same_weights(tmp_path / f"from_{source}", reference_folder)


@pytest.mark.needs_test_data
def test_fastai_and_own_key_formats_round_trip(r18_conversion, tmp_path):
    reference_folder, _ = r18_conversion
    learner = load_learner_export(str(R18_LEARNER))
    # fastai's learn.save() format: {"model": state_dict, "opt": ...}, here in the legacy serialization
    torch.save(
        {"model": learner["model"].state_dict(), "opt": {}},
        tmp_path / "stage-1.pth",
        _use_new_zipfile_serialization=False,
    )
    report = convert(tmp_path / "stage-1.pth", tmp_path / "from_fastai")
    assert report["key_format"] == "fastai" and report["file_format"] == "legacy"
    assert_same_weights(tmp_path / "from_fastai", reference_folder)
    # this repository's own keys (a converted folder's weights) convert to themselves
    report = convert(reference_folder / "model.safetensors", tmp_path / "from_own")
    assert report["key_format"] == "orcahello"
    assert_same_weights(tmp_path / "from_own", reference_folder)


# ----------------------------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------------------------


class RunsShellCommand:
    """Unpickling this runs a shell command: what a malicious model.pkl does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize(
    "zip_format, protocol", [(False, 2), (True, 2), (True, 4)], ids=["legacy", "zip", "zip-protocol4"]
)
def test_malicious_pickle_is_refused_without_running(zip_format, protocol, tmp_path):
    marker = tmp_path / "pwned"
    payload = {"model": RunsShellCommand(f"touch {shlex.quote(str(marker))}"), "data": {}}
    path = tmp_path / "model.pkl"
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format, pickle_protocol=protocol)

    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system") as refusal:
        convert(path, tmp_path / "out")
    assert "refusing" in str(refusal.value)
    # The runtime guard alone (without the converter's static scan) stops it too: both of torch's loaders send
    # every global through the restricted find_class.
    with pytest.raises(UnsafePickleError, match=r"system"):
        torch.load(path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE_MODULE)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.needs_test_data
@pytest.mark.parametrize("learner", [R50_LEARNER, R18_LEARNER], ids=["legacy", "zip"])
def test_truncated_learner_is_refused(learner, tmp_path):
    data = learner.read_bytes()
    path = tmp_path / "model.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated"):
        convert(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_learner_pickles_are_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ConversionError, match=r"not a fastai learner export nor a state_dict: it holds list"):
        convert(tmp_path / "list.pt", tmp_path / "out")
    torch.save({"epoch": 3}, tmp_path / "dict.pt")
    with pytest.raises(ConversionError, match=r"a dict with keys \['epoch'\]"):
        convert(tmp_path / "dict.pt", tmp_path / "out")
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump({"model": None}, handle, protocol=2)
    with pytest.raises(ConversionError, match="a pickle but not a torch.save file"):
        convert(tmp_path / "plain.pkl", tmp_path / "out")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ConversionError, match="neither a torch checkpoint"):
        convert(tmp_path / "notes.txt", tmp_path / "out")


@pytest.mark.needs_test_data
def test_state_dict_with_missing_key_is_refused(r18_port_state_dict, tmp_path):
    state_dict = dict(r18_port_state_dict)
    del state_dict["model.layer2.1.bn2.running_var"]
    torch.save(state_dict, tmp_path / "missing.pt")
    with pytest.raises(ConversionError, match=r"missing keys: model\.layer2\.1\.bn2\.running_var"):
        convert(tmp_path / "missing.pt", tmp_path / "out")


@pytest.mark.needs_test_data
def test_state_dict_with_extra_key_is_refused(r18_port_state_dict, tmp_path):
    state_dict = {**r18_port_state_dict, "model.fc.9.weight": torch.zeros(2, 2)}
    save_file(state_dict, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ConversionError, match=r"unexpected \(unused\) keys: model\.fc\.9\.weight"):
        convert(tmp_path / "extra.safetensors", tmp_path / "out")


@pytest.mark.needs_test_data
def test_state_dict_with_mismatched_shape_is_refused(r18_port_state_dict, tmp_path):
    state_dict = {**r18_port_state_dict, "model.layer1.0.conv2.weight": torch.zeros(64, 64, 5, 5)}
    torch.save(state_dict, tmp_path / "shape.pt")
    expected = r"shape mismatch: model\.layer1\.0\.conv2\.weight has shape \(64, 64, 5, 5\), expected \(64, 64, 3, 3\)"
    with pytest.raises(ConversionError, match=expected):
        convert(tmp_path / "shape.pt", tmp_path / "out")


@pytest.mark.needs_test_data
def test_three_class_checkpoint_is_refused(r18_port_state_dict, tmp_path):
    state_dict = {**r18_port_state_dict, "model.fc.7.weight": torch.zeros(3, 512), "model.fc.7.bias": torch.zeros(3)}
    torch.save(state_dict, tmp_path / "three.pt")
    with pytest.raises(ConversionError, match="3-class classifier.*exactly 2 classes"):
        convert(tmp_path / "three.pt", tmp_path / "out")


def test_unknown_key_format_is_refused(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="cannot tell the key format"):
        convert(tmp_path / "other.pt", tmp_path / "out")


# ----------------------------------------------------------------------------------------------------------------
# Command lines
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_cli_converts_the_resnet18_learner(tmp_path):
    card = tmp_path / "README.md"
    card.write_text(MODEL_CARD)
    output_dir = tmp_path / "orcahello"
    command = [
        sys.executable,
        "-m",
        "orcahello.conversion.convert_fastai",
        "--input",
        str(R18_LEARNER),
        "--output-dir",
        str(output_dir),
        "--card",
        str(card),
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["architecture"] == "resnet18" and report["verification"]["max_abs_logit_diff"] <= 1e-4
    for name in MODEL_FOLDER_FILES + ("README.md",):
        assert (output_dir / name).is_file(), name


def test_cli_reports_refusals_as_errors(tmp_path, capsys):
    torch.save({"model": RunsShellCommand("true")}, tmp_path / "model.pkl")
    assert main(["--input", str(tmp_path / "model.pkl"), "--output-dir", str(tmp_path / "out")]) == 1
    assert "error: refusing to load" in capsys.readouterr().err


@pytest.mark.needs_test_data
def test_upload_validates_and_never_pushes_without_a_token(r18_conversion, tmp_path, monkeypatch, capsys):
    from orcahello.conversion import upload

    folder, _ = r18_conversion
    pushes = []
    monkeypatch.setattr(upload, "upload", lambda *args, **kwargs: pushes.append(args) or "https://hub/commit")
    monkeypatch.delenv("HF_TOKEN", raising=False)

    assert upload.main([str(folder), "--repo-id", "someone/test", "--dry-run", "--token", "hf_test"]) == 0
    assert upload.main([str(folder), "--repo-id", "someone/test"]) == 0
    assert pushes == []
    assert "nothing was pushed" in capsys.readouterr().out
    assert upload.main([str(folder), "--token", "hf_test", "--repo-id", "someone/test"]) == 0
    assert pushes == [(str(folder), "someone/test", "hf_test", None)]

    # No default repository: the user names the one to push to.
    with pytest.raises(SystemExit):
        upload.main([str(folder), "--dry-run"])
    assert "--repo-id" in capsys.readouterr().err

    # Stand-in or adapted weights are refused, dry run included, unless asked for by name.
    for key, value in (("synthetic_weights", True), ("adapted_head", {"layer": "pooled"})):
        derived = tmp_path / f"derived-{key}"
        shutil.copytree(folder, derived)
        config = json.loads((derived / "config.json").read_text())
        config[key] = value
        (derived / "config.json").write_text(json.dumps(config))
        assert upload.derived_weights(str(derived)), key
        assert upload.main([str(derived), "--repo-id", "someone/test", "--dry-run"]) == 1
        assert "--allow-derived-weights" in capsys.readouterr().err
    assert upload.derived_weights(str(folder)) == []
    arguments = [str(tmp_path / "derived-synthetic_weights"), "--repo-id", "someone/test", "--dry-run"]
    assert upload.main([*arguments, "--allow-derived-weights"]) == 0

    # A card without the weights' licence metadata, and a folder without weights, are refused with the reason.
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    (broken / "README.md").write_text(MODEL_CARD.replace("license: other", "license: mit").replace("license_link", "x"))
    with pytest.raises(upload.ModelFolderError) as refusal:
        upload.validate_model_folder(str(broken))
    message = str(refusal.value)
    assert "model.safetensors is missing" in message
    assert "'license' is 'mit', expected 'other'" in message and "'license_link' is missing" in message
