# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The `Trainer` a fine-tuning runs: an optionally frozen backbone whose BatchNorm layers stay in eval mode
([`freeze_backbone`], [`build_trainer`]), and the per-epoch evaluation read back from its log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from .metrics import compute_metrics

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

    from modeling_orcahello import OrcaHelloForAudioClassification


def freeze_backbone(model: OrcaHelloForAudioClassification, train_batch_norm: bool = False) -> list[torch.nn.Module]:
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


def build_trainer(
    model: OrcaHelloForAudioClassification,
    training_args: TrainingArguments,
    train_dataset: torch.utils.data.Dataset,
    eval_dataset: torch.utils.data.Dataset | None,
    frozen_modules: Iterable[torch.nn.Module] = (),
) -> Trainer:
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


def epoch_metrics(log_history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation logged after each epoch, as `[{"epoch", "auprc", ...}]`."""
    rows = []
    for entry in log_history:
        if "eval_loss" in entry:
            row = {"epoch": entry.get("epoch")}
            row.update({key[len("eval_") :]: value for key, value in entry.items() if key.startswith("eval_")})
            rows.append(row)
    return rows


def unprefixed(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`metrics` from `Trainer.evaluate(metric_key_prefix=prefix)` with the `prefix_` taken off their names."""
    return {key[len(prefix) + 1 :]: value for key, value in metrics.items() if key.startswith(prefix + "_")}
