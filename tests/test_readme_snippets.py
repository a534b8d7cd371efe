"""
The Python examples that load the model, in the model card (README.md) and in the manual's pages (docs/*.md), run as
written within a bounded amount of memory: each in a fresh process whose data segment is limited (RLIMIT_DATA:
4 GB), with a local model folder for the Hub id and the inputs they name (`hydrophone_minute.wav`, `minute`) made
here. Without `torch.inference_mode()` the Auto-classes example kept the autograd graph of 59 ResNet50 windows and
peaked at 8.9 GB.
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
DOCUMENTS = ["README.md"] + sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "docs").glob("*.md"))


def model_loading_snippets(document):
    """The ```python blocks of `document` (a path under the repository) that load the model (`from transformers
    import ...`)."""
    text = (REPO_ROOT / document).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [block for block in blocks if "from transformers import" in block]


SNIPPETS = [
    pytest.param(document, snippet, id=f"{document}:{index}")
    for document in DOCUMENTS
    for index, snippet in enumerate(model_loading_snippets(document))
]


def test_the_card_and_the_pipeline_page_show_how_to_load_the_model():
    """The examples a user copies first exist where users look for them, so that the test below has them to run."""
    card = model_loading_snippets("README.md")
    assert any("pipeline(" in snippet for snippet in card), "README.md has no pipeline example"
    assert any("AutoModelForAudioClassification" in snippet for snippet in card), (
        "README.md has no Auto-classes example"
    )
    manual = model_loading_snippets("docs/pipeline.md")
    assert any("pipeline(" in snippet for snippet in manual), "docs/pipeline.md has no pipeline example"
    assert any("AutoModel." in snippet for snippet in manual), "docs/pipeline.md has no embeddings example"


def limit_data():
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT_BYTES, DATA_LIMIT_BYTES))


@pytest.mark.parametrize(("document", "snippet"), SNIPPETS)
def test_snippet_runs_within_bounded_memory(document, snippet, random_resnet50_folder, tmp_path):
    assert vocabulary_orcahello.HUB_MODEL_ID in snippet, f"{document}: the example does not load the Hub model"
    code = snippet.replace(f'"{vocabulary_orcahello.HUB_MODEL_ID}"', repr(str(random_resnet50_folder)))
    minute = (np.random.default_rng(0).standard_normal(60 * 48000) * 0.1).astype(np.float32)
    soundfile.write(str(tmp_path / "hydrophone_minute.wav"), minute, 48000, subtype="PCM_16")
    np.save(tmp_path / "minute.npy", minute)
    program = "import numpy as np\nminute = np.load('minute.npy')\n" + code + "\nprint('SNIPPET DONE')\n"
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT)),
        preexec_fn=limit_data,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "SNIPPET DONE" in completed.stdout
