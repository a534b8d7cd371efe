"""Scoring engines: padding skipping is the model's own computation, every engine agrees, precisions and fallbacks."""

import numpy as np
import pytest
import torch
from conftest import LEGACY, legacy_wavs, tiny_config

from configuration_orcahello import OrcaHelloConfig
from engines_orcahello import batch_norm_folded, build_scorer, cpu_supports_bfloat16, resolve_engine
from fast_mode_orcahello import largest_logit_deviation, rescore_until_exact, windows_to_rescore
from modeling_orcahello import OrcaHelloForAudioClassification
from padding_skipping_orcahello import PaddingSkippingClassifier, padded_frames, resnet_units

NUM_MELS, NUM_FRAMES, CONTENT_FRAMES = 256, 312, 157  # a 2-second window: 157 frames of content, 155 of padding


def spectrograms(batch_size, content_frames=CONTENT_FRAMES, seed=0):
    """dB-like content in the first `content_frames` frames, production's 0 dB padding after them."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.zeros(batch_size, 1, NUM_MELS, NUM_FRAMES)
    features[..., :content_frames] = torch.randn(batch_size, 1, NUM_MELS, content_frames, generator=generator) * 15 - 50
    return features


def model_for(**overrides):
    torch.manual_seed(0)
    model = OrcaHelloForAudioClassification(tiny_config(**overrides) if overrides else tiny_config()).eval()
    # Random BatchNorm statistics, so that the padding's activations are not trivially zero anywhere.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.bias.uniform_(-0.5, 0.5)
    return model


ARCHITECTURES = {
    "tiny basic": {},
    "tiny bottleneck": dict(layer_type="bottleneck", hidden_sizes=[32, 64, 128, 256]),
    "resnet18 layout": dict(depths=[2, 2, 2, 2], hidden_sizes=[16, 32, 64, 128]),
    "resnet50 layout": dict(depths=[3, 4, 6, 3], layer_type="bottleneck", hidden_sizes=[32, 64, 128, 256]),
}


CASES = [(architecture, CONTENT_FRAMES) for architecture in ARCHITECTURES] + [
    (architecture, content_frames)
    for architecture in ("tiny basic", "tiny bottleneck")
    for content_frames in (1, 60, 250, NUM_FRAMES - 1)
]


@pytest.mark.parametrize("architecture, content_frames", CASES)
def test_padding_skipping_gives_the_full_models_logits(architecture, content_frames):
    model = model_for(**ARCHITECTURES[architecture])
    features = spectrograms(3, content_frames)
    skipping = PaddingSkippingClassifier(model, NUM_MELS, NUM_FRAMES, content_frames).eval()
    with torch.no_grad():
        expected = model(input_features=features).logits
        actual = skipping(features)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_batch_norm_folding_keeps_the_models_logits_and_leaves_the_model_alone(architecture):
    model = model_for(**ARCHITECTURES[architecture])
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folded = batch_norm_folded(model)
    features = spectrograms(3)
    with torch.no_grad():
        expected = model(input_features=features).logits
        actual = folded(input_features=features).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    # Every convolution's BatchNorm is gone from the copy (the head's BatchNorm1d follow no convolution)...
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    # ... and the model itself, which training and embeddings use, is unchanged.
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules()) > 0
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_the_torch_engine_scores_a_folded_copy_in_eval_mode_and_the_model_itself_in_training():
    model = model_for(**ARCHITECTURES["tiny bottleneck"])
    evaluation = build_scorer(model, "torch", (2, 1, NUM_MELS, NUM_FRAMES), 1, content_frames=CONTENT_FRAMES)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in evaluation.module.modules())
    model.train()
    training = build_scorer(model, "torch", (2, 1, NUM_MELS, NUM_FRAMES), 1)
    assert training.module.model is model


def test_padding_skipping_computes_exactly_the_columns_the_content_reaches():
    """The geometry is tight, not merely safe: column counts equal where a change of content actually shows."""
    model = model_for(**ARCHITECTURES["resnet50 layout"])
    skipping = PaddingSkippingClassifier(model, NUM_MELS, NUM_FRAMES, CONTENT_FRAMES)
    first, second = spectrograms(1, seed=1), spectrograms(1, seed=2)
    reached = []
    with torch.no_grad():
        for unit in resnet_units(model):
            first, second = unit(first), unit(second)
            differing = torch.nonzero((first != second).any(dim=(0, 1, 2))).flatten()
            reached.append(int(differing.max()) + 1)
    assert skipping.computed_columns == reached
    # torchvision's ResNet50 on a 2-second window: 80 of 156 columns after the stem, 26 of 39 after stage 2.
    assert reached[0] == 80 and reached[8] == 26
    assert 0.7 < skipping.multiply_adds_fraction() < 0.85


def test_padding_skipping_refuses_a_model_in_training_mode():
    model = model_for().train()
    with pytest.raises(ValueError, match="eval mode"):
        PaddingSkippingClassifier(model, NUM_MELS, NUM_FRAMES, CONTENT_FRAMES)


def test_padded_frames_finds_where_the_padding_starts():
    assert padded_frames(spectrograms(2), 0.0) == CONTENT_FRAMES
    features = spectrograms(2)
    features[1, 0, 7, 200] = 3.0  # one window of the batch has content further right
    assert padded_frames(features, 0.0) == 201
    assert padded_frames(torch.ones(1, 1, 4, 10), 0.0) == 10
    assert padded_frames(torch.zeros(1, 1, 4, 10), 0.0) == 0


ENGINES = ("openvino", "onnxruntime", "torch")


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_skips_padding_and_matches_eager_pytorch(engine):
    model = model_for(**ARCHITECTURES["tiny bottleneck"])
    features = spectrograms(5)
    scorer = build_scorer(model, engine, tuple(features.shape), num_threads=1, content_frames=CONTENT_FRAMES)
    with torch.no_grad():
        expected = model(input_features=features).logits
    actual = scorer(features)
    assert actual.dtype == torch.float32 and actual.shape == (5, 2)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_torch_engine_in_the_gpu_configuration_runs_on_cpu():
    """channels-last tensors and autocast are what the pipeline uses on CUDA; the same code runs here."""
    model = model_for(**ARCHITECTURES["tiny bottleneck"]).to(memory_format=torch.channels_last)
    features = spectrograms(4)
    with torch.no_grad():
        expected = model(input_features=features).logits
    float32 = build_scorer(model, "torch", tuple(features.shape), 1, content_frames=CONTENT_FRAMES, channels_last=True)
    torch.testing.assert_close(float32(features), expected, rtol=1e-4, atol=1e-4)
    half = build_scorer(
        model,
        "torch",
        tuple(features.shape),
        1,
        precision="bfloat16",
        content_frames=CONTENT_FRAMES,
        channels_last=True,
    )
    with torch.no_grad():
        logits = half(features)
    assert logits.dtype == torch.float32
    # bfloat16 keeps ~3 significant digits: close to float32, but not equal to it.
    assert 0 < (logits - expected).abs().max() < 0.1 * expected.abs().max() + 0.1


def test_openvino_bfloat16_fast_mode():
    model = model_for(**ARCHITECTURES["tiny bottleneck"])
    features = spectrograms(4)
    if not cpu_supports_bfloat16():
        with pytest.raises(ValueError, match="bfloat16 instructions"):
            build_scorer(
                model, "openvino", tuple(features.shape), 1, precision="bfloat16", content_frames=CONTENT_FRAMES
            )
        return
    scorer = build_scorer(
        model, "openvino", tuple(features.shape), 1, precision="bfloat16", content_frames=CONTENT_FRAMES
    )
    runtime_precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in scorer.compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert runtime_precisions == {"bf16"}
    with torch.no_grad():
        expected = model(input_features=features).logits
    logits = scorer(features)
    assert 0 < (logits - expected).abs().max() < 0.1 * expected.abs().max() + 0.1


def test_engine_and_precision_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_engine("auto", cpu, torch.float32, "float32") == "openvino"
    assert resolve_engine("auto", cuda, torch.float32, "float32") == "torch"
    assert resolve_engine("auto", cpu, torch.bfloat16, "float32") == "torch"
    assert resolve_engine("auto", cuda, torch.float32, "float16") == "torch"
    with pytest.raises(ValueError, match="a CPU device and a float32 model"):
        resolve_engine("openvino", cuda, torch.float32, "float32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_engine("auto", cpu, torch.float32, "int4")
    with pytest.raises(ValueError, match="engine must be one of"):
        resolve_engine("tensorrt", cpu, torch.float32, "float32")
    with pytest.raises(ValueError, match="float32 only"):
        build_scorer(model_for(), "onnxruntime", (1, 1, NUM_MELS, NUM_FRAMES), 1, precision="bfloat16")


# ---------------------------------------------------------------------------------------------------------------
# Through the pipeline
# ---------------------------------------------------------------------------------------------------------------


def window_scores(result):
    return np.array([window["score"] for window in result["windows"]])


@pytest.mark.needs_test_data
def test_pipeline_engines_agree_and_openvino_is_the_cpu_default(tiny_model_folder):
    from transformers import pipeline

    detector = pipeline("audio-classification", model=str(tiny_model_folder), trust_remote_code=True)
    path = str(LEGACY / "audio" / "edge_10s_48k.wav")
    scores = {engine: window_scores(detector(path, return_timestamps=True, engine=engine)) for engine in ENGINES}
    default = window_scores(detector(path, return_timestamps=True))
    assert {scorer.name for scorer in detector.scorers} == set(ENGINES)
    # The pipeline's spectrograms always end in padding: every scorer it built skips it.
    assert {scorer.content_frames for scorer in detector.scorers} == {CONTENT_FRAMES}
    np.testing.assert_array_equal(default, scores["openvino"])
    for engine in ("onnxruntime", "torch"):
        np.testing.assert_allclose(scores[engine], scores["openvino"], atol=1e-5, err_msg=engine)
    assert detector.model.training is False


def test_spectrograms_without_constant_padding_use_the_full_model(tiny_pipeline):
    features = spectrograms(3)
    features[..., -1] = 1.5  # content in the last frame: nothing to skip
    probabilities = torch.from_numpy(tiny_pipeline.score_features(features).probabilities)
    with torch.no_grad():
        expected = torch.softmax(tiny_pipeline.model(input_features=features).logits, dim=-1)
    torch.testing.assert_close(probabilities, expected, rtol=1e-4, atol=1e-5)
    assert any(scorer.content_frames is None for scorer in tiny_pipeline.scorers)


@pytest.mark.needs_test_data
@pytest.mark.parametrize("engine", ENGINES)
def test_scorers_follow_weights_changed_in_place(tiny_model_folder, engine):
    from transformers import pipeline

    detector = pipeline("audio-classification", model=str(tiny_model_folder), trust_remote_code=True)
    path = str(LEGACY / "audio" / "edge_20k_6s.wav")
    before = window_scores(detector(path, return_timestamps=True, engine=engine))
    with torch.no_grad():
        detector.model.orcahello.resnet.embedder.embedder.normalization.bias.add_(0.5)  # moves the padding's columns
        detector.model.classifier.out_proj.bias.add_(torch.tensor([-3.0, 3.0]))
    after = window_scores(detector(path, return_timestamps=True, engine=engine))
    features = torch.cat([chunk["input_features"] for chunk in detector.preprocess(path)])
    with torch.no_grad():
        reference = torch.softmax(detector.model(input_features=features).logits, dim=-1)[:, 1].numpy()
    assert np.abs(after - before).max() > 0.01
    np.testing.assert_allclose(after, reference, atol=1e-5)


@pytest.mark.needs_test_data
def test_production_spectrograms_score_as_production_with_every_engine(resnet50_pipeline):
    """The exact model inputs production stored, through each engine with padding skipping: its probabilities."""
    inputs, expected = [], []
    for wav in legacy_wavs():
        stored = np.load(LEGACY / "outputs" / "fastai_r50_legacy" / f"{wav.stem}.fastai_clips.npz")
        starts = list(np.round(stored["clip_start_s"], 6))
        for spectrogram, start in zip(stored["spectrogram"], stored["spectrogram_clip_start_s"]):
            inputs.append(spectrogram)
            expected.append(stored["prob_positive"][starts.index(round(float(start), 6))])
    features = torch.from_numpy(np.stack(inputs)).float()
    assert padded_frames(features, 0.0) == CONTENT_FRAMES
    for engine in ENGINES:
        probabilities = resnet50_pipeline.score_features(features, engine=engine).probabilities[:, 1]
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-4, err_msg=engine)


def test_padding_constants_do_not_depend_on_the_thread_count():
    """A 1-thread batch worker and a 2-thread pipeline must build the same graph, or their scores drift apart."""
    torch.manual_seed(0)
    model = OrcaHelloForAudioClassification(OrcaHelloConfig()).eval()  # production's architecture, random weights
    threads = torch.get_num_threads()
    constants = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            skipping = PaddingSkippingClassifier(model, NUM_MELS, NUM_FRAMES, CONTENT_FRAMES)
            constants.append({name: buffer.clone() for name, buffer in skipping.named_buffers()})
    finally:
        torch.set_num_threads(threads)
    assert constants[0].keys() == constants[1].keys()
    for name in constants[0]:
        assert torch.equal(constants[0][name], constants[1][name]), name


# ---------------------------------------------------------------------------------------------------------------
# The exact fast mode's re-scoring rule
# ---------------------------------------------------------------------------------------------------------------


def sigmoid(value):
    return 1.0 / (1.0 + np.exp(-value))


def test_a_window_right_at_the_local_threshold_is_rescored_and_far_ones_are_not():
    # Unsmoothed rows: a window is rescored exactly when its interval (logit +- margin) holds the threshold.
    probabilities = np.array([0.5, sigmoid(0.9), sigmoid(1.1), sigmoid(-0.9), sigmoid(-1.1), 0.01, 0.99])
    wanted = windows_to_rescore(probabilities, margin=1.0, smoothing=False, global_count_threshold=99)
    assert wanted.tolist() == [True, True, False, True, False, False, False]


def test_a_smoothed_row_at_the_threshold_rescores_both_of_its_windows():
    # Row 2 = mean(0.3, 0.7) = 0.5 exactly: windows 1 and 2 decide it. Rows 0, 1, 3, 4 are far from 0.5 with a
    # small margin (rows: 0.02, 0.16, 0.5, 0.84, 0.98).
    probabilities = np.array([0.02, 0.3, 0.7, 0.98])
    wanted = windows_to_rescore(probabilities, margin=0.01, global_count_threshold=99)
    assert wanted.tolist() == [False, True, True, False]
    # Once they are float32 (exact), nothing is left to rescore.
    exact = np.array([False, True, True, False])
    assert not windows_to_rescore(probabilities, exact=exact, margin=0.01, global_count_threshold=99).any()


def test_the_confidence_floor_rescores_every_positive_row_when_the_mean_could_cross_it():
    # Three certain positive rows (unsmoothed) with mean 0.8, a floor at 0.8: the mean's interval holds the floor.
    probabilities = np.array([0.75, 0.8, 0.85, 0.01])
    at_floor = windows_to_rescore(probabilities, margin=0.05, smoothing=False, min_global_confidence=0.8)
    assert at_floor.tolist() == [True, True, True, False]
    # A floor far below the mean, or no floor, asks for nothing.
    assert not windows_to_rescore(probabilities, margin=0.05, smoothing=False, min_global_confidence=0.5).any()
    assert not windows_to_rescore(probabilities, margin=0.05, smoothing=False).any()


def test_mean_top_k_rescores_the_candidates_for_the_top_k_when_the_mean_is_at_the_global_threshold():
    probabilities = np.array([0.6, 0.6, 0.6, 0.05, 0.9])
    # Top 3 (unsmoothed) = 0.9, 0.6, 0.6 -> 0.7 = global_threshold; none of the rows is near local_threshold 0.5
    # with margin 0.1, and 0.05 cannot reach the top 3.
    wanted = windows_to_rescore(probabilities, margin=0.1, aggregation="mean_top_k", global_threshold=0.7)
    assert wanted.tolist() == [True, True, True, False, True]


def test_rescoring_until_exact_gives_float32_decisions_when_the_error_is_within_the_margin():
    from results_orcahello import DecisionParameters, aggregate_windows

    generator = np.random.default_rng(0)
    float32_logits = generator.normal(0.0, 2.0, 400)
    float32_logits[::7] = 0.0  # windows right at P = 0.5
    reduced_logits = float32_logits + generator.uniform(-0.2, 0.2, 400)  # bfloat16-like error within 0.2
    for smoothing in (True, False):
        decision = DecisionParameters(smoothing=smoothing)
        reference = aggregate_windows(sigmoid(float32_logits), decision)

        def score_in_float32(indices):
            return sigmoid(float32_logits[indices])

        probabilities, rescored = rescore_until_exact(
            sigmoid(reduced_logits), score_in_float32, margin=0.4, smoothing=smoothing
        )
        result = aggregate_windows(probabilities, decision)
        assert result["local_predictions"] == reference["local_predictions"]
        assert result["global_prediction"] == reference["global_prediction"]
        assert 0 < rescored.sum() < rescored.size


def test_largest_logit_deviation_measures_logits_not_probabilities():
    reduced_logits = np.array([0.0, 2.0, -3.0, 8.0])
    float32_logits = np.array([0.5, 1.0, -3.25, 8.0])
    assert largest_logit_deviation(sigmoid(reduced_logits), sigmoid(float32_logits)) == pytest.approx(1.0, abs=1e-6)
    assert largest_logit_deviation([], []) == 0.0


def test_windows_scored_in_float32_already_are_never_rescored():
    # Windows 0 and 2 sit at the threshold but were scored in float32 (a batch after the fast mode was withdrawn).
    probabilities = sigmoid(np.array([0.0, 0.01, -0.01, 5.0]))
    calls = []

    def score_in_float32(indices):
        calls.append(indices.tolist())
        return probabilities[indices]

    _, rescored = rescore_until_exact(probabilities, score_in_float32, margin=0.5, exact=[True, False, True, False],
                                      smoothing=False, global_count_threshold=99)  # fmt: skip
    assert calls == [[1]]
    assert rescored.tolist() == [False, True, False, False]
