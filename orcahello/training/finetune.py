# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Fine-tune an OrcaHello model folder on labelled clips with transformers' `Trainer`, and save the result as a model
folder that `pipeline("audio-classification", model=OUT, trust_remote_code=True)` loads.

    python -m orcahello.training.finetune --model models/orcahello-srkw-detector-v1 \
        --train data/train --eval data/eval --output-dir models/finetuned [--epochs 10] [--freeze-backbone]

`--train` and `--eval` each name either

- a folder with `positive/` and `negative/` subfolders of clips (`.wav .flac .ogg .mp3`, searched recursively; the
  layout production's training used, `AudioList.from_folder(...).label_from_folder()`), or
- a `datasets.Dataset` saved with `save_to_disk`, with an `Audio` column and an integer `label` column (0 negative,
  1 positive; a `ClassLabel` named `negative`/`positive` is mapped by name). The audio is read from the rows' bytes
  (or path) with `Audio(decode=False)`, so no audio decoding backend beyond soundfile is needed.

What the model is trained on is what the pipeline scores:

- **One 2-second window per clip**, featurized by the model's own `OrcaHelloFeatureExtractor` (any sample rate,
  mono or multichannel, production's frontend quirks included). A clip longer than the window gives its **first**
  window (production's training clips were 4-second segments; cut clips so that the call is in their first two
  seconds, or into 2-second clips). A clip **shorter** than the window is refused with an error naming it: the
  pipeline never scores a partial window, so training on padded ones would teach the model an input it never sees.
- **Frequency masking on training spectrograms only**, as production's training did
  (fastai_audio's `get_spectro_transforms(mask_time=False, mask_freq=True, roll=False)`): one band of mel rows,
  at a uniformly random position, is replaced by the spectrogram's mean (of the whole 256 x 312 image, padding
  included, as fastai_audio 0.1's `tfm_mask_frequency` computes it). fastai_audio always masked exactly 30 rows
  (`num_rows=30`), which is the default here; `--freq-mask-min-bins 0` draws the width from 0 to the maximum
  instead (SpecAugment's rule), `--freq-mask-max-bins 0` turns masking off.
- Evaluation after every epoch: precision, recall and F1 of `P(call) > 0.5` (the pipeline's strict `>`), accuracy,
  and AUPRC (average precision over every threshold); the checkpoint with the best AUPRC is the one saved (the
  earliest, when epochs tie).
- `--freeze-backbone` trains the classification head only. The backbone's weights are frozen **and its BatchNorm
  layers stay in eval mode**: their running statistics stay those of the pretrained model, which the frozen
  convolutions were trained with (updating them from a small fine-tuning set would shift every feature the head
  sees). fastai's `freeze()` instead keeps BatchNorm layers trainable and in train mode (`train_bn=True`, its
  default): `--train-batch-norm` does that.

Production fine-tuned the whole model with fastai's `fit_one_cycle(10, 1e-3)`, batch size 64; the defaults follow
it (`Trainer`'s AdamW, linear warm-up over the first 30% of steps, then cosine decay, approximating one-cycle).

Outputs in `--output-dir`: the model folder (`model.safetensors`, `config.json`, `preprocessor_config.json`, the
custom-code files, a README.md model card) and `training_summary.json` (data, options, the evaluation before
fine-tuning and after every epoch, the best epoch). The Trainer's checkpoints go to `<output-dir>/checkpoints` and
are deleted at the end unless `--keep-checkpoints` is given.
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

from audio_orcahello import AudioInputError, open_recording

from .. import models
from ..conversion.model_folder import save_model_folder
from ..options import positive_integer

LABELS = {"negative": 0, "positive": 1}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# fastai_audio 0.1's tfm_mask_frequency(num_rows=30): production's training masked exactly this many mel rows.
FASTAI_AUDIO_FREQUENCY_MASK_ROWS = 30
DECISION_THRESHOLD = 0.5
BEST_MODEL_METRIC = "auprc"
# Windows featurized together: vectorizes resampling and STFTs without holding a whole data set of audio at once.
FEATURIZE_BLOCK_SIZE = 64
CHECKPOINTS_FOLDER = "checkpoints"
SUMMARY_FILE = "training_summary.json"
MAX_LISTED_PROBLEMS = 10

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_WARMUP_RATIO = 0.3

CARD_LICENSE_NAME = "orcahello-rail-ams"
CARD_LICENSE_LINK = "https://github.com/orcasound/aifororcas-livesystem/blob/main/LICENSE"


class TrainingDataError(ValueError):
    """Training or evaluation data that cannot be used: wrong layout, unreadable or too short clips, one class."""


# ----------------------------------------------------------------------------------------------------------------
# Data: labelled clips -> spectrograms
# ----------------------------------------------------------------------------------------------------------------


def is_audio_file(name):
    # Hidden files are skipped: "._clip.wav" AppleDouble files, which macOS leaves on SD cards, are not audio.
    return name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith(".")


def is_saved_dataset(path):
    """Whether `path` is a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_info.json", "dataset_dict.json")
    )


def clips_from_folder(root):
    """`[(name, path, label)]` for every audio file under `root/positive` and `root/negative`, sorted."""
    clips = []
    for class_name, label in LABELS.items():
        class_folder = os.path.join(root, class_name)
        for directory, subdirectories, names in os.walk(class_folder):
            subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
            for name in sorted(names):
                if is_audio_file(name):
                    path = os.path.join(directory, name)
                    clips.append((path, path, label))
    return clips


def clips_from_saved_dataset(path):
    """`[(name, {"bytes", "path"}, label)]` for the rows of a `datasets.Dataset` saved with `save_to_disk`."""
    import datasets

    dataset = datasets.load_from_disk(path)
    if isinstance(dataset, datasets.DatasetDict):
        raise TrainingDataError(
            f"{path} holds a DatasetDict with splits {sorted(dataset)}: pass one split's folder, e.g. "
            f"{os.path.join(path, min(dataset))}"
        )
    audio_columns = [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Audio)]
    if not audio_columns:
        raise TrainingDataError(f"{path}: the dataset has no Audio column (columns: {dataset.column_names})")
    if "label" not in dataset.column_names:
        raise TrainingDataError(f"{path}: the dataset has no 'label' column (columns: {dataset.column_names})")
    audio_column = audio_columns[0]
    # decode=False: the rows' {"bytes", "path"} as stored. Decoding through datasets needs torchcodec; the pipeline's
    # reader (soundfile) decodes them exactly as it decodes files at inference.
    dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))

    label_feature = dataset.features["label"]
    remap = None
    if isinstance(label_feature, datasets.ClassLabel):
        names = [name.lower() for name in label_feature.names]
        if set(LABELS) <= set(names):
            remap = {names.index(name): label for name, label in LABELS.items()}
    clips = []
    for index, row in enumerate(dataset.select_columns([audio_column, "label"])):
        audio, label = row[audio_column], row["label"]
        label = remap.get(label, label) if remap is not None else label
        if isinstance(label, bool) or label not in (0, 1):
            raise TrainingDataError(f"{path}: row {index} has label {row['label']!r}; labels must be 0 or 1")
        name = f"{path}[{index}]" + (f" ({audio['path']})" if audio.get("path") else "")
        clips.append((name, audio, int(label)))
    return clips


def find_clips(path):
    """The labelled clips of a `--train`/`--eval` argument: a positive/negative folder tree or a saved dataset."""
    if not os.path.isdir(path):
        raise TrainingDataError(f"{path}: no such folder")
    if is_saved_dataset(path):
        clips = clips_from_saved_dataset(path)
    elif os.path.isdir(os.path.join(path, "positive")) or os.path.isdir(os.path.join(path, "negative")):
        clips = clips_from_folder(path)
    else:
        raise TrainingDataError(
            f"{path}: expected a folder with positive/ and negative/ subfolders of clips, or a datasets.Dataset "
            f"saved with save_to_disk"
        )
    counts = {name: sum(1 for clip in clips if clip[2] == label) for name, label in LABELS.items()}
    missing = [name for name, count in counts.items() if count == 0]
    if missing:
        raise TrainingDataError(
            f"{path}: no {' and no '.join(missing)} clips ({counts['positive']} positive, {counts['negative']} "
            f"negative); both classes are needed"
        )
    return clips


def read_first_window(source, window_seconds):
    """
    The first `window_seconds` of a clip, read as the pipeline reads recordings: `(samples (channels, n),
    sampling_rate, whether the clip is longer than the window)`.
    """
    recording = open_recording(source)
    try:
        window_samples = int(round(window_seconds * recording.sampling_rate))
        if recording.num_samples < window_samples:
            raise AudioInputError(
                f"{recording.duration_seconds:.3f} s is shorter than the model's {window_seconds:g}-second window "
                f"(the pipeline never scores partial windows: cut or drop this clip)"
            )
        return recording.read(0, window_samples), recording.sampling_rate, recording.num_samples > window_samples
    finally:
        recording.close()


def featurize_clips(clips, feature_extractor, window_seconds):
    """
    Spectrograms `(num_clips, 1, 256, 312)` (float32) and labels `(num_clips,)` (int64) of `clips`, plus the number
    of clips longer than the window (only their first window is used). Every unusable clip is reported in one
    `TrainingDataError`.
    """
    features = [None] * len(clips)
    problems, longer = [], 0
    pending = {}  # sampling rate -> [(clip index, window)]: windows of one rate are featurized together

    def flush(rate):
        indices, windows = zip(*pending.pop(rate))
        batch = feature_extractor(list(windows), sampling_rate=rate, return_tensors="pt")["input_features"]
        for index, spectrogram in zip(indices, batch):
            features[index] = spectrogram

    for index, (name, source, _) in enumerate(clips):
        try:
            window, rate, is_longer = read_first_window(source, window_seconds)
        except AudioInputError as error:
            # The reader's messages start with the file's path; rows of a dataset are named by their index.
            message = str(error)
            problems.append(message if message.startswith(str(name)) else f"{name}: {message}")
            continue
        longer += is_longer
        pending.setdefault(rate, []).append((index, window))
        if len(pending[rate]) >= FEATURIZE_BLOCK_SIZE:
            flush(rate)
    for rate in list(pending):
        flush(rate)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise TrainingDataError(f"{len(problems)} of {len(clips)} clips cannot be used:\n  {listed}{more}")
    labels = torch.tensor([label for _, _, label in clips], dtype=torch.long)
    return torch.stack(features), labels, longer


class FrequencyMask:
    """
    fastai_audio's frequency masking (`tfm_mask_frequency`, SpecAugment): one band of `width` mel rows at a uniformly
    random position is set to the spectrogram's mean. `width` is drawn uniformly from `[min_bins, max_bins]`;
    fastai_audio 0.1 always used 30 (`min_bins == max_bins == 30`).
    """

    def __init__(self, max_bins=FASTAI_AUDIO_FREQUENCY_MASK_ROWS, min_bins=None):
        min_bins = max_bins if min_bins is None else min_bins
        if not 0 <= min_bins <= max_bins:
            raise ValueError(f"frequency mask widths need 0 <= min_bins <= max_bins, got {min_bins} and {max_bins}")
        self.max_bins = max_bins
        self.min_bins = min_bins

    def __call__(self, spectrogram):
        """`spectrogram`: `(channels, n_mels, frames)`; returns a masked copy (the input is never changed)."""
        num_rows = spectrogram.shape[-2]
        width = int(torch.randint(self.min_bins, min(self.max_bins, num_rows) + 1, ()).item())
        if width == 0:
            return spectrogram
        start = int(torch.randint(0, num_rows - width + 1, ()).item())
        masked = spectrogram.clone()
        masked[..., start : start + width, :] = spectrogram.mean()
        return masked

    def __repr__(self):
        return f"FrequencyMask(min_bins={self.min_bins}, max_bins={self.max_bins})"


class SpectrogramDataset(torch.utils.data.Dataset):
    """Precomputed spectrograms and labels as `Trainer` inputs, with an optional augmentation of the spectrograms."""

    def __init__(self, features, labels, augment=None):
        self.features = features
        self.labels = labels
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        spectrogram = self.features[index]
        if self.augment is not None:
            spectrogram = self.augment(spectrogram)
        return {"input_features": spectrogram, "labels": self.labels[index]}


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------


def average_precision(labels, scores):
    """
    Area under the precision-recall curve as average precision, `sum_n (R_n - R_{n-1}) P_n` over the distinct
    score thresholds (scikit-learn's `average_precision_score`, without interpolation; tied scores form one
    threshold). NaN when there is no positive.
    """
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.size == 0 or labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    threshold_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), labels.size - 1]
    true_positives = np.cumsum(sorted_labels)[threshold_ends]
    precision = true_positives / (threshold_ends + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def positive_probabilities(logits):
    """softmax(logits)[:, 1], computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    return probabilities[:, 1]


def classification_metrics(labels, scores, threshold=DECISION_THRESHOLD):
    """Precision, recall, F1 and accuracy of `scores > threshold`, and AUPRC, for binary `labels`."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    predicted = scores > threshold
    true_positives = int(np.sum(predicted & labels))
    precision = true_positives / int(predicted.sum()) if predicted.any() else 0.0
    recall = true_positives / int(labels.sum()) if labels.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "auprc": average_precision(labels, scores),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float(np.mean(predicted == labels)),
    }


def compute_metrics(eval_prediction):
    """`Trainer`'s `compute_metrics`: the model's logits and the labels to `classification_metrics`."""
    logits = eval_prediction.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return classification_metrics(eval_prediction.label_ids, positive_probabilities(logits))


# ----------------------------------------------------------------------------------------------------------------
# Model and Trainer
# ----------------------------------------------------------------------------------------------------------------


def freeze_backbone(model, train_batch_norm=False):
    """
    Freeze the ResNet body of `model` (its head stays trainable). Returns the modules to hold in eval mode while
    training: the whole body, so that its BatchNorm layers keep their pretrained running statistics; with
    `train_batch_norm`, its BatchNorm layers stay trainable and in train mode instead (fastai's `train_bn`).
    """
    backbone = model.orcahello
    backbone.requires_grad_(False)
    if not train_batch_norm:
        return [backbone]
    for module in backbone.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.requires_grad_(True)
    return []


def build_trainer(model, training_args, train_dataset, eval_dataset, frozen_modules=()):
    """A `Trainer` that keeps `frozen_modules` in eval mode during training steps."""
    from transformers import Trainer

    class OrcaHelloTrainer(Trainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            # Trainer.training_step calls model.train() before every step, which would put the frozen backbone's
            # BatchNorm layers back in train mode (updating their running statistics); undo that for them.
            for module in frozen_modules:
                module.eval()
            return super().compute_loss(model, inputs, *args, **kwargs)

    return OrcaHelloTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=compute_metrics,
    )


def epoch_metrics(log_history):
    """The evaluation logged after each epoch, as `[{"epoch", "auprc", ...}]`."""
    rows = []
    for entry in log_history:
        if "eval_loss" in entry:
            row = {"epoch": entry.get("epoch")}
            row.update({key[len("eval_") :]: value for key, value in entry.items() if key.startswith("eval_")})
            rows.append(row)
    return rows


def unprefixed(metrics, prefix):
    return {key[len(prefix) + 1 :]: value for key, value in metrics.items() if key.startswith(prefix + "_")}


def model_card(base_model, summary):
    """A short README.md for the fine-tuned folder: Hub metadata, what it was trained from and on, its metrics."""
    final, initial, data, options = summary["final_eval"], summary["initial_eval"], summary["data"], summary["options"]
    rows = "\n".join(
        f"| {name} | {initial.get(name, float('nan')):.4f} | {final.get(name, float('nan')):.4f} |"
        for name in ("auprc", "precision", "recall", "f1", "accuracy")
    )
    # A Hub id (not a local folder) is named as the base model, which links the two on the Hub.
    base_model_line = "" if os.path.isdir(base_model) else f"base_model: {base_model}\n"
    backbone = "the backbone frozen" if options["freeze_backbone"] else "every layer trained"
    description = (
        f"Fine-tuned from `{base_model}` with `orcahello/training/finetune.py` on {data['train']['clips']} clips "
        f"({data['train']['positive']} positive) for {options['epochs']} epoch(s), {backbone}; the epoch kept "
        f"(best AUPRC on {data['eval']['clips']} evaluation clips, {data['eval']['positive']} positive) is epoch "
        f"{summary['best_epoch']}."
    )
    return f"""---
library_name: transformers
pipeline_tag: audio-classification
license: other
license_name: {CARD_LICENSE_NAME}
license_link: {CARD_LICENSE_LINK}
{base_model_line}tags:
  - audio
  - audio-classification
  - bioacoustics
  - killer-whale
  - orca
  - srkw
  - custom_code
  - fine-tuned
---

# OrcaHello SRKW detector, fine-tuned

{description}

| metric on the evaluation clips (one 2-s window each, P(call) > 0.5) | before | after |
|---|---|---|
{rows}

```python
from transformers import pipeline

detector = pipeline("audio-classification", model="path/to/this/folder", trust_remote_code=True)
detector("hydrophone_minute.wav", return_timestamps=True)
```

The weights derive from the OrcaHello weights: Orcasound's OrcaHello RAIL-AMS licence applies to them. See
`training_summary.json` for every option and the evaluation after each epoch.
"""


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def non_negative_integer(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="finetune.py",
        description="Fine-tune an OrcaHello model folder on labelled 2-second clips.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model folder (or Hub id) to start from")
    parser.add_argument("--train", required=True, metavar="DATA", help="positive/negative folder tree or saved dataset")
    parser.add_argument("--eval", required=True, metavar="DATA", help="held-out clips, same forms as --train")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="where the fine-tuned model folder goes")
    parser.add_argument("--epochs", type=positive_integer, default=DEFAULT_EPOCHS, help="default: %(default)s")
    parser.add_argument("--batch-size", type=positive_integer, default=DEFAULT_BATCH_SIZE, help="default: %(default)s")
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE, help="peak; default: %(default)s")
    parser.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY, help="default: %(default)s")
    parser.add_argument(
        "--warmup-ratio",
        type=float,
        default=DEFAULT_WARMUP_RATIO,
        help="share of steps warming up; default: %(default)s",
    )
    parser.add_argument(
        "--freeze-backbone", action="store_true", help="train the head only (backbone BatchNorm frozen)"
    )
    parser.add_argument(
        "--train-batch-norm",
        action="store_true",
        help="with --freeze-backbone: keep the backbone's BatchNorm layers trainable and updating (fastai's train_bn)",
    )
    parser.add_argument(
        "--freq-mask-max-bins",
        type=non_negative_integer,
        default=FASTAI_AUDIO_FREQUENCY_MASK_ROWS,
        help="widest frequency mask, in mel rows (0: no masking); default: %(default)s, fastai_audio's",
    )
    parser.add_argument(
        "--freq-mask-min-bins",
        type=non_negative_integer,
        default=None,
        help="narrowest frequency mask (default: the maximum, a fixed width as fastai_audio; 0 for SpecAugment's)",
    )
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    parser.add_argument("--num-workers", type=non_negative_integer, default=0, help="data loader workers")
    parser.add_argument("--keep-checkpoints", action="store_true", help=f"keep OUT/{CHECKPOINTS_FOLDER}")
    return parser


def finetune(args):
    """Run a fine-tuning described by parsed `args`; returns the summary written to `training_summary.json`."""
    from transformers import TrainingArguments, set_seed

    started = time.monotonic()
    frequency_mask = None
    if args.freq_mask_max_bins > 0:
        frequency_mask = FrequencyMask(max_bins=args.freq_mask_max_bins, min_bins=args.freq_mask_min_bins)
    set_seed(args.seed)

    # As the commands load it: this package's classes, a folder read without the Hub, the default Hub repo only at
    # its pinned revision.
    model, feature_extractor = models.load_model(args.model)
    label2id = {name.lower(): index for name, index in model.config.label2id.items()}
    if label2id != LABELS:
        raise TrainingDataError(
            f"{args.model}: expected labels {LABELS} (class 1 = call), the config has {model.config.label2id}"
        )
    window_seconds = float(getattr(model.config, "window_seconds", 2.0))

    datasets_by_split, data_summary = {}, {}
    for split, path in (("train", args.train), ("eval", args.eval)):
        clips = find_clips(path)
        features, labels, longer = featurize_clips(clips, feature_extractor, window_seconds)
        augment = frequency_mask if split == "train" else None
        datasets_by_split[split] = SpectrogramDataset(features, labels, augment=augment)
        data_summary[split] = {
            "path": os.path.abspath(path),
            "clips": len(clips),
            "positive": int(labels.sum()),
            "negative": int(len(labels) - labels.sum()),
            "longer_than_window": int(longer),
        }
        print(
            f"{split}: {len(clips)} clips ({data_summary[split]['positive']} positive) from {path}"
            + (f"; {longer} longer than {window_seconds:g} s (first window used)" if longer else ""),
            flush=True,
        )

    frozen_modules = freeze_backbone(model, args.train_batch_norm) if args.freeze_backbone else []
    checkpoints = os.path.join(args.output_dir, CHECKPOINTS_FOLDER)
    training_args = TrainingArguments(
        output_dir=checkpoints,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio,  # a float below 1 is a share of the training steps
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=BEST_MODEL_METRIC,
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=True,
        seed=args.seed,
        dataloader_num_workers=args.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
        report_to="none",
    )
    trainer = build_trainer(
        model, training_args, datasets_by_split["train"], datasets_by_split["eval"], frozen_modules=frozen_modules
    )
    # Before any training step, on the same clips and metrics: what fine-tuning has to beat.
    initial_eval = unprefixed(trainer.evaluate(metric_key_prefix="initial"), "initial")
    trainer.train()
    final_eval = unprefixed(trainer.evaluate(metric_key_prefix="final"), "final")  # the best checkpoint, reloaded

    history = epoch_metrics(trainer.state.log_history)
    # The first epoch with the highest AUPRC: the one Trainer kept (a later tie does not replace it).
    best = max(history, key=lambda row: row[BEST_MODEL_METRIC]) if history else {}
    best_epoch = best.get("epoch")
    if isinstance(best_epoch, float) and best_epoch.is_integer():
        best_epoch = int(best_epoch)
    summary = {
        "base_model": args.model,
        "data": data_summary,
        "options": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "weight_decay": args.weight_decay,
            "warmup_ratio": args.warmup_ratio,
            "freeze_backbone": args.freeze_backbone,
            "train_batch_norm": args.train_batch_norm,
            "frequency_mask": None
            if frequency_mask is None
            else {"min_bins": frequency_mask.min_bins, "max_bins": frequency_mask.max_bins, "value": "mean"},
            "seed": args.seed,
            "window_seconds": window_seconds,
            "decision_threshold": DECISION_THRESHOLD,
        },
        "initial_eval": initial_eval,
        "epochs": history,
        "best_epoch": best_epoch,
        "final_eval": final_eval,
    }

    model = trainer.model.eval()
    model.requires_grad_(True)
    save_model_folder(
        model, args.output_dir, feature_extractor=feature_extractor, model_card=model_card(args.model, summary)
    )
    if not args.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    with open(os.path.join(args.output_dir, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    print(
        f"AUPRC on {args.eval}: {initial_eval['auprc']:.4f} before, {final_eval['auprc']:.4f} after (epoch "
        f"{summary['best_epoch']}). Model folder: {args.output_dir}",
        flush=True,
    )
    if final_eval["auprc"] < initial_eval["auprc"]:
        print("WARNING: the fine-tuned model scores a lower AUPRC than the model it started from", file=sys.stderr)
    return summary


def main(argv=None):
    """The command line; returns the exit status (2 for unusable options, data or model, with a message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.train_batch_norm and not args.freeze_backbone:
        parser.error("--train-batch-norm only applies with --freeze-backbone (otherwise every layer trains)")
    if args.freq_mask_min_bins is not None and args.freq_mask_min_bins > args.freq_mask_max_bins:
        parser.error("--freq-mask-min-bins must not exceed --freq-mask-max-bins")
    if not 0.0 <= args.warmup_ratio < 1.0:
        parser.error("--warmup-ratio is a share of the training steps: from 0 up to (not including) 1")
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")
    try:
        finetune(args)
    except (TrainingDataError, models.ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
