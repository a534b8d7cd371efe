# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
The allow-list of what a fastai v1 learner export's pickle may name: [`resolve_global`] maps each global
`module.name` to the object it gets, or raises [`UnsafePickleError`] naming it; nothing is imported to decide.

It only hands out:

- a short list of real, side-effect-free objects: the `torch.nn` layers a fastai ResNet learner is made of, torch's
  tensor-rebuild functions, storage classes and dtypes, `collections.OrderedDict`, numpy's scalar and dtype (through
  checked stand-ins), `_codecs.encode` (how protocol 2 pickles `bytes`) and `set`/`int`/`float`: exactly what the
  learner exports reference (LEGACY_NOTES.md section 4);
- stand-ins written here for the module classes the learner's forward pass needs (torchvision's `Bottleneck` and
  `BasicBlock`, fastai's `AdaptiveConcatPool2d` and `Flatten`), with the original forward, so the unpickled tree can
  be run as the reference the conversion is checked against;
- inert placeholder classes for everything else from fastai, fastai_audio, torchvision, `torch.optim` and
  `functools.partial`: they record their pickled state and have no behaviour at all.

The unpickler that consults it is in `restricted_unpickler.py`; the static scan of a file's globals in
`learner_export.py`.
"""

import _compat_pickle
import codecs
import collections
import functools
import pickle
import re
from typing import Any

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

    # The original's submodules, as unpickling sets them.
    conv1: nn.Conv2d
    bn1: nn.BatchNorm2d
    conv2: nn.Conv2d
    bn2: nn.BatchNorm2d
    conv3: nn.Conv2d
    bn3: nn.BatchNorm2d
    relu: nn.ReLU
    downsample: nn.Module | None

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        identity = hidden_state
        out = self.relu(self.bn1(self.conv1(hidden_state)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(hidden_state)
        return self.relu(out + identity)


class TorchvisionBasicBlock(nn.Module):
    """Stand-in for `torchvision.models.resnet.BasicBlock` (ResNet18/34 block)."""

    # The original's submodules, as unpickling sets them.
    conv1: nn.Conv2d
    bn1: nn.BatchNorm2d
    conv2: nn.Conv2d
    bn2: nn.BatchNorm2d
    relu: nn.ReLU
    downsample: nn.Module | None

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        identity = hidden_state
        out = self.relu(self.bn1(self.conv1(hidden_state)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(hidden_state)
        return self.relu(out + identity)


class FastaiAdaptiveConcatPool2d(nn.Module):
    """Stand-in for `fastai.layers.AdaptiveConcatPool2d`: its own `mp` (max) and `ap` (average) pools, concatenated."""

    # The original's pools, as unpickling sets them.
    mp: nn.AdaptiveMaxPool2d
    ap: nn.AdaptiveAvgPool2d

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(feature_map), self.ap(feature_map)], 1)


class FastaiFlatten(nn.Module):
    """Stand-in for `fastai.layers.Flatten`: flatten to (batch, -1), or to one dimension when `full` is set."""

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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
def inert_standin(module: str, name: str) -> type[InertObject]:
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
TENSOR_REBUILD_FUNCTIONS = tuple(TORCH_REBUILD_FUNCTIONS.values())


def rebuild_from_type_v2(func: Any, new_type: type, args: tuple, state: Any) -> torch.Tensor:
    """
    What the global `torch._tensor._rebuild_from_type_v2` gives: torch's own, once `func` is one of torch's tensor
    rebuild functions and `new_type` a tensor or parameter class. Torch's calls `func(*args)` whatever `func` is: an
    875-byte pickle passed `nn.Linear` and two sizes through it (4.4 GB), past the check on direct calls.
    """
    if not any(func is allowed for allowed in TENSOR_REBUILD_FUNCTIONS):
        shown = getattr(func, "__qualname__", type(func).__name__)
        raise UnsafePickleError(f"refusing to load: _rebuild_from_type_v2 asked to call {shown}, not a tensor rebuild")
    if new_type not in (torch.Tensor, nn.Parameter):
        raise UnsafePickleError(f"refusing to load: _rebuild_from_type_v2 asked for the tensor class {new_type!r}")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


TORCH_REBUILD_FUNCTIONS["torch._tensor._rebuild_from_type_v2"] = rebuild_from_type_v2


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

    def __init__(self, type_code: object, align: bool = False, copy: bool = False) -> None:
        self.type_code = type_code
        self.pickled_state: Any = None

    def __setstate__(self, state):
        self.pickled_state = state

    def to_numpy(self) -> np.dtype:
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
            dtype = dtype.newbyteorder("<" if byte_order == "<" else ">")
        if state is not None and state != dtype.__reduce__()[2]:
            raise UnsafePickleError(
                f"refusing to load a numpy dtype {code!r} whose pickled state {state!r} is not numpy's own for it"
            )
        return dtype

    def __repr__(self):
        return f"<pickled numpy dtype {self.type_code!r}>"


def numpy_scalar(dtype: object, data: object) -> np.generic:
    """What the global `numpy.core.multiarray.scalar` gives: a number scalar, read from its bytes once checked."""
    if not isinstance(dtype, PickledNumpyDtype):
        raise UnsafePickleError(f"refusing to build a numpy scalar from {type(dtype).__name__}: not a pickled dtype")
    dtype = dtype.to_numpy()
    if isinstance(data, str):  # protocol 2 writes the bytes as latin-1 text
        data = data.encode("latin1")
    if not isinstance(data, bytes):
        raise UnsafePickleError(
            f"refusing to build a numpy {dtype} scalar from a value of type {type(data).__name__}, not bytes"
        )
    if len(data) != dtype.itemsize:
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


def normalize_global_name(module: str, name: str) -> tuple[str, str]:
    """
    Map Python 2 names in protocol 0-2 pickles (`__builtin__.long`, `copy_reg._reconstructor`) to Python 3 ones,
    the way `pickle.Unpickler(fix_imports=True)` does; an overriding `find_class` receives the raw names.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def resolve_global(module: str, name: str) -> Any:
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


__all__ = [
    "UnsafePickleError",
    "InertObject",
    "normalize_global_name",
    "resolve_global",
]
