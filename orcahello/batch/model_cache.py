# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
A local model folder sent to the model actors: its files read on the driver, written again on each worker machine
in this user's private cache, under a name given by their content.
"""

import hashlib
import os
import shutil
import stat
import tempfile

from .. import provenance


def read_model_folder(folder: str) -> dict[str, bytes]:
    """The files at the top of a model folder (config, weights, custom code...), to send to the model actors."""
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.startswith("."):
            with open(path, "rb") as handle:
                files[name] = handle.read()
    return files


def model_cache_root() -> str:
    """
    This user's private folder for model copies, `<tmp>/orcahello-batch-models-<uid>`: made with mode 0700 and
    checked on every use (a directory, not a link, owned by this user, closed to everyone else). Under a shared
    temporary folder anyone can create a path first; a copy found in a folder someone else could write might hold
    any weights or settings (and any code, for whatever loads a folder's own modules).
    """
    if not hasattr(os, "getuid"):  # Windows: no owner to check; a private folder of this process instead
        return tempfile.mkdtemp(prefix="orcahello-batch-models-")
    root = os.path.join(tempfile.gettempdir(), f"orcahello-batch-models-{os.getuid()}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    status = os.lstat(root)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or stat.S_IMODE(status.st_mode) & 0o077:
        raise RuntimeError(
            f"{root} is not a private folder of this user (a directory owned by uid {os.getuid()}, mode 0700): "
            "refusing to keep model copies there; remove it"
        )
    return root


def folder_holds(folder: str, files: dict[str, bytes]) -> bool:
    """Whether `folder` holds exactly `files` (name -> content), compared by SHA-256."""
    try:
        names = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    except OSError:
        return False
    if names != sorted(files):
        return False
    for name, content in files.items():
        path = os.path.join(folder, name)
        if os.path.islink(path) or provenance.file_sha256(path) != hashlib.sha256(content).hexdigest():
            return False
    return True


def materialize_model_folder(name: str, files: dict[str, bytes]) -> str:
    """
    Write a model folder sent by the driver on this machine, in this user's private cache (`model_cache_root`),
    under a name given by its content, so that every actor on the machine (and every later run) reuses one copy. A
    copy found there is used only when it holds exactly the files sent, byte for byte.
    """
    digest = hashlib.sha256()
    for file_name in sorted(files):
        digest.update(file_name.encode("utf-8") + b"\0" + hashlib.sha256(files[file_name]).digest())
    root = model_cache_root()
    folder = os.path.join(root, digest.hexdigest()[:16], name)
    if folder_holds(folder, files):
        return folder
    # Written aside and renamed into place: a folder under its final name is always complete.
    staging = tempfile.mkdtemp(prefix="staging-", dir=root)
    os.mkdir(os.path.join(staging, name))
    for file_name, content in files.items():
        with open(os.path.join(staging, name, file_name), "wb") as handle:
            handle.write(content)
    try:
        os.rename(staging, os.path.dirname(folder))
        return folder
    except OSError:  # another actor on this machine got there first: its copy is checked below
        pass
    if folder_holds(folder, files):
        shutil.rmtree(staging, ignore_errors=True)
        return folder
    return os.path.join(staging, name)  # a damaged copy under the content's name: this actor uses its own
