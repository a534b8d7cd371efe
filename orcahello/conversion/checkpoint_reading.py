# Copyright 2026 Orcasound and the OrcaHello contributors.
#
# Licensed under the MIT License.
"""
Read an OrcaHello checkpoint file ([`read_checkpoint`]): a safetensors state_dict, a plain `torch.save` state_dict
(torch's weights-only loader), or a fastai v1 learner export (the restricted unpickler, after a static check of its
globals), and tell which it is.
"""

import os
import pickle
from collections.abc import Mapping
from typing import Any, TypeGuard

import torch
from torch import nn

from .errors import MAX_KEYS_IN_MESSAGE, ConversionError
from .learner_export import check_torch_file_globals, load_learner_export, pickles_objects, torch_file_format
from .pickle_allow_list import InertObject, UnsafePickleError


def _is_tensor_mapping(value: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items())
    )


def _module_tree_problems(module, path="model"):
    """Paths and original names of objects in a learner's module tree that are not runnable nn.Modules."""
    if isinstance(module, InertObject):
        return [f"{path} ({type(module).original_name})"]
    if not isinstance(module, nn.Module):
        return [f"{path} ({type(module).__name__})"]
    problems = []
    for name, child in module.__dict__.get("_modules", {}).items():
        if child is not None:
            problems.extend(_module_tree_problems(child, f"{path}.{name}"))
    return problems


def learner_class_names(export: object) -> list[str] | None:
    """The class names a fastai learner export stores (`data -> y_proc -> CategoryProcessor.classes`), or None."""
    data = export.get("data") if isinstance(export, Mapping) else None
    if not isinstance(data, Mapping):
        return None
    for processor in data.get("y_proc") or []:
        classes = getattr(processor, "classes", None)
        if classes is not None:
            return [str(name) for name in classes]
    classes = data.get("classes")
    return [str(name) for name in classes] if classes is not None else None


def read_checkpoint(input_path: str) -> dict[str, Any]:
    """
    Read `input_path` and return a dict describing it: `file_format` ("legacy", "zip" or "safetensors"), `content`
    ("learner" or "state_dict"), `state_dict`, and for a learner `model` (the unpickled module tree, runnable),
    `class_names` and `pickle_globals`.
    """
    if not os.path.isfile(input_path):
        raise ConversionError(f"{input_path} does not exist or is not a file")
    try:
        file_format = torch_file_format(input_path)
    except ValueError as error:
        raise ConversionError(str(error)) from None

    if file_format == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(input_path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ConversionError(
                f"cannot read {input_path}: the safetensors file is truncated or corrupted ({error})"
            ) from None
        return {"file_format": file_format, "content": "state_dict", "state_dict": state_dict}

    # Refuse anything outside the allow-list before a single opcode runs. The static scan also tells a learner (it
    # pickles modules and fastai objects) from a state_dict (only tensors and plain data), which torch's own
    # weights-only loader reads.
    try:
        pickle_globals = check_torch_file_globals(input_path)
    except UnsafePickleError:
        raise
    except ValueError as error:
        raise ConversionError(str(error)) from None

    loaded = not_loaded = object()
    if not pickles_objects(pickle_globals):
        try:
            loaded = torch.load(input_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's weights-only allow-list is narrower than ours for plain data (numpy scalars, for one); the
            # restricted unpickler below reads it, or explains why the file is unreadable.
            pass
        except Exception as error:  # RuntimeError, EOFError, ... for a damaged file
            raise ConversionError(
                f"cannot load {input_path}: the file is truncated or corrupted ({type(error).__name__}: {error})"
            ) from None
    if loaded is not_loaded:
        try:
            loaded = load_learner_export(input_path)
        except UnsafePickleError:
            raise
        except ValueError as error:
            raise ConversionError(str(error)) from None

    common = {"file_format": file_format, "pickle_globals": pickle_globals}
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), nn.Module):
        model, class_names = loaded["model"], learner_class_names(loaded)
    elif isinstance(loaded, nn.Module):  # `torch.save(learn.model)`: the module tree without fastai metadata
        model, class_names = loaded, None
    elif _is_tensor_mapping(loaded):
        return {**common, "content": "state_dict", "state_dict": dict(loaded)}
    elif isinstance(loaded, Mapping) and any(_is_tensor_mapping(loaded.get(name)) for name in ("model", "state_dict")):
        # fastai's learn.save() writes {"model": state_dict, "opt": optimizer state}
        entry = "model" if _is_tensor_mapping(loaded.get("model")) else "state_dict"
        return {**common, "content": "state_dict", "state_dict": dict(loaded[entry])}
    else:
        shown = (
            f"a dict with keys {sorted(map(str, loaded))[:10]}"
            if isinstance(loaded, Mapping)
            else type(loaded).__name__
        )
        raise ConversionError(
            f"{input_path} is not a fastai learner export nor a state_dict: it holds {shown}. A learner export "
            "(learn.export()) is a dict whose 'model' entry is the nn.Sequential(body, head); a state_dict maps "
            "names to tensors"
        )

    problems = _module_tree_problems(model)
    if problems:
        raise ConversionError(
            "the learner's model contains objects this converter cannot run (no stand-in for their class): "
            + ", ".join(problems[:MAX_KEYS_IN_MESSAGE])
        )
    if not (isinstance(model, nn.Sequential) and len(model) == 2):
        raise ConversionError(
            f"the learner's model is a {type(model).__name__} with {len(list(model.children()))} children; a fastai "
            "vision/audio learner is an nn.Sequential of exactly two parts, [body, head]"
        )
    return {
        **common,
        "content": "learner",
        "model": model,
        "state_dict": model.state_dict(),
        "class_names": class_names,
    }
