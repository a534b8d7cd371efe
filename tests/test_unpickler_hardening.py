"""
Attacks on the restricted unpickler (orcahello.conversion.restricted_unpickler) that get past an allow-list of globals:
each pickle names only allowed globals, and misuses them. Every file here is refused with a clear error, and leaves
the process as it was.
"""

import io
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from orcahello.conversion.learner_export import load_learner_export
from orcahello.conversion.pickle_allow_list import UnsafePickleError
from orcahello.conversion.restricted_unpickler import RESTRICTED_PICKLE_MODULE, restricted_loads

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def forged_scalar_pickle():
    """`numpy.core.multiarray.scalar(dtype, bytes)` whose dtype's pickled state hides an object field (its flags say
    "no objects"): numpy's own unpickling reads the 8 bytes as a pointer and crashes the process."""

    class Forged:
        def __reduce__(self):
            return (np._core.multiarray.scalar, (np.dtype([("a", "O")]), b"A" * 8))

    data = bytearray(pickle.dumps(Forged(), 2))
    flags = data.index(b"K\x1bt")  # the dtype state's last field: its flags, 27 for an object dtype
    data[flags + 1] = 0
    return bytes(data)


def test_forged_numpy_dtype_scalar_pair_is_refused_without_crashing(tmp_path):
    path = tmp_path / "scalar.pkl"
    path.write_bytes(forged_scalar_pickle())
    # In a child process: before the fix, this died with SIGSEGV (exit -11 / 139).
    program = (
        "import sys\n"
        "from orcahello.conversion.pickle_allow_list import UnsafePickleError\n"
        "from orcahello.conversion.restricted_unpickler import restricted_loads\n"
        "try:\n"
        f"    restricted_loads(open({str(path)!r}, 'rb').read())\n"
        "except UnsafePickleError as error:\n"
        "    print('REFUSED', error)\n"
        "    sys.exit(0)\n"
        "print('LOADED')\n"
        "sys.exit(3)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, (completed.returncode, completed.stdout, completed.stderr[-2000:])
    assert "REFUSED refusing to load a numpy dtype 'V8'" in completed.stdout


def test_plain_numpy_scalars_still_load():
    values = {"f8": np.float64(0.25), "i8": np.int64(-3), "text": np.str_("SRKW"), "f4": np.float32(1.5)}
    loaded = restricted_loads(pickle.dumps(values, 2))
    assert loaded == values
    assert [type(value) for value in loaded.values()] == [type(value) for value in values.values()]


def test_a_numpy_scalar_from_anything_but_bytes_is_refused_with_a_clear_error():
    """Found by mypy: the refusal measured `len()` of whatever was given, so a number gave a TypeError instead."""

    class NumberScalar:
        def __reduce__(self):
            return (np._core.multiarray.scalar, (np.dtype("f8"), 5))

    with pytest.raises(
        UnsafePickleError, match="refusing to build a numpy float64 scalar from a value of type int, not bytes"
    ):
        restricted_loads(pickle.dumps(NumberScalar(), 2))


def test_a_numpy_dtype_state_other_than_numpys_own_is_refused():
    data = pickle.dumps(np.float64(2.0), 2)
    # The float64 dtype's state ends with (element size, alignment, flags) = (-1, -1, 0): claim 4-byte items.
    honest_tail = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    assert honest_tail in data
    forged = data.replace(honest_tail, b"K\x04K\x04K\x00t", 1)
    with pytest.raises(UnsafePickleError, match="not numpy's own"):
        restricted_loads(forged)


def rebuild_defaults_pickle():
    """Sets `torch._utils._rebuild_tensor_v2.__defaults__` (its `metadata`) to `{"neg": True}`, then stops short:
    the file is refused as truncated, but with the old unpickler every later tensor load came out negated."""
    state = pickle.dumps((None, {"__defaults__": ({"neg": True},)}), 2)[2:-1]
    return b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + state + b"b"


def test_a_refused_file_cannot_change_torchs_rebuild_functions(tmp_path):
    defaults = torch._utils._rebuild_tensor_v2.__defaults__
    with pytest.raises(UnsafePickleError, match="sets the state of _rebuild_tensor_v2"):
        restricted_loads(rebuild_defaults_pickle())
    assert torch._utils._rebuild_tensor_v2.__defaults__ == defaults
    # A later, honest file loads as saved.
    path = tmp_path / "ones.pt"
    torch.save(torch.ones(3), path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_learner_export(path), torch.ones(3))


def test_state_cannot_be_set_on_allowed_classes():
    original = torch.nn.ReLU.forward
    forged = b"\x80\x02ctorch.nn.modules.activation\nReLU\n" + pickle.dumps((None, {"forward": None}), 2)[2:-1] + b"b."
    with pytest.raises(UnsafePickleError, match="sets the state of ReLU"):
        restricted_loads(forged)
    assert torch.nn.ReLU.forward is original


def test_a_small_file_cannot_declare_a_huge_storage(tmp_path):
    """A legacy torch file of a 2-element tensor whose storage record says 600 million elements: torch allocated
    2.4 GB for it before reading the file."""
    buffer = io.BytesIO()
    torch.save(torch.ones(2), buffer, _use_new_zipfile_serialization=False)
    raw = buffer.getvalue()
    numel = raw.index(b"K\x02", raw.index(b"cpu"))  # the storage's element count, right after its location
    forged = raw[:numel] + b"J" + struct.pack("<i", 600_000_000) + raw[numel + 2 :]
    path = tmp_path / "model.pkl"
    path.write_bytes(forged)
    assert len(forged) < 2000
    with pytest.raises(ValueError, match=r"declare 2400000000 bytes, more than the \d+ bytes the file holds"):
        load_learner_export(path)


def test_a_pickle_cannot_call_a_storage_or_layer_constructor():
    storage = b"\x80\x02ctorch\nFloatStorage\nJ" + struct.pack("<i", 600_000_000) + b"\x85R."
    with pytest.raises(UnsafePickleError, match="calls FloatStorage"):
        restricted_loads(storage)
    layer = (
        b"\x80\x02ctorch.nn.modules.linear\nLinear\nJ"
        + struct.pack("<i", 100_000)
        + b"J"
        + struct.pack("<i", 100_000)
        + b"\x86R."
    )
    with pytest.raises(UnsafePickleError, match="calls Linear"):
        restricted_loads(layer)


def test_honest_files_of_both_formats_still_load(tmp_path):
    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1.5, -2.0])}
    for zip_format in (False, True):
        path = tmp_path / f"weights-{zip_format}.pt"
        torch.save(weights, path, _use_new_zipfile_serialization=zip_format)
        loaded = load_learner_export(path)
        assert set(loaded) == {"w", "b"}
        assert all(torch.equal(loaded[name], weights[name]) for name in weights)
        assert torch.load(path, weights_only=False, pickle_module=RESTRICTED_PICKLE_MODULE)["b"][1] == -2.0


def rebuild_from_type_pickle(function_global, size):
    """
    `torch._tensor._rebuild_from_type_v2(<function_global>, collections.OrderedDict, (size, size), {})`, naming only
    allowed globals.
    """
    module, name = function_global.rsplit(".", 1)
    return (
        b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n("  # the function, then a MARK for its 4 arguments
        + f"c{module}\n{name}\n".encode()
        + b"ccollections\nOrderedDict\n"
        + b"J" + struct.pack("<i", size) + b"J" + struct.pack("<i", size) + b"\x86"  # args: (size, size)
        + b"}tR."  # state {}, the 4-tuple, the call
    )  # fmt: skip


@pytest.mark.parametrize(
    "function_global, refused",
    [("torch.nn.modules.linear.Linear", "Linear"), ("torch.FloatStorage", "FloatStorage"), ("builtins.set", "set")],
)
def test_rebuild_from_type_v2_calls_only_tensor_rebuild_functions(function_global, refused):
    # F9 bypass: torch's _rebuild_from_type_v2 calls func(*args) whatever func is; 875 bytes reached 4.4 GB through it
    # (nn.Linear(33000, 33000)). Small sizes here: without the check the call runs and returns a layer.
    with pytest.raises(UnsafePickleError, match=f"_rebuild_from_type_v2 asked to call {refused}"):
        restricted_loads(rebuild_from_type_pickle(function_global, 3))


def test_a_compressed_zip_checkpoint_is_refused_before_decompressing(tmp_path):
    # F9: a 612-KB zip of deflated zeros decompressed to 2.7 GB; torch.save stores its members uncompressed.
    import zipfile

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(4)}, path)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member))
        target.writestr("weights/data/padding", b"\0" * 5_000_000)  # 5 MB that deflate to about 5 KB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ValueError, match="is compressed, which torch.save never writes"):
        load_learner_export(bomb)
    from orcahello.conversion.checkpoint_reading import read_checkpoint
    from orcahello.conversion.errors import ConversionError

    with pytest.raises(ConversionError, match="is compressed"):
        read_checkpoint(str(bomb))
    assert set(load_learner_export(path)) == {"w"}  # torch's own uncompressed archive still loads
