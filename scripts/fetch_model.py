"""
Make a local, loadable model folder under models/ and print where it is.

Online: downloads the Hub repo as upstream publishes it (`config.json`, `config.yaml`, the port-format
`model.safetensors`) and converts it: the folder's default preset is "v1" with the repo's own settings (a setting
that cannot be honoured, or config files that disagree, stop it with the reason). `preset="fastai"` per call, or
`orcahello detect --preset fastai`, gives production's 2020-2026 behaviour with the same weights.
Offline (as on machines with no Hub access): converts the synthetic stand-in learner from
../shared/fixtures/legacy/, whose weights were trained on synthetic audio and do NOT detect real killer whales.
"""

import argparse
import json
import os
import socket
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

HUB_REPO_ID = "orcasound/orcahello-srkw-detector-v1"
MODELS_DIR = os.path.join(REPO_ROOT, "models")
HUB_FOLDER = os.path.join(MODELS_DIR, "orcahello-srkw-detector-v1")
STANDIN_FOLDER = os.path.join(MODELS_DIR, "standin-resnet50-synthetic-weights")
STANDIN_LEARNER = os.path.join(
    os.path.dirname(REPO_ROOT), "shared", "fixtures", "legacy", "model_resnet50_legacy_format", "model.pkl"
)


def is_model_folder(path):
    return all(os.path.exists(os.path.join(path, name)) for name in ("config.json", "model.safetensors"))


def hub_resolves():
    """Whether the Hub's host name resolves: offline machines then skip huggingface_hub's ~25 s of retries."""
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return False
    return True


# The files of upstream's Hub layout (PyTorchModelHubMixin) the conversion reads.
HUB_FILES = ("config.json", "config.yaml", "model.safetensors")
DOWNLOAD_ATTEMPTS = 3
FIRST_RETRY_DELAY_S = 2.0


def download_hub_folder():
    """The Hub repo's settings and weights in a local snapshot folder, or None when the Hub cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    if not hub_resolves():
        print("Hub not reachable (no DNS for huggingface.co); using the synthetic stand-in model", file=sys.stderr)
        return None
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    from huggingface_hub import snapshot_download

    for attempt in range(DOWNLOAD_ATTEMPTS):
        try:
            return snapshot_download(HUB_REPO_ID, allow_patterns=list(HUB_FILES))
        except Exception as error:  # offline, DNS failure, gated repo...: retried, then the stand-in
            if attempt + 1 == DOWNLOAD_ATTEMPTS:
                print(
                    f"Hub not reachable after {DOWNLOAD_ATTEMPTS} attempts ({type(error).__name__}: {error}); using "
                    "the synthetic stand-in model",
                    file=sys.stderr,
                )
                return None
            time.sleep(FIRST_RETRY_DELAY_S * 2**attempt)


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
        convert(snapshot, HUB_FOLDER)
    except ConversionError as error:
        sys.exit(f"cannot convert {HUB_REPO_ID}: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-path", action="store_true", help="print only the model folder's path on stdout")
    parser.add_argument("--offline", action="store_true", help="do not try the Hub; convert the stand-in learner")
    args = parser.parse_args()

    from orcahello.conversion.convert_fastai import convert
    from orcahello.conversion.model_folder import refresh_custom_code

    offline = args.offline or os.environ.get("HF_HUB_OFFLINE") == "1"
    if is_model_folder(HUB_FOLDER) and (offline or folder_preset(HUB_FOLDER) is not None):
        folder = HUB_FOLDER
    elif is_model_folder(HUB_FOLDER) and (snapshot := download_hub_folder()) is not None:
        # Converted before presets existed, from the weights alone: converted again with the repo's settings.
        convert_hub_snapshot(snapshot)
        print(f"converted {HUB_REPO_ID} again with its settings (default preset v1)", file=sys.stderr)
        folder = HUB_FOLDER
    elif is_model_folder(HUB_FOLDER):
        folder = HUB_FOLDER
    elif is_model_folder(STANDIN_FOLDER) and (args.offline or os.environ.get("HF_HUB_OFFLINE") == "1"):
        folder = STANDIN_FOLDER
    else:
        snapshot = None if args.offline else download_hub_folder()
        if snapshot is not None:
            convert_hub_snapshot(snapshot)
            folder = HUB_FOLDER
        elif is_model_folder(STANDIN_FOLDER):
            folder = STANDIN_FOLDER
        else:
            if not os.path.exists(STANDIN_LEARNER):
                sys.exit(f"No Hub access and no stand-in learner at {STANDIN_LEARNER}: cannot make a model folder")
            convert(STANDIN_LEARNER, STANDIN_FOLDER)
            folder = STANDIN_FOLDER
    if folder == STANDIN_FOLDER:
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
    print(folder if args.print_path else f"model folder: {folder}")


if __name__ == "__main__":
    main()
