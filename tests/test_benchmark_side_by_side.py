"""The pure parts of benchmarks/production_side_by_side.py: no production environment, no timing."""

import importlib.util
import os

import pytest

BENCHMARK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                         "production_side_by_side.py")  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("production_side_by_side", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avx_vnni avx512_bf16 amx_tile amx_bf16 amx_int8 avx512_vnni
bogomips\t: 4000.00

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse
"""

ZEN2_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 sse4_2 avx avx2 fma f16c avx512 not_a_flag
"""


def production_result(local_predictions, global_prediction, confidences=None, global_confidence=0):
    return {
        "local_predictions": local_predictions,
        "local_confidences": confidences if confidences is not None else [0.1] * len(local_predictions),
        "global_prediction": global_prediction,
        "global_confidence": global_confidence,
    }


def test_cpu_description_lists_the_vector_extensions_of_the_first_processor(bench):
    description = bench.cpu_description(CPUINFO)
    assert description["model_name"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert description["vector_extensions"] == [
        "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
        "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
    ]  # fmt: skip


def test_cpu_description_matches_whole_flags_only(bench):
    # "avx512" is not "avx512f": a prefix must not count as the extension.
    description = bench.cpu_description(ZEN2_CPUINFO)
    assert description["model_name"] == "AMD EPYC 7B12"
    assert description["vector_extensions"] == ["sse4_2", "avx", "avx2", "fma", "f16c"]


def test_cpu_description_of_text_without_cpu_lines(bench):
    assert bench.cpu_description("") == {"model_name": None, "vector_extensions": []}


def test_identical_decisions_agree_fully(bench):
    theirs = production_result([0, 1, 1, 1, 0], 1, [0.2, 0.7, 0.9, 0.6, 0.3], 73.3)
    ours = production_result([0, 1, 1, 1, 0], 1, [0.2, 0.7, 0.9, 0.6, 0.3 + 1e-6], 0.733)  # ours: 0-1
    agreement = bench.decision_agreement(theirs, ours)
    assert agreement["seconds"] == 5 and agreement["seconds_identical"] == 5
    assert agreement["global_identical"] is True
    assert agreement["max_abs_local_confidence_delta"] == pytest.approx(1e-6)
    assert agreement["abs_global_confidence_delta"] == pytest.approx(0.0, abs=1e-9)  # on production's 0-100 scale


def test_one_differing_second_and_a_differing_file_decision(bench):
    theirs = production_result([0, 1, 1, 1, 0], 1, global_confidence=80.0)
    ours = production_result([0, 1, 0, 1, 0], 0, global_confidence=0)
    agreement = bench.decision_agreement(theirs, ours)
    assert agreement["seconds_identical"] == 4
    assert agreement["global_identical"] is False
    assert agreement["abs_global_confidence_delta"] == 80.0


def test_a_second_only_one_side_has_counts_as_disagreeing(bench):
    agreement = bench.decision_agreement(production_result([0, 0, 1], 0), production_result([0, 0], 0))
    assert agreement["seconds"] == 3 and agreement["seconds_identical"] == 2


def test_combined_agreement_is_over_all_seconds_and_files(bench):
    first = bench.decision_agreement(production_result([1, 1, 1, 0], 1), production_result([1, 1, 1, 0], 1))
    second = bench.decision_agreement(production_result([0, 0, 0, 0], 0), production_result([0, 1, 0, 0], 0))
    combined = bench.combine_agreements([first, second])
    assert combined["seconds"] == 8 and combined["seconds_identical"] == 7
    assert combined["local_fraction_identical"] == pytest.approx(7 / 8)
    assert combined["files"] == 2 and combined["global_fraction_identical"] == 1.0


def test_figures_per_minute_capacity_and_gflops(bench):
    # 29 windows in 14.5 s: 0.5 s a window, 29.5 s for production's 59-window minute.
    assert bench.seconds_per_minute(14.5, 29) == pytest.approx(29.5)
    assert bench.hydrophones_per_core(12.0) == pytest.approx(5.0)
    # 59 windows of 6.5e9 multiply-adds in 10 s: 2 * 6.5e9 * 59 / 10 = 76.7 GFLOP/s.
    assert bench.achieved_gflops(6.5e9, 59, 10.0) == pytest.approx(76.7)


def test_multiply_adds_are_counted_for_convolutions_and_linear_layers(bench):
    torch = pytest.importorskip("torch")
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=False),  # 2 x 4 x 5 outputs, 1 x 3 x 3 each: 360
        torch.nn.Conv2d(2, 4, kernel_size=1, groups=2),  # 4 x 4 x 5 outputs, 1 x 1 x 1 each: 80
        torch.nn.Flatten(),
        torch.nn.Linear(80, 3),  # 3 outputs, 80 each: 240
    )
    counts = bench.count_multiply_adds(network, torch.zeros(1, 1, 4, 5))
    assert counts == {"convolution": 440, "linear": 240}


@pytest.mark.parametrize("layer", ["pooled", "head"])
def test_production_runs_the_adapted_head_of_a_folder(bench, tiny_model_folder, tmp_path, layer):
    # The head an adapted folder writes for production's driver, installed in a head laid out as fastai's
    # (concat pool, flatten, BN, dropout, linear, ReLU, BN, dropout, linear), gives our model's adapted logits.
    import numpy as np
    import torch
    from torch import nn

    from orcahello import adapt, models

    pipe = models.load_pipeline(str(tiny_model_folder), "cpu")
    dimension = pipe.model.config.layer_size(layer)
    generator = np.random.default_rng(7)
    head = adapt.LinearHead(weight=generator.normal(size=dimension), bias=0.3)
    folder = tmp_path / "adapted"
    adapt.save_adapted_folder(pipe, head, str(folder), {"layer": layer}, card="adapted for a test")
    adapted_model = models.load_pipeline(str(folder), "cpu").model.eval()

    written = bench.write_adapted_head(str(folder), str(tmp_path / "head.json"))
    assert bench.write_adapted_head(str(tiny_model_folder), str(tmp_path / "none.json")) is None

    spec = importlib.util.spec_from_file_location("production_driver", bench.DRIVER)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    classifier = adapted_model.classifier
    fastai_head = nn.Sequential(nn.Identity(), nn.Flatten(), classifier.pooled_norm, classifier.pooled_dropout,
                                classifier.dense, classifier.activation, classifier.hidden_norm,
                                classifier.hidden_dropout, nn.Linear(classifier.out_proj.in_features, 2))  # fmt: skip
    learner_model = nn.Sequential(nn.Identity(), fastai_head)
    driver.install_adapted_head(learner_model, written)

    pooled = torch.randn(5, adapted_model.config.pooled_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = adapted_model.logits_from_pooled(pooled)
        stand_in = classifier(pooled)
        produced = learner_model(pooled)
    assert not torch.allclose(expected, stand_in, atol=1e-3)  # the adapted head is not the fastai head's
    torch.testing.assert_close(produced, expected, rtol=1e-5, atol=1e-5)
