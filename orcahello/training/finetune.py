# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Fine-tune an OrcaHello model folder on labelled clips with transformers' `Trainer`, and save the result as a model
folder that `pipeline("audio-classification", model=OUT, trust_remote_code=True)` loads.

    orcahello finetune --model models/orcahello-srkw-detector-v1 \
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

import dataclasses
import json
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any, cast

from .. import models
from ..atomic_files import write_atomically
from . import FASTAI_AUDIO_FREQUENCY_MASK_ROWS

if TYPE_CHECKING:
    from modeling_orcahello import OrcaHelloForAudioClassification

BEST_MODEL_METRIC = "auprc"
CHECKPOINTS_FOLDER = "checkpoints"
SUMMARY_FILE = "training_summary.json"

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_WARMUP_RATIO = 0.3


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """
    What a fine-tuning can be told (`orcahello finetune`'s options; see the module's description). Options that
    contradict each other raise a one-line `ValueError`.

    Args:
        model (`str`): the model folder (or Hub id) to start from.
        train (`str`): the training clips: a positive/negative folder tree or a saved `datasets.Dataset`.
        eval (`str`): held-out clips, in the same forms.
        output_dir (`str`): where the fine-tuned model folder goes.
        epochs (`int`, *optional*, defaults to 10): training epochs.
        batch_size (`int`, *optional*, defaults to 64): clips per step (training and evaluation).
        learning_rate (`float`, *optional*, defaults to 1e-3): the peak learning rate, above 0.
        weight_decay (`float`, *optional*, defaults to 0.01): AdamW's weight decay.
        warmup_ratio (`float`, *optional*, defaults to 0.3): the share of the steps warming up, from 0 up to 1.
        freeze_backbone (`bool`, *optional*, defaults to `False`): train the head only (backbone BatchNorm frozen).
        train_batch_norm (`bool`, *optional*, defaults to `False`): with `freeze_backbone`, keep the backbone's
            BatchNorm layers trainable and updating (fastai's `train_bn`).
        freq_mask_max_bins (`int`, *optional*, defaults to 30): the widest frequency mask, in mel rows (0: none).
        freq_mask_min_bins (`int`, *optional*): the narrowest one; None: the widest (a fixed width, as fastai_audio).
        seed (`int`, *optional*, defaults to 42): the seed of the run.
        num_workers (`int`, *optional*, defaults to 0): data loader workers.
        keep_checkpoints (`bool`, *optional*, defaults to `False`): keep `<output_dir>/checkpoints`.
    """

    model: str
    train: str
    eval: str
    output_dir: str
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    warmup_ratio: float = DEFAULT_WARMUP_RATIO
    freeze_backbone: bool = False
    train_batch_norm: bool = False
    freq_mask_max_bins: int = FASTAI_AUDIO_FREQUENCY_MASK_ROWS
    freq_mask_min_bins: int | None = None
    seed: int = 42
    num_workers: int = 0
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        if self.train_batch_norm and not self.freeze_backbone:
            raise ValueError("--train-batch-norm only applies with --freeze-backbone (otherwise every layer trains)")
        if self.freq_mask_min_bins is not None and self.freq_mask_min_bins > self.freq_mask_max_bins:
            raise ValueError("--freq-mask-min-bins must not exceed --freq-mask-max-bins")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("--warmup-ratio is a share of the training steps: from 0 up to (not including) 1")
        if self.learning_rate <= 0:
            raise ValueError("--learning-rate must be positive")


def finetune(options: FinetuneOptions) -> dict[str, Any]:
    """Run the fine-tuning `options` describe; returns the summary written to `training_summary.json`."""
    # Imported here: building the command line's parser never loads torch or transformers.
    import torch
    from transformers import TrainingArguments, set_seed

    from ..conversion.model_folder import save_model_folder
    from .finetuned_card import model_card
    from .labelled_clips import (
        LABELS,
        FrequencyMask,
        SpectrogramDataset,
        TrainingDataError,
        featurize_clips,
        find_clips,
    )
    from .metrics import DECISION_THRESHOLD
    from .trainer_setup import build_trainer, epoch_metrics, freeze_backbone, unprefixed

    started = time.monotonic()
    frequency_mask = None
    if options.freq_mask_max_bins > 0:
        frequency_mask = FrequencyMask(max_bins=options.freq_mask_max_bins, min_bins=options.freq_mask_min_bins)
    set_seed(options.seed)

    # As the commands load it: this package's classes, a folder read without the Hub, the default Hub repo only at
    # its pinned revision.
    model, feature_extractor = models.load_model(options.model)
    assert model.config.label2id is not None  # every OrcaHelloConfig has its two labels
    label2id = {name.lower(): index for name, index in model.config.label2id.items()}
    if label2id != LABELS:
        raise TrainingDataError(
            f"{options.model}: expected labels {LABELS} (class 1 = call), the config has {model.config.label2id}"
        )
    window_seconds = float(getattr(model.config, "window_seconds", 2.0))

    datasets_by_split, data_summary = {}, {}
    for split, path in (("train", options.train), ("eval", options.eval)):
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

    frozen_modules = freeze_backbone(model, options.train_batch_norm) if options.freeze_backbone else []
    checkpoints = os.path.join(options.output_dir, CHECKPOINTS_FOLDER)
    training_args = TrainingArguments(
        output_dir=checkpoints,
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        weight_decay=options.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=options.warmup_ratio,  # a float below 1 is a share of the training steps
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=BEST_MODEL_METRIC,
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=True,
        seed=options.seed,
        dataloader_num_workers=options.num_workers,
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
        "base_model": options.model,
        "data": data_summary,
        "options": {
            "epochs": options.epochs,
            "batch_size": options.batch_size,
            "learning_rate": options.learning_rate,
            "weight_decay": options.weight_decay,
            "warmup_ratio": options.warmup_ratio,
            "freeze_backbone": options.freeze_backbone,
            "train_batch_norm": options.train_batch_norm,
            "frequency_mask": None
            if frequency_mask is None
            else {"min_bins": frequency_mask.min_bins, "max_bins": frequency_mask.max_bins, "value": "mean"},
            "seed": options.seed,
            "window_seconds": window_seconds,
            "decision_threshold": DECISION_THRESHOLD,
        },
        "initial_eval": initial_eval,
        "epochs": history,
        "best_epoch": best_epoch,
        "final_eval": final_eval,
    }

    model = cast("OrcaHelloForAudioClassification", trainer.model).eval()  # the model the trainer was given
    model.requires_grad_(True)
    save_model_folder(
        model, options.output_dir, feature_extractor=feature_extractor, model_card=model_card(options.model, summary)
    )
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    write_atomically(os.path.join(options.output_dir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    print(
        f"AUPRC on {options.eval}: {initial_eval['auprc']:.4f} before, {final_eval['auprc']:.4f} after (epoch "
        f"{summary['best_epoch']}). Model folder: {options.output_dir}",
        flush=True,
    )
    if final_eval["auprc"] < initial_eval["auprc"]:
        print("WARNING: the fine-tuned model scores a lower AUPRC than the model it started from", file=sys.stderr)
    return summary


def finetune_command(options: FinetuneOptions) -> int:
    """`orcahello finetune` with `options`; returns the exit status (2 for unusable data or model, with a message)."""
    from .labelled_clips import TrainingDataError

    try:
        finetune(options)
    except (TrainingDataError, models.ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m orcahello.training.finetune ...`: `orcahello finetune ...`; returns the exit status."""
    from ..cli import main as command_line

    return command_line(["finetune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
