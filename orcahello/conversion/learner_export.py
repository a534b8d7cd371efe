# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
Read a `torch.save` file (a fastai v1 learner export or a checkpoint) without running anything it names: tell its
format ([`torch_file_format`]), list every global its pickles refer to statically, with `pickletools`
([`scan_torch_file_globals`], [`check_torch_file_globals`]), so that a refusal names all offending globals at once
before `torch.load`, and then load it through the restricted unpickler ([`load_learner_export`]).
"""

import io
import os
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Iterable
from typing import IO, Any, cast

import torch
from torch import nn

from .pickle_allow_list import InertObject, UnsafePickleError, normalize_global_name, resolve_global
from .restricted_unpickler import restricted_pickle_module

# --------------------------------------------------------------------------------------------------------------
# Static inspection (no code runs).
# --------------------------------------------------------------------------------------------------------------

_STRING_OPCODES = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
}
_MEMO_GET_OPCODES = {"GET", "BINGET", "LONG_BINGET"}
_MEMO_PUT_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT"}


def pickle_globals(stream: IO[bytes]) -> list[tuple[str, str]]:
    """
    The globals one pickle refers to, as `(module, name)` pairs in order, read with `pickletools.genops` (nothing is
    executed). Reads `stream` up to and including the pickle's STOP opcode. Raises [`UnsafePickleError`] for
    opcodes whose target cannot be known statically (a STACK_GLOBAL on computed strings, the copyreg extension
    registry), and `ValueError` for a damaged or truncated pickle.
    """
    found = []
    memo: dict[Any, str | None] = {}  # keyed by the memo index pickletools gives (an int)
    recent_pushes: list[str | None] = []  # the values of recent one-item pushes: a string, or None for anything else
    for opcode, argument, position in pickletools.genops(stream):
        opname = opcode.name
        if opname in ("GLOBAL", "INST"):
            assert isinstance(argument, str)  # pickletools gives these opcodes' "module name" as text
            module, name = argument.split(" ", 1)
            found.append((module, name))
            recent_pushes.append(None)
        elif opname == "STACK_GLOBAL":
            if len(recent_pushes) < 2 or not all(isinstance(value, str) for value in recent_pushes[-2:]):
                raise UnsafePickleError(
                    f"refusing to load: the pickle builds a global from computed strings (STACK_GLOBAL at byte "
                    f"{position}), which cannot be checked before loading"
                )
            found.append((cast(str, recent_pushes[-2]), cast(str, recent_pushes[-1])))  # strings, checked above
            recent_pushes[-2:] = [None]
        elif opname in ("EXT1", "EXT2", "EXT4"):
            raise UnsafePickleError(
                f"refusing to load: the pickle uses the copyreg extension registry ({opname} at byte {position}), "
                "which torch never writes"
            )
        elif opname in _STRING_OPCODES:
            recent_pushes.append(argument if isinstance(argument, str) else None)
        elif opname in _MEMO_GET_OPCODES:
            recent_pushes.append(memo.get(argument))
        elif opname in _MEMO_PUT_OPCODES:
            memo[argument] = recent_pushes[-1] if recent_pushes else None
        elif opname == "MEMOIZE":
            memo[len(memo)] = recent_pushes[-1] if recent_pushes else None
        elif opname not in ("PROTO", "FRAME"):
            recent_pushes.append(None)
    return found


def torch_file_format(path: str) -> str:
    """
    "zip" (torch >= 1.6 default), "legacy" (non-zip `torch.save`, e.g. `_use_new_zipfile_serialization=False`), or
    "safetensors"; raises `ValueError` for anything else, including a zip archive that is cut short.
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path} starts like a zip-format torch checkpoint but has no zip directory at its end: the file is "
                "truncated or corrupted"
            )
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if not head:
        raise ValueError(f"{path} is empty")
    raise ValueError(
        f"{path} is neither a torch checkpoint (zip or legacy pickle format) nor a safetensors file "
        f"(first bytes {head[:8]!r})"
    )


class NotATorchFileError(ValueError):
    """A readable file that is not something `torch.save` wrote (a TorchScript archive, a plain pickle, ...)."""


def _zip_data_pickle_name(archive, path):
    names = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
    if any(name.endswith("constants.pkl") for name in archive.namelist()):
        raise NotATorchFileError(
            f"{path} is a TorchScript archive, not a torch.save checkpoint or fastai learner export"
        )
    if len(names) != 1:
        raise NotATorchFileError(f"{path} is a zip archive without exactly one data.pkl: not a torch.save checkpoint")
    return names[0]


def _legacy_magic_number(stream):
    """The integer the first pickle of a legacy `torch.save` file holds (torch's magic number), read statically."""
    value = None
    for opcode, argument, _ in pickletools.genops(stream):
        if opcode.name in ("LONG1", "LONG4", "LONG", "INT", "BININT", "BININT1", "BININT2"):
            value = argument
    return value


def check_zip_members(archive: zipfile.ZipFile, path: str) -> None:
    """
    Refuse a zip checkpoint whose members are compressed, or declare more bytes than the file holds: `torch.save`
    stores every member uncompressed, and a 612-KB archive of deflated zeros decompressed to 2.7 GB on reading.
    """
    file_size = os.path.getsize(path)
    for member in archive.infolist():
        if member.compress_type != zipfile.ZIP_STORED:
            raise NotATorchFileError(
                f"{path}: its member {member.filename!r} is compressed, which torch.save never writes (refused "
                "before decompressing it)"
            )
        if member.file_size > file_size:
            raise NotATorchFileError(
                f"{path}: its member {member.filename!r} declares {member.file_size} bytes, more than the "
                f"{file_size} bytes the file holds"
            )


def scan_torch_file_globals(path: str) -> list[str]:
    """
    All globals the pickles of a `torch.save` file (either format) refer to, as sorted "module.name" strings, read
    statically. For the legacy format that is the header pickles, the object pickle and the storage-key list; for the
    zip format `data.pkl`. Raises [`UnsafePickleError`] for globals that cannot be known statically and `ValueError`
    for a file that is not a `torch.save` file, or is damaged or truncated.
    """
    file_format = torch_file_format(path)
    if file_format == "safetensors":
        raise ValueError(f"{path} is a safetensors file, which holds no pickle")
    found, magic_number = [], torch.serialization.MAGIC_NUMBER
    try:
        if file_format == "zip":
            with zipfile.ZipFile(path) as archive:
                check_zip_members(archive, path)
                data_pickle = _zip_data_pickle_name(archive, path)
                found = pickle_globals(io.BytesIO(archive.read(data_pickle)))
        else:
            with open(path, "rb") as handle:
                magic_number = _legacy_magic_number(handle)
                if magic_number == torch.serialization.MAGIC_NUMBER:
                    # protocol version, sys_info, the object itself, the list of storage keys
                    for _ in range(4):
                        found.extend(pickle_globals(handle))
    except UnsafePickleError:
        raise
    except (ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        if isinstance(error, NotATorchFileError):
            raise
        # pickletools reports a pickle cut short as "pickle exhausted before seeing STOP" and similar ValueErrors
        raise ValueError(f"cannot read the pickle in {path}: the file is truncated or corrupted ({error})") from None
    if magic_number != torch.serialization.MAGIC_NUMBER:
        raise NotATorchFileError(f"{path} is a pickle but not a torch.save file (no torch magic number)")
    return sorted({".".join(normalize_global_name(module, name)) for module, name in found})


def check_torch_file_globals(path: str) -> list[str]:
    """Statically list the file's globals and raise [`UnsafePickleError`] naming every one the allow-list refuses."""
    names = scan_torch_file_globals(path)
    refused = []
    for qualified_name in names:
        module, name = qualified_name.rsplit(".", 1)
        try:
            resolve_global(module, name)
        except UnsafePickleError:
            refused.append(qualified_name)
    if refused:
        raise UnsafePickleError(
            f"refusing to load {path}: its pickle refers to {', '.join(repr(name) for name in refused)}, outside the "
            "allow-list of classes and functions a fastai learner export may reference (loading it could run "
            "arbitrary code). Nothing in the file was executed."
        )
    return names


def pickles_objects(global_names: Iterable[str]) -> bool:
    """
    Whether a pickle with these globals builds objects (modules, fastai metadata) rather than only tensors and plain
    data: true when any global resolves to an `nn.Module` class or a placeholder.
    """
    for qualified_name in global_names:
        target = resolve_global(*qualified_name.rsplit(".", 1))
        if isinstance(target, type) and issubclass(target, (nn.Module, InertObject)):
            return True
    return False


def load_learner_export(path: str) -> Any:
    """
    Unpickle a fastai learner export (or any `torch.save` file whose globals are allow-listed) on the CPU through
    [`RestrictedUnpickler`], after a static check of its globals. Raises [`UnsafePickleError`] for a file that names
    anything outside the allow-list and `ValueError` for a truncated or corrupted one.
    """
    check_torch_file_globals(path)
    try:
        with warnings.catch_warnings():
            # The legacy format stores each module class's source and warns when it differs from the class that
            # loads it; ours are stand-ins, so it always differs.
            warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
            pickle_module = restricted_pickle_module(max_storage_bytes=os.path.getsize(path))
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module)
    except UnsafePickleError:
        raise
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"cannot load {path}: the file is truncated or corrupted ({type(error).__name__}: {error})"
        ) from error


__all__ = [
    "NotATorchFileError",
    "pickle_globals",
    "torch_file_format",
    "scan_torch_file_globals",
    "check_torch_file_globals",
    "pickles_objects",
    "load_learner_export",
]
