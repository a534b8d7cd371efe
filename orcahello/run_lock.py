"""
One run at a time per output folder: `orcahello detect` (and `batch`) hold an exclusive lock on `<output
folder>/.orcahello.lock` while they run, so that a second run into the same folder is refused with a message naming
the first, instead of both rewriting the same files.

The lock is the operating system's (`fcntl.flock`), not the file's existence: it dies with its process, so a run
killed with SIGKILL leaves no lock to clear by hand, and the next run takes the folder over at once. The file holds
the holder's pid, command and start time, for the refusal message; when a run finds that record left by a holder
that is gone (killed before it could remove the file), it says so in `stale_holder`, so that the caller can clean
up what that run left half-done (its partial output files).

    with OutputFolderLock("results", "orcahello detect") as lock:
        if lock.stale_holder:
            writers.remove_partial_outputs(folder)
        ...
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterable, Iterator
from typing import Any

LOCK_FILE_NAME = ".orcahello.lock"


class OutputFolderRefused(RuntimeError):
    """The output folder cannot be held; the message (one line) says why."""


class OutputFolderBusy(OutputFolderRefused):
    """Another live run holds the output folder; the message (one line) names it."""


class SymlinkedOutput(OutputFolderRefused):
    """An output path (the lock file, or a file a run appends to) is a symbolic link the run did not create."""


def refuse_symlink(path: str) -> SymlinkedOutput:
    """The error for an output `path` found to be a symbolic link: writing would reach whatever it points to."""
    return SymlinkedOutput(
        f"{path} is a symbolic link: orcahello never writes through one it did not create (it would overwrite "
        f"{os.path.realpath(path)}); remove the link or choose another output folder"
    )


def open_output(path: str, flags: int, mode: int = 0o644) -> int:
    """
    `os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)`: the one way a run opens an output file in place (the lock
    file, a log it appends to) rather than through a temporary file and a rename. A symbolic link at `path` (someone
    else's, planted to make a run truncate or append to its target) is `SymlinkedOutput`, never followed.
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.EEXIST and os.path.islink(path)):
            raise refuse_symlink(path) from None
        raise


class OutputFolderLock:
    """
    The exclusive lock of one output folder, as a context manager (or `acquire()` / `release()`).

    Args:
        folder (`str`): the output folder (created when missing).
        command (`str`): what the holder is, for a refused run's message (e.g. `"orcahello detect"`).

    Attributes:
        path (`str`): the lock file.
        stale_holder (`dict` or None): after `acquire`, the record a previous holder left when it died holding the
            lock (`{"pid", "host", "command", "started_at"}`), else None.
    """

    def __init__(self, folder: str | os.PathLike[str], command: str) -> None:
        self.folder = os.fspath(folder)
        self.command = command
        self.path = os.path.join(self.folder, LOCK_FILE_NAME)
        self.stale_holder: dict[str, Any] | None = None
        self._descriptor: int | None = None

    def acquire(self) -> OutputFolderLock:
        try:
            return self._acquire()
        except OutputFolderRefused:
            raise
        except OSError as error:  # a read-only disk, a folder we may not write, a file where the folder should be
            raise OutputFolderRefused(
                f"cannot write into {self.folder}: {error.strerror or error}; choose another output folder"
            ) from None

    def _acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        while True:
            descriptor = open_output(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = read_holder(descriptor)
                os.close(descriptor)
                if error.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise
                raise OutputFolderBusy(busy_message(self.folder, holder)) from None
            # The holder before us removes the file as it releases: if that happened between our open and our
            # flock, we hold a lock on a file nobody else will open. Try again on the file now at the path.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(descriptor)
        self.stale_holder = read_holder(descriptor)  # a record under a free lock: its holder died holding it
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode("utf-8"), 0)
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        if self._descriptor is None:
            return
        # Removed while still locked, so that no other run can lock the file after we let go of it and before it
        # goes (the inode check in `acquire` covers the opposite order).
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exception):
        self.release()


def read_holder(descriptor: int) -> dict[str, Any] | None:
    """The record in the lock file (a dict), or None when it is empty or unreadable."""
    try:
        text = os.pread(descriptor, 4096, 0).decode("utf-8", "replace").strip()
        record = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def busy_message(folder: str, holder: dict[str, Any] | None) -> str:
    if not holder:
        return f"{folder} is in use by another orcahello run; wait for it to finish or choose another output folder"
    where = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host')}"
    return (
        f"{folder} is in use by another run ({holder.get('command')}, pid {holder.get('pid')}{where}, since "
        f"{holder.get('started_at')}); wait for it to finish or choose another output folder"
    )


@contextlib.contextmanager
def holding_output_folders(folders: Iterable[str], command: str) -> Iterator[list[OutputFolderLock]]:
    """
    Hold the lock of each of `folders` (`OutputFolderLock`, duplicates once) for the block: the way every command
    that writes into a folder keeps a second run out of it. Raises `OutputFolderRefused` (busy, or a planted
    symbolic link) before the block runs; a folder the locks created that the block left empty is removed.
    """
    unique = sorted({os.path.abspath(os.fspath(folder)) for folder in folders})
    created = [folder for folder in unique if not os.path.exists(folder)]
    with contextlib.ExitStack() as stack:
        try:
            yield [stack.enter_context(OutputFolderLock(folder, command)) for folder in unique]
        finally:
            stack.close()
            for folder in reversed(created):  # deepest last-created first
                if os.path.isdir(folder) and not os.listdir(folder):
                    os.rmdir(folder)
