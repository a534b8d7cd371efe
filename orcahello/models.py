# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""Which model a command runs, and loading it: a local folder, `$ORCAHELLO_MODEL`, or the pinned Hub release."""

import importlib
import os
import re

from vocabulary_orcahello import DEFAULT_BATCH_SIZE, HUB_MODEL_ID

from . import REPO_ROOT

# The commit of HUB_MODEL_ID that the CLI and `orcahello batch` load when no local model is given or found: its code
# runs (`trust_remote_code`), so it is never "whatever main holds today". None: not pinned yet (the Hub repo holds no
# release with this repo's custom code so far), and the Hub is then not used at all. To change it, set the full
# 40-character commit of a reviewed release (`huggingface_hub.HfApi().model_info(HUB_MODEL_ID).sha`).
HUB_MODEL_REVISION = None


MODEL_ENVIRONMENT_VARIABLE = "ORCAHELLO_MODEL"


# What `python scripts/fetch_model.py` makes: the Hub weights converted, or the synthetic stand-in when offline.
STANDIN_FOLDER_NAME = "standin-resnet50-synthetic-weights"


LOCAL_MODEL_FOLDERS = (
    os.path.join("models", "orcahello-srkw-detector-v1"),
    os.path.join("models", STANDIN_FOLDER_NAME),
)


def is_model_folder(path):
    return os.path.isfile(os.path.join(path, "config.json"))


def default_model():
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


def check_model(model):
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


def hub_options(model):
    """`from_pretrained`'s revision for `model`: the pinned one for the default Hub repo (whose code runs)."""
    if os.path.isdir(model) or model != HUB_MODEL_ID:
        return {}
    if HUB_MODEL_REVISION is None:
        raise ModelNotFoundError(
            f"no local model, and {HUB_MODEL_ID} has no pinned revision to load (its code would run): make one "
            "with `python scripts/fetch_model.py` or give --model DIR"
        )
    return {"revision": HUB_MODEL_REVISION}


def resolve_device(requested):
    """`"auto"` picks CUDA, then Apple MPS, then the CPU; an explicit accelerator that is missing is an error."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise RuntimeError(f"--device {requested} was asked for but this machine has no {requested.upper()} device")
    return requested


def default_batch_size(device):
    """Windows per forward pass when none is asked for: the pipeline's default for `device` ("cpu", "cuda", ...)."""
    return DEFAULT_BATCH_SIZE["cpu" if str(device) == "cpu" else "other"]


def load_pipeline(model, device):
    """`transformers.pipeline("audio-classification", ..., trust_remote_code=True)` on `model`."""
    check_model(model)
    options = hub_options(model)
    if os.path.isdir(model):
        # A local folder needs nothing from the Hub; without this, transformers may still ask it about the repo.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import pipeline

    return pipeline("audio-classification", model=model, trust_remote_code=True, device=device, **options)


def custom_code_module(pipe, name):
    """
    The module `name` (e.g. `"results_orcahello"`) of the code the loaded pipeline `pipe` runs: the model folder's
    copy when the pipeline came from it (`trust_remote_code`), this checkout's when it was built from the checkout's
    own modules. What a command builds around the pipeline's results must be the pipeline's own code, not ours.
    """
    package = type(pipe).__module__.rpartition(".")[0]
    return importlib.import_module(f"{package}.{name}" if package else name)


def load_config(model):
    """The model's config alone (`AutoConfig`, with its custom code): what resuming and `orcahello batch`'s driver
    need, without loading the weights."""
    check_model(model)
    options = hub_options(model)
    if os.path.isdir(model):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model, trust_remote_code=True, **options)
