# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Convert an OrcaHello fastai learner export, a state_dict or a folder in upstream's Hub layout into a Transformers
model folder: the entry point issue 3 documented, run from the repository root,

    python conversion/convert_fastai.py --input path/to/model.pkl --output-dir models/orcahello-production

the same as `orcahello convert` and `python -m orcahello.conversion.convert_fastai` (the code is
`orcahello/conversion/`).
"""

import os
import sys

# Run as a script, Python puts this folder first on the path, not the repository root that holds the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from orcahello.conversion.convert_fastai import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
