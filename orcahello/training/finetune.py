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

import torch

from .. import models
from ..conversion.model_folder import save_model_folder
from ..options import positive_integer
from .finetuned_card import model_card
from .labelled_clips import (
    FASTAI_AUDIO_FREQUENCY_MASK_ROWS,
    LABELS,
    FrequencyMask,
    SpectrogramDataset,
    TrainingDataError,
    featurize_clips,
    find_clips,
)
from .metrics import DECISION_THRESHOLD
from .trainer_setup import build_trainer, epoch_metrics, freeze_backbone, unprefixed

BEST_MODEL_METRIC = "auprc"
CHECKPOINTS_FOLDER = "checkpoints"
SUMMARY_FILE = "training_summary.json"

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_WARMUP_RATIO = 0.3


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
