"""
The README's Python snippets run as written, within a bounded amount of memory: each in a fresh process whose data
segment is limited (RLIMIT_DATA: 4 GB), with a local model folder for the Hub id and the inputs they name
(`hydrophone_minute.wav`, `minute`) made here. Without `torch.inference_mode()` the Auto-classes snippet kept the
autograd graph of 59 ResNet50 windows and peaked at 8.9 GB.
"""

import os
import re
import resource
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import REPO_ROOT

import vocabulary_orcahello

DATA_LIMIT_BYTES = 4 << 30


def readme_snippets():
    """The README's ```python blocks that load the model (`from transformers import ...`)."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    return [block for block in blocks if "from transformers import" in block]


def limit_data():
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT_BYTES, DATA_LIMIT_BYTES))


@pytest.mark.parametrize("index", range(len(readme_snippets())))
def test_readme_snippet_runs_within_bounded_memory(index, random_resnet50_folder, tmp_path):
    snippet = readme_snippets()[index]
    assert vocabulary_orcahello.HUB_MODEL_ID in snippet
    code = snippet.replace(f'"{vocabulary_orcahello.HUB_MODEL_ID}"', repr(str(random_resnet50_folder)))
    minute = (np.random.default_rng(0).standard_normal(60 * 48000) * 0.1).astype(np.float32)
    soundfile.write(str(tmp_path / "hydrophone_minute.wav"), minute, 48000, subtype="PCM_16")
    np.save(tmp_path / "minute.npy", minute)
    program = "import numpy as np\nminute = np.load('minute.npy')\n" + code + "\nprint('SNIPPET DONE')\n"
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO_ROOT),
        preexec_fn=limit_data,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "SNIPPET DONE" in completed.stdout
