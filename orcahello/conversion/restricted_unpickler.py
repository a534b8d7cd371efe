# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
Load a fastai v1 learner export (`learn.export()`, usually `model.pkl`) without fastai, and without ever running
code that the file names.

A learner export is a `torch.save` of a dict that holds the whole pickled `nn.Sequential` plus fastai metadata, so
reading it means unpickling classes from fastai, fastai_audio, torchvision and torch. Plain `pickle` would import
and call whatever the file names (`os.system`, `builtins.eval`, ...). Here every global the pickle refers to goes
through [`RestrictedUnpickler.find_class`], which only hands out what the allow-list gives ([`resolve_global`] in
`pickle_allow_list.py`): a short list of real, side-effect-free objects (torch layers, tensor-rebuild functions,
dtypes, ...), stand-ins with the original forward for the module classes the learner's forward pass needs, and
inert placeholders for everything else from fastai, fastai_audio, torchvision, `torch.optim` and `functools.partial`.

Anything else raises [`UnsafePickleError`] naming the global as soon as the pickle asks for it, which is before any
object that uses it is built; [`scan_torch_file_globals`] additionally lists every global of a file statically
(with `pickletools`, executing nothing) so a refusal can name all offending globals at once, before `torch.load`,
and [`load_learner_export`] (`learner_export.py`) does both for a file.

Both torch serialization formats are supported: torch's `_legacy_load` (pre-1.6 non-zip files) and `_load` (zip
files) subclass `pickle_module.Unpickler` and call `super().find_class` for every global except storage class
names (which they map to an inert dtype record themselves), and read the legacy header pickles with
`pickle_module.load`, so passing [`RESTRICTED_PICKLE_MODULE`] as `torch.load(..., pickle_module=...)` routes every
global of the file through this allow-list.
"""

import io
import pickle
import types
from collections.abc import Callable
from typing import IO, Any, ClassVar

import torch
from torch import nn

from .pickle_allow_list import UnsafePickleError, resolve_global

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

    max_storage_bytes: int | None = None  # None: no limit (set per file by `restricted_pickle_module`)
    # The pure-Python unpickler's stack, which its opcode handlers below read (typeshed leaves it out).
    stack: list[Any]

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._declared_storages: dict[Any, int] = {}
        self._loader_persistent_load: Callable[[Any], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        return resolve_global(module, name)

    # torch's loaders assign their storage loader as `unpickler.persistent_load`: it runs behind the size check.
    @property
    def persistent_load(self) -> Callable[[Any], Any]:
        return self._checked_persistent_load

    @persistent_load.setter
    def persistent_load(self, function: Callable[[Any], Any]) -> None:
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

    # The opcode handlers: pickle._Unpickler's, four of them checked first (typeshed declares neither the
    # handlers nor a subclass's own table).
    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)

    def load_build(self) -> None:
        target = self.stack[-2]  # below the state
        if isinstance(target, PROCESS_WIDE_KINDS):
            name = getattr(target, "__qualname__", None) or type(target).__name__
            raise UnsafePickleError(
                f"refusing to load: the pickle sets the state of {name}, a class or function (that would change it "
                "for the whole process)"
            )
        super().load_build()  # type: ignore[misc]

    dispatch[pickle.BUILD[0]] = load_build

    def _check_construction(self, target):
        if _is_storage_class(target) or (isinstance(target, type) and issubclass(target, nn.Module)):
            kind = "a storage" if _is_storage_class(target) else "a torch.nn layer"
            raise UnsafePickleError(
                f"refusing to load: the pickle calls {target.__name__} ({kind}) directly, which torch never writes "
                "and which allocates whatever size the pickle asks for"
            )

    def load_reduce(self) -> None:
        self._check_construction(self.stack[-2])
        super().load_reduce()  # type: ignore[misc]

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        target = self.stack[-2]
        if _is_storage_class(target):
            self._check_construction(target)
        super().load_newobj()  # type: ignore[misc]

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        target = self.stack[-3]
        if _is_storage_class(target):
            self._check_construction(target)
        super().load_newobj_ex()  # type: ignore[misc]

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def restricted_pickle_module(max_storage_bytes: int | None = None) -> types.SimpleNamespace:
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

__all__ = [
    "RestrictedUnpickler",
    "RESTRICTED_PICKLE_MODULE",
    "restricted_pickle_module",
    "restricted_load",
    "restricted_loads",
]
