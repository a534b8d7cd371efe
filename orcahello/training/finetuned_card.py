# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""The README.md model card of a fine-tuned model folder: Hub metadata, what it was trained from and on, its metrics."""

import os
from typing import Any

CARD_LICENSE_NAME = "orcahello-rail-ams"
CARD_LICENSE_LINK = "https://github.com/orcasound/aifororcas-livesystem/blob/main/LICENSE"


def model_card(base_model: str, summary: dict[str, Any]) -> str:
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
