# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
Load a fastai v1 learner export (`learn.export()`, usually `model.pkl`) without fastai, and without ever running
code that the file names.

A learner export is a `torch.save` of a dict that holds the whole pickled `nn.Sequential` plus fastai metadata, so
reading it means unpickling classes from fastai, fastai_audio, torchvision and torch. Plain `pickle` would import
and call whatever the file names (`os.system`, `builtins.eval`, ...). Here every global the pickle refers to goes
through [`RestrictedUnpickler.find_class`], which only hands out:

- a short list of real, side-effect-free objects: the `torch.nn` layers a fastai ResNet learner is made of, torch's
  tensor-rebuild functions, storage classes and dtypes, `collections.OrderedDict`, numpy's scalar and dtype,
  `_codecs.encode` (how protocol 2 pickles `bytes`) and `set`/`int`/`float`: exactly what the learner exports
  reference (found with `pickletools`, see [`scan_torch_file_globals`]);
- stand-ins written here for the module classes the learner's forward pass needs (torchvision's `Bottleneck` and
  `BasicBlock`, fastai's `AdaptiveConcatPool2d` and `Flatten`), with the original forward, so the unpickled tree can
  be run as the reference the conversion is checked against;
- inert placeholder classes for everything else from fastai, fastai_audio, torchvision, `torch.optim` and
  `functools.partial`: they record their pickled state and have no behaviour at all.

Anything else raises [`UnsafePickleError`] naming the global as soon as the pickle asks for it, which is before any
object that uses it is built; [`scan_torch_file_globals`] additionally lists every global of a file statically
(with `pickletools`, executing nothing) so a refusal can name all offending globals at once, before `torch.load`.

Both torch serialization formats are supported: torch's `_legacy_load` (pre-1.6 non-zip files) and `_load` (zip
files) subclass `pickle_module.Unpickler` and call `super().find_class` for every global except storage class
names (which they map to an inert dtype record themselves), and read the legacy header pickles with
`pickle_module.load`, so passing [`RESTRICTED_PICKLE_MODULE`] as `torch.load(..., pickle_module=...)` routes every
global of the file through this allow-list.
"""

import _compat_pickle
import codecs
import collections
import functools
import io
import os
import pickle
import pickletools
import re
import types
import warnings
import zipfile

import numpy as np
import torch
from torch import nn


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle refers to a global (function or class) outside the allow-list, so it was not loaded."""


# --------------------------------------------------------------------------------------------------------------
# Stand-ins for the module classes a fastai ResNet learner is built from. They are unpickled like the originals
# (`cls.__new__` + `nn.Module.__setstate__` with the pickled `__dict__`), so they carry the original submodules and
# attributes; only `forward` is ours, the same computation as the originals' (torchvision 0.4-0.8, fastai 1.0.61).
# --------------------------------------------------------------------------------------------------------------


class TorchvisionBottleneck(nn.Module):
    """Stand-in for `torchvision.models.resnet.Bottleneck` (ResNet50/101/152 block, stride on the 3x3 conv)."""

    def forward(self, hidden_state):
        identity = hidden_state
        out = self.relu(self.bn1(self.conv1(hidden_state)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(hidden_state)
        return self.relu(out + identity)


class TorchvisionBasicBlock(nn.Module):
    """Stand-in for `torchvision.models.resnet.BasicBlock` (ResNet18/34 block)."""

    def forward(self, hidden_state):
        identity = hidden_state
        out = self.relu(self.bn1(self.conv1(hidden_state)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(hidden_state)
        return self.relu(out + identity)


class FastaiAdaptiveConcatPool2d(nn.Module):
    """Stand-in for `fastai.layers.AdaptiveConcatPool2d`: its own `mp` (max) and `ap` (average) pools, concatenated."""

    def forward(self, feature_map):
        return torch.cat([self.mp(feature_map), self.ap(feature_map)], 1)


class FastaiFlatten(nn.Module):
    """Stand-in for `fastai.layers.Flatten`: flatten to (batch, -1), or to one dimension when `full` is set."""

    def forward(self, hidden_state):
        if getattr(self, "full", False):
            return hidden_state.view(-1)
        return hidden_state.view(hidden_state.size(0), -1)


class InertObject:
    """
    Base of the placeholders for classes and functions this loader never runs (fastai's `Learner`, data classes,
    callbacks, metrics, `functools.partial`, optimizers, ...). Instantiating one only records its arguments; its
    pickled state is kept as attributes (a `__dict__`) or in `pickled_state` (anything else). It cannot be called.
    """

    # Read by torch's legacy loader when a pickled module's saved source differs from the installed one.
    dump_patches = False
    original_name = "?"

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        self.pickled_args = args
        self.pickled_kwargs = kwargs

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__) state
        if isinstance(state, dict) and all(isinstance(key, str) for key in state):
            self.__dict__.update(state)
        else:
            self.pickled_state = state

    def __repr__(self):
        return f"<stand-in for {self.original_name}>"


@functools.cache
def inert_standin(module, name):
    """The placeholder class standing for the global `module.name` (one class per name, so `isinstance` works)."""
    qualified_name = f"{module}.{name}"
    return type(name, (InertObject,), {"original_name": qualified_name, "__module__": __name__})


# --------------------------------------------------------------------------------------------------------------
# The allow-list.
# --------------------------------------------------------------------------------------------------------------

FUNCTIONAL_STANDINS = {
    "torchvision.models.resnet.Bottleneck": TorchvisionBottleneck,
    "torchvision.models.resnet.BasicBlock": TorchvisionBasicBlock,
    "fastai.layers.AdaptiveConcatPool2d": FastaiAdaptiveConcatPool2d,
    "fastai.layers.Flatten": FastaiFlatten,
}

# Top-level packages whose globals become inert placeholders: nothing from them is ever imported or run. `audio`
# is fastai_audio's package name (`audio.data.AudioList`).
INERT_PACKAGES = ("fastai", "fastai_audio", "audio", "torchvision", "torch.optim")
INERT_GLOBALS = ("functools.partial",)

# The torch.nn layers of a fastai ResNet learner (body, head and loss). Building one from a pickle runs no code
# beyond `nn.Module.__setstate__`.
TORCH_NN_CLASSES = {
    f"{cls.__module__}.{cls.__name__}": cls
    for cls in (
        nn.Conv2d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.Sequential,
        nn.Dropout,
        nn.Linear,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool2d,
        nn.CrossEntropyLoss,
    )
}

# How torch pickles tensors and parameters, across the versions that may have written a learner (v1 for the oldest
# files, v3 and `_rebuild_parameter_with_state` for newer ones, `_rebuild_from_type_v2` for tensor subclasses).
TORCH_REBUILD_FUNCTIONS = {
    f"torch._utils.{name}": getattr(torch._utils, name)
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    )
    if hasattr(torch._utils, name)
}
TORCH_REBUILD_FUNCTIONS["torch._tensor._rebuild_from_type_v2"] = torch._tensor._rebuild_from_type_v2


# The numpy types a pickled numpy scalar may have: plain numbers, and fixed-length text (`U8`: fastai's metadata
# holds `np.str_` values) or bytes (`S8`), which hold no pointers either. numpy's own `dtype.__setstate__` and
# `scalar()`
# trust the pickle (a dtype state that hides an object field makes `scalar()` read raw bytes as a pointer: a crash).
NUMPY_SCALAR_TYPES = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")


class PickledNumpyDtype:
    """
    What the global `numpy.dtype` gives in a pickle: the type code and the pickled state, recorded and not trusted.
    `to_numpy()` gives the real dtype, only for a plain number or text type whose state is exactly what numpy itself
    writes for it (so nothing in the state can change the layout numpy would assume).
    """

    def __init__(self, type_code, align=False, copy=False):
        self.type_code = type_code
        self.pickled_state = None

    def __setstate__(self, state):
        self.pickled_state = state

    def to_numpy(self):
        code = self.type_code
        state = self.pickled_state
        if not isinstance(code, str) or not (code in NUMPY_SCALAR_TYPES or re.fullmatch(r"[US][1-9][0-9]{0,5}", code)):
            raise UnsafePickleError(
                f"refusing to load a numpy dtype {code!r}: only plain number and fixed-length text types are allowed"
            )
        byte_order = state[1] if isinstance(state, tuple) and len(state) > 1 else "="
        if byte_order not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"refusing to load a numpy dtype with byte order {byte_order!r}")
        dtype = np.dtype(code)
        if byte_order in ("<", ">"):
            dtype = dtype.newbyteorder(byte_order)
        if state is not None and state != dtype.__reduce__()[2]:
            raise UnsafePickleError(
                f"refusing to load a numpy dtype {code!r} whose pickled state {state!r} is not numpy's own for it"
            )
        return dtype

    def __repr__(self):
        return f"<pickled numpy dtype {self.type_code!r}>"


def numpy_scalar(dtype, data):
    """What the global `numpy.core.multiarray.scalar` gives: a number scalar, read from its bytes once checked."""
    if not isinstance(dtype, PickledNumpyDtype):
        raise UnsafePickleError(f"refusing to build a numpy scalar from {type(dtype).__name__}: not a pickled dtype")
    dtype = dtype.to_numpy()
    if isinstance(data, str):  # protocol 2 writes the bytes as latin-1 text
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UnsafePickleError(f"refusing to build a numpy {dtype} scalar from {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


# The rest of what the learner exports reference (LEGACY_NOTES.md section 4), and nothing more.
OTHER_SAFE_GLOBALS = {
    "collections.OrderedDict": collections.OrderedDict,
    # Protocol 2 pickles `bytes` as `_codecs.encode(str, "latin1")`.
    "_codecs.encode": codecs.encode,
    # Python 2 style names `__builtin__.set/float/long` in the protocol 2 pickle, normalized below.
    "builtins.set": set,
    "builtins.float": float,
    "builtins.int": int,
    # numpy scalars (`np.float64(...)` in fastai's metadata) are pickled as `scalar(dtype, bytes)`; both go through
    # the checked stand-ins below, never numpy's own unpickling.
    "numpy.dtype": PickledNumpyDtype,
}
for _core in ("numpy.core", "numpy._core"):  # numpy 2 renamed the module; the 2020 file names the old one
    OTHER_SAFE_GLOBALS[f"{_core}.multiarray.scalar"] = numpy_scalar


def _torch_attribute(name):
    """`torch.<name>` when it is a storage class or a dtype (both plain data), else None."""
    value = getattr(torch, name, None)
    if isinstance(value, torch.dtype):
        return value
    if (
        isinstance(value, type)
        and name.endswith("Storage")
        and issubclass(value, (torch.storage.TypedStorage, torch.UntypedStorage))
    ):
        return value
    return None


def normalize_global_name(module, name):
    """
    Map Python 2 names in protocol 0-2 pickles (`__builtin__.long`, `copy_reg._reconstructor`) to Python 3 ones,
    the way `pickle.Unpickler(fix_imports=True)` does; an overriding `find_class` receives the raw names.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def resolve_global(module, name):
    """
    The object the allow-list gives for the global `module.name`, or raise [`UnsafePickleError`] naming it. This is
    the single decision point for what a learner pickle may reference; nothing is imported to answer it.
    """
    raw_name = f"{module}.{name}"
    module, name = normalize_global_name(module, name)
    qualified_name = f"{module}.{name}"
    for table in (FUNCTIONAL_STANDINS, TORCH_NN_CLASSES, TORCH_REBUILD_FUNCTIONS, OTHER_SAFE_GLOBALS):
        if qualified_name in table:
            return table[qualified_name]
    if module == "torch" and _torch_attribute(name) is not None:
        return _torch_attribute(name)
    if qualified_name in INERT_GLOBALS or any(
        module == package or module.startswith(package + ".") for package in INERT_PACKAGES
    ):
        return inert_standin(module, name)
    shown = qualified_name if raw_name == qualified_name else f"{qualified_name} (written as {raw_name})"
    raise UnsafePickleError(
        f"refusing to load the global '{shown}': it is not on the allow-list of classes and functions a fastai "
        "learner export may reference, and loading it could run arbitrary code. The file was not unpickled."
    )


# Objects a pickle may reach through `find_class` that the whole process shares: their state is never set.
PROCESS_WIDE_KINDS = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


def _is_storage_class(target):
    return isinstance(target, type) and issubclass(target, (torch.storage.TypedStorage, torch.UntypedStorage))


class RestrictedUnpickler(pickle._Unpickler):
    """
    An unpickler whose `find_class` only returns allow-listed objects (see [`resolve_global`]), and which never lets
    a pickle change or misuse them. Python's own (pure Python) unpickler is the base, so that three opcodes can be
    checked before they run:

    - BUILD (`__setstate__`, or attributes set one by one) on a class or function is refused: it would change that
      function or class for the rest of the process (e.g. the defaults of torch's `_rebuild_tensor_v2`, making every
      later tensor load come out negated), even when the file is refused afterwards;
    - REDUCE (a call) and NEWOBJ of a storage class or a `torch.nn` layer are refused: torch's own loaders make
      storages themselves and modules are pickled without calling their constructors, so such a call is only a way
      to allocate whatever size the pickle asks for;
    - the storages a torch file declares (through `persistent_load`) may add up to at most `max_storage_bytes`
      (the file's size, for [`load_learner_export`]): a 1 KB file cannot make torch allocate gigabytes.
    """

    max_storage_bytes = None  # None: no limit (set per file by `restricted_pickle_module`)

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._declared_storages = {}
        self._loader_persistent_load = None

    def find_class(self, module, name):
        return resolve_global(module, name)

    # torch's loaders assign their storage loader as `unpickler.persistent_load`: it runs behind the size check.
    @property
    def persistent_load(self):
        return self._checked_persistent_load

    @persistent_load.setter
    def persistent_load(self, function):
        self._loader_persistent_load = function

    def _checked_persistent_load(self, saved_id):
        if self._loader_persistent_load is None:
            raise pickle.UnpicklingError("refusing to load: the pickle refers to external data (a persistent id)")
        if isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] in ("storage", b"storage"):
            storage_type, key, numel = saved_id[1], saved_id[2], saved_id[4]
            if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
                raise UnsafePickleError(f"refusing to load: a storage declares {numel!r} elements")
            dtype = getattr(storage_type, "dtype", None)
            element_size = dtype.itemsize if isinstance(dtype, torch.dtype) else 1
            self._declared_storages[key] = numel * element_size
            declared = sum(self._declared_storages.values())
            if self.max_storage_bytes is not None and declared > self.max_storage_bytes:
                # A ValueError: an honest file cut short says this too (its loader reports it as truncated).
                raise ValueError(
                    f"its tensors declare {declared} bytes, more than the {self.max_storage_bytes} bytes the file "
                    "holds (refused before allocating them)"
                )
        return self._loader_persistent_load(saved_id)

    dispatch = dict(pickle._Unpickler.dispatch)

    def load_build(self):
        target = self.stack[-2]  # below the state
        if isinstance(target, PROCESS_WIDE_KINDS):
            name = getattr(target, "__qualname__", None) or type(target).__name__
            raise UnsafePickleError(
                f"refusing to load: the pickle sets the state of {name}, a class or function (that would change it "
                "for the whole process)"
            )
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def _check_construction(self, target):
        if _is_storage_class(target) or (isinstance(target, type) and issubclass(target, nn.Module)):
            kind = "a storage" if _is_storage_class(target) else "a torch.nn layer"
            raise UnsafePickleError(
                f"refusing to load: the pickle calls {target.__name__} ({kind}) directly, which torch never writes "
                "and which allocates whatever size the pickle asks for"
            )

    def load_reduce(self):
        self._check_construction(self.stack[-2])
        super().load_reduce()

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self):
        target = self.stack[-2]
        if _is_storage_class(target):
            self._check_construction(target)
        super().load_newobj()

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self):
        target = self.stack[-3]
        if _is_storage_class(target):
            self._check_construction(target)
        super().load_newobj_ex()

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def restricted_pickle_module(max_storage_bytes=None):
    """
    What `torch.load(..., pickle_module=...)` needs from a pickle module (`Unpickler`, `load`, and `__name__`, which
    torch compares with "dill"), with [`RestrictedUnpickler`]; `max_storage_bytes` caps the tensor bytes the file
    may declare (give the file's size).
    """
    unpickler = type("RestrictedUnpickler", (RestrictedUnpickler,), {"max_storage_bytes": max_storage_bytes})

    def load(file, **kwargs):
        return unpickler(file, **kwargs).load()

    def loads(data, **kwargs):
        return unpickler(io.BytesIO(data), **kwargs).load()

    return types.SimpleNamespace(
        __name__="orcahello_restricted_pickle",
        Unpickler=unpickler,
        load=load,
        loads=loads,
        UnpicklingError=pickle.UnpicklingError,
    )


# Without a size cap (the cap needs the file's size: `load_learner_export` sets it).
RESTRICTED_PICKLE_MODULE = restricted_pickle_module()
restricted_load = RESTRICTED_PICKLE_MODULE.load  # torch reads the legacy format's header pickles with it
restricted_loads = RESTRICTED_PICKLE_MODULE.loads


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


def pickle_globals(stream):
    """
    The globals one pickle refers to, as `(module, name)` pairs in order, read with `pickletools.genops` (nothing is
    executed). Reads `stream` up to and including the pickle's STOP opcode. Raises [`UnsafePickleError`] for
    opcodes whose target cannot be known statically (a STACK_GLOBAL on computed strings, the copyreg extension
    registry), and `ValueError` for a damaged or truncated pickle.
    """
    found = []
    memo = {}
    recent_pushes = []  # the values of recent one-item pushes: a string, or None for anything else
    for opcode, argument, position in pickletools.genops(stream):
        opname = opcode.name
        if opname in ("GLOBAL", "INST"):
            module, name = argument.split(" ", 1)
            found.append((module, name))
            recent_pushes.append(None)
        elif opname == "STACK_GLOBAL":
            if len(recent_pushes) < 2 or not all(isinstance(value, str) for value in recent_pushes[-2:]):
                raise UnsafePickleError(
                    f"refusing to load: the pickle builds a global from computed strings (STACK_GLOBAL at byte "
                    f"{position}), which cannot be checked before loading"
                )
            found.append((recent_pushes[-2], recent_pushes[-1]))
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


def torch_file_format(path):
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


def scan_torch_file_globals(path):
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


def check_torch_file_globals(path):
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


def pickles_objects(global_names):
    """
    Whether a pickle with these globals builds objects (modules, fastai metadata) rather than only tensors and plain
    data: true when any global resolves to an `nn.Module` class or a placeholder.
    """
    for qualified_name in global_names:
        target = resolve_global(*qualified_name.rsplit(".", 1))
        if isinstance(target, type) and issubclass(target, (nn.Module, InertObject)):
            return True
    return False


def load_learner_export(path):
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
    "UnsafePickleError",
    "NotATorchFileError",
    "RestrictedUnpickler",
    "RESTRICTED_PICKLE_MODULE",
    "InertObject",
    "resolve_global",
    "scan_torch_file_globals",
    "check_torch_file_globals",
    "load_learner_export",
    "pickles_objects",
    "torch_file_format",
]
