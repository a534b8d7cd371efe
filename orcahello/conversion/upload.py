# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License. This script uploads a model folder that `orcahello/conversion/convert_fastai.py` wrote
# outside this repository; it never copies weights into the code repository. The trained OrcaHello weights are
# under Orcasound's OrcaHello RAIL-AMS licence: only their owners may publish them.
"""
Validate a converted OrcaHello model folder and push it to the Hugging Face Hub.

The folder must load the way users will load it, from its own files only: `AutoConfig`,
`AutoModelForAudioClassification` and `AutoFeatureExtractor` with `trust_remote_code=True`, and the model must score
a featurized window. Its README.md must be a model card whose metadata declares `library_name: transformers`,
`pipeline_tag: audio-classification` and the weights' licence as `license: other` with `license_name` and
`license_link`. Nothing is pushed unless a token is given (`--token` or `HF_TOKEN`) and `--dry-run` is not set.

Usage:

```bash
orcahello upload orcahello-srkw-detector-v1 --repo-id you/orcahello-test --dry-run
orcahello upload orcahello-srkw-detector-v1 --repo-id orcasound/orcahello-srkw-detector-v1 --token hf_...
```

There is no default repository: the user names the one to push to. A folder whose weights are the synthetic
stand-in (`scripts/fetch_model.py` offline) or an adapted head (`orcahello adapt`) is refused unless
`--allow-derived-weights` is given: neither is the OrcaHello model its card describes.
"""

import dataclasses
import json
import os
import sys
from typing import Any

from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY

from .model_folder import CARD_FOLDERS, CUSTOM_CODE_FILES, ENDPOINT_HANDLER_FILES

REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md") + tuple(
    CUSTOM_CODE_FILES
)
# The files a model repo revision consists of; anything else in the folder (caches, notes, checkpoints in other
# formats) is left out of the upload.
UPLOAD_PATTERNS = (
    list(REQUIRED_FILES)
    + list(ENDPOINT_HANDLER_FILES)
    + ["*.md", "examples/*"]
    + [f"{folder}/*" for folder in CARD_FOLDERS]  # the pages and tables the card links to
)
REQUIRED_CARD_METADATA = {"library_name": "transformers", "pipeline_tag": "audio-classification", "license": "other"}


class ModelFolderError(ValueError):
    """The folder is not a complete, loadable OrcaHello model folder with a valid model card."""


def check_model_card(readme_path: str) -> list[str]:
    """The problems with the model card's metadata (an empty list when it is complete)."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(readme_path)
    except Exception as error:  # ModelCard raises ValueError/YAML errors for a malformed header
        return [f"README.md is not a valid model card ({type(error).__name__}: {error})"]
    metadata = card.data.to_dict()
    problems = [
        f"card metadata {key!r} is {metadata.get(key)!r}, expected {expected!r}"
        for key, expected in REQUIRED_CARD_METADATA.items()
        if metadata.get(key) != expected
    ]
    # The weights are not under an SPDX licence: the Hub needs the licence's name and a link to its text.
    for key in ("license_name", "license_link"):
        if not isinstance(metadata.get(key), str) or not metadata[key].strip():
            problems.append(f"card metadata {key!r} is missing (required with license: other)")
    return problems


def check_loads(folder: str) -> dict[str, Any]:
    """
    Load the folder through the Auto classes with remote code, as users will, and score one featurized 2-second
    window of silence. Returns a summary dict; raises `ModelFolderError` when any step fails.
    """
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
        feature_extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    except Exception as error:
        raise ModelFolderError(
            f"the folder does not load with trust_remote_code=True: {type(error).__name__}: {error}"
        ) from error

    sampling_rate = feature_extractor.sampling_rate
    window = np.zeros(int(2 * sampling_rate), dtype=np.float32)
    features = feature_extractor(window, sampling_rate=sampling_rate, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**features).logits
    if tuple(logits.shape) != (1, config.num_labels) or not torch.isfinite(logits).all():
        raise ModelFolderError(
            f"the model scores a silent window as {logits.tolist()}: expected {config.num_labels} finite logits"
        )
    return {
        "model_class": type(model).__name__,
        "feature_extractor_class": type(feature_extractor).__name__,
        "architecture": f"{config.layer_type} ResNet, depths {list(config.depths)}",
        "labels": config.id2label,
        "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
    }


def derived_weights(folder: str) -> list[str]:
    """
    What makes the weights in `folder` other than a trained OrcaHello model's, as its config.json records it: the
    synthetic stand-in (`scripts/fetch_model.py` offline), an adapted head (`orcahello adapt`). Empty for neither.
    """
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        return []
    with open(config_path) as handle:
        config = json.load(handle)
    reasons = []
    if config.get(SYNTHETIC_WEIGHTS_KEY):
        reasons.append("its weights are the SYNTHETIC stand-in (trained on synthetic audio, for testing)")
    if config.get("adapted_head"):
        reasons.append("it carries an adapted head (orcahello adapt), not the trained OrcaHello classifier")
    return reasons


def validate_model_folder(folder: str) -> dict[str, Any]:
    """
    Check that `folder` is a complete model folder with a valid card and that it loads and runs; returns a summary
    dict. Raises `ModelFolderError` listing every problem found before loading anything.
    """
    if not os.path.isdir(folder):
        raise ModelFolderError(f"{folder} is not a folder")
    problems = [f"{name} is missing" for name in REQUIRED_FILES if not os.path.isfile(os.path.join(folder, name))]
    config_path = os.path.join(folder, "config.json")
    if os.path.isfile(config_path):
        with open(config_path) as handle:
            config = json.load(handle)
        if "AutoModelForAudioClassification" not in config.get("auto_map", {}):
            problems.append("config.json has no auto_map entry for AutoModelForAudioClassification")
        if "audio-classification" not in config.get("custom_pipelines", {}):
            problems.append("config.json has no custom_pipelines entry for audio-classification")
    readme_path = os.path.join(folder, "README.md")
    if os.path.isfile(readme_path):
        problems.extend(check_model_card(readme_path))
    if problems:
        raise ModelFolderError(f"{folder} is not ready to upload:\n  " + "\n  ".join(problems))
    return check_loads(folder)


def upload(folder: str, repo_id: str, token: str, commit_message: str | None = None) -> str:
    """Push the folder's model files to the existing Hub repo `repo_id`; returns the commit URL."""
    from huggingface_hub import HfApi

    commit = HfApi(token=token).upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="model",
        allow_patterns=UPLOAD_PATTERNS,
        commit_message=commit_message
        or "Upload OrcaHello model folder (converted with orcahello.conversion.convert_fastai)",
    )
    return getattr(commit, "commit_url", str(commit))


@dataclasses.dataclass(frozen=True)
class UploadOptions:
    """
    What `orcahello upload` can be told (its command-line options).

    Args:
        folder (`str`): the model folder `orcahello convert` wrote.
        repo_id (`str`): the Hub model repo; there is no default, so that nothing goes to a repository the user
            did not name.
        token (`str`, *optional*): a Hub write token; None: nothing is pushed.
        commit_message (`str`, *optional*): the commit message on the Hub.
        dry_run (`bool`, *optional*, defaults to `False`): validate only; never contact the Hub.
        allow_derived_weights (`bool`, *optional*, defaults to `False`): accept a folder whose weights are the
            synthetic stand-in or an adapted head (refused otherwise, dry run included).
    """

    folder: str
    repo_id: str
    token: str | None = None
    commit_message: str | None = None
    dry_run: bool = False
    allow_derived_weights: bool = False


def upload_command(options: UploadOptions) -> int:
    """`orcahello upload` with `options`: validate the folder, then push it; returns the exit status."""
    derived = derived_weights(options.folder)
    if derived and not options.allow_derived_weights:
        print(
            f"error: {options.folder} is not uploadable as an OrcaHello model: {'; '.join(derived)} "
            "(--allow-derived-weights to push it anyway)",
            file=sys.stderr,
        )
        return 1
    try:
        summary = validate_model_folder(options.folder)
    except ModelFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"folder": os.path.abspath(options.folder), "valid": True, **summary}, indent=2, default=str))
    if options.dry_run:
        print(f"dry run: {options.folder} is valid; nothing was pushed to {options.repo_id}")
        return 0
    if not options.token:
        print(
            f"no token given (--token or HF_TOKEN): {options.folder} is valid; nothing was pushed to {options.repo_id}"
        )
        return 0
    print(f"pushed: {upload(options.folder, options.repo_id, options.token, options.commit_message)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m orcahello.conversion.upload ...`: `orcahello upload ...`; returns the exit status."""
    from ..cli import main as command_line

    return command_line(["upload", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
