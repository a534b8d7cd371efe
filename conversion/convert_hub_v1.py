# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Convert a folder in upstream's Hub layout (`orcasound/orcahello-srkw-detector-v1` as `PyTorchModelHubMixin` saves
it: `config.json`/`config.yaml` with either form of its decision rule, and `model.safetensors` or `model_v1.pt`) into
a Transformers model folder whose default preset is v1 with the folder's settings:

    python conversion/convert_hub_v1.py --input path/to/hub-folder --output-dir models/from-hub

The same converter as `conversion/convert_fastai.py` (it tells the layouts apart); this name says what it is for.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from orcahello.conversion.convert_fastai import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
