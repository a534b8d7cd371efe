# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Which model a command runs, and loading it: a local folder, `$ORCAHELLO_MODEL`, or the pinned Hub release.

The commands build the model, its feature extractor and the pipeline from this package's own classes (the flat root
modules `configuration_orcahello`, `modeling_orcahello`, `feature_extraction_orcahello`, `pipeline_orcahello`): a
model folder or Hub snapshot gives its config, weights and feature-extractor settings, never code, so its `.py`
files are never imported. Remote code (`pipeline(..., trust_remote_code=True)`) is for users of the Hub repo alone.
"""

import os
import re
from typing import TYPE_CHECKING, Any

from vocabulary_orcahello import DEFAULT_BATCH_SIZE, HUB_MODEL_ID

from . import REPO_ROOT

if TYPE_CHECKING:
    from configuration_orcahello import OrcaHelloConfig
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor
    from modeling_orcahello import OrcaHelloForAudioClassification
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

# The commit of HUB_MODEL_ID that the CLI and `orcahello batch` load when no local model is given or found. Its code
# never runs (the commands build the model from this package's classes), but its weights and config decide every
# number, so they are never "whatever main holds today": results name the revision they came from, and a rerun gets
# the same model. None: not pinned yet (the Hub repo holds no release of these weights in this repo's format so far),
# and the Hub is then not used at all. To change it, set the full 40-character commit of a reviewed release
# (`huggingface_hub.HfApi().model_info(HUB_MODEL_ID).sha`).
HUB_MODEL_REVISION = None


MODEL_ENVIRONMENT_VARIABLE = "ORCAHELLO_MODEL"


# What `python scripts/fetch_model.py` makes: the Hub weights converted, or the synthetic stand-in when offline,
# or random weights when it has neither the Hub nor the test data.
STANDIN_FOLDER_NAME = "standin-resnet50-synthetic-weights"
RANDOM_FOLDER_NAME = "random-resnet50-synthetic-weights"


LOCAL_MODEL_FOLDERS = (
    os.path.join("models", "orcahello-srkw-detector-v1"),
    os.path.join("models", STANDIN_FOLDER_NAME),
    os.path.join("models", RANDOM_FOLDER_NAME),
)


def is_model_folder(path: str) -> bool:
    """Whether `path` is a folder holding a model's config.json."""
    return os.path.isfile(os.path.join(path, "config.json"))


def default_model() -> str:
    """
    The model `detect` uses without `--model`: `$ORCAHELLO_MODEL`, else a folder made by `scripts/fetch_model.py`
    under the repo root, else the Hub repo (downloaded once into the Hugging Face cache).
    """
    if os.environ.get(MODEL_ENVIRONMENT_VARIABLE):
        return os.environ[MODEL_ENVIRONMENT_VARIABLE]
    for folder in LOCAL_MODEL_FOLDERS:
        path = os.path.join(REPO_ROOT, folder)
        if is_model_folder(path):
            return path
    return HUB_MODEL_ID


class ModelNotFoundError(RuntimeError):
    """`--model` names neither a model folder nor a loadable Hub repo."""


HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def check_model(model: str) -> None:
    """
    Say in one line what is wrong with `model` before transformers does (its error for a mistyped folder is about
    Hub repo ids): a folder must hold a config.json; a name that is not a folder is a Hub id only when it looks like
    one (`owner/name`) and does not start with a folder that exists here (`models/...` is a mistyped folder).
    """
    if os.path.isdir(model):
        if not is_model_folder(model):
            raise ModelNotFoundError(f"{model} is a folder but not a model folder (it has no config.json)")
        return
    first = model.replace(os.sep, "/").split("/")[0]
    looks_like_path = (
        not HUB_ID_PATTERN.fullmatch(model) or ".." in model or model.startswith(("~", ".")) or os.path.isdir(first)
    )
    if looks_like_path or os.path.exists(model):
        raise ModelNotFoundError(f"no such model folder: {model} (give a folder holding config.json, or a Hub id)")


def hub_options(model: str) -> dict[str, Any]:
    """
    `from_pretrained`'s Hub options for `model`: `local_files_only` for a folder (it needs nothing from the Hub, and
    this says so without touching the process's environment), the pinned revision for the default Hub repo.
    """
    if os.path.isdir(model):
        return {"local_files_only": True}
    if model != HUB_MODEL_ID:
        return {}
    if HUB_MODEL_REVISION is None:
        raise ModelNotFoundError(
            f"no local model, and {HUB_MODEL_ID} has no pinned revision to load: make one "
            "with `python scripts/fetch_model.py` or give --model DIR"
        )
    return {"revision": HUB_MODEL_REVISION}


# What `--device` may ask for; "auto" is resolved by `resolve_device`.
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str) -> str:
    """`"auto"` picks CUDA, then Apple MPS, then the CPU; an explicit accelerator that is missing is an error."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise RuntimeError(f"--device {requested} was asked for but this machine has no {requested.upper()} device")
    return requested


def default_batch_size(device: Any) -> int:
    """Windows per forward pass when none is asked for: the pipeline's default for `device` ("cpu", "cuda", ...)."""
    return DEFAULT_BATCH_SIZE["cpu" if str(device) == "cpu" else "other"]


def load_model(model: str) -> "tuple[OrcaHelloForAudioClassification, OrcaHelloFeatureExtractor]":
    """
    `(classifier, feature_extractor)` of `model` (a model folder or a Hub id), built from this package's classes:
    `model` gives the weights, the config and the feature extractor's settings, never code. What the pipeline and
    fine-tuning (training/finetune.py) start from.
    """
    check_model(model)
    options = hub_options(model)
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor
    from modeling_orcahello import OrcaHelloForAudioClassification

    classifier = OrcaHelloForAudioClassification.from_pretrained(model, **options)
    return classifier, OrcaHelloFeatureExtractor.from_pretrained(model, **options)


def load_pipeline(model: str, device: Any) -> "OrcaHelloAudioClassificationPipeline":
    """The OrcaHello pipeline (this package's class) on `device` for `model`, from `load_model`."""
    from pipeline_orcahello import OrcaHelloAudioClassificationPipeline

    classifier, feature_extractor = load_model(model)
    return OrcaHelloAudioClassificationPipeline(
        model=classifier, feature_extractor=feature_extractor, device=device, task="audio-classification"
    )


def load_config(model: str) -> "OrcaHelloConfig":
    """The model's config alone (this package's `OrcaHelloConfig`): what resuming and `orcahello batch`'s driver
    need, without loading the weights."""
    check_model(model)
    options = hub_options(model)
    from configuration_orcahello import OrcaHelloConfig

    return OrcaHelloConfig.from_pretrained(model, **options)
