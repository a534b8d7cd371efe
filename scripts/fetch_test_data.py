"""
Install the pinned test-data set the tests read: the stand-in fastai learners with their WAVs and what production
returned for each, upstream's Hub-layout configuration, real recordings with their licences, and the moderator
labels (the groups, sources and licences are listed in tests/test_data.json, the manifest).

    python scripts/fetch_test_data.py                      # from the Hub dataset, at the manifest's revision
    python scripts/fetch_test_data.py --source DIR         # from a local copy (env ORCAHELLO_TEST_DATA_SOURCE)

Every file is checked against the manifest's size and sha256, then the set is installed in `test-data/` in the
repository (git-ignored; env ORCAHELLO_TEST_DATA names another folder) all at once: built beside it (hard links where the source
is on the same file system, else copies), a `.complete` marker written last, and moved into place. Without the set,
the tests that need it are skipped.

For a maintainer: `--write-manifest DIR` writes the manifest's file list from a folder holding the set, and
`--publish` prints the upload of the installed (or `--source`) set to the Hub dataset at the manifest's revision
(a tag); `--publish --yes` runs it (needs a Hub token with write access to the dataset repository).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_PATH = REPO_ROOT / "tests" / "test_data.json"
# Not a hidden folder: pyarrow.dataset, pandas and Spark skip paths with a part starting with "." or "_", and the
# batch tests read `orcahello batch`'s window tables, whose folders mirror the recordings' paths, that way.
DEFAULT_DESTINATION = REPO_ROOT / "test-data"
DESTINATION_VARIABLE = "ORCAHELLO_TEST_DATA"
SOURCE_VARIABLE = "ORCAHELLO_TEST_DATA_SOURCE"
COMPLETE_MARKER = ".complete"
FETCH_COMMAND = "python scripts/fetch_test_data.py"

# Exit statuses: a source that cannot be reached is told apart from a set that is wrong, so that set-up and CI can
# go on without the data (its tests are skipped) but never with wrong data.
EXIT_INVALID = 1
EXIT_UNAVAILABLE = 3

HUB_HOST = "huggingface.co"
HUB_ATTEMPTS = 3
HUB_FIRST_RETRY_DELAY_S = 2.0
HASH_CHUNK_BYTES = 1 << 20


class InvalidTestDataError(RuntimeError):
    """The set cannot be installed as the manifest describes it (a file missing, of another size or content)."""


class HubUnavailableError(RuntimeError):
    """The Hub could not be reached (offline, DNS, timeouts after the retries) or does not have what was asked."""


# ---------------------------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------------------------


def read_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """The manifest: `hub` (repo_id, repo_type, revision), `groups` (folder, source, licence) and `files` (path,
    size, sha256: the set, sorted by path)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def set_digest(manifest: dict[str, Any]) -> str:
    """One sha256 for the whole set (every file's path, size and sha256): what an installed set's marker holds."""
    lines = "".join(f"{entry['path']}\t{entry['size']}\t{entry['sha256']}\n" for entry in manifest["files"])
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def list_set_files(folder: Path, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The manifest's `files` for the set in `folder`: every regular file under each group's folder (names starting
    with a dot left out), with its size and sha256, sorted by path. Raises [`InvalidTestDataError`] for a missing group.
    """
    entries = []
    for group in groups:
        root = folder / group["folder"]
        if not root.is_dir():
            raise InvalidTestDataError(f"{root} is missing: {folder} does not hold the group {group['folder']!r}")
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(folder)
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts) or not path.is_file():
                continue
            entries.append({"path": relative.as_posix(), "size": path.stat().st_size, "sha256": file_sha256(path)})
    return sorted(entries, key=lambda entry: entry["path"])


def licence_files(manifest: dict[str, Any]) -> list[tuple[str, Path]]:
    """
    `(path in the set, file in this repository)` of each group's licence text that its source folder lacks: a
    group's `licence_file` (a repository path) goes with the group as `<folder>/LICENSE`, published and installed
    with its files (the group `fixtures/hub_v1_layout` holds two configuration files of an MIT-licensed repository,
    whose notice must travel with copies). Not in the manifest's `files`, so the set's digest does not change.
    """
    listed = {entry["path"] for entry in manifest["files"]}
    found = []
    for group in manifest["groups"]:
        if group.get("licence_file") and f"{group['folder']}/LICENSE" not in listed:
            found.append((f"{group['folder']}/LICENSE", REPO_ROOT / group["licence_file"]))
    return found


def write_manifest(folder: Path, manifest_path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """Rewrite the manifest's file list from the set in `folder`, keeping its Hub repository and groups."""
    manifest = read_manifest(manifest_path)
    manifest["files"] = list_set_files(folder, manifest["groups"])
    temporary = manifest_path.with_name(f".{manifest_path.name}.partial")
    temporary.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, manifest_path)
    return manifest


# ---------------------------------------------------------------------------------------------------------------
# Where the set is, and whether it is there
# ---------------------------------------------------------------------------------------------------------------


def destination_folder() -> Path:
    """Where the set is installed: `$ORCAHELLO_TEST_DATA`, else `test-data/` in the repository."""
    return Path(os.environ.get(DESTINATION_VARIABLE) or DEFAULT_DESTINATION)


def is_installed(destination: Path, manifest: dict[str, Any]) -> bool:
    """Whether `destination` holds this manifest's set, complete (its marker names the set's digest)."""
    try:
        return (destination / COMPLETE_MARKER).read_text(encoding="utf-8").strip() == set_digest(manifest)
    except OSError:
        return False


def missing_reason(destination: Path | None = None, manifest_path: Path = MANIFEST_PATH) -> str | None:
    """None when the set is installed; else one line saying what is missing and how to get it."""
    destination = destination or destination_folder()
    if is_installed(destination, read_manifest(manifest_path)):
        return None
    state = "an older or unfinished copy is" if destination.exists() else "it is not"
    return f"needs the test data ({state} in {destination}): get it with `{FETCH_COMMAND}`"


# ---------------------------------------------------------------------------------------------------------------
# Getting the set: a local folder or the Hub dataset
# ---------------------------------------------------------------------------------------------------------------


def hub_resolves() -> bool:
    """Whether the Hub's host name resolves: offline machines then skip huggingface_hub's retries."""
    try:
        socket.getaddrinfo(HUB_HOST, 443)
    except OSError:
        return False
    return True


def hub_snapshot(
    repo_id: str,
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    allow_patterns: list[str] | None = None,
    attempts: int = HUB_ATTEMPTS,
    first_retry_delay_s: float = HUB_FIRST_RETRY_DELAY_S,
) -> Path:
    """
    A local snapshot folder of `repo_id` at `revision` (huggingface_hub's cache: downloaded once, resumed when
    interrupted), with timeouts and `attempts` tries with exponential backoff.

    Args:
        repo_id: the Hub repository, `owner/name`.
        repo_type: `"dataset"`, `"model"` (None) or `"space"`.
        revision: a tag, branch or commit; None for the default branch.
        allow_patterns: the files to download (glob patterns); None for all.
        attempts: tries before giving up.
        first_retry_delay_s: the wait before the second try, doubled before each next one.

    Raises [`HubUnavailableError`] with a one-line reason when it gives up.
    """
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and not hub_resolves():  # offline, the Hub's cache may still hold it
        raise HubUnavailableError(f"the Hub is not reachable (no DNS for {HUB_HOST})")
    # Read when huggingface_hub is imported: a stalled connection fails instead of hanging.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    where = f"{repo_id}@{revision}" if revision else repo_id
    for attempt in range(attempts):
        try:
            folder = snapshot_download(repo_id, repo_type=repo_type, revision=revision, allow_patterns=allow_patterns)
            return Path(folder)
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:  # no retry brings these back
            raise HubUnavailableError(f"the Hub has no {where} ({type(error).__name__})") from None
        except Exception as error:  # timeouts, connection errors, offline mode with nothing cached: retried
            if attempt + 1 == attempts:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise HubUnavailableError(
                    f"cannot download {where} after {attempts} attempts ({type(error).__name__}: {reason})"
                ) from None
            time.sleep(first_retry_delay_s * 2**attempt)
    raise AssertionError("unreachable")


def download_set(manifest: dict[str, Any]) -> Path:
    """The set from the Hub dataset at the manifest's pinned revision (only the manifest's files)."""
    hub = manifest["hub"]
    return hub_snapshot(
        hub["repo_id"],
        repo_type=hub["repo_type"],
        revision=hub["revision"],
        allow_patterns=[entry["path"] for entry in manifest["files"]],
    )


# ---------------------------------------------------------------------------------------------------------------
# Installing: checked, all at once
# ---------------------------------------------------------------------------------------------------------------


def sibling(destination: Path, suffix: str) -> Path:
    """A hidden path beside `destination` (`test-data` -> `.test-data.lock`; `.data` -> `.data.lock`)."""
    return destination.with_name(f".{destination.name.lstrip('.')}{suffix}")


@contextlib.contextmanager
def install_lock(destination: Path) -> Iterator[None]:
    """One installer at a time per destination (a second waits): both would otherwise build and swap the folder."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open(sibling(destination, ".lock"), "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: one installer at a time is the user's business
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def place_file(source: Path, target: Path) -> str:
    """`target` as a hard link to `source` where the file system allows one, else a copy; returns which."""
    source = source.resolve()  # the Hub cache's snapshot entries are links to its blobs
    try:
        os.link(source, target)
        return "link"
    except OSError:  # another file system, a file system without hard links, or protected_hardlinks
        shutil.copyfile(source, target)
        return "copy"


def check_file(path: Path, entry: dict[str, Any]) -> None:
    """Raise [`InvalidTestDataError`] unless `path` has the manifest entry's size and sha256."""
    size = path.stat().st_size
    if size != entry["size"]:
        raise InvalidTestDataError(f"{entry['path']} is {size} bytes, the manifest says {entry['size']}")
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise InvalidTestDataError(f"{entry['path']} has sha256 {digest}, the manifest says {entry['sha256']}")


def install(
    source: Path,
    destination: Path,
    manifest: dict[str, Any],
    log: Callable[[str], None] = print,
) -> None:
    """
    Install the manifest's set from `source` into `destination`, every file checked, all at once: the set is built
    in a folder beside `destination`, its `.complete` marker written last, then moved into place; the folder that
    was there is removed only then. A run that is killed leaves `destination` as it was.

    Raises [`InvalidTestDataError`] (nothing installed) when a file is missing or is not the manifest's.
    """
    destination = destination.absolute()
    with install_lock(destination):
        if is_installed(destination, manifest):
            log(f"the test data is already installed in {destination}")
            return
        partial = sibling(destination, ".partial-")
        for leftover in destination.parent.glob(f"{partial.name}*"):
            shutil.rmtree(leftover, ignore_errors=True)  # a killed run's: we hold the lock
        staging = Path(tempfile.mkdtemp(prefix=partial.name, dir=destination.parent))
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would keep the set from other users of a shared checkout
        try:
            placed = {"link": 0, "copy": 0}
            for entry in manifest["files"]:
                origin = source / entry["path"]
                if not origin.is_file():
                    raise InvalidTestDataError(f"{entry['path']} is missing from {source}")
                target = staging / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                placed[place_file(origin, target)] += 1
                check_file(target, entry)
            for path_in_set, licence in licence_files(manifest):
                shutil.copyfile(licence, staging / path_in_set)
            marker = staging / COMPLETE_MARKER
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(set_digest(manifest) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            previous = sibling(destination, f".old-{os.getpid()}")
            if destination.exists():
                os.rename(destination, previous)
            os.rename(staging, destination)
            shutil.rmtree(previous, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log(
        f"installed {len(manifest['files'])} files of the test data in {destination} "
        f"({placed['link']} hard links, {placed['copy']} copies), every sha256 checked"
    )


def fetch(source: Path | None, destination: Path, manifest: dict[str, Any], log: Callable[[str], None] = print) -> None:
    """Install the set from `source`, or from the Hub dataset when `source` is None (nothing is downloaded when
    the set is already installed)."""
    if is_installed(destination, manifest):
        log(f"the test data is already installed in {destination}")
        return
    if source is None:
        hub = manifest["hub"]
        log(f"downloading the test data from the Hub dataset {hub['repo_id']}@{hub['revision']}")
        source = download_set(manifest)
    elif not source.is_dir():
        raise InvalidTestDataError(f"the test data source {source} is not a folder")
    install(source, destination, manifest, log=log)


# ---------------------------------------------------------------------------------------------------------------
# Publishing (maintainers)
# ---------------------------------------------------------------------------------------------------------------


def dataset_card(manifest: dict[str, Any]) -> str:
    """The Hub dataset's README.md: what the set is for, and every group's source and licence."""
    hub = manifest["hub"]
    total = sum(entry["size"] for entry in manifest["files"])
    lines = [
        "---",
        "license: other",
        "license_name: mixed",
        "pretty_name: OrcaHello test data",
        "---",
        "",
        "# OrcaHello test data",
        "",
        f"The files the tests of the OrcaHello detector read ({len(manifest['files'])} files, {total / 1e6:.0f} MB), "
        f"published at the tag `{hub['revision']}`. Install them in a checkout with `{FETCH_COMMAND}`, which checks "
        "every file's sha256 against the repository's `tests/test_data.json`.",
        "",
        "Each folder keeps its own licence; the notes files travel with the files.",
        "",
    ]
    for group in manifest["groups"]:
        lines += [f"## `{group['folder']}`", "", group["source"], "", f"Licence: {group['licence']}", ""]
    return "\n".join(lines)


def publish(
    folder: Path,
    manifest: dict[str, Any],
    run: bool = False,
    api: Any = None,
    log: Callable[[str], None] = print,
) -> str | None:
    """
    Upload the set in `folder` (checked against the manifest first) and its dataset card to the Hub dataset as one
    commit, and tag that commit with the manifest's revision. Without `run`, say what it would do and upload nothing.

    Args:
        folder: a folder holding the set (an installed one, or a local source).
        manifest: the manifest the set must match.
        run: upload (needs a Hub token with write access); otherwise a dry run.
        api: a `huggingface_hub.HfApi` (one is made when None).
        log: where the steps are reported.

    Returns the commit the tag points to (None for a dry run). Raises [`InvalidTestDataError`] for a set that does
    not match the manifest.
    """
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file():
            raise InvalidTestDataError(f"{entry['path']} is missing from {folder}")
        check_file(path, entry)
    hub = manifest["hub"]
    repo_id, repo_type, tag = hub["repo_id"], hub["repo_type"], hub["revision"]
    message = f"OrcaHello test data {tag}: {len(manifest['files'])} files, set sha256 {set_digest(manifest)}"
    if not run:
        log(f"checked {len(manifest['files'])} files in {folder}; --publish --yes would run:")
        log("  api = huggingface_hub.HfApi()")
        log(f"  api.create_repo({repo_id!r}, repo_type={repo_type!r}, exist_ok=True)")
        log(
            f"  commit = api.create_commit({repo_id!r}, repo_type={repo_type!r}, commit_message={message!r}, "
            f"operations=[CommitOperationAdd(path, {str(folder)!r}/path) for the manifest's "
            f"{len(manifest['files'])} paths] + [CommitOperationAdd(path, licence) for "
            f"{[(path, str(licence)) for path, licence in licence_files(manifest)]}] + "
            "[CommitOperationAdd('README.md', <the dataset card>)])"
        )
        log(f"  api.create_tag({repo_id!r}, repo_type={repo_type!r}, tag={tag!r}, revision=commit.oid)")
        return None
    from huggingface_hub import CommitOperationAdd

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    operations = [
        CommitOperationAdd(path_in_repo=entry["path"], path_or_fileobj=str(folder / entry["path"]))
        for entry in manifest["files"]
    ]
    operations.extend(
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(licence)) for path, licence in licence_files(manifest)
    )
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=dataset_card(manifest).encode()))
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    commit = api.create_commit(repo_id, repo_type=repo_type, operations=operations, commit_message=message)
    api.create_tag(repo_id, repo_type=repo_type, tag=tag, revision=commit.oid)
    log(f"uploaded the test data to the {repo_type} {repo_id} at commit {commit.oid}, tagged {tag}")
    return commit.oid


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source",
        type=Path,
        default=os.environ.get(SOURCE_VARIABLE) or None,
        help=f"a local folder holding the set (default: ${SOURCE_VARIABLE}, else the Hub dataset)",
    )
    parser.add_argument(
        "--destination",
        type=Path,
        default=None,
        help=f"where to install it (default: ${DESTINATION_VARIABLE}, else test-data/ in the repository)",
    )
    parser.add_argument("--manifest", type=Path, default=MANIFEST_PATH, help="the manifest (default: %(default)s)")
    maintainer = parser.add_mutually_exclusive_group()
    maintainer.add_argument(
        "--write-manifest", type=Path, metavar="DIR", help="write the manifest's file list from the set in DIR"
    )
    maintainer.add_argument(
        "--publish",
        action="store_true",
        help="print the upload of the set (--source, else the installed one) to the Hub dataset at its tag",
    )
    parser.add_argument("--yes", action="store_true", help="with --publish: upload, not only print")
    args = parser.parse_args(argv)
    destination = args.destination or destination_folder()

    try:
        if args.write_manifest is not None:
            manifest = write_manifest(args.write_manifest, args.manifest)
            print(f"wrote {args.manifest}: {len(manifest['files'])} files, set sha256 {set_digest(manifest)}")
            return 0
        manifest = read_manifest(args.manifest)
        if args.publish:
            publish(args.source or destination, manifest, run=args.yes)
            return 0
        fetch(args.source, destination, manifest)
    except HubUnavailableError as error:
        print(
            f"fetch_test_data: {error}; give a local copy with --source DIR (or ${SOURCE_VARIABLE}), "
            "or go without: the tests that need it are skipped",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except (InvalidTestDataError, OSError) as error:
        print(f"fetch_test_data: {error}", file=sys.stderr)
        return EXIT_INVALID
    return 0


if __name__ == "__main__":
    sys.exit(main())
