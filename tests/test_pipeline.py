"""The file-level pipeline against production's results (SPEC.md section 3), its inputs, outputs and errors."""

import dataclasses
import io
import json
import shutil
import wave

import numpy as np
import pytest
import soundfile
import torch
from conftest import LEGACY, REAL_AUDIO, assert_matches_production, legacy_wavs, production_result, remote_code_module

from results_orcahello import DecisionParameters, aggregate_windows, build_file_result, merge_detections


def audio_input_error(pipe):
    """The AudioInputError class of the pipeline's own audio module (remote code is imported as its own copy)."""
    error_class = remote_code_module(pipe, "audio_orcahello").AudioInputError
    assert issubclass(error_class, ValueError)
    return error_class


# ---------------------------------------------------------------------------------------------------------------
# Aggregation: production's own per-window probabilities in, production's result dict out (no model involved).
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
@pytest.mark.parametrize("learner", ["fastai_r50_legacy", "fastai_r18_zip"])
@pytest.mark.parametrize("wav", legacy_wavs(), ids=lambda path: path.stem)
def test_aggregation_reproduces_production_from_its_window_probabilities(wav, learner):
    production = production_result(wav, learner)
    window_probabilities = [clip["prob_positive"] for clip in production["per_clip_raw_sorted_by_start"]]
    result = aggregate_windows(window_probabilities)
    expected = production["result"]
    assert result["local_predictions"] == expected["local_predictions"]
    np.testing.assert_allclose(result["local_confidences"], expected["local_confidences"], rtol=0, atol=1e-12)
    assert result["global_prediction"] == expected["global_prediction"]
    # Production's global confidence is 0-100; every confidence of ours 0-1.
    assert 100 * result["global_confidence"] == pytest.approx(expected["global_confidence"], abs=1e-9)


def test_port_aggregations_on_a_hand_worked_example():
    windows = [0.9, 0.2, 0.7, 0.55, 0.1]
    thresholded = aggregate_windows(windows, DecisionParameters(aggregation="mean_thresholded"))
    assert thresholded["local_predictions"] == [1, 0, 1, 1, 0]
    assert thresholded["global_confidence"] == pytest.approx((0.9 + 0.7 + 0.55) / 3)
    assert thresholded["global_prediction"] == 1
    top_k = aggregate_windows(
        windows, DecisionParameters(aggregation="mean_top_k", top_k_windows=2, global_threshold=0.85)
    )
    assert top_k["global_confidence"] == pytest.approx((0.9 + 0.7) / 2)
    assert top_k["global_prediction"] == 0
    nothing = aggregate_windows([0.1, 0.2], DecisionParameters(aggregation="mean_thresholded"))
    assert nothing["global_confidence"] == 0.0 and nothing["global_prediction"] == 0


def test_orcahello_aggregation_edges():
    # Threshold is strict (> 0.5) and the count is >= 3 (since Feb 2025).
    exactly_half = aggregate_windows([0.5, 0.5, 0.5])
    assert exactly_half["local_predictions"] == [0, 0, 0, 0] and exactly_half["global_confidence"] == 0.0
    three_rows = aggregate_windows([0.9, 0.9])  # rows 0.9, 0.9, 0.9
    assert three_rows["global_prediction"] == 1
    # One window above threshold: two rows, a negative file with a high global confidence, as production.
    single = aggregate_windows([0.98])
    assert single["local_predictions"] == [1, 1] and single["global_prediction"] == 0
    assert single["global_confidence"] == pytest.approx(0.98)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_windows([0.5], DecisionParameters(aggregation="majority"))


def clip_info(num_windows):
    return {
        "name": "clip.wav",
        "sampling_rate": 20000,
        "num_samples": 20000 * (num_windows + 1),
        "num_channels": 1,
        "num_windows": num_windows,
        "window_seconds": 2.0,
        "hop_seconds": 1.0,
        "timeline": None,
    }


def assert_decision_first_and_sorted(labels, decision):
    assert labels[0]["label"] == decision
    assert labels[0]["score"] >= labels[1]["score"]
    assert labels[0]["score"] + labels[1]["score"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("windows", "decision", "expected"),
    [
        # A 2.5-s clip's one confident window: two positive seconds of production's three, so negative however
        # confident (global confidence 99.44); the label list once put "positive 0.9944" second.
        ([0.9944], DecisionParameters(), [("negative", 1 - 1 / 3), ("positive", 1 / 3)]),
        ([0.1, 0.2], DecisionParameters(), [("negative", 1.0), ("positive", 0.0)]),
        ([0.8, 0.8, 0.8, 0.8], DecisionParameters(), [("positive", 0.8), ("negative", 0.2)]),
        # Positive under a low bar with little confidence: the decision still comes first, at 0.5.
        ([0.2, 0.2, 0.2], DecisionParameters(local_threshold=0.1), [("positive", 0.5), ("negative", 0.5)]),
        # Refused by a site's floor: 80 / 100 of the 0.9 needed.
        (
            [0.8] * 4,
            DecisionParameters(min_global_confidence=0.9),
            [("negative", 1 - 0.4 / 0.9), ("positive", 0.4 / 0.9)],
        ),
        # The port's rule: a mean of 0.55 under its 0.6 bar.
        (
            [0.55, 0.55],
            DecisionParameters(aggregation="mean_top_k", top_k_windows=2),
            [("negative", 1 - 0.55 / 1.2), ("positive", 0.55 / 1.2)],
        ),
        (
            [0.7, 0.9],
            DecisionParameters(aggregation="mean_top_k", top_k_windows=2),
            [("positive", 0.8), ("negative", 0.2)],
        ),
    ],
)
def test_label_list_puts_the_decision_first_with_the_higher_score(windows, decision, expected):
    result = build_file_result(clip_info(len(windows)), windows, decision=decision)
    labels = build_file_result(clip_info(len(windows)), windows, decision=decision, return_timestamps=False)
    assert [(entry["label"], entry["score"]) for entry in labels] == [
        (label, pytest.approx(score)) for label, score in expected
    ]
    assert_decision_first_and_sorted(labels, result["label"])
    assert labels == result["labels"] and (result["label"], result["score"]) == (labels[0]["label"], labels[0]["score"])
    top = build_file_result(clip_info(len(windows)), windows, decision=decision, return_timestamps=False, top_k=1)
    assert top == labels[:1] and top[0]["label"] == ("positive" if result["global_prediction"] else "negative")


def test_detections_merge_consecutive_positive_rows():
    detections = merge_detections([0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [0.9, 0.7, 0.2, 0.8, 0.6], [1, 1, 0, 1, 1])
    assert [(d["start"], d["end"]) for d in detections] == [(0, 2), (3, 5)]
    assert detections[0]["max_confidence"] == 0.9 and detections[0]["mean_confidence"] == pytest.approx(0.8)


# ---------------------------------------------------------------------------------------------------------------
# Parity with production, end to end (converted ResNet50 fixture learner).
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_every_fixture_wav_matches_production(resnet50_results_on_legacy_wavs):
    wavs = legacy_wavs()
    assert len(wavs) == 11
    for wav in wavs:
        result = resnet50_results_on_legacy_wavs[wav.name]
        assert_matches_production(result, wav)
        assert result["submission"][0]["wav_filename"] == wav.name


# ---------------------------------------------------------------------------------------------------------------
# Inputs: the same numbers however the audio arrives.
# ---------------------------------------------------------------------------------------------------------------


def confidences(result):
    return np.array(result["local_confidences"])


# oneDNN picks convolution kernels by batch size, so float32 logits of the same window move by ~1e-6 between
# batch compositions; any real difference in windowing or featurization moves them by orders of magnitude more.
SAME_WINDOWS_TOLERANCE = 1e-5


@pytest.mark.needs_test_data
def test_same_result_for_every_input_form(tiny_pipeline):
    path = LEGACY / "audio" / "edge_stereo_48k_6s.wav"
    reference = tiny_pipeline(str(path), return_timestamps=True)
    samples, rate = soundfile.read(str(path), dtype="int16")
    forms = {
        "bytes": (path.read_bytes(), {}),
        "int16 array (samples, channels)": (samples, {"sampling_rate": rate}),
        "int16 array (channels, samples)": (samples.T.copy(), {"sampling_rate": rate}),
        "float array": (samples.astype(np.float32) / 32768, {"sampling_rate": rate}),
        "tensor": (torch.from_numpy(samples.T.copy()), {"sampling_rate": rate}),
        "datasets row": ({"array": samples.T.copy(), "sampling_rate": rate, "path": str(path)}, {}),
        "raw dict": ({"raw": samples, "sampling_rate": rate}, {}),
        "undecoded datasets row": ({"bytes": path.read_bytes(), "path": str(path)}, {}),
    }
    for name, (audio, kwargs) in forms.items():
        result = tiny_pipeline(audio, return_timestamps=True, **kwargs)
        np.testing.assert_allclose(
            confidences(result), confidences(reference), atol=SAME_WINDOWS_TOLERANCE, err_msg=name
        )


@pytest.mark.needs_test_data
def test_batching_and_lists_do_not_change_results(tiny_pipeline):
    paths = [str(LEGACY / "audio" / name) for name in ("edge_20k_6s.wav", "edge_44k1_6s.wav", "edge_10s_48k.wav")]
    one_by_one = [tiny_pipeline(path, return_timestamps=True, batch_size=1) for path in paths]
    as_list = tiny_pipeline(paths, return_timestamps=True, batch_size=7)
    for single, batched in zip(one_by_one, as_list):
        np.testing.assert_allclose(confidences(batched), confidences(single), atol=SAME_WINDOWS_TOLERANCE)


@pytest.mark.needs_test_data
def test_batch_size_sets_the_windows_per_forward_pass(tiny_pipeline):
    calls = []
    # On the head's last layer: the padding-skipping forward calls it (`logits_from_pooled`), not the model's forward.
    hook = tiny_pipeline.model.classifier.out_proj.register_forward_hook(
        lambda module, args, output: calls.append(output.shape[0])
    )
    try:
        tiny_pipeline(str(LEGACY / "audio" / "edge_10s_48k.wav"), batch_size=4, engine="torch")  # 9 windows
    finally:
        hook.remove()
    assert calls == [4, 4, 1]


def test_streamed_file_equals_in_memory_audio(tiny_pipeline, tmp_path):
    # 75 s crosses several frontend blocks: the file is read block by block, the array sliced whole.
    rng = np.random.default_rng(7)
    samples = (rng.standard_normal(75 * 44100) * 1500).astype(np.int16)
    path = tmp_path / "long.flac"
    soundfile.write(str(path), samples, 44100)
    from_file = tiny_pipeline(str(path), return_timestamps=True)
    from_array = tiny_pipeline(samples, sampling_rate=44100, return_timestamps=True)
    assert len(from_file["windows"]) == 74
    np.testing.assert_allclose(confidences(from_file), confidences(from_array), atol=SAME_WINDOWS_TOLERANCE)


@pytest.mark.needs_test_data
def test_real_recordings_at_mixed_rates_run(tiny_pipeline):
    paths = sorted(REAL_AUDIO.glob("pos_srkw_catalog_*.wav"))
    results = tiny_pipeline([str(path) for path in paths], return_timestamps=True)
    for path, result in zip(paths, results):
        info = soundfile.info(str(path))
        assert result["sampling_rate"] == info.samplerate
        assert len(result["windows"]) == int(info.frames // info.samplerate) - 1


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.needs_test_data
def test_default_output_is_the_widget_format_with_the_decision_first(resnet50_pipeline):
    # Production: edge_10s_48k is negative (2 positive rows) with global_confidence 74.67 (the parity tests check it).
    # Its label list says how the count decided: 2 of the 3 positive seconds needed (decision_label_scores).
    result = resnet50_pipeline(str(LEGACY / "audio" / "edge_10s_48k.wav"))
    assert [entry["label"] for entry in result] == ["negative", "positive"]
    assert result[1]["score"] == pytest.approx(1 / 3)
    assert result[0]["score"] == pytest.approx(1 - result[1]["score"])
    positive = resnet50_pipeline(str(LEGACY / "audio" / "rec01_calls_quiet_bg.wav"), top_k=1)
    assert positive == [{"label": "positive", "score": pytest.approx(0.7508, abs=1e-3)}]


@pytest.mark.needs_test_data
def test_timestamped_output_has_production_keys_windows_and_detections(tiny_pipeline):
    result = tiny_pipeline(str(LEGACY / "audio" / "edge_10s_48k.wav"), return_timestamps=True, local_threshold=0.0)
    for key in ("global_prediction", "global_confidence", "local_predictions", "local_confidences", "submission"):
        assert key in result
    assert [(w["start"], w["end"]) for w in result["windows"]] == [(k, k + 2) for k in range(9)]
    assert len(result["local_confidences"]) == 10
    assert result["detections"] == [
        {
            "start": 0,
            "end": 10,
            "max_confidence": pytest.approx(max(result["local_confidences"])),
            "mean_confidence": pytest.approx(np.mean(result["local_confidences"])),
        }
    ]
    json.dumps(result)  # plain Python types only


@pytest.mark.needs_test_data
def test_port_aggregation_and_custom_windows(tiny_pipeline):
    path = str(LEGACY / "audio" / "edge_10s_48k.wav")
    port = tiny_pipeline(path, return_timestamps=True, aggregation="mean_top_k")
    assert len(port["local_confidences"]) == 9  # one row per window, no smoothing
    wide = tiny_pipeline(path, return_timestamps=True, window_seconds=3, hop_seconds=2)
    assert [(w["start"], w["end"]) for w in wide["windows"]] == [(0, 3), (2, 5), (4, 7), (6, 9)]


@pytest.mark.needs_test_data
def test_float16_and_bfloat16_run_close_to_float32(tiny_model_folder):
    from transformers import pipeline

    path = str(LEGACY / "audio" / "edge_20k_6s.wav")
    reference = pipeline("audio-classification", model=str(tiny_model_folder), trust_remote_code=True)
    bf16 = pipeline(
        "audio-classification", model=str(tiny_model_folder), trust_remote_code=True, dtype=torch.bfloat16, device="cpu"
    )
    expected = confidences(reference(path, return_timestamps=True))
    np.testing.assert_allclose(confidences(bf16(path, return_timestamps=True)), expected, atol=0.05)


@pytest.mark.needs_test_data
@pytest.mark.parametrize("preset", ["fastai", "v1"])
def test_the_bfloat16_fast_mode_makes_float32s_decisions_on_every_recording(resnet50_pipeline, preset):
    from engines_orcahello import cpu_has_native_bfloat16

    if not cpu_has_native_bfloat16():
        pytest.skip("this CPU has no native bfloat16")
    window_seconds = resnet50_pipeline.resolve_parameters(preset=preset).preprocess["window_seconds"]
    recordings = [
        path
        for path in legacy_wavs() + sorted(REAL_AUDIO.glob("*.wav"))
        if soundfile.info(str(path)).duration >= window_seconds
    ]  # v1: 2.5 s is shorter than a window
    rescored = []
    for path in recordings:
        reference = resnet50_pipeline(str(path), preset=preset, return_timestamps=True)
        fast = resnet50_pipeline(str(path), preset=preset, return_timestamps=True, precision="bfloat16")
        rescored.append(resnet50_pipeline.last_rescored_fraction)
        assert fast["local_predictions"] == reference["local_predictions"], path.name
        assert fast["global_prediction"] == reference["global_prediction"], path.name
        assert fast["label"] == reference["label"], path.name
    assert len(rescored) == len(recordings) and min(rescored) < 1.0
    assert resnet50_pipeline.fast_mode_withdrawn is None  # the margin's premise held on every re-scored window


@pytest.mark.needs_test_data
def test_the_fast_mode_withdraws_itself_when_a_rescored_window_breaks_its_error_bound(resnet50_pipeline, monkeypatch):
    engines_orcahello = remote_code_module(resnet50_pipeline, "engines_orcahello")  # the code this pipeline runs
    if not engines_orcahello.cpu_has_native_bfloat16():
        pytest.skip("this CPU has no native bfloat16")
    # Weights whose bfloat16 error the measured margin does not cover: every re-scored window reports a deviation
    # of 10 logits (`largest_logit_deviation` itself is tested in test_scoring.py).
    pipeline_module = remote_code_module(resnet50_pipeline, "pipeline_orcahello")
    monkeypatch.setattr(pipeline_module, "largest_logit_deviation", lambda reduced, exact: 10.0)
    path = str(REAL_AUDIO / "pos_srkw_orcasound_210825-1925_L-highlight.wav")
    try:
        reference = resnet50_pipeline(path, preset="fastai", return_timestamps=True)
        fast = resnet50_pipeline(path, preset="fastai", return_timestamps=True, precision="bfloat16")
        assert "more than half the fast mode's margin" in resnet50_pipeline.fast_mode_withdrawn
        # The bound itself failed, so every window of that file was scored again in float32...
        assert resnet50_pipeline.last_rescored_fraction == 1.0
        np.testing.assert_allclose(fast["local_confidences"], reference["local_confidences"], rtol=0, atol=1e-5)
        assert fast["local_predictions"] == reference["local_predictions"]
        # ... and the next file is scored in float32 from the start: nothing left to re-score.
        later = resnet50_pipeline(path, preset="fastai", return_timestamps=True, precision="bfloat16")
        assert resnet50_pipeline.last_rescored_fraction is None
        np.testing.assert_allclose(later["local_confidences"], reference["local_confidences"], rtol=0, atol=1e-5)
    finally:
        resnet50_pipeline.fast_mode_withdrawn = None


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def write_wav_bytes(samples, rate=48000):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (np.zeros(72000, np.int16), {"sampling_rate": 48000}, "shorter than one 2-second window"),
        (np.zeros(0, np.float32), {"sampling_rate": 48000}, "empty"),
        (np.zeros(200000, np.float32), {}, "needs its sampling_rate"),
        (np.full(200000, np.nan, np.float32), {"sampling_rate": 48000}, "NaN or infinite"),
        ("does/not/exist.wav", {}, "no such file"),
        (b"RIFF....WAVEfmt not really a wav", {}, "cannot decode audio"),
        (b"", {}, "empty input"),
        ({"sampling_rate": 48000}, {}, "needs 'array'"),
        (12345, {}, "Unsupported input"),
        ("https://example.org/minute.wav", {}, "URLs are not fetched"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny_pipeline, audio, kwargs, message):
    with pytest.raises(audio_input_error(tiny_pipeline), match=message):
        tiny_pipeline(audio, **kwargs)


def test_truncated_file_is_reported(tiny_pipeline, tmp_path):
    data = write_wav_bytes(np.ones(48000 * 6, np.int16))
    path = tmp_path / "truncated.wav"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(audio_input_error(tiny_pipeline), match="truncated WAV: its header announces 288000 samples"):
        tiny_pipeline(str(path))
    with pytest.raises(audio_input_error(tiny_pipeline), match="truncated WAV"):
        tiny_pipeline(data[: len(data) // 2])
    # A streamed WAV (placeholder sizes in its header, as ffmpeg writes to a pipe) is not "truncated".
    streamed = bytearray(data)
    streamed[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    assert len(tiny_pipeline(bytes(streamed), return_timestamps=True)["windows"]) == 5


def test_silence_is_scored_and_flagged(tiny_pipeline):
    result = tiny_pipeline(np.zeros(48000 * 4, np.int16), sampling_rate=48000, return_timestamps=True)
    assert len(result["windows"]) == 3
    assert any("silence" in warning for warning in result["warnings"])


def test_unknown_parameters_are_refused(tiny_pipeline):
    with pytest.raises(TypeError, match="Unknown argument"):
        tiny_pipeline(np.zeros(96000, np.int16), sampling_rate=48000, treshold=0.3)


# ---------------------------------------------------------------------------------------------------------------
# Engines (tests/test_scoring.py tests each engine)
# ---------------------------------------------------------------------------------------------------------------


def test_unknown_engine_is_refused(tiny_pipeline):
    with pytest.raises(ValueError, match="engine must be one of"):
        tiny_pipeline(np.zeros(96000, np.int16), sampling_rate=48000, engine="tensorrt")
    with pytest.raises(ValueError, match="precision must be one of"):
        tiny_pipeline(np.zeros(96000, np.int16), sampling_rate=48000, precision="int4")


@pytest.mark.needs_test_data
def test_shared_featurization_and_score_features_reproduce_a_pipeline_call(tiny_pipeline):
    # `orcahello batch` featurizes with `featurize_windows` on CPU workers and scores with `score_features` in
    # model actors: together they must give the pipeline's own window scores and silence flags.
    audio = remote_code_module(tiny_pipeline, "audio_orcahello")
    path = str(LEGACY / "audio" / "edge_10s_48k.wav")
    expected = tiny_pipeline(path, return_timestamps=True, batch_size=4)
    recording = audio.open_recording(path)
    bounds = audio.scoring_windows(recording)
    features, silent = audio.featurize_windows(recording, bounds, tiny_pipeline.feature_extractor)
    recording.close()
    assert features.shape == (9, 1, 256, 312) and silent == [False] * 9
    probabilities = torch.cat(
        [torch.from_numpy(tiny_pipeline.score_features(features[k : k + 4]).probabilities) for k in range(0, 9, 4)]
    )
    assert probabilities.shape == (9, 2) and probabilities.dtype == torch.float32
    np.testing.assert_array_equal(probabilities[:, 1].double().numpy(), [w["score"] for w in expected["windows"]])
    with_torch = tiny_pipeline.score_features(features[:4], engine="torch").probabilities
    np.testing.assert_allclose(with_torch, probabilities[:4].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="engine must be one of"):
        tiny_pipeline.score_features(features[:1], engine="tensorrt")


def test_build_file_result_is_what_the_pipeline_returns(tiny_pipeline):
    audio = remote_code_module(tiny_pipeline, "audio_orcahello")
    results = remote_code_module(tiny_pipeline, "results_orcahello")
    samples = np.zeros(48000 * 5, np.int16)
    samples[: 48000 * 2] = np.random.default_rng(3).integers(-3000, 3000, 48000 * 2)  # windows [2, 4), [3, 5) silent
    expected = tiny_pipeline(samples, sampling_rate=48000, return_timestamps=True, local_threshold=0.2)
    recording = audio.open_recording(samples, sampling_rate=48000)
    info = audio.recording_info(recording, len(expected["windows"]))
    rebuilt = results.build_file_result(
        info,
        [w["score"] for w in expected["windows"]],
        silent_windows=2,
        decision=results.DecisionParameters.from_mapping(expected["parameters"]),
        inference=expected["parameters"],  # the preset record the pipeline resolved
    )
    assert rebuilt == expected and "2 of 4 windows are digital silence" in rebuilt["warnings"][0]
    short = audio.open_recording(np.zeros(48000, np.int16), sampling_rate=48000)
    with pytest.raises(audio_input_error(tiny_pipeline), match="shorter than one 2-second window"):
        audio.scoring_windows(short)


# ---------------------------------------------------------------------------------------------------------------
# The decision parameters, and the feature extractor settings a pipeline scores with
# ---------------------------------------------------------------------------------------------------------------


def test_decision_parameters_are_the_vocabulary_fields_with_production_defaults():
    from vocabulary_orcahello import DECISION_FIELDS, INFERENCE_PRESETS

    defaults = dataclasses.asdict(DecisionParameters())
    assert tuple(defaults) == DECISION_FIELDS
    production = INFERENCE_PRESETS["fastai"]
    floors = {"min_global_confidence": 0.0, "min_positive_seconds": 0}  # the fields no preset sets: off
    assert defaults == {**{name: production[name] for name in DECISION_FIELDS[:-2]}, **floors}


def test_decision_parameters_from_a_run_s_settings():
    settings = {"aggregation": "mean_top_k", "top_k_windows": 2, "window_seconds": 3.0, "preset": "v1"}
    decision = DecisionParameters.from_mapping(settings)
    assert decision == DecisionParameters(aggregation="mean_top_k", top_k_windows=2)  # the rest: production's
    with pytest.raises(ValueError, match="decision parameters without a value: local_threshold"):
        DecisionParameters.from_mapping({"local_threshold": None})


def broken_preprocessor_folder(tiny_model_folder, tmp_path):
    folder = tmp_path / "broken_preprocessor"
    shutil.copytree(tiny_model_folder, folder)
    (folder / "preprocessor_config.json").write_text("{ not json")
    return folder


def test_a_model_folder_whose_feature_extractor_settings_do_not_load_is_refused(tiny_model_folder, tmp_path):
    """Never the default settings in their place: a folder's own settings, or a one-line error naming the folder."""
    from modeling_orcahello import OrcaHelloForAudioClassification
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

    folder = broken_preprocessor_folder(tiny_model_folder, tmp_path)
    model = OrcaHelloForAudioClassification.from_pretrained(str(folder)).eval()
    with pytest.raises(ValueError) as raised:
        OrcaHelloAudioClassificationPipeline(model=model)  # no feature extractor given: the pipeline loads the folder's
    message = str(raised.value)
    assert message.startswith(
        f"{folder}: cannot load the model's feature extractor settings (preprocessor_config.json)"
    )
    assert "\n" not in message
    # Through transformers too (the version installed may load the settings itself): the error names the file.
    from transformers import pipeline

    with pytest.raises((ValueError, OSError), match="preprocessor_config"):
        pipeline("audio-classification", model=str(folder), trust_remote_code=True)


def test_only_a_model_built_in_memory_gets_the_default_feature_extractor():
    from conftest import tiny_config

    from feature_extraction_orcahello import OrcaHelloFeatureExtractor
    from modeling_orcahello import OrcaHelloForAudioClassification
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

    pipe = OrcaHelloAudioClassificationPipeline(model=OrcaHelloForAudioClassification(tiny_config()).eval())
    assert pipe.model.name_or_path == ""
    assert pipe.feature_extractor.to_dict() == OrcaHelloFeatureExtractor().to_dict()
