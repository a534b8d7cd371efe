"""Shared test set-up: offline Hub, a private module cache, paths to ../shared, and a tiny model folder."""

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LEGACY = SHARED / "fixtures" / "legacy"
REAL_AUDIO = SHARED / "audio" / "real"

# Never reach the Hub, and keep remote-code module copies out of the user's cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="orcahello-hf-modules-"))
sys.path.insert(0, str(REPO_ROOT))


def run_orcahello_cli(*arguments):
    """Run `orcahello detect ARGUMENTS` in a subprocess from the repo root, as a user would (the venv need not have
    the package installed: `python -m orcahello.cli`)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "orcahello.cli", "detect", *map(str, arguments)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def legacy_wavs():
    return sorted((LEGACY / "audio").glob("*.wav"))


def production_result(wav_path, learner="fastai_r50_legacy"):
    suffix = {"fastai_r50_legacy": "fastai_predict", "fastai_r18_zip": "fastai_r18zip_predict"}[learner]
    with open(LEGACY / "outputs" / learner / f"{Path(wav_path).stem}.{suffix}.json") as handle:
        return json.load(handle)


def tiny_config(**overrides):
    from conversion.model_folder import default_config

    settings = dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], layer_type="basic", embedding_size=16)
    settings.update(overrides)
    return default_config(**settings)


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    """A randomly initialised, tiny OrcaHello model saved as a complete custom-code model folder."""
    import torch

    from conversion.model_folder import save_model_folder
    from modeling_orcahello import OrcaHelloForAudioClassification

    torch.manual_seed(0)
    model = OrcaHelloForAudioClassification(tiny_config()).eval()
    folder = tmp_path_factory.mktemp("tiny_orcahello")
    save_model_folder(model, str(folder))
    return folder


@pytest.fixture(scope="session")
def resnet50_folder(tmp_path_factory):
    """The production-architecture ResNet50 fixture learner, converted once per test session."""
    from conversion.convert_fastai import convert

    folder = tmp_path_factory.mktemp("resnet50_converted")
    convert(str(LEGACY / "model_resnet50_legacy_format" / "model.pkl"), str(folder))
    return folder


@pytest.fixture(scope="session")
def resnet50_pipeline(resnet50_folder):
    from transformers import pipeline

    return pipeline("audio-classification", model=str(resnet50_folder), trust_remote_code=True)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_folder):
    from transformers import pipeline

    return pipeline("audio-classification", model=str(tiny_model_folder), trust_remote_code=True)


@pytest.fixture(scope="session")
def resnet50_results_on_legacy_wavs(resnet50_pipeline):
    """`{wav name: the pipeline's timestamped result}` for every fixture WAV, each scored on its own with batch 16 as
    `orcahello detect` scores it: computed once, for the parity tests of the pipeline and of `orcahello batch`."""
    return {wav.name: resnet50_pipeline(str(wav), return_timestamps=True, batch_size=16) for wav in legacy_wavs()}


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray instance (2 CPUs, no dashboard, no usage statistics) for every `orcahello batch` test; its GCS
    address lets subprocesses join it with `--address`. Started only when a test asks for it."""
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    import logging

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before Ray starts: its processes read it
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        object_store_memory=1 << 30,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
