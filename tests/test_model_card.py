"""
The model card (README.md): its Hub metadata, read offline with `huggingface_hub.ModelCard.load` as the Hub reads it
(`ModelCard.validate()` is not used: it posts the card to the Hub), its widget examples, and the sections users
need.
"""

from urllib.parse import urlparse

import pytest
from conftest import REPO_ROOT

from orcahello.conversion.upload import DEFAULT_REPO_ID, check_model_card

README = REPO_ROOT / "README.md"
# A widget example in this repository is linked as the Hub serves it: https://huggingface.co/<repo>/resolve/<rev>/path
RESOLVE_PREFIX = f"/{DEFAULT_REPO_ID}/resolve/"


@pytest.fixture(scope="module")
def metadata():
    from huggingface_hub import ModelCard

    return ModelCard.load(README).data.to_dict()


def test_card_metadata_declares_library_task_and_the_weights_licence(metadata):
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "audio-classification"
    # The weights are under OrcaHello RAIL-AMS, not an SPDX licence: "other" plus its name and a link to its text.
    assert metadata["license"] == "other"
    assert metadata["license_name"] == "orcahello-rail-ams"
    assert urlparse(metadata["license_link"]).scheme == "https"
    assert {"audio", "audio-classification", "bioacoustics", "killer-whale", "srkw", "custom_code"} <= set(
        metadata["tags"]
    )
    assert check_model_card(str(README)) == []  # what orcahello/conversion/upload.py requires before a push


def widget_file(source):
    """The repository path a widget `src` points at: a path in the repo, or this repo's Hub `resolve` URL."""
    parsed = urlparse(source)
    if not parsed.scheme:
        return source
    assert parsed.netloc == "huggingface.co" and parsed.path.startswith(RESOLVE_PREFIX), source
    revision_and_path = parsed.path[len(RESOLVE_PREFIX) :]
    return revision_and_path.split("/", 1)[1]


def test_widget_examples_are_files_of_this_repository(metadata):
    widget = metadata["widget"]
    assert isinstance(widget, list) and widget
    for example in widget:
        assert example["example_title"].strip()
        path = widget_file(example["src"])
        assert (REPO_ROOT / path).is_file(), f"widget example {example['src']} is not in the repository"
        assert path.lower().endswith((".wav", ".flac", ".mp3", ".ogg"))
        for output in example.get("output", []):
            assert set(output) == {"label", "score"} and output["label"] in ("positive", "negative")
            assert 0.0 <= output["score"] <= 1.0


def test_card_documents_endpoints_fine_tuning_and_per_site_thresholds():
    text = README.read_text(encoding="utf-8")
    for heading in ("### Inference Endpoints", "### Fine-tuning", "### Per-site thresholds", "## Licence"):
        assert f"\n{heading}\n" in text, heading
    # The files and modules those sections tell users to run exist.
    for mention, path in (
        ("handler.py", "handler.py"),
        ("orcahello/training/finetune.py", "orcahello/training/finetune.py"),
        ("orcahello.site_thresholds", "orcahello/site_thresholds.py"),
    ):
        assert mention in text and (REPO_ROOT / path).is_file(), path
