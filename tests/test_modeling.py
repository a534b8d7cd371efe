"""The model's architecture (SPEC.md section 2), its outputs, and loading through the Auto classes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, tiny_config

from configuration_orcahello import OrcaHelloConfig
from modeling_orcahello import OrcaHelloForAudioClassification, OrcaHelloModel


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return OrcaHelloForAudioClassification(OrcaHelloConfig()).eval()


def test_default_config_is_production_resnet50(resnet50):
    assert sum(parameter.numel() for parameter in resnet50.parameters()) == 25_609_666
    assert len(resnet50.state_dict()) == 332  # as many tensors as the fastai learner's state_dict
    stem = resnet50.orcahello.resnet.embedder.embedder.convolution
    assert tuple(stem.weight.shape) == (64, 1, 7, 7) and stem.bias is None
    assert stem.stride == (2, 2) and stem.padding == (3, 3)
    head = resnet50.classifier
    assert head.pooled_norm.num_features == 4096 and head.dense.in_features == 4096
    assert head.dense.out_features == 512 and head.out_proj.out_features == 2
    assert head.pooled_dropout.p == 0.25 and head.hidden_dropout.p == 0.5
    assert resnet50.config.id2label == {0: "negative", 1: "positive"}
    assert resnet50.config.label2id == {"negative": 0, "positive": 1}


# torchvision's published parameter counts (ImageNet: 3 input channels, a 1000-class fully connected layer), less
# that layer and the stem's two extra input channels: the backbones OrcaHello's 1-channel spectrograms go through.
RESNET18_BACKBONE_PARAMETERS = 11_689_512 - (512 * 1000 + 1000) - 64 * 2 * 7 * 7
RESNET101_BACKBONE_PARAMETERS = 44_549_160 - (2048 * 1000 + 1000) - 64 * 2 * 7 * 7


def test_resnet18_and_resnet101_are_expressible():
    resnet18 = OrcaHelloForAudioClassification(
        OrcaHelloConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic")
    )
    assert sum(parameter.numel() for parameter in resnet18.orcahello.parameters()) == RESNET18_BACKBONE_PARAMETERS
    assert [len(stage.layers) for stage in resnet18.orcahello.resnet.encoder.stages] == [2, 2, 2, 2]
    assert resnet18.classifier.pooled_norm.num_features == 1024
    resnet101 = OrcaHelloForAudioClassification(OrcaHelloConfig(depths=[3, 4, 23, 3]))
    assert sum(parameter.numel() for parameter in resnet101.orcahello.parameters()) == RESNET101_BACKBONE_PARAMETERS
    assert [len(stage.layers) for stage in resnet101.orcahello.resnet.encoder.stages] == [3, 4, 23, 3]
    assert resnet101.classifier.pooled_norm.num_features == 4096


def test_output_shapes_and_last_feature_map(resnet50):
    with torch.inference_mode():
        features = resnet50.orcahello(torch.randn(2, 1, 256, 312))
        logits = resnet50(torch.randn(3, 1, 256, 312)).logits
    assert features.last_hidden_state.shape == (2, 2048, 8, 10)
    assert features.pooler_output.shape == (2, 4096)
    assert logits.shape == (3, 2)


def test_concat_pool_is_max_then_average():
    model = OrcaHelloModel(tiny_config()).eval()
    with torch.inference_mode():
        outputs = model(torch.randn(2, 1, 256, 312))
    feature_map = outputs.last_hidden_state
    channels = feature_map.shape[1]
    torch.testing.assert_close(outputs.pooler_output[:, :channels], feature_map.amax(dim=(2, 3)))
    torch.testing.assert_close(outputs.pooler_output[:, channels:], feature_map.mean(dim=(2, 3)))


def test_labels_give_the_cross_entropy_loss_and_gradients():
    model = OrcaHelloForAudioClassification(tiny_config()).train()
    inputs, labels = torch.randn(4, 1, 256, 312), torch.tensor([0, 1, 1, 0])
    outputs = model(inputs, labels=labels)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(outputs.logits, labels))
    outputs.loss.backward()
    assert model.classifier.out_proj.weight.grad is not None
    as_tuple = model.eval()(inputs, labels=labels, return_dict=False)
    assert as_tuple[0].ndim == 0 and as_tuple[1].shape == (4, 2)


@pytest.mark.parametrize(
    "bad_input, message",
    [
        (torch.randn(1, 256, 312), "shape"),
        (torch.randn(2, 3, 256, 312), "shape"),
        (torch.randn(0, 1, 256, 312), "empty batch"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_wrong_inputs_are_refused_clearly(bad_input, message):
    model = OrcaHelloForAudioClassification(tiny_config()).eval()
    with pytest.raises((ValueError, TypeError), match=message):
        model(bad_input)


def test_root_config_files_are_what_save_pretrained_writes(tmp_path):
    from orcahello.conversion.model_folder import write_configs

    write_configs(str(tmp_path))
    for name in ("config.json", "preprocessor_config.json"):
        expected = json.loads((tmp_path / name).read_text())
        committed = json.loads((REPO_ROOT / name).read_text())
        for volatile in ("transformers_version",):
            expected.pop(volatile, None)
            committed.pop(volatile, None)
        assert committed == expected, f"{name} is stale: run python -m orcahello.conversion.model_folder"


FRESH_PROCESS_CHECK = r"""
import json, sys, torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification
folder = sys.argv[1]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
classifier = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)
backbone = AutoModel.from_pretrained(folder, trust_remote_code=True)
extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
inputs = torch.load(sys.argv[2])
with torch.inference_mode():
    logits = classifier(input_features=inputs).logits
    pooled = backbone(input_features=inputs).pooler_output
print(json.dumps({
    "config": type(config).__name__, "classifier": type(classifier).__name__, "backbone": type(backbone).__name__,
    "extractor": type(extractor).__name__, "training": classifier.training,
    "logits": logits.tolist(), "pooled_sum": float(pooled.sum()),
}))
"""


def test_saved_model_reloads_through_auto_classes_in_a_fresh_process(tiny_model_folder, tmp_path):
    inputs = torch.randn(2, 1, 256, 312) * 20 - 40
    torch.save(inputs, tmp_path / "inputs.pt")
    model = OrcaHelloForAudioClassification.from_pretrained(tiny_model_folder).eval()
    with torch.inference_mode():
        expected_logits = model(inputs).logits
        expected_pooled = model.orcahello(inputs).pooler_output
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_CHECK, str(tiny_model_folder), str(tmp_path / "inputs.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["config"] == "OrcaHelloConfig"
    assert loaded["classifier"] == "OrcaHelloForAudioClassification"
    assert loaded["backbone"] == "OrcaHelloModel"
    assert loaded["extractor"] == "OrcaHelloFeatureExtractor"
    assert loaded["training"] is False
    assert torch.equal(torch.tensor(loaded["logits"]), expected_logits)
    assert loaded["pooled_sum"] == pytest.approx(float(expected_pooled.sum()), rel=1e-6)
