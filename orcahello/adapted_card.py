# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""The README.md model card of a folder made by `orcahello adapt`: what it was adapted from, with which labels, and
its held-out figures."""

import os

from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY

from .training.finetuned_card import CARD_LICENSE_LINK, CARD_LICENSE_NAME


def _show(value):
    return "n/a" if value is None else f"{value:.3f}"


def adapted_model_card(base_model: str, adapted_head: dict) -> str:
    """A short README.md for an adapted folder, from its config's `adapted_head` (see `orcahello.adapt`)."""
    held_out, windows = adapted_head["held_out"], adapted_head["windows"]
    base, adapted = held_out["base"], held_out["adapted"]
    rows = "\n".join(
        f"| {name} | {_show(base[key])} | {_show(adapted[key])} |"
        for name, key in (
            ("AUPRC, one-second resolution (`orcahello evaluate`)", "seconds_auprc"),
            (f"precision at the base model's recall ({_show(held_out['base_recall'])})", "precision_at_base_recall"),
            ("precision of the decision (rows > threshold)", "precision"),
            ("recall of the decision", "recall"),
            ("AUPRC, files (global confidence)", "files_auprc"),
        )
    )
    labels = "\n".join(
        f"- `{entry['file']}`: {entry['annotations']} annotation(s), sha256 `{entry['sha256']}`"
        for entry in adapted_head["annotations"]
    )
    base_model_line = "" if os.path.isdir(base_model) else f"base_model: {base_model}\n"
    synthetic = ""
    if adapted_head["base_model"].get(SYNTHETIC_WEIGHTS_KEY):
        synthetic = (
            "\n**The base weights are the SYNTHETIC stand-in** (trained on synthetic audio, for testing): its "
            "embeddings were never trained on whale calls, and these figures say only that the adaptation code "
            "works, not how well a real adapted detector would.\n"
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
  - adapted
---

# OrcaHello SRKW detector, adapted to a site

Adapted from `{adapted_head["base_model"]["name_or_path"]}` with `orcahello adapt`: its logits come from a
logistic-regression head on the `{adapted_head["layer"]}` features of the base network ({adapted_head["method"]}),
fitted on {windows["positive"]} positive and {windows["negative"]} negative windows of
{adapted_head["recordings"]} recording(s) ({windows["left_out"]} left out: unsure, or barely touched by a call).
{synthetic}
Labels (`orcahello evaluate`'s annotation formats):

{labels}

Held out: the recordings were split into {held_out["folds"]} folds by recording; each fold was scored by a head
fitted on the others, so no window of a recording was trained on when it was scored. Measured as `orcahello evaluate`
measures `detect`'s results, on {base["seconds"]} seconds ({base["annotated_seconds"]} annotated):

| held-out recordings | base model | adapted |
|---|---|---|
{rows}

```python
from transformers import pipeline

detector = pipeline("audio-classification", model="path/to/this/folder", trust_remote_code=True)
detector("hydrophone_minute.wav", return_timestamps=True)
```

`orcahello detect --model path/to/this/folder` and every other command load it as they load the base model; each
output names the adaptation (`model.adapted_head`). `adaptation_summary.json` holds every option, recording and
fold. The weights derive from the OrcaHello weights: Orcasound's OrcaHello RAIL-AMS licence applies to them.
"""
