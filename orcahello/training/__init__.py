# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""Training tools for the OrcaHello detector: `orcahello.training.finetune` fine-tunes a model folder on labelled clips."""

# fastai_audio 0.1's tfm_mask_frequency(num_rows=30): production's training masked exactly this many mel rows (the
# frequency mask's default, and so the fine-tuning's).
FASTAI_AUDIO_FREQUENCY_MASK_ROWS = 30
