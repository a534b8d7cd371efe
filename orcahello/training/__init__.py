# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""Training tools for the OrcaHello detector: `orcahello.training.finetune` fine-tunes a model folder on labelled clips."""
