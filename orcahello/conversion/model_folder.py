"""Write a complete, self-contained Transformers model folder for the OrcaHello detector."""

import json
import os
import re
import shutil
import tempfile
from typing import Any, TypeVar

from transformers import PretrainedConfig

from configuration_orcahello import OrcaHelloConfig
from feature_extraction_orcahello import OrcaHelloFeatureExtractor
from modeling_orcahello import OrcaHelloForAudioClassification

from .. import REPO_ROOT
from ..atomic_files import write_atomically

CUSTOM_CODE_FILES = (
    "configuration_orcahello.py",
    "modeling_orcahello.py",
    "feature_extraction_orcahello.py",
    "audio_orcahello.py",
    "hls_orcahello.py",
    "hls_playlist_orcahello.py",
    "hls_stream_orcahello.py",
    "hls_timeline_orcahello.py",
    "http_orcahello.py",
    "pipeline_orcahello.py",
    "call_parameters_orcahello.py",
    "results_orcahello.py",
    "engines_orcahello.py",
    "padding_skipping_orcahello.py",
    "fast_mode_orcahello.py",
    "process_memory_orcahello.py",
    "vocabulary_orcahello.py",
    "whole_recording_orcahello.py",
)
# Not loaded by transformers: the Inference Endpoints entry point (`EndpointHandler`), which serves the folder's
# pipeline when it is deployed as a custom-handler endpoint. It belongs wherever the model goes.
ENDPOINT_HANDLER_FILES = ("handler.py",)
# The card's widget plays this clip from the model repo; its licence note goes with it.
EXAMPLE_FILES = ("examples/pos_srkw_orcasound_210825-1925_L-highlight.wav", "examples/SOURCES.md")
# The repository's manual and per-site tables, which the repository's own card (README.md) links to: a folder whose
# card is that card carries them, so that the links work on the Hub as on GitHub. The manual's pages link each other,
# so it goes whole.
CARD_FOLDERS = ("docs", "site_thresholds")
# A Markdown link or image to a relative path: `](path)` or `](path#anchor)`.
RELATIVE_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)")
AUTO_MAP = {
    "AutoConfig": "configuration_orcahello.OrcaHelloConfig",
    "AutoModel": "modeling_orcahello.OrcaHelloModel",
    "AutoModelForAudioClassification": "modeling_orcahello.OrcaHelloForAudioClassification",
}
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_orcahello.OrcaHelloAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "tf": [],
        "type": "audio",
    }
}
FEATURE_EXTRACTOR_AUTO_MAP = {"AutoFeatureExtractor": "feature_extraction_orcahello.OrcaHelloFeatureExtractor"}


ConfigT = TypeVar("ConfigT", bound=PretrainedConfig)


def prepare_config(config: ConfigT) -> ConfigT:
    """Set the auto_map and custom_pipelines entries that make the folder loadable with trust_remote_code=True."""
    config.auto_map = dict(AUTO_MAP)
    config.custom_pipelines = json.loads(json.dumps(CUSTOM_PIPELINES))
    config.architectures = ["OrcaHelloForAudioClassification"]
    return config


def save_feature_extractor(feature_extractor: OrcaHelloFeatureExtractor, output_dir: str) -> None:
    """
    `feature_extractor.save_pretrained` plus its `auto_map` entry. save_pretrained writes auto_map (and copies code)
    only for classes registered with register_for_auto_class; writing it explicitly keeps the file identical on
    every transformers version.
    """
    feature_extractor.save_pretrained(output_dir)
    preprocessor_path = os.path.join(output_dir, "preprocessor_config.json")
    with open(preprocessor_path) as handle:
        preprocessor = json.load(handle)
    preprocessor["auto_map"] = dict(FEATURE_EXTRACTOR_AUTO_MAP)
    # Every file here is written through a temporary file and a rename: never through a symbolic link at its name.
    write_atomically(preprocessor_path, json.dumps(preprocessor, indent=2, sort_keys=True) + "\n")


def save_model_folder(
    model: OrcaHelloForAudioClassification,
    output_dir: str,
    feature_extractor: OrcaHelloFeatureExtractor | None = None,
    model_card: str | None = None,
) -> str:
    """
    Save `model` (an `OrcaHelloForAudioClassification`) as a folder that `AutoModel*`, `AutoFeatureExtractor` and
    `pipeline("audio-classification", ..., trust_remote_code=True)` load from a fresh process: `model.safetensors`,
    `config.json`, `preprocessor_config.json`, the custom-code files, the Inference Endpoints `handler.py`, the
    widget's example clip with its licence note and, when given, the model card as README.md.

    Nothing is written through a symbolic link: transformers' `save_pretrained` opens its files by name (a link
    planted at `config.json` would have its target overwritten), so the folder is made in a private folder inside
    `output_dir` and each file renamed into place (a rename replaces a link at the name); a link at a subfolder's
    name (`examples`, `docs`) is refused with a one-line `ValueError`. `output_dir` itself is the caller's to name.
    """
    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".model-folder-", dir=output_dir)
    try:
        prepare_config(model.config)
        model.save_pretrained(staging)
        save_feature_extractor(feature_extractor or OrcaHelloFeatureExtractor(), staging)
        for name in CUSTOM_CODE_FILES + ENDPOINT_HANDLER_FILES + EXAMPLE_FILES:
            copy_from_repository(name, staging)
        if model_card is not None:
            write_atomically(os.path.join(staging, "README.md"), model_card)
            for name in card_linked_files(model_card):
                copy_from_repository(name, staging)
        move_into_folder(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def move_into_folder(source: str, output_dir: str) -> None:
    """
    Rename every file under `source` to the same relative path in `output_dir` (the same file system), making the
    subfolders it needs; a subfolder of `output_dir` that is a symbolic link is refused with a one-line ValueError
    before anything is moved.
    """
    moves: list[tuple[str, str]] = []
    for folder, _, files in os.walk(source):
        relative = os.path.relpath(folder, source)
        target_folder = output_dir if relative == "." else os.path.join(output_dir, relative)
        parts = [] if relative == "." else relative.split(os.sep)
        for depth in range(1, len(parts) + 1):
            path = os.path.join(output_dir, *parts[:depth])
            if os.path.islink(path):
                raise ValueError(f"{path} is a symbolic link: a model folder is never written through one")
        moves.extend((os.path.join(folder, name), os.path.join(target_folder, name)) for name in files)
    for staged, target in moves:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(staged, target)


def copy_from_repository(name: str, output_dir: str) -> None:
    """
    Write this checkout's file `name` (a relative path) into `output_dir` at the same path, through a temporary file
    and a rename: never through a symbolic link at its name.
    """
    with open(os.path.join(REPO_ROOT, name), "rb") as handle:
        write_atomically(os.path.join(output_dir, name), handle.read())


def card_linked_files(model_card: str) -> list[str]:
    """
    The repository files a model card links to by relative path and that the folder does not otherwise hold, plus
    every file of a `CARD_FOLDERS` folder it links into: what the folder needs for the card's links to work on the
    Hub. A link to a file this checkout does not have is left alone (a card of another origin).
    """
    linked: set[str] = set()
    for target in RELATIVE_LINK.findall(model_card):
        name = os.path.normpath(target)
        if name.startswith("..") or os.path.isabs(name) or not os.path.isfile(os.path.join(REPO_ROOT, name)):
            continue
        top = name.split(os.sep)[0]
        if top in CARD_FOLDERS:
            for folder, _, files in os.walk(os.path.join(REPO_ROOT, top)):
                linked.update(os.path.relpath(os.path.join(folder, file), REPO_ROOT) for file in files)
        else:
            linked.add(name)
    own = set(CUSTOM_CODE_FILES + ENDPOINT_HANDLER_FILES + EXAMPLE_FILES) | {"README.md"}
    return sorted(linked - own)


def refresh_custom_code(output_dir: str) -> list[str]:
    """
    Bring an existing model folder's code files up to this checkout's, keeping its weights and configs: a folder
    made by an older checkout would otherwise keep running the older pipeline. Returns the names it rewrote.
    """
    rewritten = []
    for name in CUSTOM_CODE_FILES + ENDPOINT_HANDLER_FILES:
        source, target = os.path.join(REPO_ROOT, name), os.path.join(output_dir, name)
        with open(source, "rb") as handle:
            wanted = handle.read()
        current = None
        if os.path.exists(target):
            with open(target, "rb") as handle:
                current = handle.read()
        if current != wanted:
            write_atomically(target, wanted)
            rewritten.append(name)
    return rewritten


def default_config(**overrides: Any) -> OrcaHelloConfig:
    return prepare_config(OrcaHelloConfig(**overrides))


__all__ = [
    "save_model_folder",
    "refresh_custom_code",
    "prepare_config",
    "default_config",
    "CUSTOM_CODE_FILES",
    "ENDPOINT_HANDLER_FILES",
    "OrcaHelloForAudioClassification",
]


def write_configs(output_dir: str) -> None:
    """
    Write the default (production) `config.json` and `preprocessor_config.json` with `save_pretrained`: the files
    at the root of this repository, which is itself the model folder uploaded to the Hub.
    """
    default_config().save_pretrained(output_dir)
    save_feature_extractor(OrcaHelloFeatureExtractor(), output_dir)


if __name__ == "__main__":
    # python -m orcahello.conversion.model_folder -> rewrites the repository root's config.json and
    # preprocessor_config.json
    write_configs(REPO_ROOT)
    print(f"wrote config.json and preprocessor_config.json in {REPO_ROOT}")
