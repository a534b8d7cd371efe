"""
Make a local, loadable model folder under models/ and print where it is.

Online: downloads the Hub repo as upstream publishes it (`config.json`, `config.yaml`, the port-format
`model.safetensors`) and converts it: the folder's default preset is "v1" with the repo's own settings (a setting
that cannot be honoured, or config files that disagree, stop it with the reason). `preset="fastai"` per call, or
`orcahello detect --preset fastai`, gives production's 2020-2026 behaviour with the same weights.
Offline (as on machines with no Hub access): converts the synthetic stand-in learner of the installed test data
(`python scripts/fetch_test_data.py`), whose weights were trained on synthetic audio and do NOT detect real killer
whales. With neither: a folder of the production architecture with randomly initialised weights, so that the
detector still runs end to end. Both are marked synthetic in their config.json, and every output made with them
says so.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPTS_DIR)
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, SCRIPTS_DIR)

from fetch_test_data import HubUnavailableError, destination_folder, hub_snapshot, missing_reason  # noqa: E402

HUB_REPO_ID = "orcasound/orcahello-srkw-detector-v1"
MODELS_DIR = os.path.join(REPO_ROOT, "models")
HUB_FOLDER = os.path.join(MODELS_DIR, "orcahello-srkw-detector-v1")
STANDIN_FOLDER = os.path.join(MODELS_DIR, "standin-resnet50-synthetic-weights")
RANDOM_FOLDER = os.path.join(MODELS_DIR, "random-resnet50-synthetic-weights")
# The stand-in learner's place in the test-data set (tests/test_data.json).
STANDIN_LEARNER = os.path.join("fixtures", "legacy", "model_resnet50_legacy_format", "model.pkl")
# The files of upstream's Hub layout (PyTorchModelHubMixin) the conversion reads.
HUB_FILES = ("config.json", "config.yaml", "model.safetensors")


def is_model_folder(path):
    return all(os.path.exists(os.path.join(path, name)) for name in ("config.json", "model.safetensors"))


def hub_is_off():
    return os.environ.get("HF_HUB_OFFLINE") == "1"


def download_hub_folder():
    """The Hub repo's settings and weights in a local snapshot folder, or None when the Hub cannot be reached."""
    if hub_is_off():
        return None
    try:
        return str(hub_snapshot(HUB_REPO_ID, allow_patterns=list(HUB_FILES)))
    except HubUnavailableError as error:  # offline, DNS failure, gated repo...: after the retries, a stand-in
        print(f"{error}; using a synthetic stand-in model", file=sys.stderr)
        return None


def installed_standin_learner():
    """The stand-in learner of the installed test data, or None when the set is not installed."""
    folder = destination_folder()
    return os.path.join(folder, STANDIN_LEARNER) if missing_reason(folder) is None else None


def build_folder(folder, make):
    """Make the model folder `folder` with `make(path)` in a folder beside it, then move it into place: a run that
    is killed halfway leaves no half-written model folder to be taken for a whole one."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.partial-", dir=parent)
    try:
        make(partial)
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.chmod(folder, 0o755)  # mkdtemp's 0700


def folder_preset(path):
    """The default preset a model folder's config.json names (None for a folder converted before presets)."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            return json.load(handle).get("preset")
    except (OSError, ValueError):
        return None


def mark_synthetic_weights(folder):
    """Say in the folder's config.json that its weights are the synthetic stand-in: every output of `orcahello
    detect` and `batch` made with it then says so (orcahello.vocabulary_orcahello.SYNTHETIC_WEIGHTS_KEY)."""
    from orcahello.writers import write_json
    from vocabulary_orcahello import SYNTHETIC_WEIGHTS_KEY

    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    if config.get(SYNTHETIC_WEIGHTS_KEY) is not True:
        config[SYNTHETIC_WEIGHTS_KEY] = True
        write_json(path, config)


def convert_hub_snapshot(snapshot):
    """Convert the downloaded Hub layout (weights and settings: default preset v1) into HUB_FOLDER, or exit with
    the one-line reason it cannot be."""
    from orcahello.conversion.convert_fastai import convert
    from orcahello.conversion.errors import ConversionError

    try:
        build_folder(HUB_FOLDER, lambda path: convert(snapshot, path))
    except ConversionError as error:
        sys.exit(f"cannot convert {HUB_REPO_ID}: {error}")


def make_random_folder(folder):
    """A model folder of the production architecture (ResNet50) with randomly initialised weights (seed 0)."""
    import torch

    from modeling_orcahello import OrcaHelloForAudioClassification
    from orcahello.conversion.model_folder import default_config, save_model_folder

    torch.manual_seed(0)
    save_model_folder(OrcaHelloForAudioClassification(default_config()).eval(), folder)


def choose_folder(offline):
    """The model folder to use, made here when needed: the Hub's, else a synthetic stand-in (the test data's
    learner converted, else random weights)."""
    from orcahello.conversion.convert_fastai import convert

    if is_model_folder(HUB_FOLDER):
        if not offline and folder_preset(HUB_FOLDER) is None and (snapshot := download_hub_folder()) is not None:
            # Converted before presets existed, from the weights alone: converted again with the repo's settings.
            convert_hub_snapshot(snapshot)
            print(f"converted {HUB_REPO_ID} again with its settings (default preset v1)", file=sys.stderr)
        return HUB_FOLDER
    if is_model_folder(STANDIN_FOLDER) and offline:
        return STANDIN_FOLDER
    snapshot = None if offline else download_hub_folder()
    if snapshot is not None:
        convert_hub_snapshot(snapshot)
        return HUB_FOLDER
    if is_model_folder(STANDIN_FOLDER):
        return STANDIN_FOLDER
    learner = installed_standin_learner()
    if learner is not None:
        build_folder(STANDIN_FOLDER, lambda path: convert(learner, path))
        return STANDIN_FOLDER
    if not is_model_folder(RANDOM_FOLDER):
        print(
            f"no Hub and no test data in {destination_folder()}: making a model of the production architecture "
            "with RANDOM weights",
            file=sys.stderr,
        )
        build_folder(RANDOM_FOLDER, make_random_folder)
    return RANDOM_FOLDER


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-path", action="store_true", help="print only the model folder's path on stdout")
    parser.add_argument("--offline", action="store_true", help="do not try the Hub; use a synthetic stand-in")
    args = parser.parse_args()

    from orcahello.conversion.model_folder import refresh_custom_code

    folder = choose_folder(offline=args.offline or hub_is_off())
    if folder in (STANDIN_FOLDER, RANDOM_FOLDER):
        mark_synthetic_weights(folder)
    rewritten = refresh_custom_code(folder)
    if rewritten:
        print(f"updated the model folder's code to this checkout's: {', '.join(rewritten)}", file=sys.stderr)
    if folder == STANDIN_FOLDER:
        print(
            "NOTE: this model folder holds SYNTHETIC stand-in weights (the production architecture trained on "
            "synthetic audio, for testing). Its scores on real recordings mean nothing.",
            file=sys.stderr,
        )
    elif folder == RANDOM_FOLDER:
        banner = "!" * 100
        print(
            f"{banner}\nWARNING: this model folder holds RANDOMLY INITIALISED weights (no Hub access and no test "
            "data): the production architecture,\nnot a detector. Its scores mean nothing. Get real weights when the "
            f"Hub is reachable (run this again), or the stand-in with `python scripts/fetch_test_data.py`.\n{banner}",
            file=sys.stderr,
        )
    print(folder if args.print_path else f"model folder: {folder}")


if __name__ == "__main__":
    main()
