"""
Make a local, loadable model folder under models/ and print where it is.

Online: downloads the Hub repo as upstream publishes it (`config.json`, `config.yaml`, the port-format
`model.safetensors`) and converts it: the folder's default preset is "v1" with the repo's own settings (a setting
that cannot be honoured, or config files that disagree, stop it with the reason). `preset="fastai"` per call, or
`orcahello detect --preset fastai`, gives production's 2020-2026 behaviour with the same weights.
The download is pinned: `HUB_REVISION`, a full commit of the Hub repo (never a branch, whose files can change
under the same name), or `--revision COMMIT`; each file is checked against the sha256 this script holds for the
pinned commit (`HUB_FILE_SHA256`) and against the hash the Hub's cache names it by (`verify_snapshot`). While
`HUB_REVISION` is not set, nothing is downloaded without `--revision`.
Offline (as on machines with no Hub access): converts the synthetic stand-in learner of the installed test data
(`python scripts/fetch_test_data.py`), whose weights were trained on synthetic audio and do NOT detect real killer
whales. With neither: a folder of the production architecture with randomly initialised weights, so that the
detector still runs end to end. Both are marked synthetic in their config.json, and every output made with them
says so.
"""

import argparse
import hashlib
import json
import os
import re
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
# The commit of HUB_REPO_ID downloaded by default: a full 40-hex commit, so that the weights are those reviewed and a
# rerun gets the same ones (a branch such as "main" can change under the same name). None: not pinned yet (no one
# with Hub access has reviewed a commit; `huggingface_hub.HfApi().model_info(HUB_REPO_ID).sha` gives the current
# one), and nothing is downloaded without `--revision`. Set it together with HUB_FILE_SHA256.
HUB_REVISION: str | None = None
# sha256 of each of HUB_FILES at HUB_REVISION (`sha256sum` of the downloaded files): checked after every download
# of that commit, whatever the Hub's cache says. Empty until HUB_REVISION is set.
HUB_FILE_SHA256: dict[str, str] = {}
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")


class SnapshotVerificationError(Exception):
    """A downloaded file whose bytes are not the ones its name or this script's manifest promise."""


def check_revision(revision):
    """`revision` if it is a full 40-hex commit, else a one-line ValueError: a branch or tag can move."""
    if not isinstance(revision, str) or not FULL_COMMIT.fullmatch(revision):
        raise ValueError(
            f"--revision must be a full 40-character commit of {HUB_REPO_ID} (a branch or tag can change under the "
            f"same name), got {revision!r}"
        )
    return revision


def git_blob_sha1(path):
    """The git object id of a file (`git hash-object`): what the Hub names a small file stored in git by."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_snapshot(snapshot, files, expected_sha256=None):
    """
    Check a downloaded snapshot folder (huggingface_hub's cache: `snapshots/<commit>/<file>` links to
    `blobs/<etag>`) and return its per-file sha256.

    Each of `files` must be there. A file linked to its blob is checked against the blob's name, the Hub's etag:
    the sha256 of a file stored in Git LFS (the weights), the git object id of one stored in git (the configs);
    huggingface_hub itself checks sizes only. With `expected_sha256` (`{file: sha256}`), every file must also have
    that sha256: the check that does not trust the server that sent the file.

    Raises [`SnapshotVerificationError`] with a one-line reason.
    """
    digests = {}
    for name in files:
        path = os.path.join(snapshot, name)
        if not os.path.isfile(path):
            raise SnapshotVerificationError(f"{name}: missing from the download {snapshot}")
        digests[name] = file_sha256(path)
        if os.path.islink(path):
            etag = os.path.basename(os.path.realpath(path))
            if re.fullmatch(r"[0-9a-f]{64}", etag):
                found, kind = digests[name], "sha256"
            elif FULL_COMMIT.fullmatch(etag):
                found, kind = git_blob_sha1(path), "git object id"
            else:
                raise SnapshotVerificationError(f"{name}: its cached blob {etag!r} is named by no hash")
            if found != etag:
                raise SnapshotVerificationError(
                    f"{name}: downloaded bytes have {kind} {found}, the Hub named the file {etag}: corrupted or "
                    f"altered in transit; delete it from the Hub cache and run this again"
                )
        if expected_sha256 is not None:
            expected = expected_sha256.get(name)
            if expected is None or digests[name] != expected:
                raise SnapshotVerificationError(
                    f"{name}: sha256 {digests[name]}, this script expects {expected} for {HUB_REPO_ID}@"
                    f"{HUB_REVISION}: not the reviewed file"
                )
    return digests


def is_model_folder(path):
    return all(os.path.exists(os.path.join(path, name)) for name in ("config.json", "model.safetensors"))


def hub_is_off():
    return os.environ.get("HF_HUB_OFFLINE") == "1"


def download_hub_folder(revision=None):
    """
    The Hub repo's settings and weights at `revision` (a full commit; HUB_REVISION when None) in a local snapshot
    folder, checked (`verify_snapshot`: against HUB_FILE_SHA256 too at HUB_REVISION), or None when there is no
    pinned revision or the Hub cannot be reached. Exits with the reason when a file fails its check.
    """
    if hub_is_off():
        return None
    revision = revision or HUB_REVISION
    if revision is None:
        print(
            f"{HUB_REPO_ID} has no pinned revision in this script (HUB_REVISION) and none was given: nothing is "
            "downloaded from a branch that can change; pass --revision COMMIT to download that commit. Using a "
            "synthetic stand-in model",
            file=sys.stderr,
        )
        return None
    try:
        snapshot = str(hub_snapshot(HUB_REPO_ID, revision=revision, allow_patterns=list(HUB_FILES)))
    except HubUnavailableError as error:  # offline, DNS failure, gated repo...: after the retries, a stand-in
        print(f"{error}; using a synthetic stand-in model", file=sys.stderr)
        return None
    expected = HUB_FILE_SHA256 if revision == HUB_REVISION and HUB_FILE_SHA256 else None
    try:
        verify_snapshot(snapshot, HUB_FILES, expected)
    except SnapshotVerificationError as error:
        sys.exit(f"{HUB_REPO_ID}@{revision}: {error}")
    if expected is None:
        print(
            f"{HUB_REPO_ID}@{revision}: checked against the Hub's own hashes only (this script holds no sha256 for "
            "that commit)",
            file=sys.stderr,
        )
    return snapshot


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


def choose_folder(offline, revision=None):
    """The model folder to use, made here when needed: the Hub's, else a synthetic stand-in (the test data's
    learner converted, else random weights)."""
    from orcahello.conversion.convert_fastai import convert

    if is_model_folder(HUB_FOLDER):
        if not offline and folder_preset(HUB_FOLDER) is None and (snapshot := download_hub_folder(revision)):
            # Converted before presets existed, from the weights alone: converted again with the repo's settings.
            convert_hub_snapshot(snapshot)
            print(f"converted {HUB_REPO_ID} again with its settings (default preset v1)", file=sys.stderr)
        return HUB_FOLDER
    if is_model_folder(STANDIN_FOLDER) and offline:
        return STANDIN_FOLDER
    snapshot = None if offline else download_hub_folder(revision)
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
    parser.add_argument(
        "--revision",
        metavar="COMMIT",
        help=f"the full 40-character commit of {HUB_REPO_ID} to download (default: the pinned HUB_REVISION)",
    )
    args = parser.parse_args()
    if args.revision is not None:
        try:
            check_revision(args.revision)
        except ValueError as error:
            parser.error(str(error))

    from orcahello.conversion.model_folder import refresh_custom_code

    folder = choose_folder(offline=args.offline or hub_is_off(), revision=args.revision)
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
