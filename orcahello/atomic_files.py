# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Atomic file writing: every output is written to a temporary file beside it and renamed over it when complete, so
that a reader (or a rerun after a kill) sees the old file or the new one, never half of one.

`temporary_file_beside(path)` gives the temporary file (hidden, `.<name>.<8 random characters>.orcahello-partial`,
the names `orcahello.writers` recognizes as a killed run's leftovers); `write_atomically(path, data)` writes,
flushes to disk and renames in one call.
"""

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator

# What an output is called while it is being written (see `temporary_file_beside`).
PARTIAL_SUFFIX = ".orcahello-partial"
# The characters of the random part of a temporary file's name: `tempfile`'s, eight of them, as
# `orcahello.writers` matches them.
_NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_NAME_RANDOM_LENGTH = 8


def _create_new_file(folder: str, name: str) -> str:
    """
    Create a new, empty file `.<name>.<random>.orcahello-partial` in `folder` and return its path: never a name
    someone else's file has (`O_EXCL`, as `tempfile.mkstemp`). It is created with mode 0o666 for the kernel to
    narrow by the process's umask (and a folder's default ACL), as any file `open` creates: outputs get the usual
    mode, and the umask is never read (reading it with `os.umask` means setting it, which races with other threads).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(tempfile.TMP_MAX):
        random_part = "".join(secrets.choice(_NAME_CHARACTERS) for _ in range(_NAME_RANDOM_LENGTH))
        path = os.path.join(folder, f".{name}.{random_part}{PARTIAL_SUFFIX}")
        try:
            descriptor = os.open(path, flags, 0o666)
        except FileExistsError:
            continue
        os.close(descriptor)
        return path
    raise FileExistsError(f"no unused temporary file name beside {os.path.join(folder, name)}")


@contextlib.contextmanager
def temporary_file_beside(path: str | os.PathLike) -> Iterator[str]:
    """
    A new, uniquely named file beside `path` to write before renaming it to `path`:
    `.<name>.<random>.orcahello-partial`, hidden, with the mode any new file of the process gets. Removed when the
    block fails, so that an interrupted run never leaves a half-written output that looks finished.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary_path = _create_new_file(folder, name)
    try:
        yield temporary_path
    finally:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)


def write_atomically(path: str | os.PathLike, data: str | bytes) -> None:
    """
    Write `data` (str as UTF-8, or bytes) to `path` through a temporary file beside it, fsync and a rename: readers
    see the old file or the new one, never half of one, even after a power loss.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with temporary_file_beside(path) as temporary_path:
        with open(temporary_path, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not reach the disk before the content
        os.replace(temporary_path, path)
