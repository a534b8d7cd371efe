"""
Fine-tuning (`orcahello.training.finetune`) end to end on synthetic clips with the tiny model: the evaluation AUPRC rises
above the untrained model's, and the saved folder loads through `pipeline(...)`; plus its metrics, frequency mask,
data readers and backbone freezing.
"""

import json

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from orcahello.training import finetune
from orcahello.training.labelled_clips import LABELS, FrequencyMask, TrainingDataError, featurize_clips, find_clips
from orcahello.training.metrics import average_precision, classification_metrics, positive_probabilities
from orcahello.training.trainer_setup import freeze_backbone

RATE = 20000
CLIP_SECONDS = 2.0


def synthetic_clip(rng, positive):
    """
    Two seconds of noise at a random level; a positive also holds a call-like sound: a harmonic FM tone (f0
    1-1.6 kHz, 3 harmonics, so 1-4.8 kHz) with attack and release. Both classes have the same mean power, so
    loudness alone does not tell them apart.
    """
    t = np.arange(int(CLIP_SECONDS * RATE)) / RATE
    level = 10 ** rng.uniform(-2.5, -1.5)
    noise = rng.normal(0.0, level, t.size)
    if not positive:
        return noise.astype(np.float32)
    f0, sweep = rng.uniform(1000, 1600), rng.uniform(-300, 300)
    start, duration = rng.uniform(0.1, 0.8), rng.uniform(0.6, 1.0)
    envelope = np.clip((t - start) / 0.05, 0, 1) * np.clip((start + duration - t) / 0.08, 0, 1)
    phase = 2 * np.pi * (f0 * t + sweep * t**2 / 4)
    call = level * rng.uniform(2, 5) * envelope * sum(np.sin(k * phase) / k for k in (1, 2, 3))
    noise *= np.sqrt(max(1e-3, 1 - np.mean(call**2) / level**2))
    return np.clip(noise + call, -1, 1).astype(np.float32)


def write_clips(root, per_class, seed):
    """root/positive/*.wav and root/negative/*.wav, 16-bit at 20 kHz; returns [(path, label)]."""
    rng = np.random.default_rng(seed)
    clips = []
    for name, label in LABELS.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            path = root / name / f"{name}_{index:02d}.wav"
            soundfile.write(path, synthetic_clip(rng, positive=bool(label)), RATE, subtype="PCM_16")
            clips.append((path, label))
    return clips


@pytest.fixture(scope="module")
def clip_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    train = write_clips(root / "train", per_class=20, seed=1)
    evaluation = write_clips(root / "eval", per_class=10, seed=101)
    return root, train, evaluation


def window_scores(pipe, clips):
    """P(call) of each 2-second clip's single window, as the pipeline scores it."""
    return [pipe(str(path), return_timestamps=True)["windows"][0]["score"] for path, _ in clips]


def test_finetuning_beats_the_untrained_model_and_saves_a_loadable_folder(
    clip_folders, tiny_model_folder, tiny_pipeline, tmp_path
):
    from transformers import pipeline

    root, _, evaluation = clip_folders
    labels = [label for _, label in evaluation]
    auprc_before = average_precision(labels, window_scores(tiny_pipeline, evaluation))

    output_dir = tmp_path / "finetuned"
    status = finetune.main(
        ["--model", str(tiny_model_folder), "--train", str(root / "train"), "--eval", str(root / "eval")]
        + ["--output-dir", str(output_dir), "--epochs", "3", "--batch-size", "8", "--learning-rate", "1e-3"]
    )
    assert status == 0

    finetuned = pipeline("audio-classification", model=str(output_dir), trust_remote_code=True)
    auprc_after = average_precision(labels, window_scores(finetuned, evaluation))
    # The tiny random model ranks these clips little better than chance (about 0.5); a few epochs learn the tone.
    assert auprc_before < 0.8
    assert auprc_after >= 0.95 and auprc_after >= auprc_before + 0.2
    result = finetuned(str(evaluation[0][0]), return_timestamps=True)
    assert result["label"] in ("positive", "negative") and len(result["windows"]) == 1

    summary = json.loads((output_dir / finetune.SUMMARY_FILE).read_text())
    # The Trainer's evaluation saw the same spectrograms and the same model as the pipeline, before and after.
    assert summary["initial_eval"]["auprc"] == pytest.approx(auprc_before, abs=1e-6)
    assert summary["final_eval"]["auprc"] == pytest.approx(auprc_after, abs=1e-6)
    assert [row["epoch"] for row in summary["epochs"]] == [1.0, 2.0, 3.0]
    assert summary["final_eval"]["auprc"] == max(row["auprc"] for row in summary["epochs"])
    assert summary["data"]["train"] == {
        "path": str(root / "train"),
        "clips": 40,
        "positive": 20,
        "negative": 20,
        "longer_than_window": 0,
    }
    assert summary["options"]["frequency_mask"] == {"min_bins": 30, "max_bins": 30, "value": "mean"}
    assert not (output_dir / finetune.CHECKPOINTS_FOLDER).exists()

    from huggingface_hub import ModelCard

    card = ModelCard.load(output_dir / "README.md")
    assert card.data.pipeline_tag == "audio-classification" and card.data.license == "other"


def test_frozen_backbone_keeps_its_weights_and_batch_norm_statistics(clip_folders, tiny_model_folder, tmp_path):
    root, _, _ = clip_folders
    output_dir = tmp_path / "head_only"
    status = finetune.main(
        ["--model", str(tiny_model_folder), "--train", str(root / "train"), "--eval", str(root / "eval")]
        + ["--output-dir", str(output_dir), "--epochs", "1", "--batch-size", "8", "--freeze-backbone"]
    )
    assert status == 0
    before = load_file(tiny_model_folder / "model.safetensors")
    after = load_file(output_dir / "model.safetensors")
    assert before.keys() == after.keys()
    backbone = [key for key in before if key.startswith("orcahello.")]
    head = [key for key in before if key.startswith("classifier.")]
    assert any("running_mean" in key for key in backbone) and head
    for key in backbone:  # weights and BatchNorm running statistics alike
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(after[key], before[key]) for key in head if "weight" in key)


def test_freeze_backbone_with_trainable_batch_norm(tiny_model_folder):
    from modeling_orcahello import OrcaHelloForAudioClassification

    model = OrcaHelloForAudioClassification.from_pretrained(tiny_model_folder)
    assert freeze_backbone(model) == [model.orcahello]
    assert not any(parameter.requires_grad for parameter in model.orcahello.parameters())
    assert all(parameter.requires_grad for parameter in model.classifier.parameters())

    model = OrcaHelloForAudioClassification.from_pretrained(tiny_model_folder)
    assert freeze_backbone(model, train_batch_norm=True) == []
    trainable = {name for name, parameter in model.orcahello.named_parameters() if parameter.requires_grad}
    assert trainable and all(".normalization." in name for name in trainable), sorted(trainable)[:5]


def test_frequency_mask_is_fastai_audios():
    torch.manual_seed(0)
    spectrogram = torch.randn(1, 256, 312) * 20 - 40
    original = spectrogram.clone()
    mask = FrequencyMask()  # fastai_audio 0.1: exactly 30 rows, set to the image's mean
    for _ in range(20):
        masked = mask(spectrogram)
        changed_rows = torch.nonzero((masked != spectrogram).any(dim=-1)[0]).flatten()
        assert len(changed_rows) == 30 and int(changed_rows[-1] - changed_rows[0]) == 29  # one band
        assert torch.all(masked[0, changed_rows] == original.mean())
    assert torch.equal(spectrogram, original)  # the cached spectrogram is never modified

    widths = set()
    for _ in range(200):
        masked = FrequencyMask(max_bins=4, min_bins=0)(spectrogram)
        widths.add(int((masked != spectrogram).any(dim=-1).sum()))
    assert widths == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError):
        FrequencyMask(max_bins=10, min_bins=20)


def test_average_precision_and_threshold_metrics():
    ap = average_precision
    assert ap([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 / 2) * 1 + (1 / 2) * (2 / 3))
    assert ap([0, 1, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 / 2) * (1 / 2) + (1 / 2) * (2 / 3))
    assert ap([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # tied scores are one threshold
    assert ap([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx((1 / 2) * (1 / 3) + (1 / 2) * (2 / 4))
    assert np.isnan(ap([0, 0], [0.3, 0.4]))

    metrics = classification_metrics([1, 1, 0, 0], [0.9, 0.5, 0.6, 0.1])
    # 0.5 is not above the 0.5 threshold (the pipeline's strict >): one true positive, one false positive.
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5 and metrics["f1"] == 0.5
    assert metrics["accuracy"] == 0.5
    assert classification_metrics([1, 0], [0.2, 0.1])["precision"] == 0.0
    logits = np.array([[0.0, 0.0], [1000.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(positive_probabilities(logits), [0.5, 0.0, 1 / (1 + np.exp(-2))])


def test_clip_rules_long_short_and_missing_classes(tmp_path, tiny_model_folder):
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor

    extractor = OrcaHelloFeatureExtractor.from_pretrained(tiny_model_folder)
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "positive").mkdir(parents=True)
    (tmp_path / "data" / "negative").mkdir(parents=True)
    long_clip = rng.normal(0, 0.05, int(3.5 * 44100)).astype(np.float32)
    soundfile.write(tmp_path / "data" / "positive" / "long.wav", long_clip, 44100, subtype="PCM_16")
    soundfile.write(tmp_path / "data" / "negative" / "stereo.flac", rng.normal(0, 0.05, (48000, 2)), 24000)

    clips = find_clips(str(tmp_path / "data"))
    assert [(name.split("/")[-1], label) for name, _, label in clips] == [("stereo.flac", 0), ("long.wav", 1)]
    features, labels, longer = featurize_clips(clips, extractor, CLIP_SECONDS)
    assert features.shape == (2, 1, 256, 312) and labels.tolist() == [0, 1] and longer == 1
    # A longer clip gives its first window, read as the pipeline reads it (int16 samples).
    first_window = soundfile.read(tmp_path / "data" / "positive" / "long.wav", frames=88200, dtype="int16")[0]
    expected = extractor(first_window, sampling_rate=44100, return_tensors="pt")["input_features"][0]
    torch.testing.assert_close(features[1], expected, rtol=0, atol=0)

    soundfile.write(tmp_path / "data" / "negative" / "short.wav", long_clip[:44100], 44100, subtype="PCM_16")
    with pytest.raises(TrainingDataError) as error:
        featurize_clips(find_clips(str(tmp_path / "data")), extractor, CLIP_SECONDS)
    assert "1 of 3 clips cannot be used" in str(error.value)
    assert "short.wav: 1.000 s is shorter than the model's 2-second window" in str(error.value)

    (tmp_path / "only_positive" / "positive").mkdir(parents=True)
    soundfile.write(tmp_path / "only_positive" / "positive" / "a.wav", long_clip, 44100)
    with pytest.raises(TrainingDataError, match="no negative clips"):
        find_clips(str(tmp_path / "only_positive"))
    with pytest.raises(TrainingDataError, match="expected a folder with positive/ and negative/"):
        find_clips(str(tmp_path))


def test_saved_dataset_gives_the_same_spectrograms_as_the_folder(clip_folders, tmp_path, tiny_model_folder):
    datasets = pytest.importorskip("datasets")
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor

    root, _, evaluation = clip_folders
    # cast_column, not features=: datasets >= 4 encodes Audio values with torchcodec, a cast needs nothing.
    # ClassLabel names in the other order than 0 = negative: labels are mapped by name.
    dataset = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": path.read_bytes(), "path": path.name} for path, _ in evaluation],
            "label": [1 - label for _, label in evaluation],
        }
    )
    dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    dataset = dataset.cast_column("label", datasets.ClassLabel(names=["positive", "negative"]))
    dataset.save_to_disk(str(tmp_path / "eval_dataset"))

    extractor = OrcaHelloFeatureExtractor.from_pretrained(tiny_model_folder)
    from_dataset = featurize_clips(find_clips(str(tmp_path / "eval_dataset")), extractor, 2.0)
    from_folder = featurize_clips(find_clips(str(root / "eval")), extractor, 2.0)
    assert from_dataset[1].tolist() == from_folder[1].tolist() == [label for _, label in evaluation]
    torch.testing.assert_close(from_dataset[0], from_folder[0], rtol=0, atol=0)

    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "dataset_dict"))
    with pytest.raises(TrainingDataError, match="pass one split's folder"):
        find_clips(str(tmp_path / "dataset_dict"))
