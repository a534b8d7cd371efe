"""
The model card (README.md): its Hub metadata, read offline with `huggingface_hub.ModelCard.load` as the Hub reads it
(`ModelCard.validate()` is not used: it posts the card to the Hub), its widget examples, its length and the order of
its sections, the set-up commands, and the manual pages it links for deployment and tuning.
"""

import re
from urllib.parse import urlparse

import pytest
from conftest import REPO_ROOT

from orcahello.conversion.upload import check_model_card
from vocabulary_orcahello import HUB_MODEL_ID

README = REPO_ROOT / "README.md"
# A widget example in this repository is linked as the Hub serves it: https://huggingface.co/<repo>/resolve/<rev>/path
RESOLVE_PREFIX = f"/{HUB_MODEL_ID}/resolve/"
# The card is what a Hub visitor reads first: the manual (docs/) holds the rest.
MAX_CARD_LINES = 250


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


def card_sections():
    """The card's second-level headings, in order, and the text under each."""
    text = README.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_card_is_short_and_meets_a_hub_visitor_with_the_model_before_the_set_up():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= MAX_CARD_LINES
    headings = list(card_sections())
    # What it is and how to use it first, then the presets, the evaluation, limitations, licence, citation; the
    # set-up of this repository (a contributor's concern) last.
    expected = ["How to use", "Inference presets", "Evaluation", "Limitations", "Licence", "Citation", "Set-up"]
    found = [next((heading for heading in headings if heading.startswith(name)), None) for name in expected]
    assert None not in found, dict(zip(expected, found))
    assert [headings.index(heading) for heading in found] == sorted(headings.index(heading) for heading in found)
    assert found[-1] == headings[-1], "the set-up is the card's last section"


def test_the_card_gives_the_two_set_up_commands_and_points_to_the_contributor_notes():
    set_up = next(text for heading, text in card_sections().items() if heading.startswith("Set-up"))
    assert "bash scripts/setup.sh" in set_up and (REPO_ROOT / "scripts" / "setup.sh").is_file()
    assert ".venv/bin/python -m pytest -q" in set_up
    assert "(CONTRIBUTING.md)" in set_up and (REPO_ROOT / "CONTRIBUTING.md").is_file()


@pytest.mark.parametrize(
    ("page", "mention", "path"),
    [
        ("docs/endpoints.md", "handler.py", "handler.py"),
        ("docs/finetuning.md", "orcahello/training/finetune.py", "orcahello/training/finetune.py"),
        ("docs/site_thresholds.md", "orcahello.site_thresholds", "orcahello/site_thresholds.py"),
    ],
)
def test_the_card_links_the_manual_pages_users_deploy_and_tune_with(page, mention, path):
    """Inference Endpoints, fine-tuning and per-site thresholds are on pages of the manual the card links to, and
    the files and modules those pages tell users to run exist."""
    assert f"]({page})" in README.read_text(encoding="utf-8"), f"the card does not link {page}"
    assert mention in (REPO_ROOT / page).read_text(encoding="utf-8")
    assert (REPO_ROOT / path).is_file(), path


def test_every_link_of_the_card_works_in_the_model_folder_and_is_uploaded(tmp_path):
    """On the Hub the card is read from the model folder: each relative link must name a file the folder holds and the
    upload sends, and each page of the manual the folder holds must link only to files that are there too."""
    from fnmatch import fnmatch

    from conftest import save_random_model_folder, tiny_config

    from modeling_orcahello import OrcaHelloForAudioClassification
    from orcahello.conversion.model_folder import save_model_folder
    from orcahello.conversion.upload import UPLOAD_PATTERNS

    card = README.read_text()
    model = OrcaHelloForAudioClassification.from_pretrained(save_random_model_folder(tiny_config(), tmp_path / "tiny"))
    folder = tmp_path / "folder"
    save_model_folder(model, folder, model_card=card)
    pages = [folder / "README.md", *sorted((folder / "docs").glob("*.md"))]
    assert len(pages) > 10, "the manual did not come with the card"
    for page in pages:
        for target in re.findall(r"\]\((?!https?://|mailto:|#)([^)#\s]+)", page.read_text()):
            linked = (page.parent / target).resolve()
            assert linked.is_file(), f"{page.relative_to(folder)} links to {target}, not in the folder"
            name = linked.relative_to(folder.resolve()).as_posix()
            assert any(fnmatch(name, pattern) for pattern in UPLOAD_PATTERNS), f"{name} would not be uploaded"
